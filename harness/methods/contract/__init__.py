"""The contract every method must satisfy, checked in seconds before any suite runs.

In the spirit of scikit-learn's ``check_estimator``, in two processes (README, "The trust
model"). The *defendant* (:func:`harness.observe.in_defendant`) builds
the method from its factory, applies it to lipbench's small models (:func:`contract_model`:
a stride-1 convolution, a stride-2 one without bias, a ``ConvTranspose2d`` and a
``Linear``, float32, input ``2×6×6``; and models holding a layer no claim covers) and runs
the scenarios of :mod:`.observe` with the judge's inputs, reporting plain observations.
The *judge*, this process, which never imports the method's module, runs each invariant of
:data:`INVARIANTS` on them (:mod:`.claim_invariants`: settling and the claim;
:mod:`.state_invariants`: modes, consistency, gradients, state, copies, unknown layers),
computing every number from lipbench's own models and the observed weights. Each result is
an :class:`InvariantResult`: ``"pass"``, ``"violation"`` (the detail names what failed,
with the numbers) or ``"n/a"`` (the invariant does not apply to this claim). A method that
raises inside a scenario is a violation naming the exception.

Tolerances and where they come from:

* ``CLAIM_RTOL = 1e-4``: the claimed norm on settled, fixed weights, both sides (issue 8's
  target). The measurement is exact (float64 SVD); what remains is the method's float32
  arithmetic (unit roundoff 2⁻²⁴ ≈ 6e-8 times the few operations of one normalisation;
  the built-ins measure 1e-8 to 1.4e-7) and the power iteration's residual once settled.
  Bounds that hold after every step (projections) are exact up to the bound's own rounding
  to float32 (``BOUND_RTOL = 2⁻²⁴`` relative); a clamp is exact.
* Settling (:func:`harness.observe.effective.settle`, at most ``SETTLE_BUDGET = 3000``
  zero-learning-rate training steps): what any implementation does in training (a
  training-mode forward with autograd, an update, ``after_step``) with weights that do not
  move, until the effective weights change by less than 1e-6 over 200 steps and between
  steps; power iteration settles geometrically.
* ``MODES_RTOL = 1e-4`` and ``CONSISTENCY_RTOL = 1e-4`` (:mod:`harness.observe.verify`): the
  four modes once settled (one more power-iteration step moves the weights by less than the
  settling tolerance), and a layer's or the model's reported outputs against the judge's
  float64 recomputation from the reported weights (float32 rounding: measured ≤ 5e-7).
* state-dict round trips, deep copies and eval forwards must be bit-identical: the same
  tensors through the same deterministic CPU kernels give the same bits.
* gradients: directional derivatives by backward against central differences in float64
  (step 1e-6: truncation ~1e-12, rounding ~1e-10) with ``torch.autograd.gradcheck``'s
  tolerances (``atol=1e-5``, ``rtol=1e-3``).
* penalties: after ``PULL_STEPS = 10`` Adam steps (lr 1e-2) on the penalty alone, the
  claimed quantity's distance to its target must shrink by at least ``PULL_MARGIN = 1%``.
  Adam's step does not depend on the penalty's scale, so a small ``β`` or ``λ`` still
  moves and a zero one does not. The model starts away from the target (weights doubled;
  for gradient penalties input-gradient norms at interpolates around 3, so one-sided
  penalties pull too). The built-ins shrink the distance by 57% (orthonormal) and 90-92%
  (gradient penalty, two- and one-sided), measured, so 1% separates "pulls" from "does
  not" with room. From norms all below 1 (the largest 0.5), the same steps must pull a
  two-sided penalty's norms up by that margin and must not pull a one-sided one's
  (Petzka et al. 2018: the one-sided penalty is exactly 0 there).
  A penalty "vanishes" below ``PENALTY_ZERO = 1e-9``: on a critic where the claim holds
  exactly, float64 gaps are zero or a few ulps (measured: 0 and 5e-31).
"""
from __future__ import annotations

import functools
import time
from typing import Any, Callable, Mapping

from harness.observe import DefendantError, in_defendant

from ..claims import Claim, claim_of
from .base import (INPUT_SHAPE, SETTLE_BUDGET, UNKNOWN_MODELS, Factory, InvariantResult, NotApplicable, Violation, contract_model, make_request, params_for_contract)
from .claim_invariants import (BOUND_RTOL, CLAIM_RTOL, PULL_MARGIN, apply_returns_model, claim_follows_parameter,
                               claim_on_fixed_weights, penalty_pulls_towards_claim, penalty_side,
                               penalty_vanishes_only_at_claim, projection_after_step, settles)
from .judged import Judged
from .observe import observe_contract
from .state_invariants import (computes_what_it_reports, deepcopy_keeps_weights, eval_leaves_state_unchanged,
                               gradients_flow, modes_agree, state_dict_round_trip, unknown_layers)

#: The invariants, in the order they run.
INVARIANTS: dict[str, Callable[[Judged], str]] = {f.__name__: f for f in (
    apply_returns_model, settles, claim_on_fixed_weights, claim_follows_parameter, modes_agree,
    computes_what_it_reports, projection_after_step, penalty_pulls_towards_claim, penalty_side,
    penalty_vanishes_only_at_claim, gradients_flow, eval_leaves_state_unchanged, state_dict_round_trip,
    deepcopy_keeps_weights, unknown_layers)}


