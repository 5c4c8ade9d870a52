"""``spectral_accuracy``: each power-iteration method's σ estimate against the exact norm it
targets, and its claim on the effective weight.

A spectral method divides by a power-iteration estimate σ of one norm of the weight
(Miyato et al. 2018, §2.1 and App. A; Lin et al. 2021, §2 and §5; docs/references.md):
the reshape ``||Ŵ||`` (sn_w, ssn, torch_sn), the mean of BSN's two reshapes (bsn, bssn) or
the operator ``||W̃||`` (sn_conv); the parametrization says which (``normalises``). For a
seeded layer this runner measures

* ``rel_error``: the relative error of σ after ``iterations`` further power iterations
  (counted after the method's own registration warm-up, so torch_sn's 15 count as given);
* with ``updates > 0``: the tracking error while the weight changes under training-like
  updates (each element moves by ``step`` times the weight's RMS in a random sign
  direction, as Adam's sign-like steps do), ``iterations`` power iterations per update,
  the persistent vectors carried along;
* ``claim_error``: the method's *claim* (or, under ``--as NAME``, NAME's) measured on the
  effective weight with exact references (:func:`harness.methods.measure_claim`), never
  on the method's estimate or declared scale. A method that divides by its own estimate
  has ``claim_error = rel_error / (1 - rel_error)`` up to float32 rounding; one that
  scales wrongly (declared or not) does not.

Exact norms are float64: SVD of the reshapes, :func:`harness.exact.conv_operator_norm`
(certified bracket, value to 1e-6) for the operator.
"""
from __future__ import annotations

from typing import Iterable

import torch
from torch import nn

from harness.exact import conv_operator_norm, reshaped_norm
from harness.layers import geometry, swapped_reshape_matrix
from harness.methods import measure_claim
from harness.methods.power import estimate_sigma, power_iterate, sigma_parametrization
from harness.results import Measurement
from harness.suite import Case

from .base import RunContext, Runner, register
from .layer_specs import build_layer, layer_spec
from .randomness import case_generator
from .spec import Declarations, Metric, Setting


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


def _normalises(param: nn.Module) -> str:
    return getattr(param, "normalises", "reshape")


def _training_like_update(weight: torch.Tensor, step: float, gen: torch.Generator) -> None:
    rms = weight.pow(2).mean().sqrt()
    signs = torch.randint(0, 2, weight.shape, generator=gen).to(weight.dtype) * 2 - 1
    weight.add_(signs * step * rms)


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
        })

    def applies_to(self, method) -> bool:
        """Methods that declare a power-iteration parametrization (``tags.power_iteration``)."""
        return method.tags.power_iteration

    def run(self, case: Case, ctx: RunContext) -> Iterable[Measurement]:
        spec = layer_spec(case.settings, case.params["layer"])
        layer, input_shape = build_layer(spec)
        gen = case_generator(case.seed, case.params["layer"])
        with torch.no_grad():
            layer.weight.copy_(torch.randn(layer.weight.shape, generator=gen) / layer.weight[0].numel() ** 0.5)
        layer = ctx.method.apply(nn.Sequential(layer))[0]
        layer.train()
        layer(torch.zeros(input_shape))  # records the input size; one training-mode iteration
        param = sigma_parametrization(layer)
        original = layer.parametrizations.weight.original
        normalises, iterations = _normalises(param), int(case.params["iterations"])
        tracking = []
        for update in range(self.param(case, "updates")):
            with torch.no_grad():
                _training_like_update(original, case.settings["step"], gen)
            power_iterate(layer, iterations)
            if update % case.settings["track_every"] == 0:
                exact = exact_target(layer, original, normalises, input_shape)
                tracking.append(abs(estimate_sigma(layer) / exact - 1))
        if not tracking:
            power_iterate(layer, iterations)
        estimate = estimate_sigma(layer)
        exact = exact_target(layer, original, normalises, input_shape)
        claim, params = ctx.claim()
        found = measure_claim(ctx.method, nn.Sequential(layer), input_shape[1:], claim=claim, params=params)
        out = [Measurement("rel_error", abs(estimate / exact - 1)),
               Measurement("sigma_estimate", estimate),
               Measurement("sigma_exact", exact),
               Measurement("claim_error", max(m.error for m in found), message=found[0].describe())]
        if tracking:
            out += [Measurement("tracking_error_max", max(tracking)),
                    Measurement("tracking_error_final", tracking[-1])]
        return out
