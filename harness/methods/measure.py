"""Measure a method's :class:`~.claims.Claim` on what the model actually computes.

:func:`measure_claim` reads each weight layer's effective weight, ``layer.weight`` as the
layer computes it in eval mode (for power-iteration methods: the stored vectors, no
step taken), and evaluates the claimed quantity with exact float64 references
(:func:`harness.exact.reshaped_norm`, :func:`harness.exact.layer_operator_norm`, SVD of
the reshapes, Frobenius and row norms, the largest entry). It never asks the method for
its own ``σ`` estimate or its declared scale.

Layers are found by :func:`claim_layers`. A standard ``Linear``/``Conv1d``/``Conv2d``/
``ConvTranspose2d`` (possibly parametrized) is measured through ``layer.weight``. A layer
whose forward is not the standard one (a subclass overriding it, forward hooks, a
custom module owning a ``weight``, or a wrapper module marked ``lipbench_layer = True``
by a method that replaces layers) is measured through its own forward map
(:class:`.forward_map.ForwardMap`: the linear part ``x ↦ f(x) − f(0)`` at the layer's
real input size; operator claims by dense SVD or Lanczos, weight claims on the kernel
recovered from the map for the layer's geometry and checked to reproduce it).
Input sizes come from forward pre-hooks during one eval-mode forward of
``zeros(1, *input_shape)``. Training modes are restored afterwards.
"""
from __future__ import annotations

import math
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Iterator, Mapping, Sequence

import torch
from torch import nn

from harness.exact import conv_smallest_singular_value, layer_operator_norm, reshaped_norm
from harness.layers import (AFFINE_LAYERS, WEIGHT_LAYERS, geometry, layer_kind, reshape_matrix, standard_forward,
                            swapped_reshape_matrix)

from .base import Method
from .claims import INTERPOLATE, OPERATOR_SPECTRUM, Claim
from .forward_map import DENSE_LIMIT, ClaimMeasurementError, ForwardMap, _like, kernel_from_forward

@dataclass(frozen=True)
class ClaimMeasurement:
    """One measured claim: per layer (``layer`` its qualified name) or for the model (``""``).

    ``error``: equality and penalty claims ``|measured/target − 1|`` (``|measured|`` for
    target 0); bound claims the excess ``max(0, measured/target − 1)``; ``inf`` when the
    layer's weight is not finite. ``how``: ``"weight"`` (``layer.weight``) or
    ``"forward"`` (the layer's forward map) or ``"model"``. ``summary``: extra numbers
    (row-norm range, operator-norm bracket, per-sample gradient norms' min/median/max).
    """

    layer: str
    quantity: str
    kind: str
    measured: float
    target: float
    error: float
    how: str
    summary: dict[str, Any] = field(default_factory=dict)

    def describe(self) -> str:
        where = self.layer or "(model)"
        return (f"{where}: {self.quantity} = {self.measured:.8g} (target {self.target:g}, "
                f"{'excess' if self.kind == 'bound' else 'relative error'} {self.error:.3g})")


# --- which layers, and how their map is read ------------------------------------------------

def _owns_weight(module: nn.Module) -> bool:
    return "weight" in dict(module.named_parameters(recurse=False)) or \
        getattr(getattr(module, "parametrizations", None), "weight", None) is not None


def claim_layers(model: nn.Module) -> list[tuple[str, nn.Module, str]]:
    """``(name, module, how)`` of every layer a per-layer claim covers, in module order.

    ``how`` is ``"weight"`` for a standard weight layer, ``"forward"`` for one measured
    through its forward map (see the module docstring). Descendants of a found layer are
    part of it. Affine normalisation layers (BatchNorm, LayerNorm, GroupNorm) are skipped.
    """
    found: list[tuple[str, nn.Module, str]] = []
    for name, module in model.named_modules():
        if any(p == "" or name.startswith(p + ".") for p, _, _ in found):
            continue
        if getattr(module, "lipbench_layer", False) is True:
            found.append((name, module, "forward"))
        elif isinstance(module, WEIGHT_LAYERS):
            found.append((name, module, "weight" if standard_forward(module) else "forward"))
        elif isinstance(module, AFFINE_LAYERS):
            continue
        elif _owns_weight(module):
            found.append((name, module, "forward"))
    return found


@contextmanager
def evaluating(model: nn.Module) -> Iterator[None]:
    """Eval mode and no grad inside; every module's training flag restored afterwards."""
    modes = {m: m.training for m in model.modules()}
    model.eval()
    try:
        with torch.no_grad():
            yield
    finally:
        for m, t in modes.items():
            m.train(t)


