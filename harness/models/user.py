"""A researcher's own discriminator: loaded only in a defendant, known to the judge layer by layer.

``--model package.module:attr`` names a class or a factory that, called without arguments,
returns a ``torch.nn.Module`` mapping a batch of ``--input-shape`` inputs to ``(N, 1)`` (or
``(N,)``) logits. With ``--num-classes K`` it is a conditional discriminator called as
``D(x, y)``; lipbench's generators are unconditional, so it is trained and observed through
:class:`ClassConditioned`, which passes the class labels ``y_i = i mod K`` (a fixed function
of the position in the batch: deterministic, every class seen).

The trust model (README, "The trust model"): the user's module is code under test. It is
imported and called only in a defendant process (:func:`harness.observe.in_defendant`);
lipbench's own process never imports it. What the judge knows of it is plain data reported
by :func:`describe`: the path, type and geometry (sizes, stride, padding, dilation, groups,
padding mode) of every weight layer, each layer's input shape and the model's other state
keys. From that the judge builds :func:`layers_only`, torch's own layers of the same
geometry at the same paths, on which per-layer claims are measured from the effective
weights a defendant observes. The model's graph (what connects the layers) is not part of
that description: numbers that need it (the network certificate, the model's outputs
recomputed from its layers, gradients at interpolates of the rebuilt critic) are ``n/a``
with :data:`GRAPH_UNKNOWN` as the reason.

:func:`paired_generator` is lipbench's generator for an input shape (the documented
default): Miyato's standard CNN generator for square images of side divisible by 8 and at
least 32, the small DCGAN generator for other sides divisible by 4, an MLP generator for
flat vectors.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any, Mapping

import torch
from torch import nn

from harness.errors import UserError
from harness.layers import WEIGHT_LAYERS

#: Why the judge has no graph of a user's model.
GRAPH_UNKNOWN = ("the judge knows a user's model (--model) layer by layer only: rebuilding its graph would "
                 "mean importing the user's code into lipbench's process")
#: Largest input-shape entry (a typo beyond it).
MAX_SIDE = 4096


class UserModelError(UserError):
    """``--model``/``--input-shape``/``--num-classes`` that cannot be used; the message names the flag."""


@dataclass(frozen=True)
class UserModel:
    """The user's discriminator as plain data: ``target`` (``package.module:attr``), the input
    shape without the batch dimension, the number of classes (0: unconditional) and ``source``,
    a digest of the target module's file (found without importing it): part of the cases'
    settings, hence of their fingerprints, so ``--resume`` never reuses results of other code."""

    target: str
    input_shape: tuple[int, ...]
    num_classes: int = 0
    source: str = ""

    def setting(self) -> dict[str, Any]:
        """The value of the runners' ``user_model`` setting."""
        return {"target": self.target, "input_shape": list(self.input_shape), "num_classes": self.num_classes,
                "source": self.source}

    @classmethod
    def from_setting(cls, value: Mapping[str, Any]) -> "UserModel":
        return cls(str(value["target"]), tuple(int(v) for v in value["input_shape"]), int(value.get("num_classes", 0)),
                   str(value.get("source", "")))


def parse_input_shape(text: str) -> tuple[int, ...]:
    """``C,H,W`` (images) or ``D`` (vectors) as positive integers."""
    try:
        shape = tuple(int(p) for p in text.replace(" ", "").split(","))
    except ValueError:
        shape = ()
    if len(shape) not in (1, 3) or not all(0 < v <= MAX_SIDE for v in shape):
        raise UserModelError(f"--input-shape {text!r}: expected C,H,W (e.g. 3,32,32) or D for vectors, "
                             f"positive integers up to {MAX_SIDE}")
    return shape


