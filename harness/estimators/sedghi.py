"""Sedghi, Gupta & Long 2019: the exact singular values of a circular convolution.

A stride-1 circular 2-D convolution on an ``n_h × n_w`` grid is block-diagonalised by the
2-D DFT; its singular values are the union over the ``n_h n_w`` frequencies ``(u, v)`` of
those of ``P(u, v) = Σ_{p,q} K[:, :, p, q] e^{-2πi(pu/n_h + qv/n_w)}`` (``c_out × c_in``)
(docs/references.md#sedghi2019, §2, Thm. 6; the paper's NumPy code: ``np.fft.fft2`` of
the kernel zero-padded to the input size, then ``np.linalg.svd`` per frequency, float64).
"""
from __future__ import annotations

import numpy as np
import torch

from .base import Claim, ConvLayer, Estimator


def frequency_norms(kernel: np.ndarray, grid: tuple[int, int]) -> np.ndarray:
    """Largest singular value of ``P(u, v)`` at every frequency of ``grid``; ``kernel`` ``(c_out, c_in', k_h, k_w)``."""
    transforms = np.fft.fft2(kernel, s=grid, axes=(2, 3)).transpose(2, 3, 0, 1)
    return np.linalg.svd(transforms, compute_uv=False)[..., 0]


class Sedghi2019(Estimator):
    """``max_{u,v} σ₁(P(u, v))`` on the layer's input grid, whatever the layer's padding and stride.

    Claim: exact for circular padding with stride 1 and the kernel no larger than the input
    (Thm. 6 treats the kernel as an ``n × n`` array; ``np.fft.fft2`` crops a larger one).
    Elsewhere it claims nothing: it is the norm of another map.
    """

    name = "sedghi2019"
    paper = "docs/references.md#sedghi2019, §2 Thm. 6"
    dtype = torch.float64

    def claim(self, layer: ConvLayer) -> Claim:
        if layer.one_period() and layer.stride == (1, 1):
            return Claim("exact", "circular padding, stride 1: Sedghi et al. 2019 §2 Thm. 6")
        return Claim("none", "Thm. 6 covers circular padding with stride 1 and a kernel within the input")

    def estimate(self, layer: ConvLayer) -> float:
        kernel = layer.weight.to(self.dtype).numpy()
        return float(frequency_norms(kernel, layer.in_hw).max())
