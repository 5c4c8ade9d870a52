"""Power iteration through a convolution and its transpose (Ryu et al. 2019; Gouk et al. 2021).

``v ← W̃u/‖W̃u‖``, ``u ← W̃ᵀv/‖W̃ᵀv‖``: the iterate converges to the top right singular vector
and ``‖W̃u‖`` (``u`` a unit vector) is at most ``‖W̃‖`` at every step, approaching it from
below (docs/references.md#ryu2019, §4 "real spectral normalization";
docs/references.md#gouk2021, §4.2, Alg. 2, the transpose applied as a transposed
convolution). lip4conv's version of Ryu et al.'s estimator pads every input by one pixel
on each side and convolves with stride 1 whatever the layer's kernel, padding and stride,
and returns ``⟨W̃'u, v⟩``; :class:`Lip4convPowerIteration` reproduces it as published.
"""
from __future__ import annotations

import zlib

import torch
import torch.nn.functional as F

from .base import Claim, ConvLayer, Estimator


def layer_generator(seed: int, name: str) -> torch.Generator:
    """A generator for an estimator's random start, from a seed and the layer's name (crc32)."""
    return torch.Generator().manual_seed((int(seed) * 1_000_003 + zlib.crc32(name.encode())) % 2 ** 63)


def matrix_power_iteration(a: torch.Tensor, iterations: int, gen: torch.Generator) -> float:
    """``uᵀAv`` after ``iterations`` alternating steps from a random ``v`` (Miyato et al. 2018, App. A)."""
    v = torch.randn(a.shape[1], generator=gen, dtype=a.dtype)
    for _ in range(iterations):
        u = F.normalize(a @ v, dim=0)
        v = F.normalize(a.T @ u, dim=0)
    return float(u @ (a @ v))


class PowerIteration(Estimator):
    """``‖W̃u‖`` after ``iterations`` steps through the layer's own map and its transpose (float32).

    Claim: a lower bound on every layer (any unit ``u`` gives ``‖W̃u‖ ≤ ‖W̃‖``). The transpose
    is the vector-Jacobian product of the layer's map, which is exactly what a transposed
    convolution with the layer's stride, padding and output size computes.
    """

    name = "power_iteration"
    paper = "docs/references.md#ryu2019, §4; docs/references.md#gouk2021, §4.2 Alg. 2"

    def __init__(self, iterations: int = 100, seed: int = 0) -> None:
        self.iterations, self.seed = self.count(iterations), int(seed)

    def claim(self, layer: ConvLayer) -> Claim:
        return Claim("lower", "‖W̃u‖ ≤ ‖W̃‖ for every unit u (Ryu et al. 2019 §4; Gouk et al. 2021 §4.2)")

    def estimate(self, layer: ConvLayer) -> float:
        w = layer.weight.to(self.dtype)
        u = torch.randn((1, *layer.input_shape), generator=layer_generator(self.seed, layer.name), dtype=self.dtype)
        for _ in range(self.iterations):
            v = layer.matvec(u / u.norm(), w)
            u = layer.rmatvec(v / v.norm(), w)
        u = u / u.norm()
        return float(layer.matvec(u, w).norm())


class Lip4convPowerIteration(Estimator):
    """lip4conv's ``compute_ryu_2019``: zero padding (1, 1, 1, 1), stride 1, ``⟨W̃'û, v̂⟩`` (float32).

    Claim: a lower bound, as the power iteration of Ryu et al. 2019 it stands for. It
    iterates another map than the layer's whenever the layer's padding is not one pixel of
    zeros or its stride is not 1, so that claim can fail: a strided layer's norm is at most
    that of its stride-1 map, and this is the stride-1 map's.
    """

    name = "lip4conv_power_iteration"
    paper = "docs/references.md#ryu2019, §4, as in lip4conv's bounds.py (compute_ryu_2019)"

    def __init__(self, iterations: int = 100, seed: int = 0) -> None:
        self.iterations, self.seed = self.count(iterations), int(seed)

    def claim(self, layer: ConvLayer) -> Claim:
        scope = "published as Ryu et al. 2019's power-iteration estimate of the layer's norm"
        if layer.stride != (1, 1) and max(layer.kernel) > 1:
            return Claim("lower", scope, known_miss="it iterates the stride-1 map, whose norm exceeds the "
                                                    "strided layer's")
        return Claim("lower", scope)

    def estimate(self, layer: ConvLayer) -> float:
        w = layer.weight.to(self.dtype)
        pad = (1, 1, 1, 1)
        u = torch.randn((1, *layer.input_shape), generator=layer_generator(self.seed, layer.name), dtype=self.dtype)
        u = u / u.norm()
        for _ in range(self.iterations):
            v = F.conv2d(F.pad(u, pad), w)
            v = v / v.norm()
            u = F.pad(F.conv_transpose2d(v, w), tuple(-p for p in pad))
            u = u / u.norm()
        return float((F.conv2d(F.pad(u, pad), w) * v).sum())
