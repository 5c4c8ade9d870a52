"""The defendant's side of the contract: each scenario builds the method, runs it on lipbench's
contract models with the judge's inputs, and reports plain observations.

Nothing here decides a verdict: a scenario records what the method did (effective weights
and outputs, states, penalty values, gradients, the text of an exception) and the judge
(:mod:`.claim_invariants`, :mod:`.state_invariants`) computes and compares. A scenario
whose method raises reports ``{"raised": "Type: message"}``.
"""
from __future__ import annotations

import copy
import time
import traceback
from typing import Any, Callable

import torch
from torch import nn

from harness.observe.effective import mode_named, observe_modes, settle, snapshot_of, standard_forward, stored_weight

from ..base import Method
from ..claims import INTERPOLATE, description
from ..measure import evaluating, interpolate_gradient_norms
from .base import SETTLE_BUDGET, Factory, contract_model, cotangent, direction, unknown_model

#: Second target tried for a claim whose target is a parameter (``s``, ``c``): value × this.
OTHER_TARGET_FACTOR = 1.5
#: Penalties: Adam steps on the penalty alone and their learning rate (see the package docstring).
PULL_STEPS = 10
PULL_LR = 1e-2
#: Before the pull: the median input-gradient norm at interpolates is put here (above 1, so
#: one- and two-sided penalties both pull); before the side test, the largest one here
#: (below 1: a two-sided penalty pushes the norms up, a one-sided one leaves them alone).
PUSHED_GRADIENT_NORM = 3.0
BELOW_GRADIENT_NORM = 0.5
#: The gradient check: directions per parameter and the central-difference step (float64).
DIRECTIONS = 2
FD_STEP = 1e-6


class Defendant:
    """The method's factory and parameters, and the judge's request."""

    def __init__(self, factory: Factory, params: dict[str, Any], request: dict[str, Any]) -> None:
        self.factory, self.params, self.request = factory, dict(params), request
        self.seed = int(request["seed"])
        self.plan = request["plan"]
        self.x = self.plan["inputs"]
        self.real, self.fake = request["real"], request["fake"]
        self.method = self.build()

    def build(self, **override: Any) -> Method:
        method = self.factory(**{**self.params, **override})
        if not isinstance(method, Method):
            raise TypeError(f"the factory returned {type(method).__name__}, not a harness.methods.Method")
        return method

    def applied(self, seed_offset: int = 0, method: Method | None = None) -> tuple[Method, nn.Module]:
        """A fresh method applied to a fresh contract model; the model ``apply`` returned."""
        method = method or self.build()
        model = method.apply(contract_model(self.seed + seed_offset))
        if not isinstance(model, nn.Module):
            raise TypeError(f"apply returned {type(model).__name__}, not the model to use "
                            "(apply must return an nn.Module)")
        return method, model


# --- scenarios ---------------------------------------------------------------------------------

def observe_apply(d: Defendant) -> dict[str, Any]:
    """What ``apply`` returned and its output in the mode it came in."""
    model = d.build().apply(contract_model(d.seed))
    if not isinstance(model, nn.Module):
        return {"module": False, "type": type(model).__name__}
    return {"module": True, "type": type(model).__name__, "output": model(d.x)}


def _settled(d: Defendant, method: Method, model: nn.Module, plan: dict[str, Any]) -> dict[str, Any]:
    report = settle(model, method, plan["inputs"][:2], plan, budget=SETTLE_BUDGET)
    return {"settle": report, "modes": observe_modes(model, plan)}


def observe_settled(d: Defendant) -> dict[str, Any]:
    """Settled on fixed weights, then observed in every mode."""
    method, model = d.applied()
    return _settled(d, method, model, d.plan)


def observe_other_target(d: Defendant) -> dict[str, Any]:
    """As :func:`observe_settled`, with the claim's target parameter × :data:`OTHER_TARGET_FACTOR`."""
    name = d.method.claim.target
    value = OTHER_TARGET_FACTOR * float(d.method.params[name])
    method, model = d.applied(method=d.build(**{name: value}))
    return {"param": name, "value": value, **_settled(d, method, model, d.plan)}


def _eval(model: nn.Module, plan: dict[str, Any]) -> dict[str, Any]:
    return observe_modes(model, plan, modes=[mode_named("eval+no_grad")])["eval+no_grad"]


def train_step(method: Method, model: nn.Module, x: torch.Tensor, lr: float = 1e-2) -> None:
    """One SGD step on ``mean D(x)`` plus the method's penalty, then ``after_step``."""
    opt = torch.optim.SGD(model.parameters(), lr=lr)
    opt.zero_grad()
    model.train()
    loss = model(x).mean() + method.penalty(model, x, x + 1.0)
    loss.backward()
    opt.step()
    method.after_step(model)