def record_input_shapes(model: nn.Module, input_shape: Sequence[int]) -> dict[str, tuple[int, ...]]:
    """Each module's input shape (without batch) in one forward of ``zeros(1, *input_shape)``
    (run by the caller's mode; :func:`measure_claim` runs it in eval mode)."""
    shapes: dict[str, tuple[int, ...]] = {}
    handles = []
    for name, module in model.named_modules():
        def record(mod, args, name=name):
            if name not in shapes and args and isinstance(args[0], torch.Tensor):
                shapes[name] = tuple(args[0].shape[1:])
        handles.append(module.register_forward_pre_hook(record))
    like = _like(model)
    try:
        model(torch.zeros((1, *tuple(input_shape)), dtype=like.dtype, device=like.device))
    finally:
        for h in handles:
            h.remove()
    return shapes


# --- exact references -------------------------------------------------------------------------

def _spectral(mat: torch.Tensor) -> float:
    return float(torch.linalg.matrix_norm(mat, ord=2))


#: Quantities measured as another: a bound on a norm measures the norm.
MEASURED_AS = {"reshape_spectral_at_most": "reshape_spectral", "operator_spectral_at_most": "operator_spectral"}


def weight_quantity(quantity: str, w: torch.Tensor, kind: str,
                    target: float = 1.0) -> tuple[float, dict[str, Any]]:
    """The claimed quantity of a float64 weight ``w`` and extra numbers for the report
    (``row_norms``: the row norm farthest from ``target``; ``reshape_singular_values``: the
    singular value farthest from ``target``)."""
    quantity = MEASURED_AS.get(quantity, quantity)
    if quantity == "reshape_spectral":
        return reshaped_norm(w, kind), {}
    if quantity == "reshape_singular_values":
        values = torch.linalg.svdvals(reshape_matrix(w, kind))
        worst = values[int((values / target - 1).abs().argmax())]
        return float(worst), {"min": float(values.min()), "max": float(values.max())}
    if quantity == "balanced_spectral":
        first = reshaped_norm(w, kind)
        if kind == "linear":
            return first, {}
        second = _spectral(swapped_reshape_matrix(w, kind))
        return 0.5 * (first + second), {"reshape_1": first, "reshape_2": second}
    if quantity == "row_norms":  # the row farthest from the target
        rows = torch.linalg.vector_norm(reshape_matrix(w, kind), dim=1)
        worst = rows[int((rows / target - 1).abs().argmax())]
        return float(worst), {"min": float(rows.min()), "max": float(rows.max())}
    if quantity == "frobenius":
        return float(torch.linalg.vector_norm(w)), {}
    if quantity == "entries_within":
        return float(w.abs().max()), {"min_entry": float(w.min()), "max_entry": float(w.max())}
    if quantity == "gram_orthonormal":
        mat = reshape_matrix(w, kind)
        gram = mat @ mat.t() if mat.shape[0] <= mat.shape[1] else mat.t() @ mat
        return float(torch.linalg.matrix_norm(gram - torch.eye(gram.shape[0], dtype=gram.dtype))), {}
    raise ValueError(f"{quantity!r} is not a weight quantity")


def spectrum_of_layer(layer: nn.Module, shape: Sequence[int] | None) -> dict[str, float]:
    """Certified float64 brackets of ``σ_max`` and ``σ_min`` of a standard layer's operator ``W̃``
    (``layer.weight`` on inputs of ``shape``, no batch): :func:`harness.exact.layer_operator_norm`
    and :func:`harness.exact.conv_smallest_singular_value` (a ``Linear`` as a length-1 ``Conv1d``)."""
    geom = geometry(layer)
    top = layer_operator_norm(layer, shape)
    w = layer.weight.detach().to("cpu", torch.float64)
    if geom.kind == "linear":
        low = conv_smallest_singular_value(w.unsqueeze(-1), (1,), kind="conv1d")
    else:
        dims = 1 if geom.kind == "conv1d" else 2
        low = conv_smallest_singular_value(w, tuple(shape)[-dims:], stride=geom.stride, padding=geom.padding,
                                           padding_mode=geom.padding_mode, dilation=geom.dilation,
                                           kind=geom.kind, groups=geom.groups,
                                           output_padding=geom.output_padding or 0)
    return {"sigma_max": top.value, "sigma_max_lower": top.lower, "sigma_max_upper": top.upper,
            "sigma_min": low.value, "sigma_min_lower": low.lower, "sigma_min_upper": low.upper,
            "method": f"{top.method} / {low.method}"}


