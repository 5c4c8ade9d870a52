"""Layer conventions shared by the methods and the exact references.

Two views of a weight layer matter in lipbench (docs/theory.md, "Claims"):

* the reshape ``Ŵ`` of shape ``(c_out, c_in/groups * prod(kernel))``, the matrix that
  Miyato's SN (SNw) normalises (Miyato et al. 2018 §2.1); for ``ConvTranspose`` layers, whose
  weight is stored ``(c_in, c_out/groups, *kernel)``, the output channels are dim 1,
  as in ``torch.nn.utils.parametrizations.spectral_norm(dim=1)``;
* the operator ``W̃``: the layer without its bias as a linear map on inputs of a given
  size (Lin et al. 2021 §2). :class:`LayerGeometry` holds what that map needs besides the
  weight, and :func:`apply_operator` / :func:`apply_adjoint` evaluate it and its
  transpose for an arbitrary weight (the normalised one, a float64 copy, ...).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

#: Layer types whose weight every method knows how to reshape and normalise.
WEIGHT_LAYERS = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.ConvTranspose2d)

#: Modules with a ``weight`` that are not linear maps to normalise (affine scales).
AFFINE_LAYERS = (nn.modules.batchnorm._NormBase, nn.LayerNorm, nn.GroupNorm)


class UnsupportedLayerError(TypeError):
    """A layer type a method or reference cannot handle; the message names the layer."""


@dataclass(frozen=True)
class LayerGeometry:
    """Everything about a layer's linear map except the weight values."""

    kind: str  # "linear", "conv1d", "conv2d" or "conv_transpose2d"
    stride: tuple[int, ...] = ()
    padding: tuple[int, ...] = ()
    dilation: tuple[int, ...] = ()
    output_padding: tuple[int, ...] = ()
    groups: int = 1
    padding_mode: str = "zeros"

    def as_dict(self) -> dict:
        return asdict(self)


def layer_kind(layer: nn.Module, name: str = "") -> str:
    """The geometry kind of ``layer``; :class:`UnsupportedLayerError` names unsupported ones."""
    for cls, kind in ((nn.ConvTranspose2d, "conv_transpose2d"), (nn.Conv2d, "conv2d"),
                      (nn.Conv1d, "conv1d"), (nn.Linear, "linear")):
        if isinstance(layer, cls):
            return kind
    label = f"{name} " if name else ""
    raise UnsupportedLayerError(
        f"layer {label}({type(layer).__name__}) is not supported; lipbench handles "
        + ", ".join(c.__name__ for c in WEIGHT_LAYERS))


def geometry(layer: nn.Module, name: str = "") -> LayerGeometry:
    """The :class:`LayerGeometry` of a supported layer."""
    kind = layer_kind(layer, name)
    if kind == "linear":
        return LayerGeometry(kind="linear")
    padding = layer.padding
    if isinstance(padding, str):  # "same" / "valid" on Conv1d/Conv2d
        padding = _string_padding(padding, layer.kernel_size, layer.dilation)
    return LayerGeometry(
        kind=kind,
        stride=tuple(layer.stride),
        padding=tuple(padding),
        dilation=tuple(layer.dilation),
        output_padding=tuple(getattr(layer, "output_padding", ())),
        groups=layer.groups,
        padding_mode=layer.padding_mode,
    )