def observe_steps(d: Defendant) -> dict[str, Any]:
    """Claims that hold after every step (projections): the effective weights after each of
    three large SGD steps."""
    method, model = d.applied()
    records = []
    for _ in range(3):
        train_step(method, model, d.x, lr=0.5)
        records.append(_eval(model, d.plan))
    return {"records": records}


def _stored(model: nn.Module, plan: dict[str, Any]) -> dict[str, torch.Tensor]:
    out = {}
    for path in plan["paths"]:
        try:
            weight = stored_weight(model.get_submodule(path))
        except AttributeError:
            continue
        if weight is not None:
            out[path] = weight
    return out


def observe_projection(d: Defendant) -> dict[str, Any]:
    """Every stored weight set to values up to 3c in size, then ``after_step``: the values set
    and the effective weights after."""
    method, model = d.applied()
    c = method.claim.target_value(method.params)
    gen = torch.Generator().manual_seed(d.seed)
    before = {}
    with torch.no_grad():
        for path, w in _stored(model, d.plan).items():
            w.copy_((torch.rand(w.shape, generator=gen, dtype=w.dtype) * 2 - 1) * 3 * c)
            before[path] = w.detach().clone()
    method.after_step(model)
    return {"before": before, "after": _eval(model, d.plan)}


def _interpolate_norms(d: Defendant, model: nn.Module) -> torch.Tensor:
    with evaluating(model):
        return interpolate_gradient_norms(model, d.real, d.fake, d.seed)


def _scale_last(d: Defendant, model: nn.Module, factor: float) -> None:
    """Scale the last layer's stored weight (the output, hence every input gradient, is linear in it)."""
    stored = _stored(model, d.plan)
    with torch.no_grad():
        stored[d.plan["paths"][-1]].mul_(factor)


def push_away(d: Defendant, model: nn.Module) -> None:
    """Move the model away from a penalty claim's target: double every stored weight
    (orthonormal weights get singular values 2), or, for gradient claims, scale the last
    layer so the median norm at the judge's interpolates is :data:`PUSHED_GRADIENT_NORM`."""
    if d.method.claim.quantity not in INTERPOLATE:
        with torch.no_grad():
            for w in _stored(model, d.plan).values():
                w.mul_(2.0)
        return
    _scale_last(d, model, PUSHED_GRADIENT_NORM / float(_interpolate_norms(d, model).median()))


def _penalty_steps(method: Method, model: nn.Module, real: torch.Tensor, fake: torch.Tensor) -> None:
    opt = torch.optim.Adam(model.parameters(), lr=PULL_LR)
    model.train()
    for _ in range(PULL_STEPS):
        opt.zero_grad()
        method.penalty(model, real, fake).backward()
        opt.step()


def observe_pull(d: Defendant) -> dict[str, Any]:
    """Pushed away from the claim, then :data:`PULL_STEPS` Adam steps on the penalty alone: the
    effective model before and after."""
    method, model = d.applied()
    push_away(d, model)
    before = _eval(model, d.plan)
    _penalty_steps(method, model, d.real, d.fake)
    return {"before": before, "after": _eval(model, d.plan)}


def observe_side(d: Defendant) -> dict[str, Any]:
    """Gradient claims: every norm at the judge's interpolates under 1 (the largest
    :data:`BELOW_GRADIENT_NORM`), then the penalty's steps: the model before and after."""
    method, model = d.applied()
    _scale_last(d, model, BELOW_GRADIENT_NORM / float(_interpolate_norms(d, model).max()))
    before = _eval(model, d.plan)
    _penalty_steps(method, model, d.real, d.fake)
    return {"before": before, "after": _eval(model, d.plan)}


class SegmentCritic(nn.Module):
    """``D(x) = L·φ(t)``, ``t = ⟨a, x − f⟩/L`` along the segment from ``f`` to ``r``
    (``a`` its unit direction, ``L`` its length), so ``‖∇D‖ = |φ'(t)|``:
    ``"line"`` ``φ' = 1``; ``"ends"`` ``φ' = 1 + t(1−t)`` (1 only at the endpoints);
    ``"middle"`` ``φ' = 1 + (t − ½)²`` (1 only at the midpoint)."""

    def __init__(self, real: torch.Tensor, fake: torch.Tensor, shape: str) -> None:
        super().__init__()
        diff = real - fake
        self.length = float(diff.norm())
        self.register_buffer("a", diff / self.length)
        self.register_buffer("f", fake)
        self.shape = shape
        self.gain = nn.Parameter(torch.ones((), dtype=real.dtype))

    def forward(self, x):
        t = ((x.flatten(1) - self.f) @ self.a) / self.length
        if self.shape == "line":
            phi = t
        elif self.shape == "ends":
            phi = t + t ** 2 / 2 - t ** 3 / 3
        else:
            phi = t + (t - 0.5) ** 3 / 3
        return (self.gain * self.length * phi).unsqueeze(1)


