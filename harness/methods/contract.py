"""The contract every method must satisfy, checked in seconds before any suite runs.

In the spirit of scikit-learn's ``check_estimator``: :func:`run_contract` builds the
method from its factory, applies it to small models (:func:`contract_model`: a stride-1
and a stride-2 zero-padded ``Conv2d``, a ``ConvTranspose2d`` and a ``Linear``, float32,
input ``2×6×6``) and runs each invariant of :data:`INVARIANTS`, one small function each.
Every result is an :class:`InvariantResult` whose ``verdict`` is ``"pass"``,
``"violation"`` (the detail names what failed, with the numbers) or ``"n/a"`` (the
invariant does not apply to this claim). A method that raises inside an invariant is a
violation naming the exception.

Tolerances and where they come from:

* :data:`CLAIM_RTOL` ``= 1e-4``: the claimed norm on settled, fixed weights, both sides
  (issue 8's target). The measurement is exact (float64 SVD); what remains is the
  method's float32 arithmetic (unit roundoff 2⁻²⁴ ≈ 6e-8, times the few ops of one
  normalisation) and the power iteration's residual after :func:`settle` stops, below
  :data:`SETTLE_RTOL` per chunk of forwards. Bound claims are exact (a clamp is exact).
* :data:`TRAIN_EVAL_RTOL` ``= 1e-4``: train- and eval-mode outputs once settled; one more
  power-iteration step changes ``σ`` by less than the settle residual.
* state-dict round trips, deep copies and eval forwards must be bit-identical: the same
  tensors through the same deterministic CPU kernels give the same bits.
* gradients: ``torch.autograd.gradcheck``'s float64 defaults (central differences with
  step 1e-6: truncation ~1e-12, rounding ~1e-10, far below its ``atol=1e-5``).
* penalties: after :data:`PULL_STEPS` Adam steps on the penalty alone the claimed
  quantity must be at least :data:`PULL_MARGIN` closer to its target (Adam's step does
  not depend on the penalty's scale, so a small ``β`` or ``λ`` still moves; a zero one
  does not); a penalty "vanishes" below :data:`PENALTY_ZERO` (float64 rounding of a sum
  of squares of exactly-zero gaps is 0; 1e-9 leaves room for a few ulps per sample).
"""
from __future__ import annotations

import copy
import math
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Callable, Mapping

import torch
from torch import nn

from .base import Method
from .measure import ClaimMeasurement, claim_layers, evaluating, measure_claim, record_input_shapes

INPUT_SHAPE = (2, 6, 6)
CLAIM_RTOL = 1e-4
TRAIN_EVAL_RTOL = 1e-4
SETTLE_RTOL = 1e-6
SETTLE_CHUNK = 25
SETTLE_MAX_FORWARDS = 3000
PULL_STEPS = 10
PULL_LR = 1e-2
PULL_MARGIN = 0.01
PENALTY_ZERO = 1e-9
#: Second target tried for a claim whose target is a parameter (``s``, ``c``): value × this.
OTHER_TARGET_FACTOR = 1.5

Factory = Callable[..., Method]


@dataclass(frozen=True)
class InvariantResult:
    """One invariant's verdict: ``"pass"``, ``"violation"`` or ``"n/a"``, what it found, how long."""

    invariant: str
    verdict: str
    detail: str
    seconds: float


class Violation(AssertionError):
    """Raised by an invariant: the method breaks it (the message says how, with numbers)."""


class NotApplicable(Exception):
    """Raised by an invariant that does not apply to the method (the message says why)."""


# --- subjects ------------------------------------------------------------------------------------

def contract_model(seed: int = 0, dtype: torch.dtype = torch.float32) -> nn.Module:
    """The small discriminator the invariants use, input :data:`INPUT_SHAPE`."""
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Conv2d(2, 3, 3, stride=1, padding=1), nn.LeakyReLU(0.1),        # 2×6×6 -> 3×6×6
        nn.Conv2d(3, 4, 4, stride=2, padding=1), nn.LeakyReLU(0.1),        # -> 4×3×3
        nn.ConvTranspose2d(4, 3, 4, stride=2, padding=1), nn.LeakyReLU(0.1),  # -> 3×6×6
        nn.Flatten(), nn.Linear(3 * 6 * 6, 1)).to(dtype)


