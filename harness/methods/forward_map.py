"""A layer's linear part read from its own forward: for layers a method replaced.

When a layer's forward is not the standard one (a method swapped the module, overrode
``forward`` or added hooks), its weight attribute may not be what it computes, so
:mod:`.measure` reads the map itself: :class:`ForwardMap` is ``x ↦ f(x) − f(0)`` on
inputs of the layer's real size, checked to be linear (additive and homogeneous on
random inputs), with its adjoint by a vector-Jacobian product. Its operator norm is a
dense SVD for small maps and Lanczos on ``AᵀA`` (ARPACK, through the map and its
adjoint) otherwise; :func:`kernel_from_forward` recovers the weight a convolution of the
layer's geometry would need to compute the map (least squares by conjugate gradients
through the convolution and its adjoint) and checks that it does.
"""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import torch
from scipy.sparse.linalg import LinearOperator, eigsh
from torch import nn

from harness.layers import WEIGHT_LAYERS, apply_operator, geometry, layer_kind

#: Largest ``in_dim · out_dim`` materialised for a dense SVD (32 MB of float64).
DENSE_LIMIT = 4_000_000

#: Linearity and kernel-recovery checks pass when the defect is below ``tol`` times the
#: output's norm; ``tol`` per dtype: float32 rounding (2⁻²⁴ ≈ 6e-8) accumulated over one
#: layer's sums stays far below 1e-4; float64 far below 1e-9.
LINEAR_TOL = {torch.float32: 1e-4, torch.float64: 1e-9}

#: Lanczos stopping tolerance on ``λ = σ²`` (ARPACK's relative Ritz residual).
LANCZOS_TOL = 1e-10


class ClaimMeasurementError(ValueError):
    """A claim that cannot be measured on a model; the message names the layer and why."""


def _like(module: nn.Module) -> torch.Tensor:
    """A parameter or buffer of ``module`` (its device and dtype); an empty float tensor if none."""
    for t in module.parameters():
        return t
    for t in module.buffers():
        return t
    return torch.empty(0)


class ForwardMap:
    """``x ↦ layer(x) − layer(0)`` on inputs of ``shape`` (no batch), float64 in and out.

    Calls ``layer`` in whatever mode it is in (:mod:`.measure` uses eval mode).
    """

    def __init__(self, layer: nn.Module, shape: Sequence[int], name: str = "") -> None:
        self.layer, self.shape, self.name = layer, tuple(int(s) for s in shape), name
        like = _like(layer)
        self.device, self.dtype = like.device, like.dtype if like.is_floating_point() else torch.float32
        with torch.no_grad():
            self.zero = layer(torch.zeros((1, *self.shape), device=self.device, dtype=self.dtype))
        self.in_dim, self.out_dim = math.prod(self.shape), self.zero[0].numel()
        self._check_linear()

    def apply(self, x: torch.Tensor) -> torch.Tensor:
        """``A x`` for a batch ``x`` of shape ``(B, in_dim)``; ``(B, out_dim)`` float64 on the CPU."""
        with torch.no_grad():
            out = self.layer(x.to(self.device, self.dtype).view(-1, *self.shape)) - self.zero
        return out.reshape(x.shape[0], -1).to("cpu", torch.float64)

    def adjoint(self, y: torch.Tensor) -> torch.Tensor:
        """``Aᵀ y`` for one ``y`` of ``out_dim``, by a vector-Jacobian product at 0."""
        with torch.enable_grad():
            x = torch.zeros((1, *self.shape), device=self.device, dtype=self.dtype, requires_grad=True)
            out = self.layer(x)
            (grad,) = torch.autograd.grad(out, x, y.to(self.device, self.dtype).view_as(out))
        return grad.reshape(-1).to("cpu", torch.float64)

    def _check_linear(self) -> None:
        gen = torch.Generator().manual_seed(0)
        x, y = torch.randn((2, self.in_dim), generator=gen, dtype=torch.float64)
        fx, fy, fxy, f2x = self.apply(torch.stack([x, y, x + y, 2 * x]))
        scale = max(float(fx.norm() + fy.norm()), 1e-30)
        defect = max(float((fxy - fx - fy).norm()), float((f2x - 2 * fx).norm()))
        if not defect <= LINEAR_TOL.get(self.dtype, 1e-4) * scale:
            raise ClaimMeasurementError(f"layer {self.name!r} ({type(self.layer).__name__}) is not an "
                                  "affine map of its input; its claim cannot be measured")

    def matrix(self) -> torch.Tensor:
        """The dense ``(out_dim, in_dim)`` float64 matrix (the identity basis through the map)."""
        cols = [self.apply(torch.eye(self.in_dim, dtype=torch.float64)[s:s + 512])
                for s in range(0, self.in_dim, 512)]
        return torch.cat(cols).t()

    def operator_norm(self) -> tuple[float, str]:
        """``(‖A‖₂, how)``: dense SVD when ``in_dim · out_dim ≤ DENSE_LIMIT``, else Lanczos."""
        if self.in_dim * self.out_dim <= DENSE_LIMIT:
            return float(torch.linalg.matrix_norm(self.matrix(), ord=2)), "dense SVD of the forward map"
        gram = LinearOperator((self.in_dim, self.in_dim), dtype=np.float64, matvec=lambda v: self.adjoint(
            self.apply(torch.from_numpy(np.asarray(v, dtype=np.float64).reshape(1, -1)))[0]).numpy())
        start = np.random.default_rng(0).standard_normal(self.in_dim)
        (lam,), _ = eigsh(gram, k=1, which="LA", tol=LANCZOS_TOL, v0=start)
        return math.sqrt(max(float(lam), 0.0)), "Lanczos on AᵀA through the forward map"


