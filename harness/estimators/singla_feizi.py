"""Singla & Feizi 2021 ("Fantastic Four"): the least of four reshape bounds.

For a kernel ``K`` ``(c_out, c_in, h, w)`` and zero or circular padding, the convolution's
norm is at most ``√(hw)`` times the spectral norm of each of four reshapes
(docs/references.md#singlafeizi2021, §3, Thm. 1): ``R₁`` ``(c_out·h, c_in·w)`` (``K``
permuted to ``(c_out, h, c_in, w)``), ``R₂`` ``(c_out·w, c_in·h)`` (``(c_out, w, h, c_in)``),
``R₃ = Ŵ`` ``(c_out, c_in·h·w)`` and ``R₄`` ``(c_in, c_out·h·w)``. The paper (and its code)
estimate each ``‖R_i‖`` by ``iterations`` power-iteration steps from a random start and
return ``√(hw)·min_i uᵢᵀR_iv_i``, in float32.
"""
from __future__ import annotations

import torch

from .base import NOT_ONE_PERIOD, Claim, ConvLayer, Estimator
from .power_iteration import layer_generator, matrix_power_iteration


def four_reshapes(k: torch.Tensor) -> list[torch.Tensor]:
    """``R₁..R₄`` of Thm. 1 for a kernel ``(c_out, c_in, h, w)``."""
    co, ci, h, w = k.shape
    return [k.permute(0, 2, 1, 3).reshape(co * h, ci * w),
            k.permute(0, 3, 2, 1).reshape(co * w, h * ci),
            k.reshape(co, ci * h * w),
            k.transpose(0, 1).reshape(ci, co * h * w)]


class SinglaFeizi2021(Estimator):
    """``√(hw) · min_i σ̂(R_i)`` with ``σ̂`` from ``iterations`` power-iteration steps (seeded).

    Claim: an upper bound for zero and circular padding (Thm. 1; circular with the kernel
    within the input), any stride (a strided map's outputs are a subset of the stride-1
    map's). The theorem is about the exact ``‖R_i‖``; the paper's power iteration
    approaches each from below, so the computed minimum can be lower.
    """

    name = "singla_feizi2021"
    paper = "docs/references.md#singlafeizi2021, §3 Thm. 1"

    def __init__(self, iterations: int = 50, seed: int = 0) -> None:
        self.iterations, self.seed = self.count(iterations), int(seed)

    def claim(self, layer: ConvLayer) -> Claim:
        if layer.circular and not layer.one_period():
            return NOT_ONE_PERIOD
        return Claim("upper", "Singla & Feizi 2021 §3 Thm. 1")

    def estimate(self, layer: ConvLayer) -> float:
        k = layer.weight.to(self.dtype)
        gen = layer_generator(self.seed, layer.name)
        sigmas = [matrix_power_iteration(r, self.iterations, gen) for r in four_reshapes(k)]
        h, w = layer.kernel
        return float((h * w) ** 0.5 * min(sigmas))
