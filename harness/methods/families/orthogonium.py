"""``orthogonium_aoc`` and ``orthogonium_aol``: orthogonium's layers (orthogonium 0.0.4; extra
``orthogonium``), swapped in for the discriminator's weight layers at the same paths.

``orthogonium_aoc``: Adaptive Orthogonal Convolutions (Boissin et al. 2025, docs/references.md#boissin2025):
``AdaptiveOrthoConv2d`` (``FastBlockConv2d``: BCOP, Li et al. 2019, docs/references.md#li2019; ``RKOConv2d`` when kernel =
stride; ``BcopRkoConv2d`` otherwise), ``AdaptiveOrthoConvTranspose2d`` and ``OrthoLinear``, each
orthogonalised by a power iteration then ``bjorck_iterations`` Björck steps
(``W ← 1.5W − 0.5WWᵀW``, orthogonium's default 12). Its explicit kernel is orthogonal as a
*circular* convolution; with zero padding orthogonium states the Lipschitz constant stays ≤ 1
but orthogonality is lost at the border (``AdaptiveOrthoConv2d``'s docstring). Hence two claims:

* ``orthogonal=False``: ``operator_spectral_at_most 1`` on any padding;
* ``orthogonal=True``: ``operator_orthogonal tol``, every singular value of every layer's
  operator within ``tol`` of 1. Precondition: every convolution has circular padding (so no
  ``ConvTranspose2d``, which torch pads with zeros only), else the layer is refused by name.
  ``tol`` defaults to 1e-3: orthogonium's own tests bound ``σ_max`` by ``1 + 5e-4`` in float32
  (issue 20 quotes them); Björck's 12 steps from a power-iteration-normalised start leave the
  float32 kernel orthogonal to about 1e-6 (measured, tests/test_families.py), so 1e-3 states the
  library's tolerance with room for float32 rounding, not a tighter one.

``orthogonium_aol``: Almost-Orthogonal Layers (Prach & Lampert, ECCV 2022, Thm 1 and 2,
docs/references.md#prach2022):
``AOLConv2D`` / ``AOLConvTranspose2D`` rescale the kernel by ``(Σ_j |KᵀK|_ij q_j/q_i)^{-1/2}``, which
makes ``‖W̃‖ ≤ 1`` for zero or circular padding and any input size; a linear layer is rescaled
by the same rule on its matrix (a 1×1 kernel). Claim: ``operator_spectral_at_most 1``.
"""
from __future__ import annotations

from dataclasses import replace

import torch
from torch import nn

from orthogonium.layers import OrthoLinear
from orthogonium.layers.conv.AOC.ortho_conv import AdaptiveOrthoConv2d, AdaptiveOrthoConvTranspose2d
from orthogonium.layers.conv.AOL.aol import AOLConv2D, AOLConvTranspose2D, MultiStepAOLReparametrizer
from orthogonium.model_factory.classparam import ClassParam
from orthogonium.reparametrizers import BatchedBjorckOrthogonalization, BatchedPowerIteration, OrthoParams
from torch.nn.utils import parametrize

from harness.layers import UnsupportedLayerError

from ..base import Method
from ..claims import Claim, MethodTags
from .swap import square, swap_layers, with_bias_of

FAMILY_TAGS = MethodTags(replaces_layers=True, needs_input_shape=True, certifies_lipschitz=True)


def _refuse(name: str, layer: nn.Module, why: str):
    raise UnsupportedLayerError(f"layer {name} ({type(layer).__name__}): {why}")