class _OwnsWeight(nn.Module):
    """A custom layer owning a ``weight`` no method knows how to normalise."""

    def __init__(self) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(2, 2))

    def forward(self, x):
        return x @ self.weight


def unsupported_models() -> dict[str, nn.Module]:
    """Models containing a layer a method must refuse, keyed by that layer's path."""
    return {
        "block.odd": nn.Sequential(OrderedDict(
            conv=nn.Conv2d(2, 2, 1), block=nn.Sequential(OrderedDict(act=nn.ReLU(), odd=nn.Bilinear(2, 2, 2)))),
        ),
        "block.custom": nn.Sequential(OrderedDict(
            lin=nn.Linear(2, 2), block=nn.Sequential(OrderedDict(act=nn.ReLU(), custom=_OwnsWeight())))),
    }


class Subject:
    """A factory and its parameters; builds fresh methods and applied contract models."""

    def __init__(self, factory: Factory, params: Mapping[str, Any] | None, seed: int) -> None:
        self.factory, self.seed = factory, seed
        self.params = dict(params or {})
        self.method = self.build()
        self.claim = self.method.claim
        gen = torch.Generator().manual_seed(seed)
        self.x = torch.randn((4, *INPUT_SHAPE), generator=gen)
        self.real = torch.randn((16, *INPUT_SHAPE), generator=gen)
        self.fake = torch.randn((16, *INPUT_SHAPE), generator=gen) + 1.0

    def build(self, **override: Any) -> Method:
        method = self.factory(**{**self.params, **override})
        if not isinstance(method, Method):
            raise Violation(f"the factory returned {type(method).__name__}, not a harness.methods.Method")
        return method

    def applied(self, seed_offset: int = 0, dtype: torch.dtype = torch.float32,
                method: Method | None = None) -> tuple[Method, nn.Module]:
        """A fresh method applied to a fresh contract model; the model ``apply`` returned."""
        method = method or self.build()
        model = method.apply(contract_model(self.seed + seed_offset, dtype))
        if not isinstance(model, nn.Module):
            raise Violation(f"apply returned {type(model).__name__}, not the model to use "
                            "(apply must return an nn.Module)")
        return method, model


def _params_for_contract(factory: Factory, params: Mapping[str, Any] | None) -> dict[str, Any]:
    """A model-specific ``input_shape`` parameter is replaced by the contract model's."""
    params = dict(params or {})
    if params.get("input_shape") is not None:
        params["input_shape"] = INPUT_SHAPE
    return params


# --- helpers ---------------------------------------------------------------------------------

def _snapshot(model: nn.Module) -> dict[str, torch.Tensor | None]:
    out: dict[str, torch.Tensor | None] = {}
    for name, t in model.named_parameters():
        out["param " + name] = t.detach().clone()
    for mod_name, module in model.named_modules():
        for name, t in module._buffers.items():  # non-persistent and None buffers too
            out[f"buffer {mod_name}.{name}".replace(" .", " ")] = None if t is None else t.detach().clone()
    return out


def _changed(before: Mapping[str, Any], after: Mapping[str, Any]) -> list[str]:
    """What differs between two :func:`_snapshot` s, with the size of each change."""
    def label(t: Any) -> str:
        return "absent" if isinstance(t, str) else "None" if t is None else f"shape {tuple(t.shape)}"

    out = []
    for key in sorted(set(before) | set(after)):
        a, b = before.get(key, "absent"), after.get(key, "absent")
        if isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor) and a.shape == b.shape:
            if not torch.equal(a, b):
                diff = float((a.double() - b.double()).abs().max())
                out.append(f"{key} (max |change| {diff:.3g})")
        elif label(a) != label(b):
            out.append(f"{key} ({label(a)} -> {label(b)})")
    return out


def _effective(model: nn.Module, x: torch.Tensor) -> dict[str, torch.Tensor]:
    """Eval-mode model output and every standard layer's effective weight (no state change)."""
    with evaluating(model):
        out = {"output": model(x).detach().clone()}
        for name, layer, how in claim_layers(model):
            if how == "weight":
                out[f"{name}.weight"] = layer.weight.detach().clone()
    return out