def spectrum_of_map(fmap: Any) -> dict[str, float]:
    """``σ_max`` and ``σ_min`` of an observed map (dense float64 SVD of its matrix; the brackets
    are the SVD's values: LAPACK's backward-stable SVD errs by ``O(u‖A‖)``, far below any
    tolerance a layer claims)."""
    if fmap.in_dim * fmap.out_dim > DENSE_LIMIT:
        raise ClaimMeasurementError(f"layer {fmap.name!r}: its map ({fmap.out_dim} x {fmap.in_dim}) is too "
                                    "large for the dense SVD an orthogonality claim needs")
    values = torch.linalg.svdvals(fmap.matrix())
    top, low = float(values.max()), float(values.min())
    return {"sigma_max": top, "sigma_max_lower": top, "sigma_max_upper": top,
            "sigma_min": low, "sigma_min_lower": low, "sigma_min_upper": low, "method": "dense SVD of the map"}


def orthogonality_deviation(spectrum: dict[str, float]) -> tuple[float, dict[str, Any]]:
    """``max(σ_max − 1, 1 − σ_min)`` (the singular value farthest from 1) and the brackets, with the
    deviation's certified ends: ``deviation_upper`` from ``σ_max``'s upper and ``σ_min``'s lower end
    (a pass below the tolerance is certain), ``deviation_lower`` from the other ends (a violation
    above it is certain)."""
    value = max(spectrum["sigma_max"] - 1.0, 1.0 - spectrum["sigma_min"])
    summary = {**spectrum,
               "deviation_upper": max(spectrum["sigma_max_upper"] - 1.0, 1.0 - spectrum["sigma_min_lower"]),
               "deviation_lower": max(spectrum["sigma_max_lower"] - 1.0, 1.0 - spectrum["sigma_min_upper"], 0.0)}
    return value, summary


def claim_error(kind: str, measured: float, target: float) -> float:
    """Relative error (equality, penalty) or relative excess (bound); ``inf`` if not finite."""
    if not math.isfinite(measured):
        return math.inf
    if kind == "bound":
        return max(0.0, measured / target - 1.0)
    return abs(measured / target - 1.0) if target != 0 else abs(measured)


# --- per layer and per model ---------------------------------------------------------------------

def measure_layer(name: str, layer: nn.Module, how: str, quantity: str, kind: str,
                  target: float, shape: tuple[int, ...] | None, fmap: Any = None) -> ClaimMeasurement:
    """The claim on one layer: ``how == "weight"``: ``layer.weight`` is the effective weight;
    ``"forward"``: the layer's map (``fmap``, a :class:`ForwardMap` or an observed
    :class:`~.forward_map.DenseMap`; built from ``layer`` when not given) measured, with
    ``layer`` giving the geometry. ``shape``: the layer's input shape without batch."""
    measured_as = MEASURED_AS.get(quantity, quantity)
    needs_shape = how == "forward" or (measured_as in ("operator_spectral", *OPERATOR_SPECTRUM)
                                       and not isinstance(layer, nn.Linear))
    if needs_shape and shape is None and fmap is None:
        raise ClaimMeasurementError(
            f"layer {name!r} ({type(layer).__name__}): measuring "
            f"{'its forward map' if how == 'forward' else 'its operator norm'} needs the "
            "model's input shape (input_shape)")
    if how == "forward":
        fmap = fmap if fmap is not None else ForwardMap(layer, shape, name)
        if not bool(torch.isfinite(fmap.zero).all()):
            return ClaimMeasurement(name, quantity, kind, math.nan, target, math.inf, how)
        if measured_as == "operator_spectral":
            measured, method = fmap.operator_norm()
            summary = {"method": method}
        elif measured_as in OPERATOR_SPECTRUM:
            measured, summary = orthogonality_deviation(spectrum_of_map(fmap))
        else:
            w = kernel_from_forward(fmap)
            measured, summary = weight_quantity(quantity, w, layer_kind(layer, name), target)
    else:
        w = layer.weight.detach().to("cpu", torch.float64)
        if not bool(torch.isfinite(w).all()):
            return ClaimMeasurement(name, quantity, kind, math.nan, target, math.inf, how)
        if measured_as == "operator_spectral":
            norm = layer_operator_norm(layer, shape)
            measured = norm.value
            summary = {"lower": norm.lower, "upper": norm.upper, "method": norm.method}
        elif measured_as in OPERATOR_SPECTRUM:
            measured, summary = orthogonality_deviation(spectrum_of_layer(layer, shape))
        else:
            measured, summary = weight_quantity(quantity, w, layer_kind(layer, name), target)
    return ClaimMeasurement(name, quantity, kind, measured, target,
                            claim_error(kind, measured, target), how, summary)


