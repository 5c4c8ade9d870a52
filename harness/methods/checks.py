"""Small reusable checks of what each method claims, against exact float64 references.

Each ``check_*`` function returns a list of violations (human-readable strings); an
empty list means the check passed. The tests run every check on the real methods and
on deliberately broken variants (which must produce violations); the verification
suites can call the same functions.

References are computed densely (SVD of the reshape, or of the operator ``W̃``
materialised by applying the layer to the identity basis), so they are meant for the
small layers of tests, not for full-size networks.
"""
from __future__ import annotations

import math
from typing import Callable, Sequence

import torch
from torch import nn

from ..layers import (UnsupportedLayerError, apply_operator, geometry, layer_kind, reshape_matrix,
                      swapped_reshape_matrix, weight_layers)
from .base import Method
from .power import power_iterate

# --- exact references (float64) --------------------------------------------------------


def spectral_norm_of(mat: torch.Tensor) -> float:
    return float(torch.linalg.matrix_norm(mat.detach().double(), ord=2))


def operator_matrix(layer: nn.Module, weight: torch.Tensor, input_shape: Sequence[int]) -> torch.Tensor:
    """Dense matrix of ``W̃`` on inputs of ``input_shape`` (no batch), float64."""
    geom = geometry(layer)
    n = math.prod(input_shape)
    basis = torch.eye(n, dtype=torch.float64).reshape(n, *input_shape)
    out = apply_operator(geom, weight.detach().double(), basis)
    return out.reshape(n, -1).t()


def exact_norm(layer: nn.Module, what: str, input_shape: Sequence[int] | None = None) -> float | torch.Tensor:
    """The exact norm of the layer's *effective* weight that a method normalises.

    ``what``: ``"reshape"`` (``‖Ŵ‖``), ``"balanced"`` (``(‖Ŵ₁‖+‖Ŵ₂‖)/2``, linear: ``‖Ŵ‖``),
    ``"operator"`` (``‖W̃‖`` at ``input_shape``), ``"frobenius"`` (``‖Ŵ‖_F``) or ``"rows"``
    (the tensor of row norms of ``Ŵ``).
    """
    kind = layer_kind(layer)
    w = layer.weight.detach().double()
    if what == "reshape":
        return spectral_norm_of(reshape_matrix(w, kind))
    if what == "balanced":
        if kind == "linear":
            return spectral_norm_of(w)
        return 0.5 * (spectral_norm_of(reshape_matrix(w, kind)) + spectral_norm_of(swapped_reshape_matrix(w, kind)))
    if what == "operator":
        if input_shape is None:
            raise ValueError("the operator norm needs the input shape")
        return spectral_norm_of(operator_matrix(layer, w, input_shape))
    if what == "frobenius":
        return float(torch.linalg.vector_norm(w))
    if what == "rows":
        return torch.linalg.vector_norm(reshape_matrix(w, kind), dim=1)
    raise ValueError(f"unknown norm {what!r}")


# --- checks -------------------------------------------------------------------------------


def check_normalised(layer: nn.Module, what: str, expected: float, input_shape=None,
                     rtol: float = 1e-5, iterations: int = 0) -> list[str]:
    """After ``iterations`` extra power-iteration steps (0 for methods without one), the
    layer's effective weight, read in eval mode, has exact norm ``expected``."""
    was_training = layer.training
    if iterations:
        power_iterate(layer, iterations)
    layer.eval()
    try:
        got = exact_norm(layer, what, input_shape)
    finally:
        layer.train(was_training)
    if what == "rows":
        bad = (got - expected).abs() > rtol * expected
        if bad.any():
            return [f"{int(bad.sum())} row norm(s) of Ŵ differ from {expected}: "
                    f"max |error| {float((got - expected).abs().max()):.3g}"]
        return []
    if not math.isclose(got, expected, rel_tol=rtol):
        return [f"{what} norm of the effective weight is {got:.8g}, expected {expected:.8g} "
                f"(relative error {abs(got - expected) / expected:.3g} > {rtol:g})"]
    return []


def check_same_sigma(layer_a: nn.Module, layer_b: nn.Module, rtol: float = 1e-6) -> list[str]:
    """Two SN implementations on equal weights give effective weights of equal norm ``‖Ŵ‖``."""
    a = exact_norm(layer_a.eval(), "reshape")
    b = exact_norm(layer_b.eval(), "reshape")
    if not math.isclose(a, b, rel_tol=rtol):
        return [f"‖Ŵ_eff‖ differ: {a:.8g} vs {b:.8g}"]
    return []


def check_gradients(layer: nn.Module, seed: int = 0) -> list[str]:
    """``torch.autograd.gradcheck`` (float64, eval mode: the power iteration frozen) of the
    map from the stored weight to the effective weight."""
    plist = layer.parametrizations.weight
    original = plist.original.detach().double().clone().requires_grad_(True)
    plist.double().eval()

    def f(w):
        out = w
        for p in plist:
            out = p(out)
        return out

    try:
        ok = torch.autograd.gradcheck(f, (original,), eps=1e-6, atol=1e-5, rtol=1e-4,
                                      raise_exception=False)
    except Exception as exc:  # noqa: BLE001 - e.g. output does not require grad
        return [f"gradcheck raised {type(exc).__name__}: {exc}"]
    return [] if ok else ["gradcheck failed: the backward does not match finite differences"]


def check_clip(method: Method, model: nn.Module, c: float) -> list[str]:
    """After ``after_step`` every weight equals its clamp to ``[-c, c]`` (from before)."""
    layers = weight_layers(model)
    before = [layer.weight.detach().clone() for _, layer in layers]
    method.after_step(model)
    out = []
    for (name, layer), w0 in zip(layers, before):
        want = w0.clamp(-c, c)
        if not torch.equal(layer.weight.detach(), want):
            err = float((layer.weight.detach() - want).abs().max())
            out.append(f"{name}: weights differ from clamp(w, -{c}, {c}) by up to {err:.3g}")
    return out


def check_penalty(method: Method, D: nn.Module, real: torch.Tensor, fake: torch.Tensor,
                  reference: Callable[[], torch.Tensor], seed: int = 0, rtol: float = 1e-6) -> list[str]:
    """``method.penalty`` equals ``reference()`` when both start from the same RNG seed,
    and it backpropagates into ``D``'s parameters."""
    torch.manual_seed(seed)
    got = method.penalty(D, real, fake)
    torch.manual_seed(seed)
    want = reference()
    out = []
    if not torch.allclose(got.detach(), want.detach(), rtol=rtol, atol=1e-12):
        out.append(f"penalty {float(got.detach()):.10g} differs from the reference "
                   f"{float(want.detach()):.10g}")
    if not got.requires_grad:
        out.append("penalty does not require grad (no create_graph?)")
    return out


def check_rejects_unsupported(method: Method, model: nn.Module, layer_name: str) -> list[str]:
    """``method.apply`` raises :class:`UnsupportedLayerError` naming ``layer_name``."""
    try:
        method.apply(model)
    except UnsupportedLayerError as exc:
        return [] if layer_name in str(exc) else [f"error does not name {layer_name!r}: {exc}"]
    return [f"{method.name} accepted a model with the unsupported layer {layer_name!r}"]


__all__ = ["exact_norm", "operator_matrix", "spectral_norm_of", "check_normalised",
           "check_same_sigma", "check_gradients", "check_clip", "check_penalty",
           "check_rejects_unsupported"]