def observe_vanishes(d: Defendant) -> dict[str, Any]:
    """The penalty on critics whose gradient norm is 1 along the whole real–fake segment, or only
    at its ends, or only at its midpoint."""
    method = d.build()
    gen = torch.Generator().manual_seed(d.seed)
    r = torch.randn(8, generator=gen, dtype=torch.float64)
    f = torch.randn(8, generator=gen, dtype=torch.float64)
    real, fake = r.expand(64, 8).clone(), f.expand(64, 8).clone()
    return {shape: method.penalty(SegmentCritic(r, f, shape), real, fake).detach()
            for shape in ("line", "ends", "middle")}


def _parameters(model: nn.Module) -> dict[str, nn.Parameter]:
    return {name: p for name, p in model.named_parameters() if p.requires_grad}


def _directional(d: Defendant, model: nn.Module, value: Callable[[], torch.Tensor]) -> dict[str, Any]:
    """``value()`` at every parameter moved by ± :data:`FD_STEP` along the judge's directions."""
    out = {}
    for name, p in _parameters(model).items():
        original = p.detach().clone()
        plus, minus = [], []
        for k in range(DIRECTIONS):
            step = FD_STEP * direction(p.shape, d.seed, name, k).to(p.dtype)
            for sign, into in ((1.0, plus), (-1.0, minus)):
                with torch.no_grad():
                    p.copy_(original + sign * step)
                into.append(value().detach())
        with torch.no_grad():
            p.copy_(original)
        out[name] = {"shape": list(p.shape), "plus": plus, "minus": minus}
    return out


def _grads(model: nn.Module) -> dict[str, Any]:
    return {name: snapshot_of(p.grad) for name, p in _parameters(model).items()}


def _penalty(method: Method, model: nn.Module, real, fake, seed: int) -> torch.Tensor:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)  # the same interpolates at every evaluation
        return method.penalty(model, real, fake)


def observe_gradients(d: Defendant) -> dict[str, Any]:
    """In float64 (the method applied as training applies it, then the model converted with
    ``.double()``) and eval mode: the gradient of ``⟨g, D(x)⟩`` for every parameter, and
    ``⟨g, D(x)⟩``'s parts at every parameter moved along the judge's directions; for a method
    with a penalty (pushed away from its claim first) the same for the penalty."""
    method, model = d.applied()
    model = model.double()
    x = d.x.double()
    with torch.no_grad():
        model(x[:1])  # first-forward initialisations (e.g. sn_conv's input size)
    model.eval()
    output = model(x)
    g = cotangent(output.shape, d.seed)
    (output * g).sum().backward()
    out: dict[str, Any] = {"output_shape": list(output.shape), "grads": _grads(model),
                           "moved": _directional(d, model, lambda: model(x))}
    if type(method).penalty is not Method.penalty or d.method.claim.kind == "penalty":
        push_away(d, model)
        model.zero_grad()
        real, fake = d.real.double(), d.fake.double()
        penalty = _penalty(method, model, real, fake, d.seed)
        out["penalty"] = {"value": penalty.detach(), "requires_grad": bool(penalty.requires_grad)}
        if penalty.requires_grad:
            penalty.backward()
        out["penalty"]["grads"] = _grads(model)
        out["penalty"]["moved"] = _directional(d, model, lambda: _penalty(method, model, real, fake, d.seed))
    return out


def snapshot(model: nn.Module) -> dict[str, torch.Tensor | None]:
    """Copies of every parameter and buffer (non-persistent and ``None`` buffers included)."""
    out: dict[str, torch.Tensor | None] = {}
    for name, t in model.named_parameters():
        out["param " + name] = t.detach().clone()
    for mod_name, module in model.named_modules():
        for name, t in module._buffers.items():  # non-persistent and None buffers too
            out[f"buffer {mod_name}.{name}".replace(" .", " ")] = None if t is None else t.detach().clone()
    return out


