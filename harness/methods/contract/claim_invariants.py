"""Invariants about the claim itself: it holds on settled, fixed weights (and follows its
target parameter), a projection projects, and a penalty pulls towards its claim and
vanishes only where the claim holds."""
from __future__ import annotations

from typing import Any, Mapping

import torch
from torch import nn

from ..base import Method
from ..measure import measure_claim
from .base import (INPUT_SHAPE, NotApplicable, Subject, Violation, failures, push_away, settle,
                   stored_weight, train_step, weight_layers)

#: Claimed norms on settled, fixed weights, both sides (see the package docstring).
CLAIM_RTOL = 1e-4
#: Bound claims hold exactly up to rounding the bound to float32 (the contract model's
#: type): ``fl(c)`` may exceed ``c`` by half an ulp, 2⁻²⁴ relative.
BOUND_RTOL = torch.finfo(torch.float32).eps / 2
#: Second target tried for a claim whose target is a parameter (``s``, ``c``): value × this.
OTHER_TARGET_FACTOR = 1.5
#: Penalties: Adam steps on the penalty alone, their learning rate, and how much closer to
#: the target the claimed quantity must get (see the package docstring).
PULL_STEPS = 10
PULL_LR = 1e-2
PULL_MARGIN = 0.01
#: A penalty below this "vanishes" (see the package docstring).
PENALTY_ZERO = 1e-9


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
            train_step(method, model, s.x, lr=0.5)
            measured = measure_claim(method, model, INPUT_SHAPE)
            bad = failures(measured, BOUND_RTOL)
            if bad:
                raise Violation(f"after step {step + 1}: " + "; ".join(bad))
            worst = max([worst] + [m.measured for m in measured])
        return f"largest |entry| over 3 steps {worst:.6g} (claim: {claim.describe(method.params)})"
    forwards = settle(model, s.x)
    measured = measure_claim(method, model, INPUT_SHAPE)
    if not measured:
        raise Violation("no layer of the contract model was measured")
    bad = failures(measured, CLAIM_RTOL)
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
        for name, layer in weight_layers(model):
            w = stored_weight(layer)
            w.copy_((torch.rand(w.shape, generator=gen, dtype=w.dtype) * 2 - 1) * 3 * c)
            before[name] = w.detach().clone()
    method.after_step(model)
    problems = []
    for name, layer in weight_layers(model):
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
    push_away(s, model)
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
