"""Invariants about state and mechanics (judged in lipbench's process): every mode computes
with the same effective weights, the model computes what it reports, gradients are right,
eval mode changes nothing, state dicts and deep copies keep the effective weights, and a
layer no claim covers is refused by name or left alone with the claim kept on the rest."""
from __future__ import annotations

import math
from typing import Any, Mapping

import torch

from harness.observe.effective import MODES
from harness.observe.verify import CONSISTENCY_RTOL, layer_differences, mode_differences, model_difference

from ..claims import MODEL_LEVEL
from .base import UNKNOWN_MODELS, NotApplicable, Violation, cotangent, direction
from .claim_invariants import CLAIM_RTOL, _settle_text
from .judged import Judged, failures
from .observe import FD_STEP

#: The gradient check compares a directional derivative by backward with central differences
#: (float64, step :data:`~.observe.FD_STEP` = 1e-6: truncation ~1e-12, rounding ~1e-10) with
#: ``torch.autograd.gradcheck``'s default tolerances.
GRAD_ATOL = 1e-5
GRAD_RTOL = 1e-3


def modes_agree(j: Judged) -> str:
    """Once settled, the effective weights (and outputs) in every mode, train or eval, autograd on
    or off, are those training uses (train mode with autograd) to :data:`~harness.observe.verify.MODES_RTOL`:
    a method that computes differently when observed than when it trains is caught here."""
    found = j.scenario("settled")
    diffs = mode_differences(j.plain(), j.plan, found["modes"])
    if diffs:
        shown = "; ".join(f"{mode} vs {ref}: {path} differs by {rel:.3g} (relative)" for mode, ref, path, rel in diffs[:6])
        raise Violation(f"the effective weights depend on the mode: {shown}")
    return f"{len(MODES)} modes agree on {len(j.plan['paths'])} layers and the outputs"


def computes_what_it_reports(j: Judged) -> str:
    """In every mode, each layer's outputs at the judge's inputs are those of its reported
    effective weight (recomputed here, float64), and the model's outputs those of lipbench's
    model carrying the reported layers, to :data:`~harness.observe.verify.CONSISTENCY_RTOL`:
    a method that reports one weight and computes with another, or changes the output
    outside its layers, is caught here."""
    found = j.scenario("settled")
    problems = []
    worst = 0.0
    for name, _, _ in MODES:
        record = found["modes"][name]
        for path, rel in layer_differences(j.plain(), j.plan, record).items():
            worst = max(worst, rel)
            if not rel <= CONSISTENCY_RTOL:
                problems.append(f"in {name}: layer {path}'s outputs differ by {rel:.3g} from those of its "
                                "reported effective weight" if math.isfinite(rel) else
                                f"in {name}: layer {path}'s outputs or reported weight are not finite"
                                if math.isnan(rel) else f"in {name}: layer {path} could not be read")
        rel = model_difference(j.plain(), j.plan, record)
        worst = max(worst, rel)
        if not rel <= CONSISTENCY_RTOL:
            problems.append(f"in {name}: the model's outputs differ by {rel:.3g} from lipbench's model carrying "
                            "the reported layers")
    if problems:
        raise Violation("; ".join(problems[:6]))
    return f"layers and model reproduced from the reported weights in every mode (largest difference {worst:.2g})"


def _directional_failures(shapes_grads: Mapping[str, Any], moved: Mapping[str, Any], seed: int,
                          value_of) -> list[str]:
    problems = []
    for name, found in moved.items():
        grad = shapes_grads.get(name)
        for k, (plus, minus) in enumerate(zip(found["plus"], found["minus"])):
            d = direction(found["shape"], seed, name, k)
            analytic = 0.0 if grad is None else float((grad.double() * d).sum())
            numeric = (value_of(plus) - value_of(minus)) / (2 * FD_STEP)
            if not abs(analytic - numeric) <= GRAD_ATOL + GRAD_RTOL * abs(numeric):
                problems.append(f"{name}: directional derivative {analytic:.6g} by backward, {numeric:.6g} by "
                                "central differences")
    return problems


def gradients_flow(j: Judged) -> str:
    """In float64 and eval mode, along the judge's random directions of every parameter, the
    derivative of ``⟨g, D(x)⟩`` by backward equals central differences (a backward that
    forgets a term, such as ``∂σ/∂W``, is caught); a penalty requires grad, its gradient
    reaches every weight layer and matches central differences too."""
    found = j.scenario("gradients")
    g = cotangent(found["output_shape"], j.seed)
    problems = _directional_failures(found["grads"], found["moved"], j.seed,
                                     lambda out: float((out.double() * g).sum()))
    checked = [f"{len(found['moved'])} parameters"]
    if "penalty" in found:
        pen = found["penalty"]
        if not pen["requires_grad"]:
            raise Violation("the penalty does not require grad (no create_graph?)")
        dead = [path for path in j.plan["paths"]
                if not any(name.startswith(path + ".") and grad is not None and bool(torch.isfinite(grad).all())
                           and float(grad.abs().max()) > 0 for name, grad in pen["grads"].items())]
        if dead:
            raise Violation(f"the penalty's gradient does not reach the weights of {', '.join(dead)}")
        problems += ["penalty, " + p for p in _directional_failures(pen["grads"], pen["moved"], j.seed, float)]
        checked.append("the penalty")
    if problems:
        raise Violation("; ".join(problems[:6]))
    return "backward matches central differences: " + ", ".join(checked)