def _differences(a: Mapping[str, torch.Tensor], b: Mapping[str, torch.Tensor]) -> list[str]:
    out = []
    for key in a:
        if key not in b or a[key].shape != b[key].shape:
            out.append(f"{key} missing or reshaped")
        elif not torch.equal(a[key], b[key]):
            rel = float((a[key] - b[key]).norm() / a[key].norm().clamp_min(1e-30))
            out.append(f"{key} differs (relative {rel:.3g})")
    return out


def settle(model: nn.Module, x: torch.Tensor) -> int:
    """Training-mode forwards without grad (each advances a power iteration by its
    ``n_power_iterations``; the stored weight is untouched) until the eval-mode output and
    effective weights change by less than :data:`SETTLE_RTOL` over :data:`SETTLE_CHUNK`
    forwards, or :data:`SETTLE_MAX_FORWARDS`; returns the number of forwards."""
    prev = _effective(model, x)
    done = 0
    while done < SETTLE_MAX_FORWARDS:
        with torch.no_grad():
            for _ in range(SETTLE_CHUNK):
                model(x)
        done += SETTLE_CHUNK
        cur = _effective(model, x)
        change = max(float((cur[k] - prev[k]).norm() / cur[k].norm().clamp_min(1e-30)) for k in cur)
        if not change >= SETTLE_RTOL:  # converged, or not finite (nothing to wait for)
            break
        prev = cur
    return done


def _failures(measured: list[ClaimMeasurement], rtol: float) -> list[str]:
    return [m.describe() for m in measured if not m.error <= rtol]


def _stored_weight(layer: nn.Module) -> torch.Tensor:
    plist = getattr(getattr(layer, "parametrizations", None), "weight", None)
    return plist.original if plist is not None else layer.weight


def _weight_layers(model: nn.Module) -> list[tuple[str, nn.Module]]:
    return [(n, l) for n, l, _ in claim_layers(model) if isinstance(getattr(l, "weight", None), torch.Tensor)]


@torch.no_grad()
def _push_away(model: nn.Module) -> None:
    """Double every stored weight: away from a penalty's target (orthonormal weights,
    unit input gradients), so its gradient is not zero by construction."""
    for _, layer in _weight_layers(model):
        _stored_weight(layer).mul_(2.0)


def _train_step(method: Method, model: nn.Module, x: torch.Tensor, lr: float = 1e-2) -> None:
    """One SGD step on ``mean D(x)`` plus the method's penalty, then ``after_step``."""
    opt = torch.optim.SGD(model.parameters(), lr=lr)
    opt.zero_grad()
    model.train()
    loss = model(x).mean() + method.penalty(model, x, x + 1.0)
    loss.backward()
    opt.step()
    method.after_step(model)


# --- invariants ------------------------------------------------------------------------------

def apply_returns_model(s: Subject) -> str:
    """``apply`` returns an ``nn.Module`` whose forward gives finite outputs."""
    _, model = s.applied()
    out = model(s.x)
    if not bool(torch.isfinite(out).all()):
        raise Violation(f"the applied model's output is not finite: {out.flatten()[:4].tolist()}")
    return f"{type(model).__name__}, output shape {tuple(out.shape)}"


def _claim_holds(s: Subject, method_params: Mapping[str, Any]) -> str:
    claim = s.claim
    if claim.kind == "none":
        raise NotApplicable("the method claims nothing")
    if claim.kind == "penalty":
        raise NotApplicable("a penalty claim is soft; see penalty_pulls_towards_claim")
    method, model = s.applied(method=s.build(**method_params))
    if claim.kind == "bound":
        worst = 0.0
        for step in range(3):
            _train_step(method, model, s.x, lr=0.5)
            measured = measure_claim(method, model, INPUT_SHAPE)
            bad = _failures(measured, 0.0)
            if bad:
                raise Violation(f"after step {step + 1}: " + "; ".join(bad))
            worst = max([worst] + [m.measured for m in measured])
        return f"largest |entry| after 3 steps {worst:.6g} ≤ {claim.describe(method.params)}"
    forwards = settle(model, s.x)
    measured = measure_claim(method, model, INPUT_SHAPE)
    if not measured:
        raise Violation("no layer of the contract model was measured")
    bad = _failures(measured, CLAIM_RTOL)
    if bad:
        raise Violation(f"after {forwards} settling forwards, relative error above {CLAIM_RTOL:g}: "
                        + "; ".join(bad))
    worst = max(m.error for m in measured)
    return f"{len(measured)} layers within {worst:.2g} of the target after {forwards} forwards"


