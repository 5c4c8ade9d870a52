"""Named layer shapes in suite settings, e.g. ``{kind: conv2d, c_in: 3, c_out: 64, k: 3, stride: 1, padding: 1, hw: 32}``."""
from __future__ import annotations

from typing import Any, Mapping

from torch import nn


def build_layer(spec: Mapping[str, Any]) -> tuple[nn.Module, tuple[int, ...]]:
    """The layer a spec describes and the input shape (with batch 1) it is measured at."""
    kind = spec.get("kind", "conv2d")
    if kind == "linear":
        return nn.Linear(int(spec["c_in"]), int(spec["c_out"])), (1, int(spec["c_in"]))
    args = dict(stride=int(spec.get("stride", 1)), padding=int(spec.get("padding", 0)),
                dilation=int(spec.get("dilation", 1)))
    hw = int(spec["hw"])
    if kind == "conv2d":
        layer = nn.Conv2d(int(spec["c_in"]), int(spec["c_out"]), int(spec["k"]),
                          padding_mode=spec.get("padding_mode", "zeros"), **args)
    elif kind == "conv_transpose2d":
        layer = nn.ConvTranspose2d(int(spec["c_in"]), int(spec["c_out"]), int(spec["k"]), **args)
    else:
        raise ValueError(f"unknown layer kind {kind!r}; use linear, conv2d or conv_transpose2d")
    return layer, (1, int(spec["c_in"]), hw, hw)


def layer_spec(settings: Mapping[str, Any], name: str) -> Mapping[str, Any]:
    """The spec called ``name`` in ``settings['layers']``, with a clear error when absent."""
    layers = settings.get("layers", {})
    if name not in layers:
        raise KeyError(f"layer {name!r} is not defined in the suite's settings.layers "
                       f"(defined: {', '.join(layers) or 'none'})")
    return layers[name]