def interpolate_gradient_norms(model: nn.Module, real: torch.Tensor, fake: torch.Tensor,
                               seed: int = 0) -> torch.Tensor:
    """Per-sample ``‖∇_x D(x̂)‖₂`` (float64) at ``x̂ = εx + (1−ε)x̃``, ``ε ~ U(0, 1)`` drawn
    from a generator seeded with ``seed`` (Gulrajani et al. 2017, docs/references.md#gulrajani2017,
    Algorithm 1); the caller chooses the mode (eval in :func:`measure_claim`)."""
    like = _like(model)
    real = real.detach().to(like.device, like.dtype)
    fake = fake.detach().to(like.device, like.dtype)
    eps = torch.rand((real.shape[0],) + (1,) * (real.dim() - 1),
                     generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    eps = eps.to(like.device, like.dtype)
    with torch.enable_grad():
        x_hat = (eps * real + (1 - eps) * fake).requires_grad_(True)
        (grad,) = torch.autograd.grad(model(x_hat).sum(), x_hat)
    return torch.linalg.vector_norm(grad.flatten(1).double(), dim=1).cpu()


def interpolate_measurement(claim: Claim, target: float, norms: torch.Tensor) -> ClaimMeasurement:
    """The claim on per-sample gradient norms at interpolates: the mean norm, and the mean
    relative distance to the target (two-sided) or excess over it (one-sided,
    ``interpolate_gradient_at_most``)."""
    ratios = norms.double() / target - 1
    errors = ratios.clamp_min(0) if claim.quantity == "interpolate_gradient_at_most" else ratios.abs()
    summary = {"min": float(norms.min()), "median": float(norms.median()), "max": float(norms.max()),
               "above_target": float((ratios > 0).double().mean()), "samples": int(norms.numel())}
    return ClaimMeasurement("", claim.quantity, claim.kind, float(norms.double().mean()), target,
                            float(errors.mean()), "model", summary)


def _samples(real, fake, input_shape, seed: int, n: int = 64):
    if real is not None and fake is not None:
        return real, fake
    if input_shape is None:
        raise ClaimMeasurementError("measuring an interpolate_gradient claim needs real and fake "
                                    "samples or the model's input shape (input_shape)")
    gen = torch.Generator().manual_seed(seed)
    shape = (n, *tuple(input_shape))
    return torch.randn(shape, generator=gen), torch.randn(shape, generator=gen) + 1.0


def measure_claim(method: Method, model: nn.Module, input_shape: Sequence[int] | None = None, *,
                  real: torch.Tensor | None = None, fake: torch.Tensor | None = None,
                  seed: int = 0, claim: Claim | None = None,
                  params: Mapping[str, Any] | None = None) -> list[ClaimMeasurement]:
    """Measure ``method.claim`` on ``model`` (the model ``method.apply`` returned).

    Per-layer claims give one :class:`ClaimMeasurement` per layer of
    :func:`claim_layers`; ``interpolate_gradient`` gives one for the model, from
    per-sample input-gradient norms at interpolates of ``real`` and ``fake`` (default 64
    Gaussian samples of ``input_shape``, seeded); ``none`` gives ``[]``. ``input_shape``
    (without batch) is needed for operator claims on convolutions and for layers
    measured through their forward map. The model's training flags are restored; the
    only state a measurement can change is a method's own first-forward initialisation
    (e.g. ``sn_conv`` recording the input size), which any forward triggers. ``claim`` and
    ``params`` judge the model under another method's claim (``lipbench check --as NAME``).
    """
    claim = claim or method.claim
    if claim.kind == "none":
        return []
    target = claim.target_value(method.params if params is None else params)
    with evaluating(model):
        if claim.quantity in INTERPOLATE:
            real, fake = _samples(real, fake, input_shape, seed)
            return [interpolate_measurement(claim, target, interpolate_gradient_norms(model, real, fake, seed))]
        shapes = record_input_shapes(model, input_shape) if input_shape is not None else {}
        return [measure_layer(name, layer, how, claim.quantity, claim.kind, target, shapes.get(name))
                for name, layer, how in claim_layers(model)]


__all__ = ["ClaimMeasurement", "ClaimMeasurementError", "MEASURED_AS", "claim_error", "claim_layers",
           "evaluating", "interpolate_gradient_norms", "interpolate_measurement", "measure_claim", "measure_layer",
           "orthogonality_deviation", "record_input_shapes", "spectrum_of_layer", "spectrum_of_map",
           "weight_quantity"]
