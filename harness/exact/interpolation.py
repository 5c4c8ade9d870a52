"""Exact operator norms of linear, bilinear, bicubic and trilinear interpolation.

These modes of ``F.interpolate`` / ``nn.Upsample`` interpolate each spatial axis
independently with a fixed 1-D matrix ``A_k`` (its rows are the 2 linear or 4 cubic weights
of the source position of each output index), so per channel the map is
``A_1 ⊗ A_2 ⊗ ...`` and ``‖map‖₂ = Π_k σ₁(A_k)`` (the singular values of a Kronecker
product are the products of the factors' singular values; the channels are identical
diagonal blocks). :func:`axis_matrix` builds ``A_k`` in float64 following ATen's
``UpSample.h``: the source index ``scale·i`` (``align_corners=True``, ``scale =
(n−1)/(m−1)``) or ``scale·(i + ½) − ½`` (``scale = 1/scale_factor`` when a scale factor is
passed to the kernel, else ``n/m``), clamped at 0 for linear modes; linear: the two
neighbours with weights ``1 − λ, λ``; cubic: Keys' kernel with ``A = −0.75`` on the four
neighbours, indices clamped to the border. :func:`check_against` compares the description
with torch's own output on the probe input, so a difference in semantics is a refusal,
never a wrong number.

The bound is for the map with these coefficients in exact arithmetic: each float64
coefficient is within ``δ`` of its exact value (:func:`coefficient_error`), so
``|σ₁(A) − σ₁(Â)| ≤ ‖A − Â‖_F ≤ δ√nnz`` widens the certified bracket of ``σ₁(Â)``
(docs/certificates.md#interpolation).
"""
from __future__ import annotations

import math
from typing import Sequence

import torch

from .certify import dense_matrix_norm
from .plans import U, up

MODES = {"linear": 1, "bilinear": 2, "bicubic": 2, "trilinear": 3}
CUBIC_A = -0.75  # ATen's get_cubic_upsample_coefficients


def source_scale(n: int, m: int, align_corners: bool, scale_factor: float | None) -> float:
    """ATen's ``area_pixel_compute_scale``."""
    if align_corners:
        return (n - 1) / (m - 1) if m > 1 else 0.0
    return 1.0 / scale_factor if scale_factor is not None and scale_factor > 0 else n / m


def _cubic(t: float) -> tuple[float, float, float, float]:
    a = CUBIC_A
    near = lambda x: ((a + 2) * x - (a + 3)) * x * x + 1  # noqa: E731 - |x| ≤ 1
    far = lambda x: ((a * x - 5 * a) * x + 8 * a) * x - 4 * a  # noqa: E731 - 1 < |x| < 2
    return far(t + 1), near(t), near(1 - t), far(2 - t)


def axis_matrix(n: int, m: int, cubic: bool, align_corners: bool, scale_factor: float | None) -> torch.Tensor:
    """The ``(m, n)`` float64 matrix interpolating one axis from ``n`` to ``m`` entries."""
    a = torch.zeros(m, n, dtype=torch.float64)
    if m == n and not cubic:  # ATen copies when the sizes agree
        return torch.eye(n, dtype=torch.float64)
    scale = source_scale(n, m, align_corners, scale_factor)
    for i in range(m):
        src = scale * i if align_corners else scale * (i + 0.5) - 0.5
        src = src if cubic else max(src, 0.0)
        i0 = min(math.floor(src), n - 1)  # ATen's guard_index_and_lambda
        lam = min(max(src - i0, 0.0), 1.0)
        if cubic:
            for offset, w in zip(range(-1, 3), _cubic(lam)):
                a[i, min(max(i0 + offset, 0), n - 1)] += w
        else:
            a[i, i0] += 1.0 - lam
            a[i, i0 + (1 if i0 < n - 1 else 0)] += lam
    return a


def coefficient_error(n: int, m: int) -> float:
    """Bound on ``|coefficient − its exact value|``: the source index is a few rounded operations
    on numbers below ``n + m`` (absolute error ``≤ 4u(n + m)``), the weights are polynomials of
    degree ≤ 3 in its fractional part with derivative ``≤ 3`` on ``[0, 2]`` and
    coefficients ``≤ 8`` (Horner: ``≤ 16u`` each); 4 weights may add into one entry."""
    return 4 * (3 * 4 * U * (n + m + 2) + 16 * 8 * U)


def interpolation_bracket(spatial: Sequence[int], out: Sequence[int], mode: str, align_corners: bool,
                          scale_factors: Sequence[float | None]) -> tuple[float, float, list[torch.Tensor]]:
    """``(lower, upper, matrices)``: a certified bracket of ``Π_k σ₁(A_k)`` and the ``A_k``."""
    cubic = mode == "bicubic"
    lower, upper, mats = 1.0, 1.0, []
    for n, m, s in zip(spatial, out, scale_factors):
        a = axis_matrix(n, m, cubic, align_corners, s)
        lo, hi = dense_matrix_norm(a)
        slack = up(coefficient_error(n, m) * math.sqrt(int((a != 0).sum())), 3)
        lower, upper = lower * max(lo - slack, 0.0) * (1 - 4 * U), up(upper * up(hi + slack), 2)
        mats.append(a)
    return lower, upper, mats


def predict(mats: Sequence[torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    """The interpolation of ``x`` (``(B, C, *spatial)``) by the per-axis matrices, in float64."""
    y = x.detach().to("cpu", torch.float64)
    dims = len(mats)
    for k, a in enumerate(mats):
        y = torch.movedim(torch.tensordot(y, a, dims=([y.dim() - dims + k], [1])), -1, y.dim() - dims + k)
    return y


def check_against(mats: Sequence[torch.Tensor], x: torch.Tensor, out: torch.Tensor, tol: float) -> str | None:
    """Why the description does not reproduce torch's output ``out`` on ``x``; ``None`` if it does."""
    pred = predict(mats, x)
    got = out.detach().to("cpu", torch.float64)
    if tuple(pred.shape) != tuple(got.shape):
        return f"output shape {tuple(got.shape)} differs from the modelled {tuple(pred.shape)}"
    err = float((pred - got).abs().max()) if got.numel() else 0.0
    if not err <= tol * (float(got.abs().max()) + float(x.abs().max()) + 1e-30):
        return f"torch's output differs from the modelled interpolation by {err:.3g}"
    return None
