"""Senderovich, Bulatova, Obukhov & Rakhuba 2022: exact singular values of strided circular convolutions.

With stride ``s`` dividing the input size ``n`` (per axis), split the kernel's taps by
residue, ``K_{a,b} = K[:, :, a::s_h, b::s_w]``; the input splits the same way into
``s_h s_w`` sub-images on the ``(n_h/s_h) × (n_w/s_w)`` grid, and the strided map is the sum
of stride-1 circular convolutions of sub-image ``(a, b)`` with ``K_{a,b}``. Its singular
values are those of the ``c_out × (c_in s_h s_w)`` matrices that concatenate the DFTs of
the ``K_{a,b}`` at each frequency of the small grid (docs/references.md#senderovich2022,
§3, Thm. 1; the padding offset permutes the sub-images and multiplies the blocks by unit
phases, which leaves the singular values unchanged). Computed in float64 like
:mod:`.sedghi` (stride 1 is Sedghi et al.'s theorem).
"""
from __future__ import annotations

import numpy as np
import torch

from .base import Claim, ConvLayer, Estimator
from .sedghi import frequency_norms


def polyphase(kernel: np.ndarray, stride: tuple[int, int]) -> np.ndarray:
    """``(c_out, s_h s_w c_in, ⌈k_h/s_h⌉, ⌈k_w/s_w⌉)``: the residue sub-kernels side by side."""
    sh, sw = stride
    co, ci, kh, kw = kernel.shape
    lh, lw = -(-kh // sh), -(-kw // sw)
    padded = np.zeros((co, ci, lh * sh, lw * sw), dtype=kernel.dtype)
    padded[:, :, :kh, :kw] = kernel
    blocks = padded.reshape(co, ci, lh, sh, lw, sw).transpose(0, 3, 5, 1, 2, 4)
    return blocks.reshape(co, sh * sw * ci, lh, lw)


class Senderovich2022(Estimator):
    """``max_u σ₁`` of the polyphase frequency matrices on the layer's input grid.

    Claim: exact for circular padding whose outputs are one period of the strided periodic
    map (``s | n``, ``n/s`` outputs per axis) with the kernel within the input; nothing
    elsewhere (zero padding is another map).
    """

    name = "senderovich2022"
    paper = "docs/references.md#senderovich2022, §3 Thm. 1"
    dtype = torch.float64

    def claim(self, layer: ConvLayer) -> Claim:
        if layer.one_period():
            return Claim("exact", "circular padding, s | n: Senderovich et al. 2022 §3 Thm. 1")
        return Claim("none", "the theorem covers circular padding with s | n and n/s outputs")

    def estimate(self, layer: ConvLayer) -> float:
        (nh, nw), (sh, sw) = layer.in_hw, layer.stride
        if nh % sh or nw % sw:
            raise ValueError(f"layer {layer.name}: stride {layer.stride} does not divide the input {layer.in_hw}")
        kernel = polyphase(layer.weight.to(self.dtype).numpy(), (sh, sw))
        return float(frequency_norms(kernel, (nh // sh, nw // sw)).max())