class DenseMap:
    """A layer's linear part observed densely: ``x ↦ M x`` with ``M`` (``out_dim × in_dim``,
    float64) its outputs at the basis vectors minus its output at 0, and ``layer`` a module
    of the layer's type and geometry (lipbench's own, for :func:`kernel_from_forward`).

    Duck-types :class:`ForwardMap` where a claim is measured; ``dtype`` is the dtype the
    map was computed in (its rounding sets the tolerance of kernel recovery)."""

    def __init__(self, layer: nn.Module, matrix: torch.Tensor, zero: torch.Tensor, shape: Sequence[int],
                 name: str = "", dtype: torch.dtype = torch.float32) -> None:
        self.layer, self.name, self.dtype = layer, name, dtype
        self.shape = tuple(int(s) for s in shape)
        self._matrix = matrix.to(torch.float64)
        self.zero = zero
        self.out_dim, self.in_dim = self._matrix.shape

    def apply(self, x: torch.Tensor) -> torch.Tensor:
        return x.to(torch.float64) @ self._matrix.t()

    def matrix(self) -> torch.Tensor:
        return self._matrix

    def operator_norm(self) -> tuple[float, str]:
        return float(torch.linalg.matrix_norm(self._matrix, ord=2)), "dense SVD of the observed map"


def _weight_shape(layer: nn.Module, kind: str) -> tuple[int, ...]:
    if kind == "linear":
        return (layer.out_features, layer.in_features)
    k = tuple(layer.kernel_size)
    if kind == "conv_transpose2d":
        return (layer.in_channels, layer.out_channels // layer.groups, *k)
    return (layer.out_channels, layer.in_channels // layer.groups, *k)


def kernel_from_forward(fmap: ForwardMap, max_iterations: int = 500) -> torch.Tensor:
    """The float64 weight ``W`` whose operator, with the layer's own geometry, is ``fmap``.

    Least squares on random probe inputs, solved by conjugate gradients on the normal
    equations through the convolution and its adjoint (no matrix is formed); the result
    must reproduce the map on fresh probes (:data:`LINEAR_TOL`), else
    :class:`ClaimMeasurementError`.
    """
    layer, name = fmap.layer, fmap.name
    if not isinstance(layer, WEIGHT_LAYERS):
        raise ClaimMeasurementError(f"layer {name!r} ({type(layer).__name__}) has no weight-layer geometry: "
                              "only an operator_spectral claim can be measured through its forward map")
    kind = layer_kind(layer, name)
    geom = geometry(layer, name)
    wshape = _weight_shape(layer, kind)
    gen = torch.Generator().manual_seed(0)
    probes = max(2, math.ceil(2 * math.prod(wshape) / fmap.out_dim) + 1)
    x = torch.randn((probes, *fmap.shape), generator=gen, dtype=torch.float64)
    y = fmap.apply(x.reshape(probes, -1))

    def forward(w):
        return apply_operator(geom, w, x).reshape(probes, -1)

    def normal(w):  # AᵀA w, the adjoint by autograd (the map is linear in w)
        with torch.enable_grad():
            wg = w.detach().requires_grad_(True)
            (g,) = torch.autograd.grad(forward(wg), wg, forward(w).detach())
        return g

    with torch.enable_grad():
        wg = torch.zeros(wshape, dtype=torch.float64, requires_grad=True)
        (b,) = torch.autograd.grad(forward(wg), wg, y)
    w, r = torch.zeros_like(b), b.clone()
    p, rr = r.clone(), float((r * r).sum())
    for _ in range(max_iterations):
        if rr <= (1e-13 * float(b.norm())) ** 2:
            break
        ap = normal(p)
        alpha = rr / float((p * ap).sum())
        w, r = w + alpha * p, r - alpha * ap
        rr_new = float((r * r).sum())
        p, rr = r + (rr_new / rr) * p, rr_new
    fresh = torch.randn((2, *fmap.shape), generator=gen, dtype=torch.float64)
    want = fmap.apply(fresh.reshape(2, -1))
    got = apply_operator(geom, w, fresh).reshape(2, -1)
    defect = float((got - want).norm())
    if not defect <= LINEAR_TOL.get(fmap.dtype, 1e-4) * max(float(want.norm()), 1e-30):
        raise ClaimMeasurementError(f"layer {name!r}: its forward map is not a {kind} with the layer's "
                              f"geometry (least-squares defect {defect:.3g} relative to "
                              f"{float(want.norm()):.3g})")
    return w


__all__ = ["DENSE_LIMIT", "DenseMap", "ForwardMap", "ClaimMeasurementError", "LINEAR_TOL", "kernel_from_forward"]