class OrthogoniumAOC(Method):
    """orthogonium's Adaptive Orthogonal Convolutions and OrthoLinear (module docstring)."""

    name = "orthogonium_aoc"
    defaults = {"orthogonal": False, "tol": 1e-3, "bjorck_iterations": 12, "power_iterations": 3}
    claim = Claim("operator_spectral_at_most", 1.0)
    tags = FAMILY_TAGS

    def __init__(self, **params) -> None:
        super().__init__(**params)
        if self.params["orthogonal"]:
            self.claim = Claim("operator_orthogonal", "tol")
            self.tags = replace(FAMILY_TAGS, certifies_lipschitz=False)

    def ortho_params(self) -> OrthoParams:
        return OrthoParams(
            spectral_normalizer=ClassParam(BatchedPowerIteration, power_it_niter=self.params["power_iterations"],
                                           eps=1e-6),
            orthogonalizer=ClassParam(BatchedBjorckOrthogonalization, beta=0.5,
                                      niters=self.params["bjorck_iterations"], pass_through=False))

    def build(self, name: str, layer: nn.Module, kind: str) -> nn.Module:
        bias = layer.bias is not None
        if kind == "linear":
            return with_bias_of(OrthoLinear(layer.in_features, layer.out_features, bias=bias,
                                            ortho_params=self.ortho_params()), layer)
        if kind == "conv1d":
            _refuse(name, layer, "orthogonium has no 1-D orthogonal convolution")
        if self.params["orthogonal"] and layer.padding_mode != "circular":
            _refuse(name, layer, f"an orthogonality claim needs circular padding, the layer pads with "
                                 f"{layer.padding_mode!r} (use orthogonal=False: operator norm at most 1)")
        k = square(layer.kernel_size, "kernel", name, layer)
        s = square(layer.stride, "stride", name, layer)
        d = square(layer.dilation, "dilation", name, layer)
        if k < s:
            _refuse(name, layer, f"kernel {k} smaller than stride {s}: no orthogonal convolution exists")
        if kind == "conv_transpose2d":
            new = AdaptiveOrthoConvTranspose2d(layer.in_channels, layer.out_channels, k, stride=s,
                                               padding=layer.padding, output_padding=layer.output_padding,
                                               groups=layer.groups, bias=bias, dilation=d,
                                               ortho_params=self.ortho_params())
        else:
            new = AdaptiveOrthoConv2d(layer.in_channels, layer.out_channels, k, stride=s, padding=layer.padding,
                                      dilation=d, groups=layer.groups, bias=bias, padding_mode=layer.padding_mode,
                                      ortho_params=self.ortho_params())
        return with_bias_of(new, layer)

    def apply(self, model: nn.Module) -> nn.Module:
        return swap_layers(model, self.build)


class AOLDense(nn.Module):
    """AOL's rescaling of a linear layer's matrix: orthogonium's reparametrizer on it as a 1×1 kernel."""

    def __init__(self, out_features: int, in_features: int) -> None:
        super().__init__()
        self.aol = MultiStepAOLReparametrizer(min(out_features, in_features), groups=1, niter=1)

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        return self.aol(weight[:, :, None, None])[:, :, 0, 0]

    def right_inverse(self, weight: torch.Tensor) -> torch.Tensor:
        return weight


class OrthogoniumAOL(Method):
    """orthogonium's Almost-Orthogonal Layers (module docstring)."""

    name = "orthogonium_aol"
    defaults: dict = {}
    claim = Claim("operator_spectral_at_most", 1.0)
    tags = FAMILY_TAGS

    def build(self, name: str, layer: nn.Module, kind: str) -> nn.Module:
        bias = layer.bias is not None
        if kind == "linear":
            new = nn.Linear(layer.in_features, layer.out_features, bias=bias)
            parametrize.register_parametrization(new, "weight", AOLDense(layer.out_features, layer.in_features))
            return with_bias_of(new, layer)
        if kind == "conv1d":
            _refuse(name, layer, "orthogonium has no 1-D AOL convolution")
        args = dict(stride=layer.stride, padding=layer.padding, dilation=layer.dilation, groups=layer.groups,
                    bias=bias, padding_mode=layer.padding_mode)
        if kind == "conv_transpose2d":
            new = AOLConvTranspose2D(layer.in_channels, layer.out_channels, layer.kernel_size,
                                     output_padding=layer.output_padding, **args)
        else:
            new = AOLConv2D(layer.in_channels, layer.out_channels, layer.kernel_size, **args)
        return with_bias_of(new, layer)

    def apply(self, model: nn.Module) -> nn.Module:
        return swap_layers(model, self.build)


__all__ = ["AOLDense", "OrthogoniumAOC", "OrthogoniumAOL"]
