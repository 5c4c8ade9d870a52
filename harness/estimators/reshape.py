"""The reshape norm ``‖Ŵ‖`` (Miyato et al. 2018) and ``α‖Ŵ‖`` (Tsuzuku et al. 2018).

Miyato et al. normalise the kernel reshaped to ``Ŵ`` ``(c_out, c_in·k_h·k_w)``
(docs/references.md#miyato2018, §2.1 eq. (8); App. A, Algorithm 1 estimates ``‖Ŵ‖`` by
power iteration, here its converged value, a float32 SVD). Every output of the
convolution is ``Ŵ`` applied to one (padded) patch, and every input pixel lies in at most
``α² = ⌈k_h/s_h⌉⌈k_w/s_w⌉`` patches, so ``‖W̃‖ ≤ α‖Ŵ‖`` (docs/references.md#tsuzuku2018,
§4.1; docs/theory.md#alpha); an output whose patch lies inside the unpadded
input gives ``‖Ŵ‖ ≤ ‖W̃‖`` (docs/references.md#lin2021, §4). :func:`harness.exact.alpha_bound`
decides that precondition per layer.
"""
from __future__ import annotations

import torch

from harness.exact import alpha, alpha_bound

from .base import NOT_ONE_PERIOD, Claim, ConvLayer, Estimator


def reshape_norm(layer: ConvLayer, dtype: torch.dtype) -> torch.Tensor:
    """``‖Ŵ‖₂`` in ``dtype`` (an SVD)."""
    w = layer.weight.to(dtype)
    return torch.linalg.matrix_norm(w.reshape(w.shape[0], -1), ord=2)


class MiyatoReshape(Estimator):
    """``‖Ŵ‖₂``, the norm SNw divides by.

    Claim: a lower bound where an output's receptive field lies wholly inside the
    unpadded input (Lin et al. 2021 §4); nothing elsewhere (small inputs, large padding).
    """

    name = "miyato_reshape"
    paper = "docs/references.md#miyato2018, §2.1 eq. (8); lower bound: docs/references.md#lin2021, §4"

    def claim(self, layer: ConvLayer) -> Claim:
        ab = alpha_bound(layer.kernel, layer.stride, padding=layer.padding, input_hw=layer.in_hw,
                         padding_mode=layer.geometry.padding_mode)
        if ab.lower_holds_precondition:
            return Claim("lower", "‖Ŵ‖ ≤ ‖W̃‖: " + ab.reason + " (Lin et al. 2021 §4)")
        return Claim("none", ab.reason)

    def estimate(self, layer: ConvLayer) -> float:
        return float(reshape_norm(layer, self.dtype))


class TsuzukuAlpha(Estimator):
    """``α‖Ŵ‖₂`` with ``α = √(⌈k_h/s_h⌉⌈k_w/s_w⌉)`` from the kernel and stride alone.

    Claim: an upper bound for zero padding, and for circular padding whose outputs are one
    period of the strided map with the kernel within the input (then no pixel is read
    through the wrapped border by more taps than inside).
    """

    name = "tsuzuku_alpha"
    paper = "docs/references.md#tsuzuku2018, §4.1"

    def claim(self, layer: ConvLayer) -> Claim:
        if layer.circular and not layer.one_period():
            return NOT_ONE_PERIOD
        return Claim("upper", "‖W̃‖ ≤ α‖Ŵ‖: each pixel lies in at most α² patches (Tsuzuku et al. 2018)")

    def estimate(self, layer: ConvLayer) -> float:
        return float(alpha(*layer.kernel, layer.stride) * reshape_norm(layer, self.dtype))
