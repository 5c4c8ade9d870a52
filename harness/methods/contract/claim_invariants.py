"""Invariants about the claim itself (judged in lipbench's process from the defendant's
observations): the method settles on fixed weights, its claim then holds in every mode (and
follows its target parameter), a projection projects, a penalty pulls towards its claim,
from the side it claims, and vanishes only where the claim holds."""
from __future__ import annotations

import torch

from harness.observe.effective import MODES, SETTLE_RTOL, SETTLE_WINDOW, TRAINING_MODE
from harness.observe.verify import settled

from .base import NotApplicable, Violation
from .judged import Judged, failures
from .observe import OTHER_TARGET_FACTOR, PULL_STEPS

#: Claimed norms on settled, fixed weights, both sides (see the package docstring).
CLAIM_RTOL = 1e-4
#: Bound claims that hold after every step (projections) hold exactly up to rounding the
#: bound to float32 (the contract model's type): ``fl(c)`` may exceed ``c`` by half an ulp.
BOUND_RTOL = torch.finfo(torch.float32).eps / 2
#: How much closer to (penalty_pulls) or not closer to (penalty_side, one-sided) its target a
#: penalty must bring the claimed quantity in :data:`~.observe.PULL_STEPS` steps.
PULL_MARGIN = 0.01
#: A penalty below this "vanishes" (see the package docstring).
PENALTY_ZERO = 1e-9


def apply_returns_model(j: Judged) -> str:
    """``apply`` returns an ``nn.Module`` whose forward gives finite outputs."""
    found = j.scenario("apply")
    if not found["module"]:
        raise Violation(f"apply returned {found['type']}, not the model to use (apply must return an nn.Module)")
    out = found["output"]
    if not bool(torch.isfinite(out).all()):
        raise Violation(f"the applied model's output is not finite: {out.flatten()[:4].tolist()}")
    return f"{found['type']}, output shape {tuple(out.shape)}"


def _settle_text(report) -> tuple[bool, str]:
    ok, change, steps = settled(report)
    if ok:
        return True, f"settled after {steps} zero-learning-rate training steps (largest change {change:.2g})"
    return False, (f"never settled: after {steps} zero-learning-rate training steps (the budget) its effective weights "
                   f"still change by {change:.3g} (relative; tolerance {SETTLE_RTOL:g} over {SETTLE_WINDOW} steps "
                   "and between steps)")


def settles(j: Judged) -> str:
    """On fixed weights, training steps with a zero learning rate (what training does, without
    the update) bring the method to rest (:func:`harness.observe.effective.settle`) within
    :data:`~.base.SETTLE_BUDGET` steps."""
    ok, text = _settle_text(j.scenario("settled")["settle"])
    if not ok:
        raise Violation(text)
    return text


def _tolerance(j: Judged) -> float:
    return BOUND_RTOL if j.claim.every_step else CLAIM_RTOL


def _claim_in_every_mode(j: Judged, found: dict) -> str:
    if j.claim.kind not in ("equality", "bound"):
        raise NotApplicable("the method claims nothing" if j.claim.kind == "none"
                            else "a penalty claim is soft; see penalty_pulls_towards_claim")
    rtol = _tolerance(j)
    problems, worst = [], 0.0
    for name, _, _ in MODES:
        measured = j.measure(found["modes"][name])
        bad = failures(measured, rtol)
        if bad:
            label = f"{name} (what training uses)" if name == TRAINING_MODE else name
            problems.append(f"in {label}: " + "; ".join(bad))
        worst = max([worst] + [m.error for m in measured])
    if problems:
        _, settle_text = _settle_text(found["settle"])
        raise Violation(f"{settle_text}; {'excess' if j.claim.kind == 'bound' else 'relative error'} above "
                        f"{rtol:g} " + " | ".join(problems))
    return f"{len(j.plan['paths'])} layers within {worst:.2g} of the target in all {len(MODES)} modes"


def claim_on_fixed_weights(j: Judged) -> str:
    """The claim, measured exactly on the settled model's effective weights in every mode
    (equality and bounds: to :data:`CLAIM_RTOL`; a projection's bound exactly, and after each
    of three large steps too)."""
    text = _claim_in_every_mode(j, j.scenario("settled"))
    if j.claim.every_step:
        for step, record in enumerate(j.scenario("steps")["records"], 1):
            bad = failures(j.measure(record), BOUND_RTOL)
            if bad:
                raise Violation(f"after step {step}: " + "; ".join(bad))
        text += ", and after each of 3 steps"
    return text


def claim_follows_parameter(j: Judged) -> str:
    """With the target parameter (``s``, ``c``) at :data:`~.observe.OTHER_TARGET_FACTOR` × its
    value, the claim still holds (a method ignoring its parameter fails)."""
    if not isinstance(j.claim.target, str) or j.claim.kind not in ("equality", "bound"):
        raise NotApplicable("the claim's target is not a parameter")
    found = j.scenario("other_target")
    other = Judged(j.claim, {**j.params, found["param"]: found["value"]}, j.request, j.scenarios)
    return f"{found['param']} = {found['value']:g}: " + _claim_in_every_mode(other, found)