def claim_on_fixed_weights(s: Subject) -> str:
    """The claim, measured exactly on the settled model (equality: to :data:`CLAIM_RTOL`
    both sides; bound: exactly, after every step)."""
    return _claim_holds(s, {})


def claim_follows_parameter(s: Subject) -> str:
    """With the target parameter (``s``, ``c``) at :data:`OTHER_TARGET_FACTOR` × its value,
    the claim still holds (a method ignoring its parameter fails)."""
    target = s.claim.target
    if not isinstance(target, str) or s.claim.kind not in ("equality", "bound"):
        raise NotApplicable("the claim's target is not a parameter")
    value = OTHER_TARGET_FACTOR * float(s.method.params[target])
    return f"{target} = {value:g}: " + _claim_holds(s, {target: value})


def projection_after_step(s: Subject) -> str:
    """Bound claims: after weights are pushed beyond ``[-c, c]``, ``after_step`` maps every
    entry to its clamp: entries inside unchanged, entries outside onto the nearest bound."""
    if s.claim.kind != "bound":
        raise NotApplicable("not a bound (projection) claim")
    method, model = s.applied()
    c = s.claim.target_value(method.params)
    gen = torch.Generator().manual_seed(s.seed)
    before = {}
    with torch.no_grad():
        for name, layer in _weight_layers(model):
            w = _stored_weight(layer)
            w.copy_((torch.rand(w.shape, generator=gen, dtype=w.dtype) * 2 - 1) * 3 * c)
            before[name] = w.detach().clone()
    method.after_step(model)
    problems = []
    for name, layer in _weight_layers(model):
        got = layer.weight.detach()
        want = before[name].clamp(-c, c)
        inside = before[name].abs() <= c
        moved_inside = int((got != before[name])[inside].sum())
        wrong_outside = int((got != want)[~inside].sum())
        if moved_inside or wrong_outside:
            problems.append(f"{name}: {moved_inside} entries inside [-{c:g}, {c:g}] changed, "
                            f"{wrong_outside} outside not moved to the nearest bound "
                            f"(entries now in [{float(got.min()):.4g}, {float(got.max()):.4g}])")
    if problems:
        raise Violation("after_step is not the projection onto [-c, c]: " + "; ".join(problems))
    return f"{len(before)} layers projected exactly onto [-{c:g}, {c:g}]"


def _penalty_distance(s: Subject, method: Method, model: nn.Module) -> float:
    """How far the model is from the penalty claim's target (mean over layers or samples)."""
    measured = measure_claim(method, model, INPUT_SHAPE, real=s.real, fake=s.fake, seed=s.seed)
    return sum(m.error for m in measured) / len(measured)


def penalty_pulls_towards_claim(s: Subject) -> str:
    """Penalty claims: :data:`PULL_STEPS` Adam steps on the penalty alone bring the claimed
    quantity at least :data:`PULL_MARGIN` (relative) closer to its target."""
    if s.claim.kind != "penalty":
        raise NotApplicable("not a penalty claim")
    method, model = s.applied()
    _push_away(model)
    before = _penalty_distance(s, method, model)
    opt = torch.optim.Adam(model.parameters(), lr=PULL_LR)
    model.train()
    for _ in range(PULL_STEPS):
        opt.zero_grad()
        method.penalty(model, s.real, s.fake).backward()
        opt.step()
    after = _penalty_distance(s, method, model)
    if not after <= (1 - PULL_MARGIN) * before:
        raise Violation(f"{PULL_STEPS} steps on the penalty alone moved {s.claim.quantity}'s "
                        f"distance to its target from {before:.6g} to {after:.6g} "
                        f"(needs ≤ {(1 - PULL_MARGIN) * before:.6g})")
    return f"distance to the target {before:.4g} -> {after:.4g} in {PULL_STEPS} steps"


