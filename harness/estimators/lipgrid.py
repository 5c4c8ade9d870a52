"""Araujo, Negrevergne, Chevaleyre & Atif 2021 (LipGrid): a Toeplitz bound evaluated on a grid.

A convolution with zero padding is a doubly-block Toeplitz operator; its norm is at most
the supremum over frequencies ``ω ∈ [0, 2π]²`` of its generating matrix function
``F(ω)_{ij} = Σ_{p,q} K[i, j, p, q] e^{i(p ω₁ + q ω₂)}``, and bounding ``‖F(ω)‖₂`` by the
Frobenius norm row by row gives ``‖W̃‖ ≤ (Σ_i sup_ω Σ_j |F_{ij}(ω)|²)^{1/2}`` with ``i`` over
the smaller channel side (docs/references.md#araujo2021, §3, Thm. 3). LipGrid takes each
supremum over a grid of ``samples × samples`` frequencies, ``linspace(0, 2π, samples)``
per axis as the authors' code (§4; float32, odd square kernels).
"""
from __future__ import annotations

import math

import torch

from .base import NOT_ONE_PERIOD, Claim, ConvLayer, Estimator


class LipGrid(Estimator):
    """``(Σ_i max_{ω ∈ grid} Σ_j |F_ij(ω)|²)^{1/2}`` over the smaller channel side.

    Claim: an upper bound for odd square kernels (§3-§4; the authors' code rejects other
    kernels), any padding (a circular map's frequencies are a subset of ``[0, 2π]²``) and
    stride (a strided map's outputs are a subset of the stride-1 map's).
    """

    name = "lipgrid"
    paper = "docs/references.md#araujo2021, §3 Thm. 3, §4"

    def __init__(self, samples: int = 50) -> None:
        self.samples = self.count(samples, "sample per axis")

    def claim(self, layer: ConvLayer) -> Claim:
        kh, kw = layer.kernel
        if kh != kw or kh % 2 == 0:
            return Claim("none", f"the paper's code takes odd square kernels, not {kh}x{kw}")
        if layer.circular and not layer.one_period():
            return NOT_ONE_PERIOD
        return Claim("upper", "Araujo et al. 2021 §3 Thm. 3 (LipGrid, §4)")

    def estimate(self, layer: ConvLayer) -> float:
        w = layer.weight.to(self.dtype)
        if w.shape[0] > w.shape[1]:  # rows: the smaller channel side, as the authors' code
            w = w.transpose(0, 1)
        rows, cols, kh, kw = w.shape
        grid = torch.linspace(0, 2 * math.pi, self.samples, dtype=self.dtype)
        taps_h = torch.arange(kh, dtype=self.dtype)
        taps_w = torch.arange(kw, dtype=self.dtype)
        phase = (grid.view(-1, 1, 1, 1) * taps_h.view(1, 1, -1, 1)
                 + grid.view(1, -1, 1, 1) * taps_w.view(1, 1, 1, -1))  # (ω₁, ω₂, p, q)
        flat = phase.reshape(-1, kh * kw).T
        cos, sin = torch.cos(flat), torch.sin(flat)
        step = max(1, 2 ** 22 // (cols * flat.shape[1]))  # rows per chunk: bounded memory, same sums
        total = torch.zeros((), dtype=self.dtype)
        for start in range(0, rows, step):
            ker = w[start:start + step].reshape(-1, kh * kw)
            real = (ker @ cos).view(-1, cols, flat.shape[1])
            imag = (ker @ sin).view(-1, cols, flat.shape[1])
            per_row = (real ** 2 + imag ** 2).sum(1)  # Σ_j |F_ij(ω)|², (rows, grid)
            total = total + per_row.max(dim=1).values.sum()
        return float(total.sqrt())
