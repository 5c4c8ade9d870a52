"""Delattre, Barthélemy & Allauzen 2024: a Gram-iteration bound for zero padding, any input size.

The zero-padded convolution on any input is a section of the convolution on the whole
grid ``Z²``, whose norm is ``sup_ω σ₁(P(ω))`` over all frequencies. Its Gram matrix is again
a convolution, with the kernel ``K ⋆ K`` (the auto-correlation of the kernel, size
``2k − 1``), and so are the Gram iterates: ``K_{t+1} = K_t ⋆ K_t`` gives the kernel of
``(WWᵀ)^{2^t}`` (docs/references.md#delattre2024, §IV). A symmetric matrix's spectral
norm is at most its largest absolute row sum, which for a convolution is
``max_i Σ_{j,taps} |K_t[i, j, taps]|``; so ``‖W̃‖ ≤ (max_i Σ |K_t[i, ·]|)^{2^{-t}}``, with each
iterate rescaled by its Frobenius norm and the scales carried in logarithms (§IV, the
spectral rescaling of the paper's code). float32 like the reference code, no margin.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from .base import NOT_ONE_PERIOD, Claim, ConvLayer, Estimator


def row_sum_bound(kernel: torch.Tensor, iterations: int) -> torch.Tensor:
    """``(max row sum of |K_t|)^{2^{-t}}`` per output row, ``K_t`` the ``t``-th auto-correlation."""
    k, log_scale = kernel, torch.zeros((), dtype=kernel.dtype)
    for _ in range(iterations):
        norm = torch.linalg.vector_norm(k)
        k = k / norm
        log_scale = 2 * (log_scale + norm.log())
        k = F.conv2d(k, k, padding=(k.shape[-2] - 1, k.shape[-1] - 1))
    power = 2.0 ** -iterations
    return k.abs().sum(dim=(1, 2, 3)) ** power * torch.exp(log_scale * power)


class Delattre2024(Estimator):
    """The row-sum Gram bound of the layer's kernel (input size and stride never enter).

    Claim: an upper bound for zero padding at any input size (§IV), and for circular
    padding whose outputs are one period of the strided map with the kernel within the
    input: the circular map's Gram kernel is the periodisation of ``K ⋆ K``, whose absolute
    row sums are no larger. A strided layer's outputs are a subset of the stride-1 map's.
    """

    name = "delattre2024"
    paper = "docs/references.md#delattre2024, §IV"

    def __init__(self, iterations: int = 4) -> None:
        self.iterations = self.count(iterations)

    def claim(self, layer: ConvLayer) -> Claim:
        if not layer.circular:
            return Claim("upper", "zero padding, any input size: Delattre et al. 2024 §IV")
        if layer.one_period():
            return Claim("upper", "circular padding: the periodised Gram kernel has no larger row sums")
        return NOT_ONE_PERIOD

    def estimate(self, layer: ConvLayer) -> float:
        w = layer.weight.to(self.dtype)
        if w.shape[1] > w.shape[0]:  # as the reference code: transpose when c_in > c_out
            w = w.transpose(0, 1)
        return float(row_sum_bound(w, self.iterations).max())
