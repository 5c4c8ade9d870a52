"""``spectral_accuracy``: each power-iteration method's σ estimate against the exact norm it
targets, and its claim on the effective weight.

A spectral method divides by a power-iteration estimate σ of one norm of the weight
(Miyato et al. 2018, §2.1 and App. A; Lin et al. 2021, §2 and §5; docs/references.md):
the reshape ``||Ŵ||`` (sn_w, ssn, torch_sn), the mean of BSN's two reshapes (bsn, bssn) or
the operator ``||W̃||`` (sn_conv). The method runs in the case's defendant process on a
seeded layer (the judge's weight) and reports its stored weight, its persistent vectors and
its effective map; this process computes

* ``rel_error``: the relative error of σ (``uᵀŴv`` of the reported vectors, recomputed
  here; ``⟨v, W̃u⟩`` for the operator) after ``iterations`` further power iterations, which
  are training steps with a zero learning rate (:func:`harness.observe.effective.zero_lr_step`:
  what any implementation iterates on), counted after the method's own registration
  warm-up (so torch_sn's 15 count as given);
* with ``updates > 0``: the tracking error while the weight changes under training-like
  updates (each element moves by ``step`` times the weight's RMS in a random sign
  direction, as Adam's sign-like steps do), ``iterations`` steps per update, the
  persistent vectors carried along;
* ``claim_error``: the method's *claim* (or, under ``--as NAME``, NAME's) measured on the
  observed effective map with exact references, never on the method's estimate or declared
  scale. A method that divides by its own estimate has ``claim_error = rel_error / (1 -
  rel_error)`` up to float32 rounding; one that scales wrongly (declared or not) does not.

Reading σ needs lipbench's internals: the method's parametrization must be lipbench's
``SigmaParametrization`` (or a subclass) or torch's ``spectral_norm``. A method selected by
its ``power_iteration`` tag whose σ cannot be read gets its σ metrics as ``n/a`` with the
reason, never an error; its claim is measured all the same. Exact norms are float64: SVD of
the reshapes, :func:`harness.exact.conv_operator_norm` (certified bracket, value to 1e-6)
for the operator.
"""
from __future__ import annotations

import math
from typing import Any, Iterable

import torch
from torch import nn

from harness.exact import conv_operator_norm, reshaped_norm
from harness.layers import apply_operator, geometry, reshape_matrix, swapped_reshape_matrix
from harness.methods.power import SigmaParametrization, sigma_parametrization
from harness.observe.effective import observe_now, snapshot_of, stored_weight, zero_lr_step
from harness.observe.verify import (Unobservable, layer_differences, make_plan, measure_layers, model_difference,
                                    worst)
from harness.results import Measurement
from harness.suite import Case

from .base import RunContext, Runner, register
from .layer_specs import build_layer, layer_spec
from .randomness import case_generator
from .spec import Declarations, Metric, Setting

SIGMA_METRICS = ("rel_error", "sigma_estimate", "sigma_exact")
TRACKING_METRICS = ("tracking_error_max", "tracking_error_final")


def exact_target(layer: nn.Module, weight: torch.Tensor, normalises: str, input_shape) -> float:
    """The exact norm that a method's σ estimates, of ``weight`` in ``layer``'s geometry (float64)."""
    geom = geometry(layer)
    if normalises == "reshape":
        return reshaped_norm(weight, geom.kind)
    if normalises == "balanced":
        swapped = float(torch.linalg.matrix_norm(swapped_reshape_matrix(weight.detach().double(), geom.kind), 2))
        return (reshaped_norm(weight, geom.kind) + swapped) / 2
    if normalises == "operator":
        if geom.kind == "linear":
            return reshaped_norm(weight, geom.kind)
        return conv_operator_norm(weight, input_shape[2:], stride=geom.stride, padding=geom.padding,
                                  padding_mode=geom.padding_mode, dilation=geom.dilation, kind=geom.kind,
                                  groups=geom.groups, output_padding=geom.output_padding or 0).value
    raise ValueError(f"unknown normalised quantity {normalises!r}")