def state_changes(before: Mapping[str, Any], after: Mapping[str, Any]) -> list[str]:
    """What differs between two snapshots of every parameter and buffer, with the size of each change."""
    def label(t: Any) -> str:
        return "absent" if isinstance(t, str) else "None" if t is None else f"shape {tuple(t.shape)}"

    out = []
    for key in sorted(set(before) | set(after)):
        a, b = before.get(key, "absent"), after.get(key, "absent")
        if isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor) and a.shape == b.shape:
            if not torch.equal(a, b):
                out.append(f"{key} (max |change| {float((a.double() - b.double()).abs().max()):.3g})")
        elif label(a) != label(b):
            out.append(f"{key} ({label(a)} -> {label(b)})")
    return out


def record_differences(a: Mapping[str, Any], b: Mapping[str, Any], where: str = "") -> list[str]:
    """Tensors of two observed records that are not bit-identical, with their relative difference."""
    out = []
    for key in sorted(set(a) | set(b)):
        x, y, here = a.get(key), b.get(key), f"{where}.{key}" if where else key
        if isinstance(x, Mapping) and isinstance(y, Mapping):
            out += record_differences(x, y, here)
        elif isinstance(x, torch.Tensor) and isinstance(y, torch.Tensor):
            if x.shape != y.shape:
                out.append(f"{here} reshaped")
            elif not torch.equal(x, y):
                rel = float((x.double() - y.double()).norm() / x.double().norm().clamp_min(1e-300))
                out.append(f"{here} differs (relative {rel:.3g})")
        elif type(x) is not type(y) or (not isinstance(x, torch.Tensor) and x != y):
            out.append(f"{here} missing or changed")
    return out


def eval_leaves_state_unchanged(j: Judged) -> str:
    """After the first forward, eval-mode forwards (with and without grad) and reading the
    effective weights leave every parameter and buffer bit-identical."""
    found = j.scenario("eval_state")
    changed = state_changes(found["before"], found["after"])
    if changed:
        raise Violation("eval-mode forwards changed " + "; ".join(changed))
    return f"{len(found['before'])} tensors unchanged"


def state_dict_round_trip(j: Judged) -> str:
    """A trained model's ``state_dict`` loaded into a fresh model (other seed) with the method
    applied gives bit-identical effective weights and outputs."""
    found = j.scenario("round_trip")
    diffs = record_differences(found["a"], found["b"])
    if diffs:
        raise Violation("after load_state_dict: " + "; ".join(diffs[:6]))
    return "the state dict restored the same effective weights and outputs"


def deepcopy_keeps_weights(j: Judged) -> str:
    """``copy.deepcopy`` (an EMA copy) is independent and, once the model has run, exact.

    A copy taken right after ``apply``: training it leaves the original's parameters and
    buffers unchanged (state a method initialises at the first forward, such as
    ``sn_conv``'s input size and random vectors, is the copy's own). A copy taken after
    a training step: bit-identical effective weights, and training it leaves the
    original's state and effective weights unchanged.
    """
    found = j.scenario("deepcopy")
    changed = state_changes(found["first"], found["after_early"])
    if changed:
        raise Violation("training a deep copy taken right after apply changed the original: " + "; ".join(changed))
    diffs = record_differences(found["a"], found["late"])
    if diffs:
        raise Violation("a deep copy taken after a training step differs: " + "; ".join(diffs[:6]))
    changed = state_changes(found["before_late"], found["after_late"]) + record_differences(found["a"],
                                                                                            found["a_after_late"])
    if changed:
        raise Violation("training a deep copy taken after a step changed the original: " + "; ".join(changed[:6]))
    return "copies independent; a copy of a model that has run is identical"


def unknown_layers(j: Judged) -> str:
    """On a model holding a layer no per-layer claim covers (an ``nn.Bilinear``; a custom module
    owning a ``weight``), ``apply`` may refuse with an error naming that layer's path, or
    accept it and leave it to the method: then, once settled, the claim holds on every layer
    it covers beside it. (Raising is allowed, never required.)"""
    if j.claim.quantity in MODEL_LEVEL or j.claim.kind == "penalty":
        raise NotApplicable("the claim is not a constraint on layers")
    found = j.scenario("unknown")
    notes, problems = [], []
    for path in UNKNOWN_MODELS:
        seen = found.get(path)
        if seen is None:
            problems.append(f"nothing was reported for the model holding {path!r}")
        elif "raised" in seen:
            if path not in seen["raised"]:
                problems.append(f"the error for {path!r} does not name it: {seen['raised']}")
            else:
                notes.append(f"{path}: refused, naming it")
        else:
            ok, text = _settle_text(seen["settle"])
            bad = failures(j.measure(seen["eval"], path), CLAIM_RTOL) if j.claim.kind in ("equality", "bound") else []
            if bad or not ok:
                problems.append(f"with {path!r} left to the method, " + ("; ".join(bad) if bad else text))
            else:
                notes.append(f"{path}: accepted and left to the method; the claim holds on the other layers")
    if problems:
        raise Violation("; ".join(problems))
    return "; ".join(notes)


__all__ = ["GRAD_ATOL", "GRAD_RTOL", "computes_what_it_reports", "deepcopy_keeps_weights",
           "eval_leaves_state_unchanged", "gradients_flow", "modes_agree", "record_differences", "state_changes",
           "state_dict_round_trip", "unknown_layers"]