class ClassConditioned(nn.Module):
    """A conditional discriminator ``D(x, y)`` called with ``y_i = i mod num_classes``; returns
    its output as ``(N, 1)``."""

    def __init__(self, net: nn.Module, num_classes: int) -> None:
        super().__init__()
        self.net = net
        self.num_classes = int(num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        labels = torch.arange(x.shape[0], device=x.device) % self.num_classes
        return self.net(x, labels).reshape(x.shape[0], -1)


# --- the defendant's side -------------------------------------------------------------------------

def load_discriminator(model: UserModel, seed: int | None = None) -> nn.Module:
    """The user's discriminator, built under ``torch.manual_seed(seed)`` in a forked RNG (runs
    the user's code: call it in a defendant only)."""
    from harness.imports import resolve
    target = resolve(model.target)
    if not callable(target):
        raise UserModelError(f"--model {model.target}: {type(target).__name__} is not a class or a factory")
    with torch.random.fork_rng(devices=[]):
        if seed is not None:
            torch.manual_seed(int(seed))
        built = target()
    if not isinstance(built, nn.Module):
        raise UserModelError(f"--model {model.target}: returned {type(built).__name__}, not a torch.nn.Module")
    return ClassConditioned(built, model.num_classes) if model.num_classes else built


_GEOMETRY = {
    "Linear": ("in_features", "out_features"),
    "Conv1d": ("in_channels", "out_channels", "kernel_size", "stride", "padding", "dilation", "groups",
               "padding_mode"),
    "Conv2d": ("in_channels", "out_channels", "kernel_size", "stride", "padding", "dilation", "groups",
               "padding_mode"),
    "ConvTranspose2d": ("in_channels", "out_channels", "kernel_size", "stride", "padding", "output_padding",
                        "dilation", "groups", "padding_mode"),
}


def _plain(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


def _layer_record(path: str, layer: nn.Module) -> dict[str, Any]:
    kind = next(cls.__name__ for cls in WEIGHT_LAYERS if isinstance(layer, cls))
    args = {key: _plain(getattr(layer, key)) for key in _GEOMETRY[kind]}
    return {"path": path, "type": kind, "args": {**args, "bias": getattr(layer, "bias", None) is not None}}


def describe(model: UserModel, seed: int, methods: tuple[str, ...] = ()) -> dict[str, Any]:
    """What the judge may know of the user's model, as plain data (runs the user's code: in a
    defendant only). Raises :class:`UserModelError` naming the flag when the model is unusable,
    or when one of the built-in ``methods`` (those run beside a variant) refuses one of its
    layers (the method's error names the layer)."""
    from harness import methods as registry
    from harness.observe.verify import covered_layers, layer_shapes
    net = load_discriminator(model, seed)
    for name in methods:
        try:
            registry.get(name).apply(copy.deepcopy(net))
        except Exception as exc:  # noqa: BLE001 - the built-in refuses the model: say which layer
            raise UserModelError(f"--model {model.target}: --against {name} cannot be applied: "
                                 f"{' '.join(str(exc).split())}") from None
    try:
        with torch.no_grad():
            out = net.eval()(torch.zeros((2, *model.input_shape)))
    except Exception as exc:  # noqa: BLE001 - the user's forward rejected the shape
        extra = f" (--num-classes {model.num_classes})" if model.num_classes else ""
        raise UserModelError(f"--model {model.target} rejects --input-shape "
                             f"{','.join(map(str, model.input_shape))}{extra}: {type(exc).__name__}: "
                             f"{' '.join(str(exc).split())}") from None
    if not isinstance(out, torch.Tensor) or out.numel() != 2 or out.shape[0] != 2:
        got = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise UserModelError(f"--model {model.target}: a batch of 2 gives {got}; a discriminator returns "
                             "(N, 1) or (N,) logits")
    layers = covered_layers(net)
    if not layers:
        raise UserModelError(f"--model {model.target}: no Linear, Conv1d, Conv2d or ConvTranspose2d layer for a "
                             "method to constrain")
    if any(path == "" for path, _ in layers):
        raise UserModelError(f"--model {model.target}: the model is a single layer; wrap it in a module")
    shapes, outs = layer_shapes(net, model.input_shape)
    covered = tuple(p + "." for p, _ in layers)
    return {"layers": [_layer_record(p, layer) for p, layer in layers],
            "shapes": {p: list(shapes[p]) for p, _ in layers}, "out_dims": {p: int(outs[p]) for p, _ in layers},
            "keys": [k for k in net.state_dict() if not k.startswith(covered)],
            "parameters": int(sum(p.numel() for p in net.parameters()))}


def _describe_reporting(model: UserModel, seed: int, methods: tuple[str, ...]) -> dict[str, Any]:
    """:func:`describe`, its failure reported as one line of plain data."""
    try:
        return {"described": describe(model, seed, methods)}
    except UserError as exc:
        text = " ".join(str(exc).split())
        return {"error": text if text.startswith("--") else f"--model {model.target}: {text}"}
    except Exception as exc:  # noqa: BLE001 - the user's factory raised
        return {"error": f"--model {model.target}: building it raised {type(exc).__name__}: "
                         f"{' '.join(str(exc).split())}"}


_DESCRIBED: dict[tuple[UserModel, int, tuple[str, ...]], dict[str, Any]] = {}


def check_user_model(model: UserModel, seed: int = 0, methods: tuple[str, ...] = ()) -> dict[str, Any]:
    """:func:`describe` run in a defendant (cached per process); :class:`UserModelError` with its
    one line when the model is unusable (``methods``: built-ins that must apply to it)."""
    from harness.observe import DefendantError, in_defendant
    key = (model, int(seed), tuple(methods))
    if key not in _DESCRIBED:
        try:
            report = in_defendant(_describe_reporting, model, int(seed), tuple(methods), threads=1)
        except DefendantError as exc:
            raise UserModelError(f"--model {model.target}: {str(exc).splitlines()[-1]}") from None
        if "error" in report:
            raise UserModelError(str(report["error"]))
        _DESCRIBED[key] = report["described"]
    return _DESCRIBED[key]


# --- the judge's side -------------------------------------------------------------------------------

_TORCH_LAYERS = {"Linear": nn.Linear, "Conv1d": nn.Conv1d, "Conv2d": nn.Conv2d, "ConvTranspose2d": nn.ConvTranspose2d}


def _torch_layer(record: Mapping[str, Any]) -> nn.Module:
    """torch's own layer of a reported geometry (only the keys :data:`_GEOMETRY` names are read)."""
    kind = record.get("type")
    if kind not in _TORCH_LAYERS:
        raise UserModelError(f"a reported layer has type {kind!r}, not one of {', '.join(_TORCH_LAYERS)}")
    args = record["args"]
    kwargs = {key: tuple(v) if isinstance(v, list) else v for key, v in args.items() if key in _GEOMETRY[kind]}
    return _TORCH_LAYERS[kind](**kwargs, bias=bool(args["bias"]))


def layers_only(description: Mapping[str, Any]):
    """A :class:`~harness.observe.verify.LayersOnly` model: torch's layers of the reported
    geometry at the reported paths (no graph), for per-layer measurements in the judge."""
    from harness.observe.verify import LayersOnly
    root = LayersOnly(GRAPH_UNKNOWN)
    for record in description["layers"]:
        *parents, leaf = str(record["path"]).split(".")
        parent: nn.Module = root
        for name in parents:
            if name not in parent._modules:
                parent.add_module(name, nn.Module())
            parent = parent._modules[name]
        parent.add_module(leaf, _torch_layer(record))
    return root


def layout(description: Mapping[str, Any]) -> dict[str, Any]:
    """The reported layer input shapes, output sizes and other state keys, for
    :func:`harness.observe.verify.make_plan`."""
    return {"shapes": {p: tuple(s) for p, s in description["shapes"].items()},
            "out_dims": dict(description["out_dims"]), "keys": list(description["keys"])}


def paired_generator(input_shape: tuple[int, ...], seed: int | None = None) -> nn.Module:
    """lipbench's generator for ``input_shape`` (the documented default; see the module docstring)."""
    from harness.training.models import DCGANGenerator, MLPGenerator, StandardCNNGenerator
    shape = tuple(input_shape)
    with torch.random.fork_rng(devices=[]):
        if seed is not None:
            torch.manual_seed(int(seed))
        if len(shape) == 1:
            return MLPGenerator(out_dim=shape[0])
        channels, height, width = shape
        if height == width and height % 8 == 0 and height >= 32:
            return StandardCNNGenerator(height, 128, channels)
        if height == width and height % 4 == 0:
            small = height <= 16
            return DCGANGenerator(height, 32 if small else 64, 32 if small else 64, channels)
    raise UserModelError(f"--input-shape {','.join(map(str, shape))}: lipbench pairs a generator only with square "
                         "images of a side divisible by 4 (C,S,S) or with vectors (D)")