def _scenarios(name: str, claim: Claim) -> tuple[str, ...]:
    """What the defendant must observe for invariant ``name`` under ``claim`` (nothing for an
    invariant that does not apply; the invariant itself says why)."""
    gradient = claim.quantity in ("interpolate_gradient", "interpolate_gradient_at_most")
    per_layer_claim = claim.kind in ("equality", "bound")
    table: dict[str, tuple[str, ...]] = {
        "apply_returns_model": ("apply",),
        "settles": ("settled",), "modes_agree": ("settled",), "computes_what_it_reports": ("settled",),
        "claim_on_fixed_weights": (("settled",) + (("steps",) if claim.every_step else ())) if per_layer_claim else (),
        "claim_follows_parameter": ("other_target",) if per_layer_claim and isinstance(claim.target, str) else (),
        "projection_after_step": ("projection",) if claim.every_step else (),
        "penalty_pulls_towards_claim": ("pull",) if claim.kind == "penalty" else (),
        "penalty_side": ("side",) if gradient else (),
        "penalty_vanishes_only_at_claim": ("vanishes",) if gradient else (),
        "gradients_flow": ("gradients",), "eval_leaves_state_unchanged": ("eval_state",),
        "state_dict_round_trip": ("round_trip",), "deepcopy_keeps_weights": ("deepcopy",),
        "unknown_layers": ("unknown",) if per_layer_claim else ()}
    return table[name]


def needed(names: list[str], claim: Claim) -> list[str]:
    """The scenarios the invariants ``names`` need under ``claim``, in order, once each."""
    return list(dict.fromkeys(s for name in names for s in _scenarios(name, claim)))


def run_invariant(name: str, judged: Judged) -> InvariantResult:
    """One invariant, judged; a method that raised in its scenario is a violation naming the exception."""
    start = time.perf_counter()
    try:
        verdict, detail = "pass", INVARIANTS[name](judged)
    except NotApplicable as exc:
        verdict, detail = "n/a", str(exc)
    except Violation as exc:
        verdict, detail = "violation", str(exc)
    seconds = time.perf_counter() - start + sum(judged.seconds.get(s, 0.0) for s in _scenarios(name, judged.claim))
    return InvariantResult(name, verdict, detail, seconds)


def _check_names(only: list[str] | None) -> list[str]:
    names = list(INVARIANTS) if only is None else list(only)
    unknown = [n for n in names if n not in INVARIANTS]
    if unknown:
        raise ValueError(f"unknown invariant(s) {', '.join(unknown)}; known: {', '.join(INVARIANTS)}")
    return names


def observe(factory: Factory, params: Mapping[str, Any] | None, request: dict[str, Any],
            only: list[str] | None = None) -> dict[str, Any]:
    """The defendant's part (run it in the defendant's process): every scenario the invariants
    need, observed on ``factory(**params)`` (a model-specific ``input_shape`` parameter is
    replaced by the contract model's). The global torch RNG state is restored afterwards."""
    names = _check_names(only)
    return observe_contract(factory, params_for_contract(dict(params or {})), request,
                            functools.partial(needed, names))


def judge(observed: Mapping[str, Any], request: dict[str, Any], only: list[str] | None = None) -> list[InvariantResult]:
    """The judge's part (lipbench's process): each invariant's verdict from the observations."""
    names = _check_names(only)
    if "build" in observed:
        return [InvariantResult("build", "violation", str(observed["build"]), 0.0)]
    described = observed["method"]
    judged = Judged(claim_of(described), dict(described["params"]), request, dict(observed["scenarios"]),
                    {k: float(v) for k, v in observed.get("seconds", {}).items()})
    return [run_invariant(name, judged) for name in names]


def run_contract(factory: Factory, params: Mapping[str, Any] | None = None, *, seed: int = 0,
                 only: list[str] | None = None) -> list[InvariantResult]:
    """Run every invariant (or those named in ``only``) on ``factory(**params)``: observed in a
    defendant process forked for it, judged here. ``factory`` is a Method subclass or a
    declared factory. A defendant that dies is a violation of every invariant, naming how."""
    names = _check_names(only)
    request = make_request(seed)
    start = time.perf_counter()
    try:
        observed = in_defendant(observe, factory, params, request, names, threads=1)
    except DefendantError as exc:
        return [InvariantResult(name, "violation", str(exc), time.perf_counter() - start) for name in names]
    return judge(observed, request, names)


def violations(results: list[InvariantResult]) -> list[InvariantResult]:
    """The results whose verdict is ``"violation"``."""
    return [r for r in results if r.verdict == "violation"]


__all__ = ["BOUND_RTOL", "CLAIM_RTOL", "INPUT_SHAPE", "INVARIANTS", "InvariantResult", "NotApplicable", "PULL_MARGIN",
           "SETTLE_BUDGET", "UNKNOWN_MODELS", "Violation", "contract_model", "judge",
           "make_request", "needed", "observe", "run_contract", "run_invariant", "violations"]