def observe_eval_state(d: Defendant) -> dict[str, Any]:
    """The state after a first forward, and after eval-mode forwards (with a backward and
    without grad) and reads of every effective weight."""
    _, model = d.applied()
    with torch.no_grad():
        model(d.x)
    before = snapshot(model)
    model.eval()
    for _ in range(2):
        model(d.x).sum().backward()
        with torch.no_grad():
            model(d.x)
            for path in d.plan["paths"]:
                layer = model.get_submodule(path)
                if standard_forward(layer):
                    layer.weight  # noqa: B018 - reading the effective weight must not change state
    for p in model.parameters():
        p.grad = None
    return {"before": before, "after": snapshot(model)}


def observe_round_trip(d: Defendant) -> dict[str, Any]:
    """A model trained two steps and its state dict loaded into a fresh one (other seed)."""
    method, a = d.applied()
    for _ in range(2):
        train_step(method, a, d.x)
    with torch.no_grad():
        a.train()
        a(d.x)
    _, b = d.applied(seed_offset=1)
    b.load_state_dict(a.state_dict())
    return {"a": _eval(a, d.plan), "b": _eval(b, d.plan)}


def observe_deepcopy(d: Defendant) -> dict[str, Any]:
    """Copies taken right after ``apply`` and after a step, each trained: the original's state
    and effective model before and after."""
    method, a = d.applied()
    early = copy.deepcopy(a)
    first = snapshot(a)
    train_step(method, early, d.x)
    after_early = snapshot(a)
    train_step(method, a, d.x)
    late = copy.deepcopy(a)
    out = {"first": first, "after_early": after_early, "a": _eval(a, d.plan), "late": _eval(late, d.plan)}
    out["before_late"] = snapshot(a)
    train_step(method, late, d.x)
    out["after_late"], out["a_after_late"] = snapshot(a), _eval(a, d.plan)
    return out


def observe_unknown(d: Defendant) -> dict[str, Any]:
    """Per model of :data:`~.base.UNKNOWN_MODELS`: the error ``apply`` raised, or the model
    settled and observed (its covered layers, in eval mode)."""
    out = {}
    for path, plan in d.request["unknown"].items():
        method = d.build()
        try:
            model = method.apply(unknown_model(path, d.seed))
        except Exception as exc:  # noqa: BLE001 - any error type, the judge reads its text
            out[path] = {"raised": f"{type(exc).__name__}: {exc}"}
            continue
        report = settle(model, method, plan["inputs"][:2], plan, budget=SETTLE_BUDGET)
        out[path] = {"settle": report, "eval": _eval(model, plan)}
    return out


#: Scenario name -> function.
SCENARIOS: dict[str, Callable[[Defendant], dict[str, Any]]] = {
    "apply": observe_apply, "settled": observe_settled, "other_target": observe_other_target,
    "steps": observe_steps, "projection": observe_projection, "pull": observe_pull, "side": observe_side,
    "vanishes": observe_vanishes, "gradients": observe_gradients, "eval_state": observe_eval_state,
    "round_trip": observe_round_trip, "deepcopy": observe_deepcopy, "unknown": observe_unknown}


def observe_contract(factory: Factory, params: dict[str, Any], request: dict[str, Any],
                     needed: Callable[[Any], list[str]]) -> dict[str, Any]:
    """Run in the defendant's process: build the method and observe each scenario that
    ``needed(claim)`` names for its claim (the judge uses the same rule to tell what is
    missing)."""
    with torch.random.fork_rng(devices=[]):
        try:
            d = Defendant(factory, params, request)
        except Exception as exc:  # noqa: BLE001 - the factory itself failed
            return {"build": f"building the method raised {type(exc).__name__}: {exc}"}
        out: dict[str, Any] = {"method": description(d.method), "scenarios": {}, "seconds": {}}
        for name in needed(d.method.claim):
            torch.manual_seed(d.seed)
            start = time.perf_counter()
            try:
                out["scenarios"][name] = SCENARIOS[name](d)
            except Exception as exc:  # noqa: BLE001 - the method under test raised
                lines = traceback.format_exception_only(type(exc), exc)
                out["scenarios"][name] = {"raised": "".join(lines).strip()}
            out["seconds"][name] = time.perf_counter() - start
        return out


__all__ = ["BELOW_GRADIENT_NORM", "DIRECTIONS", "Defendant", "FD_STEP", "OTHER_TARGET_FACTOR",
           "PULL_LR", "PULL_STEPS", "PUSHED_GRADIENT_NORM", "SCENARIOS", "SegmentCritic", "observe_contract",
           "snapshot", "train_step"]