class _SegmentCritic(nn.Module):
    """``D(x) = L·φ(t)``, ``t = ⟨a, x − f⟩/L`` along the segment from ``f`` to ``r``
    (``a`` its unit direction, ``L`` its length), so ``‖∇D‖ = |φ'(t)|``:
    ``"line"`` ``φ' = 1``; ``"ends"`` ``φ' = 1 + t(1−t)`` (1 only at the endpoints);
    ``"middle"`` ``φ' = 1 + (t − ½)²`` (1 only at the midpoint)."""

    def __init__(self, real: torch.Tensor, fake: torch.Tensor, shape: str) -> None:
        super().__init__()
        d = real - fake
        self.length = float(d.norm())
        self.register_buffer("a", d / self.length)
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


def penalty_vanishes_only_at_claim(s: Subject) -> str:
    """Gradient-penalty claims: on a critic whose input-gradient norm is 1 along the whole
    real–fake segment the penalty vanishes; on critics where it is 1 only at the endpoints
    (a penalty at real or fake points only) or only at the midpoint (a fixed ``ε``) it
    does not. Norms elsewhere are above 1, so one-sided penalties are judged too."""
    if s.claim.quantity != "interpolate_gradient":
        raise NotApplicable("not an interpolate_gradient claim")
    method = s.build()
    gen = torch.Generator().manual_seed(s.seed)
    r = torch.randn(8, generator=gen, dtype=torch.float64)
    f = torch.randn(8, generator=gen, dtype=torch.float64)
    real, fake = r.expand(64, 8).clone(), f.expand(64, 8).clone()
    values = {shape: float(method.penalty(_SegmentCritic(r, f, shape), real, fake).detach())
              for shape in ("line", "ends", "middle")}
    problems = []
    if not abs(values["line"]) <= PENALTY_ZERO:
        problems.append(f"penalty {values['line']:.3g} on a critic with unit gradient norm along "
                        "the whole segment (must vanish)")
    for shape, where in (("ends", "only at the real and fake points"), ("middle", "only at the midpoint")):
        if not values[shape] > PENALTY_ZERO:
            problems.append(f"penalty {values[shape]:.3g} on a critic with unit gradient norm "
                            f"{where} (must be > {PENALTY_ZERO:g}: interpolates in between "
                            "have norms above 1)")
    if problems:
        raise Violation("; ".join(problems))
    return ", ".join(f"{k}: {v:.3g}" for k, v in values.items())


def gradients_flow(s: Subject) -> str:
    """``gradcheck`` (float64, eval mode) of the map from each stored weight to the effective
    weight (parametrized layers) or from the layer's parameters to its output (layers
    measured through their forward); penalties: the penalty requires grad and its
    gradient reaches every weight layer."""
    method, model = s.applied(dtype=torch.float64)
    with torch.no_grad():
        model(s.x[:1].double())  # first-forward initialisations (e.g. sn_conv's input size)
    with evaluating(model):
        shapes = record_input_shapes(model, INPUT_SHAPE)
        layers = claim_layers(model)
    gen = torch.Generator().manual_seed(s.seed)
    checked = []
    with evaluating(model), torch.enable_grad():
        for name, layer, how in layers:
            plist = getattr(getattr(layer, "parametrizations", None), "weight", None)
            if how == "weight" and plist is not None:
                ok = gradcheck_effective_weight(layer)
            elif how == "forward":
                x = torch.randn((1, *shapes[name]), generator=gen, dtype=torch.float64)
                ok = _gradcheck_forward(layer, x)
            else:
                continue
            if ok is not True:
                raise Violation(f"{name}: gradcheck failed, the backward of the effective "
                                f"weight does not match finite differences ({ok})")
            checked.append(name)
    if type(method).penalty is not Method.penalty or s.claim.kind == "penalty":
        _push_away(model)
        penalty = method.penalty(model, s.real.double(), s.fake.double())
        if not penalty.requires_grad:
            raise Violation("the penalty does not require grad (no create_graph?)")
        penalty.backward()
        dead = [name for name, layer in _weight_layers(model)
                if (g := _stored_weight(layer).grad) is None or not bool(torch.isfinite(g).all())
                or float(g.abs().max()) == 0.0]
        if dead:
            raise Violation(f"the penalty's gradient does not reach the weights of {', '.join(dead)}")
        checked.append("penalty")
    if not checked:
        raise NotApplicable("the method neither reparametrizes, replaces layers nor adds a penalty")
    return "gradcheck passed: " + ", ".join(checked)