def estimate_from_vectors(layer: nn.Module, weight: torch.Tensor, reported: dict[str, Any]) -> float:
    """The σ estimate of the reported vectors for ``weight`` (float64), by the formula of the
    parametrization's family: ``uᵀŴv`` per reshape (averaged over BSN's two), ``⟨v, W̃u⟩``
    for the operator, ``uᵀ W_mat v`` for torch's ``spectral_norm``."""
    w = weight.double()
    geom = geometry(layer)
    pairs = [(u.double(), v.double()) for u, v in reported["vectors"]]
    family = reported["family"]
    if family == "operator":
        u, v = pairs[0]
        return float(torch.vdot(v.reshape(-1), apply_operator(geom, w, u).reshape(-1)))
    if family == "torch":
        dim = int(reported["dim"])
        mat = w.movedim(dim, 0).reshape(w.shape[dim], -1)
        u, v = pairs[0]
        return float(u @ (mat @ v))
    views = [reshape_matrix(w, geom.kind), swapped_reshape_matrix(w, geom.kind)][:len(pairs)]
    return sum(float(u @ (mat @ v)) for (u, v), mat in zip(pairs, views)) / len(pairs)


def _training_like_update(weight: torch.Tensor, step: float, gen: torch.Generator) -> None:
    rms = weight.pow(2).mean().sqrt()
    signs = torch.randint(0, 2, weight.shape, generator=gen).to(weight.dtype) * 2 - 1
    weight.add_(signs * step * rms)


def observe_sigma(layer: nn.Module) -> dict[str, Any]:
    """The defendant's report of its σ: the stored weight and the persistent vectors, with the
    family that says how they make σ; or why they cannot be read."""
    stored = snapshot_of(stored_weight(layer))
    try:
        p = sigma_parametrization(layer)
    except LookupError as exc:
        return {"stored": stored, "unreadable": str(exc)}
    if isinstance(p, SigmaParametrization):
        family, state = p.normalises, p.current_state()
        if family == "operator":
            if state[0] is None:
                return {"stored": stored, "unreadable": "its operator's input size is not known yet"}
            state = (state,)
        return {"stored": stored, "family": family, "vectors": [[snapshot_of(t) for t in pair] for pair in state]}
    return {"stored": stored, "family": "torch", "dim": int(p.dim), "vectors": [[snapshot_of(p._u), snapshot_of(p._v)]]}