def _string_padding(mode: str, kernel: Sequence[int], dilation: Sequence[int]) -> tuple[int, ...]:
    if mode == "valid":
        return tuple(0 for _ in kernel)
    total = [d * (k - 1) for k, d in zip(kernel, dilation)]
    if any(t % 2 for t in total):
        raise UnsupportedLayerError("padding='same' with an even receptive field is asymmetric "
                                    "and not supported")
    return tuple(t // 2 for t in total)


def out_channels_first(weight: torch.Tensor, kind: str) -> torch.Tensor:
    """The weight with output channels in dim 0 (transposes ``ConvTranspose`` weights)."""
    if kind == "conv_transpose2d":
        return weight.transpose(0, 1)
    return weight


def reshape_matrix(weight: torch.Tensor, kind: str) -> torch.Tensor:
    """Miyato's reshape ``Ŵ``: output channels by everything else."""
    w = out_channels_first(weight, kind)
    return w.reshape(w.shape[0], -1)


def swapped_reshape_matrix(weight: torch.Tensor, kind: str) -> torch.Tensor:
    """BSN's second reshape ``Ŵ₂``: input channels by everything else (Lin et al. 2021 §5.1)."""
    w = out_channels_first(weight, kind)
    if w.dim() == 2:
        return w.t()
    return w.transpose(0, 1).reshape(w.shape[1], -1)


def weight_matrix(layer: nn.Module, name: str = "") -> torch.Tensor:
    """``Ŵ`` of a layer's current (effective) weight."""
    return reshape_matrix(layer.weight, layer_kind(layer, name))


def _conv_padding(geom: LayerGeometry) -> tuple[str | tuple[int, ...], tuple[int, ...]]:
    """(pre-padding for F.pad, padding passed to the conv) honouring padding_mode."""
    if geom.padding_mode == "zeros":
        return "", geom.padding
    return geom.padding_mode, tuple(0 for _ in geom.padding)


def apply_operator(geom: LayerGeometry, weight: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """``W̃ x``: the layer's linear map (no bias) applied to a batch ``x``."""
    if geom.kind == "linear":
        return F.linear(x, weight)
    if geom.kind == "conv_transpose2d":
        if geom.padding_mode != "zeros":
            raise UnsupportedLayerError("ConvTranspose2d supports only padding_mode='zeros'")
        return F.conv_transpose2d(x, weight, stride=geom.stride, padding=geom.padding,
                                  output_padding=geom.output_padding, groups=geom.groups,
                                  dilation=geom.dilation)
    mode, padding = _conv_padding(geom)
    if mode:
        pads = [p for p in reversed(geom.padding) for _ in (0, 1)]
        x = F.pad(x, pads, mode=mode)
    conv = F.conv1d if geom.kind == "conv1d" else F.conv2d
    return conv(x, weight, stride=geom.stride, padding=padding, dilation=geom.dilation,
                groups=geom.groups)


def apply_adjoint(geom: LayerGeometry, weight: torch.Tensor, y: torch.Tensor,
                  input_shape: Sequence[int]) -> torch.Tensor:
    """``W̃ᵀ y`` for inputs of ``input_shape`` (batch included), by a vector-Jacobian product.

    The VJP of a linear map is exactly its transpose, and it honours every stride,
    padding mode, dilation and output size without special cases.
    """
    with torch.enable_grad():
        x = torch.zeros(tuple(input_shape), dtype=y.dtype, device=y.device, requires_grad=True)
        out = apply_operator(geom, weight.detach(), x)
        (grad,) = torch.autograd.grad(out, x, grad_outputs=y)
    return grad


def output_shape(geom: LayerGeometry, weight: torch.Tensor, input_shape: Sequence[int]) -> tuple[int, ...]:
    """Shape of ``W̃ x`` for ``x`` of ``input_shape``, computed on the meta device (no arithmetic)."""
    x = torch.empty(tuple(input_shape), device="meta", dtype=weight.dtype)
    return tuple(apply_operator(geom, weight.to("meta"), x).shape)


_STANDARD = ((nn.ConvTranspose2d, ("forward", "_conv_forward")),
             (nn.Conv2d, ("forward", "_conv_forward")),
             (nn.Conv1d, ("forward", "_conv_forward")),
             (nn.Linear, ("forward",)))


def standard_forward(module: nn.Module) -> bool:
    """A ``Linear``/``Conv*`` whose forward is its class's own, without hooks, with a tensor
    ``weight``: it computes with ``module.weight`` (a judge still checks that it does)."""
    for cls, attrs in _STANDARD:
        if isinstance(module, cls):
            same = all(getattr(type(module), a) is getattr(cls, a) for a in attrs)
            return (same and not module._forward_hooks and not module._forward_pre_hooks
                    and isinstance(getattr(module, "weight", None), torch.Tensor))
    return False


def weight_layers(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """The ``(qualified name, layer)`` pairs a method normalises, in module order.

    Raises :class:`UnsupportedLayerError`, naming the layer, for a module that owns a
    ``weight`` parameter and is neither a supported weight layer nor an affine
    normalisation layer (BatchNorm, LayerNorm, GroupNorm).
    """
    found = []
    for name, module in model.named_modules():
        if isinstance(module, WEIGHT_LAYERS):
            layer_kind(module, name)
            found.append((name, module))
        elif isinstance(module, AFFINE_LAYERS):
            continue
        elif _owns_weight(module):
            layer_kind(module, name)  # raises with the layer's name
    return found


def _owns_weight(module: nn.Module) -> bool:
    params = dict(module.named_parameters(recurse=False))
    if "weight" in params:
        return True
    originals = getattr(getattr(module, "parametrizations", None), "weight", None)
    return originals is not None