def gradcheck_effective_weight(layer: nn.Module) -> bool | str:
    """``True`` if ``gradcheck`` (float64) passes for the map from a parametrized layer's
    stored weight to its effective weight in the parametrizations' current mode; else
    gradcheck's first line of complaint."""
    plist = layer.parametrizations.weight
    original = plist.original.detach().clone().requires_grad_(True)

    def effective(w):
        for p in plist:
            w = p(w)
        return w

    try:
        return torch.autograd.gradcheck(effective, (original,), raise_exception=True)
    except Exception as exc:  # noqa: BLE001 - gradcheck's report is the detail
        return f"{type(exc).__name__}: {str(exc).splitlines()[0]}"


def _gradcheck_forward(layer: nn.Module, x: torch.Tensor) -> bool | str:
    names = [n for n, p in layer.named_parameters()]
    params = tuple(p.detach().clone().requires_grad_(True) for _, p in layer.named_parameters())

    def output(*values):
        return torch.func.functional_call(layer, dict(zip(names, values)), (x,))

    try:
        return torch.autograd.gradcheck(output, params, raise_exception=True)
    except Exception as exc:  # noqa: BLE001
        return f"{type(exc).__name__}: {str(exc).splitlines()[0]}"


def eval_leaves_state_unchanged(s: Subject) -> str:
    """After the first forward, eval-mode forwards (with and without grad) and reading the
    effective weights leave every parameter and buffer bit-identical."""
    _, model = s.applied()
    with torch.no_grad():
        model(s.x)
    before = _snapshot(model)
    model.eval()
    for _ in range(2):
        model(s.x).sum().backward()
        with torch.no_grad():
            model(s.x)
            for _, layer in _weight_layers(model):
                layer.weight  # noqa: B018 - reading the effective weight must not change state
    for p in model.parameters():
        p.grad = None
    changed = _changed(before, _snapshot(model))
    if changed:
        raise Violation("eval-mode forwards changed " + "; ".join(changed))
    return f"{len(before)} tensors unchanged"


def state_dict_round_trip(s: Subject) -> str:
    """A trained model's ``state_dict`` loaded into a fresh model (other seed) with the method
    applied gives bit-identical effective weights and outputs."""
    method, a = s.applied()
    for _ in range(2):
        _train_step(method, a, s.x)
    with torch.no_grad():
        a.train()
        a(s.x)
    state = a.state_dict()
    _, b = s.applied(seed_offset=1)
    b.load_state_dict(state)
    diffs = _differences(_effective(a, s.x), _effective(b, s.x))
    if diffs:
        raise Violation("after load_state_dict: " + "; ".join(diffs))
    return f"{len(state)} entries restored the same effective weights"


def deepcopy_keeps_weights(s: Subject) -> str:
    """``copy.deepcopy`` (an EMA copy) is independent and, once the model has run, exact.

    A copy taken right after ``apply``: training it leaves the original's parameters and
    buffers unchanged (state a method initialises at the first forward, such as
    ``sn_conv``'s input size and random vectors, is the copy's own). A copy taken after
    a training step: bit-identical effective weights, and training it leaves the
    original's state and effective weights unchanged.
    """
    method, a = s.applied()
    early = copy.deepcopy(a)
    before = _snapshot(a)
    _train_step(method, early, s.x)
    changed = _changed(before, _snapshot(a))
    if changed:
        raise Violation("training a deep copy taken right after apply changed the original: "
                        + "; ".join(changed))
    _train_step(method, a, s.x)
    late = copy.deepcopy(a)
    diffs = _differences(_effective(a, s.x), _effective(late, s.x))
    if diffs:
        raise Violation("a deep copy taken after a training step differs: " + "; ".join(diffs))
    weights = _effective(a, s.x)
    before = _snapshot(a)
    _train_step(method, late, s.x)
    changed = _changed(before, _snapshot(a)) + _differences(weights, _effective(a, s.x))
    if changed:
        raise Violation("training a deep copy taken after a step changed the original: "
                        + "; ".join(changed))
    return "copies independent; a copy of a model that has run is identical"