@register
class SpectralAccuracyRunner(Runner):
    kind = "spectral_accuracy"
    declarations = Declarations(
        params={"layer": Setting(str, description="a name in settings.layers"),
                "iterations": Setting(int, description="further power iterations (per update when updating)"),
                "updates": Setting(int, 0, "training-like weight updates with persistent vectors")},
        settings={"layers": Setting(dict, description="named layer shapes: {kind, c_in, c_out, k, stride, "
                                                      "padding, hw}"),
                  "step": Setting(float, 1e-3, "update size, in units of the weight's RMS"),
                  "track_every": Setting(int, 10, "updates between two tracking measurements")},
        metrics={
            "rel_error": Metric("float32", "|sigma_estimate / sigma_exact - 1| after the iterations (and updates)",
                                better="lower", implementation_specific=True),
            "sigma_estimate": Metric("info", "the method's power-iteration estimate"),
            "sigma_exact": Metric("info", "the exact norm it estimates (float64 of the float32 weight)"),
            "claim_error": Metric("float32", "the method's claim measured on the effective weight with exact "
                                             "references: |claimed norm / target - 1|", better="lower",
                                 implementation_specific=True),
            "tracking_error_max": Metric("float32", "largest relative error of the estimate during the updates",
                                         better="lower", implementation_specific=True),
            "tracking_error_final": Metric("float32", "relative error after the last update", better="lower",
                                           implementation_specific=True),
            "consistency_error": Metric("info", "largest relative difference between the layer's reported outputs "
                                                "and those of its reported effective weight"),
            "sigma_readable": Metric("info", "1 when lipbench can read the method's σ estimate (its own "
                                             "SigmaParametrization or torch's spectral_norm), else 0"),
        })

    def applies_to(self, profile: dict[str, Any]) -> bool:
        """Methods that declare a power iteration (``tags.power_iteration``); whether their σ can
        be read is observed, never assumed."""
        return bool(profile.get("power_iteration"))

    def _layer(self, case: Case) -> tuple[nn.Module, tuple[int, ...], torch.Tensor, torch.Generator]:
        layer, input_shape = build_layer(layer_spec(case.settings, case.params["layer"]))
        gen = case_generator(case.seed, case.params["layer"])
        weight = torch.randn(layer.weight.shape, generator=gen) / layer.weight[0].numel() ** 0.5
        with torch.no_grad():
            layer.weight.copy_(weight)
        return layer, input_shape, weight, gen

    def request(self, case: Case) -> dict[str, Any]:
        layer, input_shape, weight, _ = self._layer(case)
        return {"weight": weight, "plan": make_plan(nn.Sequential(layer), input_shape[1:], case.seed)}

    def observe(self, case: Case, ctx: RunContext, request: dict[str, Any]) -> dict[str, Any]:
        layer, input_shape, _, gen = self._layer(case)
        with torch.no_grad():
            layer.weight.copy_(request["weight"])
        model = ctx.method.apply(nn.Sequential(layer))
        x = torch.zeros(input_shape)
        zero_lr_step(model, ctx.method, x)  # a first training forward: input sizes; one iteration
        applied = model.get_submodule("0")
        iterations, tracking = int(case.params["iterations"]), []
        for update in range(self.param(case, "updates")):
            stored = stored_weight(applied)
            if stored is None:
                return {"no_updates": "the layer the method returned has no stored weight to update"}
            with torch.no_grad():
                _training_like_update(stored, case.settings["step"], gen)
            for _ in range(iterations):
                zero_lr_step(model, ctx.method, x)
            if update % case.settings["track_every"] == 0:
                tracking.append(observe_sigma(applied))
        if not tracking:
            for _ in range(iterations):
                zero_lr_step(model, ctx.method, x)
        model.eval()
        with torch.no_grad():
            record = observe_now(model, request["plan"])
        return {"tracking": tracking, "final": observe_sigma(applied), "record": record}

    def judge(self, case: Case, ctx: RunContext, request: dict[str, Any],
              observed: dict[str, Any]) -> Iterable[Measurement]:
        layer, input_shape, _, _ = self._layer(case)
        plain = nn.Sequential(layer)
        plan = request["plan"]
        if "no_updates" in observed:
            return [Measurement(m, math.nan, status="n/a", message=observed["no_updates"])
                    for m in SIGMA_METRICS + ("claim_error",) + TRACKING_METRICS]
        claim, params = ctx.claim()
        record = observed["record"]
        try:
            found = measure_layers(claim, claim.target_value(params), plain, plan, record)
        except Unobservable as exc:
            return [Measurement("claim_error", math.nan, status="n/a", message=f"not observable: {exc}")]
        consistency = [*layer_differences(plain, plan, record).values(), model_difference(plain, plan, record)]
        out = [Measurement("claim_error", max(m.error for m in found), message=found[0].describe()),
               Measurement("consistency_error", worst(consistency), message="the layer and the model")]
        final = observed["final"]
        tracked = self.param(case, "updates") > 0
        if "unreadable" in final:
            reason = (f"n/a: the method's σ estimate cannot be read ({final['unreadable']}); lipbench reads "
                      "its own SigmaParametrization and torch's spectral_norm")
            return out + [Measurement("sigma_readable", 0.0, message=reason)] + [
                Measurement(m, math.nan, status="n/a", message=reason)
                for m in SIGMA_METRICS + (TRACKING_METRICS if tracked else ())]
        out.append(Measurement("sigma_readable", 1.0))

        def error(reported: dict[str, Any]) -> tuple[float, float, float]:
            weight = reported["stored"].double()
            exact = exact_target(layer, weight, reported["family"] if reported["family"] != "torch" else "reshape",
                                 input_shape)
            estimate = estimate_from_vectors(layer, weight, reported)
            return abs(estimate / exact - 1), estimate, exact

        rel, estimate, exact = error(final)
        out += [Measurement("rel_error", rel), Measurement("sigma_estimate", estimate),
                Measurement("sigma_exact", exact)]
        if observed["tracking"]:
            errors = [error(r)[0] for r in observed["tracking"]]
            out += [Measurement("tracking_error_max", max(errors)), Measurement("tracking_error_final", errors[-1])]
        return out
