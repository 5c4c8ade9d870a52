"""Exact top singular value of Miyato's reshape ``Ŵ`` in float64.

``Ŵ`` is the weight reshaped to ``(c_out, c_in/groups · prod(kernel))``
(:func:`harness.layers.reshape_matrix`; Miyato et al., ICLR 2018, §2.1: the matrix SNw
normalises, with ``ConvTranspose2d`` output channels in dim 1). ``‖Ŵ‖₂ = σ₁(Ŵ)`` is computed by LAPACK SVD
(``torch.linalg.matrix_norm(ord=2)``) in float64 on the CPU, after scaling the weight by a
power of two (no under- or overflow): exact up to a backward error of a few ulps times
``‖Ŵ‖``, whatever the weight's dtype, device or scale.
"""
from __future__ import annotations

import math

import torch

from harness.layers import reshape_matrix

from ._spec import as_float64, power_of_two_scaled

#: Number of weight dims per layer kind.
WEIGHT_DIMS = {"linear": 2, "conv1d": 3, "conv2d": 4, "conv_transpose2d": 4}


def reshaped_norm(weight, kind: str = "conv2d") -> float:
    """``‖Ŵ‖₂`` (float64 SVD) of a ``linear``/``conv1d``/``conv2d``/``conv_transpose2d`` weight.

    Raises ``ValueError`` for an unknown kind, a weight with the wrong number of dims
    for the kind, or non-finite entries.
    """
    if kind not in WEIGHT_DIMS:
        raise ValueError(f"kind must be one of {', '.join(WEIGHT_DIMS)}, got {kind!r}")
    w = as_float64(weight)
    if w.dim() != WEIGHT_DIMS[kind]:
        raise ValueError(f"a {kind} weight has {WEIGHT_DIMS[kind]} dims, got shape {tuple(w.shape)}")
    scaled, e, _ = power_of_two_scaled(w)  # no under- or overflow inside the SVD
    return math.ldexp(float(torch.linalg.matrix_norm(reshape_matrix(scaled, kind), ord=2)), e)


def reshaped_norms(weights) -> torch.Tensor:
    """Batched ``‖·‖₂`` of matrices ``[..., m, n]`` in float64: ``torch.linalg.matrix_norm(ord=2)``.

    Returns a float64 CPU tensor of shape ``[...]``; ``ValueError`` for fewer than 2 dims,
    empty matrices or non-finite entries.
    """
    w = as_float64(weights, "weights")
    if w.dim() < 2:
        raise ValueError(f"reshaped_norms needs a batch of matrices [..., m, n], got shape {tuple(w.shape)}")
    return torch.linalg.matrix_norm(w, ord=2)