def train_eval_agree(s: Subject) -> str:
    """Once settled, a training-mode forward and an eval-mode forward agree to
    :data:`TRAIN_EVAL_RTOL` (relative, on the outputs)."""
    _, model = s.applied()
    settle(model, s.x)
    model.train()
    with torch.no_grad():
        train = model(s.x)
    with evaluating(model):
        ev = model(s.x)
    rel = float((train - ev).norm() / ev.norm().clamp_min(1e-30))
    if not rel <= TRAIN_EVAL_RTOL:
        raise Violation(f"train and eval outputs differ by {rel:.3g} relative (> {TRAIN_EVAL_RTOL:g})")
    return f"relative difference {rel:.2g}"


def unsupported_layer_named(s: Subject) -> str:
    """``apply`` on a model holding a layer it cannot handle (``nn.Bilinear``; a custom
    module owning a ``weight``) raises an error naming that layer's path."""
    if not s.claim.per_layer:
        raise NotApplicable("the claim is not about layers")
    problems = []
    for path, model in unsupported_models().items():
        try:
            s.build().apply(model)
        except Exception as exc:  # noqa: BLE001 - any error type, as long as it names the layer
            if path not in str(exc):
                problems.append(f"the error for {path!r} does not name it: {type(exc).__name__}: {exc}")
            continue
        problems.append(f"apply accepted a model with the unsupported layer {path!r}")
    if problems:
        raise Violation("; ".join(problems))
    return "rejected, naming " + ", ".join(unsupported_models())


#: The invariants, in the order they run.
INVARIANTS: dict[str, Callable[[Subject], str]] = {f.__name__: f for f in (
    apply_returns_model, claim_on_fixed_weights, claim_follows_parameter, projection_after_step,
    penalty_pulls_towards_claim, penalty_vanishes_only_at_claim, gradients_flow,
    eval_leaves_state_unchanged, state_dict_round_trip, deepcopy_keeps_weights,
    train_eval_agree, unsupported_layer_named)}


def run_invariant(name: str, subject: Subject) -> InvariantResult:
    """One invariant; a raising method is a violation naming the exception."""
    start = time.perf_counter()
    try:
        verdict, detail = "pass", INVARIANTS[name](subject)
    except NotApplicable as exc:
        verdict, detail = "n/a", str(exc)
    except Violation as exc:
        verdict, detail = "violation", str(exc)
    except Exception as exc:  # noqa: BLE001 - the method under test raised
        verdict, detail = "violation", f"raised {type(exc).__name__}: {exc}"
    return InvariantResult(name, verdict, detail, time.perf_counter() - start)


def run_contract(factory: Factory, params: Mapping[str, Any] | None = None, *, seed: int = 0,
                 only: list[str] | None = None) -> list[InvariantResult]:
    """Run every invariant (or those named in ``only``) on ``factory(**params)``.

    ``factory`` is a Method subclass or a declared factory; a model-specific
    ``input_shape`` parameter is replaced by the contract model's. The global torch RNG
    state is restored afterwards.
    """
    names = list(INVARIANTS) if only is None else list(only)
    unknown = [n for n in names if n not in INVARIANTS]
    if unknown:
        raise ValueError(f"unknown invariant(s) {', '.join(unknown)}; known: {', '.join(INVARIANTS)}")
    with torch.random.fork_rng(devices=[]):
        start = time.perf_counter()
        try:
            subject = Subject(factory, _params_for_contract(factory, params), seed)
        except Exception as exc:  # noqa: BLE001 - the factory itself failed
            return [InvariantResult("build", "violation",
                                    f"building the method raised {type(exc).__name__}: {exc}",
                                    time.perf_counter() - start)]
        return [run_invariant(name, subject) for name in names]


def violations(results: list[InvariantResult]) -> list[InvariantResult]:
    return [r for r in results if r.verdict == "violation"]


__all__ = ["CLAIM_RTOL", "INPUT_SHAPE", "INVARIANTS", "InvariantResult", "NotApplicable", "Subject",
           "Violation", "contract_model", "gradcheck_effective_weight", "run_contract",
           "run_invariant", "settle", "unsupported_models", "violations"]
