"""Delattre, Barthélemy, Araujo & Allauzen 2023: Gram iteration on a circular convolution.

For a matrix ``G₀ = P`` let ``G_{t+1} = G_tᴴG_t``; the singular values of ``G_t`` are
``σ_i(P)^{2^t}``, so ``σ₁(P) ≤ ‖G_t‖_F^{2^{-t}}``, and the bound tightens super-linearly
with ``t`` (docs/references.md#delattre2023, §3, Thm. 1). For a circular convolution the
``P`` are the per-frequency matrices of Sedghi et al. (``rfft2`` of the kernel on the
input grid, half the spectrum), all iterated at once, each rescaled by its Frobenius norm
with the logarithms of the scales carried along (§3, Alg. 3). The bound is the largest
over frequencies. The reference code (lip4conv, orthogonium) runs in float32, has no
stride argument and adds no rounding margin; so does this one.
"""
from __future__ import annotations

import torch

from .base import Claim, ConvLayer, Estimator


def gram_bound(p: torch.Tensor, iterations: int) -> torch.Tensor:
    """``‖G_t‖_F^{2^{-t}}`` per matrix of the batch ``p`` ``(F, m, n)``, with rescaling (no margins)."""
    g = p
    log_scale = torch.zeros(p.shape[0], dtype=p.real.dtype)
    for _ in range(iterations):
        norm = torch.linalg.matrix_norm(g)
        g = g / norm.view(-1, 1, 1)
        log_scale = 2 * (log_scale + norm.log())
        g = g.mH @ g
    power = 2.0 ** -iterations
    return torch.linalg.matrix_norm(g) ** power * torch.exp(log_scale * power)


class GramIteration(Estimator):
    """Delattre et al. 2023's bound on the circular convolution of the layer's kernel on its input grid.

    Claim: an upper bound for circular padding (§3: a guaranteed bound), with a kernel
    within the input (``rfft2`` crops a larger one) and outputs that are one period of
    the strided map: a strided layer's outputs are a subset of the stride-1 map's, which
    has no smaller norm. Zero padding is another map: no claim.
    """

    name = "gram_iteration"
    paper = "docs/references.md#delattre2023, §3 Thm. 1, Alg. 3"

    def __init__(self, iterations: int = 6) -> None:
        self.iterations = self.count(iterations)

    def claim(self, layer: ConvLayer) -> Claim:
        if layer.one_period():
            return Claim("upper", "circular padding: Delattre et al. 2023 §3 Thm. 1 on every frequency")
        return Claim("none", "the bound is for circular convolutions on the input grid")

    def estimate(self, layer: ConvLayer) -> float:
        w = layer.weight.to(self.dtype)
        if w.shape[1] > w.shape[0]:  # iterate the smaller Gram, as the reference code does
            w = w.transpose(0, 1)
        co, ci = w.shape[:2]
        p = torch.fft.rfft2(w, s=layer.in_hw).reshape(co, ci, -1).permute(2, 0, 1)
        return float(gram_bound(p, self.iterations).max())
