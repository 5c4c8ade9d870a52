"""Swap a discriminator's weight layers for a family's layers, at the same paths."""
from __future__ import annotations

from typing import Callable

import torch
from torch import nn

from harness.layers import UnsupportedLayerError, layer_kind, weight_layers


def swap_layers(model: nn.Module, build: Callable[[str, nn.Module, str], nn.Module]) -> nn.Module:
    """Replace every weight layer of ``model`` (in place, same path) by ``build(name, layer, kind)``,
    moved to the layer's device and dtype. Every replacement is built before any is set, so a
    layer ``build`` refuses (:class:`~harness.layers.UnsupportedLayerError`, naming it) leaves the
    model as it was."""
    layers = weight_layers(model)  # raises, naming a layer no family supports
    built = []
    for name, layer in layers:
        new = build(name, layer, layer_kind(layer, name))
        built.append((name, new.to(layer.weight.device, layer.weight.dtype)))
    for name, new in built:
        parent, _, child = name.rpartition(".")
        setattr(model.get_submodule(parent) if parent else model, child, new)
    return model


def square(value, what: str, name: str, layer: nn.Module) -> int:
    """The common entry of a per-axis pair (kernel size, stride) that a family needs square."""
    values = tuple(value) if isinstance(value, (tuple, list)) else (value,)
    if len(set(values)) != 1:
        raise UnsupportedLayerError(f"layer {name} ({type(layer).__name__}): the family needs a square "
                                    f"{what}, got {values}")
    return int(values[0])


def with_bias_of(new: nn.Module, layer: nn.Module) -> nn.Module:
    """``new`` with ``layer``'s bias values (the family's layer starts from its own weight init)."""
    if layer.bias is not None and new.bias is not None:
        with torch.no_grad():
            new.bias.copy_(layer.bias)
    return new


__all__ = ["square", "swap_layers", "with_bias_of"]