def projection_after_step(j: Judged) -> str:
    """Projections (bounds that hold after every step): after weights are pushed beyond
    ``[-c, c]``, ``after_step`` maps every entry to its clamp: entries inside unchanged,
    entries outside onto the nearest bound."""
    if not j.claim.every_step:
        raise NotApplicable("not a projection (a bound that holds after every step)")
    found = j.scenario("projection")
    c = j.target
    problems = []
    for path, before in found["before"].items():
        rec = found["after"]["layers"].get(path, {})
        if rec.get("how") != "weight":
            problems.append(f"{path}: its effective weight could not be read")
            continue
        got = rec["weight"]
        inside = before.abs() <= c
        moved_inside = int((got != before)[inside].sum())
        wrong_outside = int((got != before.clamp(-c, c))[~inside].sum())
        if moved_inside or wrong_outside:
            problems.append(f"{path}: {moved_inside} entries inside [-{c:g}, {c:g}] changed, "
                            f"{wrong_outside} outside not moved to the nearest bound "
                            f"(entries now in [{float(got.min()):.4g}, {float(got.max()):.4g}])")
    if problems or not found["before"]:
        raise Violation("after_step is not the projection onto [-c, c]: "
                        + ("; ".join(problems) or "no stored weight was found"))
    return f"{len(found['before'])} layers projected exactly onto [-{c:g}, {c:g}]"


def penalty_pulls_towards_claim(j: Judged) -> str:
    """Penalty claims: :data:`~.observe.PULL_STEPS` Adam steps on the penalty alone, from a model
    pushed away from the target (norms at interpolates around 3: above the target, so one- and
    two-sided penalties pull), bring the claimed quantity at least :data:`PULL_MARGIN`
    (relative) closer to its target; distances computed here on the rebuilt models."""
    if j.claim.kind != "penalty":
        raise NotApplicable("not a penalty claim")
    found = j.scenario("pull")
    before, after = j.distance(found["before"]), j.distance(found["after"])
    if not after <= (1 - PULL_MARGIN) * before:
        raise Violation(f"{PULL_STEPS} steps on the penalty alone moved {j.claim.quantity}'s distance to its "
                        f"target from {before:.6g} to {after:.6g} (needs ≤ {(1 - PULL_MARGIN) * before:.6g})")
    return f"distance to the target {before:.4g} -> {after:.4g} in {PULL_STEPS} steps"


def penalty_side(j: Judged) -> str:
    """Gradient claims, from a model whose every norm at the interpolates is below 1: a
    two-sided penalty (``interpolate_gradient``) pulls them up, at least :data:`PULL_MARGIN`
    closer to 1 in :data:`~.observe.PULL_STEPS` steps; a one-sided one
    (``interpolate_gradient_at_most``, Petzka et al. 2018) leaves them where they are. A
    one-sided penalty posing as two-sided, or the reverse, is caught in seconds."""
    if j.claim.quantity not in ("interpolate_gradient", "interpolate_gradient_at_most"):
        raise NotApplicable("not a gradient claim")
    found = j.scenario("side")
    norms = {k: j.interpolate_norms(found[k]) for k in ("before", "after")}
    dist = {k: float((v - 1).abs().mean()) for k, v in norms.items()}
    moved = (f"mean norm {float(norms['before'].mean()):.4g} -> {float(norms['after'].mean()):.4g}, distance to 1 "
             f"{dist['before']:.4g} -> {dist['after']:.4g} in {PULL_STEPS} steps")
    pulled = dist["after"] <= (1 - PULL_MARGIN) * dist["before"]
    if j.claim.quantity == "interpolate_gradient" and not pulled:
        raise Violation(f"a two-sided claim, but the penalty did not pull gradient norms below 1 up ({moved}; "
                        f"needs ≤ {(1 - PULL_MARGIN) * dist['before']:.4g}): it acts like a one-sided penalty")
    if j.claim.quantity == "interpolate_gradient_at_most" and pulled:
        raise Violation(f"a one-sided claim, but the penalty pulled gradient norms below 1 up ({moved}): it acts "
                        "like a two-sided penalty")
    return moved


def penalty_vanishes_only_at_claim(j: Judged) -> str:
    """Gradient-penalty claims: on a critic whose input-gradient norm is 1 along the whole
    real–fake segment the penalty vanishes; on critics where it is 1 only at the endpoints
    (a penalty at real or fake points only) or only at the midpoint (a fixed ``ε``) it
    does not. Norms elsewhere are above 1, so one-sided penalties are judged too."""
    if j.claim.quantity not in ("interpolate_gradient", "interpolate_gradient_at_most"):
        raise NotApplicable("not a gradient claim")
    values = {k: float(v) for k, v in j.scenario("vanishes").items()}
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


__all__ = ["BOUND_RTOL", "CLAIM_RTOL", "OTHER_TARGET_FACTOR", "PENALTY_ZERO", "PULL_MARGIN",
           "apply_returns_model", "claim_follows_parameter", "claim_on_fixed_weights",
           "penalty_pulls_towards_claim", "penalty_side", "penalty_vanishes_only_at_claim",
           "projection_after_step", "settles"]
