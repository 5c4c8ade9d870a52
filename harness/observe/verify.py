"""The judge's side: what to observe (a plan), and every number computed from what was observed.

The judge knows the model a case builds (lipbench's own architecture, before any method is
applied: the *plain* model). :func:`make_plan` lists its weight layers (``Linear``,
``Conv1d``, ``Conv2d``, ``ConvTranspose2d``: the layers a per-layer claim covers), the
inputs the judge chooses for each layer and for the model, and the rest of its state.
From a defendant's report (:mod:`.effective`) the judge then

* recomputes each layer's outputs from its reported effective weight and bias (the
  geometry is the plain layer's) and compares them with the outputs the layer produced
  (:func:`layer_differences`): a method that reports one weight and computes with another
  is caught here;
* rebuilds the model as lipbench's plain architecture carrying the observed effective
  weights (a layer observed as a dense affine map carries that map) and compares its
  outputs with the model's own (:func:`model_difference`): hooks, activations or anything
  outside the weight layers that changes what the model computes is caught here;
* measures the claim on the observed layers with the exact references of
  :mod:`harness.methods.measure` (:func:`measure_layers`), compares the modes
  (:func:`mode_differences`) and decides whether a method settled (:func:`settled`).

Tolerances: :data:`CONSISTENCY_RTOL` and :data:`MODES_RTOL`, with their sources.
"""
from __future__ import annotations

import copy
import math
import weakref
from typing import Any, Iterable

import torch
from torch import nn

from harness.layers import AFFINE_LAYERS, WEIGHT_LAYERS, apply_operator, geometry
from harness.methods.claims import Claim
from harness.methods.forward_map import DENSE_LIMIT, ClaimMeasurementError, DenseMap
from harness.methods.measure import ClaimMeasurement, measure_layer

from .effective import (MODES, SETTLE_OUTPUT_RTOL, SETTLE_RTOL, SETTLE_WINDOW, TRAINING_MODE, relative_change,
                        settle_changes)

#: A layer's (and the model's) reported outputs against the judge's float64 recomputation
#: from the reported weights: the defendant computes in float32 (unit roundoff 6e-8; a
#: layer's sums of at most a few thousand products and a few layers' worth of them stay
#: below 1e-5 relative, measured ≤ 2e-7 on the suites' models), so 1e-4 separates rounding
#: from a different weight (a scale of 1 + 1e-3 is ten times above it).
CONSISTENCY_RTOL = 1e-4
#: The effective weights of the four modes once a method has settled: one more power-iteration
#: step changes them by less than the settling tolerance (1e-6 per chunk), the built-ins
#: by ≤ 1.6e-7; the contract's train/eval tolerance before this one was the same 1e-4.
MODES_RTOL = 1e-4


class Unobservable(Exception):
    """A layer or model the judge cannot read from the report (the message says why)."""


class LayersOnly(nn.Module):
    """A plain model known layer by layer only (a user's ``--model``: torch's layers of the
    reported geometry at the reported paths, :func:`harness.models.user.layers_only`): per-layer
    measurements work on it; what needs the graph raises :class:`Unobservable` with ``reason``."""

    def __init__(self, reason: str) -> None:
        super().__init__()
        self.reason = reason

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        raise Unobservable(self.reason)


def graph_known(plain: nn.Module) -> bool:
    """Whether the judge can run ``plain`` as a whole (not a :class:`LayersOnly`)."""
    return not isinstance(plain, LayersOnly)


# --- plans ------------------------------------------------------------------------------------

def covered_layers(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """``(path, layer)`` of every weight layer of a plain model, in module order (a layer's
    descendants are part of it)."""
    found: list[tuple[str, nn.Module]] = []
    for path, module in model.named_modules():
        if any(path.startswith(p + ".") for p, _ in found):
            continue
        if isinstance(module, WEIGHT_LAYERS) and not isinstance(module, AFFINE_LAYERS):
            found.append((path, module))
    return found


def layer_shapes(model: nn.Module, input_shape) -> tuple[dict[str, tuple], dict[str, int]]:
    """Each covered layer's input shape (no batch) and output size, from one forward of zeros."""
    shapes: dict[str, tuple] = {}
    outs: dict[str, int] = {}
    handles = []
    for path, layer in covered_layers(model):
        def record(mod, args, out, path=path):
            shapes.setdefault(path, tuple(args[0].shape[1:]))
            outs.setdefault(path, int(out[0].numel()))
        handles.append(layer.register_forward_hook(record))
    try:
        with torch.no_grad():
            model.eval()
            model(torch.zeros((1, *tuple(input_shape)), dtype=next(model.parameters()).dtype))
    finally:
        for h in handles:
            h.remove()
    return shapes, outs


def make_plan(plain: nn.Module, input_shape, seed: int, inputs: torch.Tensor | None = None,
              n_inputs: int = 4, n_probes: int = 2, dense_limit: int = DENSE_LIMIT,
              layout: dict[str, Any] | None = None) -> dict[str, Any]:
    """What a defendant observes on a method-applied copy of ``plain`` (plain data): the covered
    layers' paths, float32 Gaussian inputs per layer (``probes``) and for the model
    (``inputs``, or the given ones), the other state keys and the layers' sizes. ``layout``:
    the layers' input shapes, output sizes and the other state keys as reported for a
    :class:`LayersOnly` model (else measured here with one forward of ``plain``)."""
    gen = torch.Generator().manual_seed(int(seed))
    paths = [p for p, _ in covered_layers(plain)]
    covered = tuple(p + "." for p in paths)
    if layout is not None:
        shapes, outs, keys = layout["shapes"], layout["out_dims"], list(layout["keys"])
    else:
        shapes, outs = layer_shapes(plain, input_shape)
        keys = [k for k in plain.state_dict() if not k.startswith(covered)]
    if inputs is None:
        inputs = torch.randn((n_inputs, *tuple(input_shape)), generator=gen)
    return {"paths": paths,
            "probes": {p: torch.randn((n_probes, *shapes[p]), generator=gen) for p in paths},
            "inputs": inputs.detach().to("cpu", torch.float32),
            "keys": keys,
            "shapes": {p: list(shapes[p]) for p in paths}, "out_dims": outs, "dense_limit": int(dense_limit)}


# --- one layer -----------------------------------------------------------------------------------

def _tensor(value: Any, what: str) -> torch.Tensor:
    if not isinstance(value, torch.Tensor):
        raise Unobservable(f"{what} was not reported")
    return value.detach().to("cpu", torch.float64)


def layer_map(path: str, layer: nn.Module, rec: dict[str, Any], shape) -> tuple[str, Any]:
    """``("weight", (weight, bias))`` or ``("forward", DenseMap)`` of one observed layer (float64;
    ``layer`` is the plain layer, ``shape`` its input shape without batch)."""
    how = rec.get("how")
    if how == "missing":
        raise Unobservable(f"layer {path!r} is not in the model the method returned (a method may "
                           "replace a layer's module, but at the same path)")
    if how == "weight":
        weight = _tensor(rec.get("weight"), f"layer {path!r}'s weight")
        if tuple(weight.shape) != tuple(layer.weight.shape):
            raise Unobservable(f"layer {path!r}'s effective weight has shape {tuple(weight.shape)}, "
                               f"the layer's is {tuple(layer.weight.shape)}")
        bias = rec.get("bias")
        return "weight", (weight, None if bias is None else _tensor(bias, f"layer {path!r}'s bias"))
    if how == "forward":
        if rec.get("too_large"):
            raise Unobservable(f"layer {path!r} does not compute with a standard forward and its map is "
                               "too large to observe densely")
        zero = _tensor(rec.get("zero"), f"layer {path!r}'s output at 0")
        basis = _tensor(rec.get("basis"), f"layer {path!r}'s map")
        matrix = (basis - zero).reshape(basis.shape[0], -1).t()
        return "forward", DenseMap(layer, matrix, zero, shape, path, rec["basis"].dtype)
    raise Unobservable(f"layer {path!r}: nothing usable was reported")


def expected_output(layer: nn.Module, found: tuple[str, Any], probe: torch.Tensor) -> torch.Tensor:
    """The layer's output at ``probe`` (float64) recomputed from what was observed."""
    how, value = found
    x = probe.to(torch.float64)
    if how == "weight":
        weight, bias = value
        out = apply_operator(geometry(layer), weight, x)
        if bias is not None:
            out = out + bias.view(1, -1, *([1] * (out.dim() - 2)))
        return out
    return (value.apply(x.flatten(1)) + value.zero.flatten(1)).view(x.shape[0], *value.zero.shape[1:])


def _layers(plain: nn.Module) -> dict[str, nn.Module]:
    return dict(covered_layers(plain))


def layer_differences(plain: nn.Module, plan: dict[str, Any], record: dict[str, Any]) -> dict[str, float]:
    """Per layer: the relative difference between its reported outputs at the judge's inputs and
    the outputs its reported weight (or map) gives; ``inf`` for a layer that cannot be read."""
    layers = _layers(plain)
    out = {}
    for path in plan["paths"]:
        rec = record["layers"].get(path, {})
        try:
            found = layer_map(path, layers[path], rec, plan["shapes"][path])
            got = _tensor(rec.get("out"), f"layer {path!r}'s outputs")
        except Unobservable:
            out[path] = math.inf
            continue
        want = expected_output(layers[path], found, plan["probes"][path])
        out[path] = relative_change(got.reshape(want.shape), want) if got.numel() == want.numel() else math.inf
    return out


# --- the claim ---------------------------------------------------------------------------------

_CARRIERS: "weakref.WeakKeyDictionary[nn.Module, nn.Module]" = weakref.WeakKeyDictionary()


def _carrying(layer: nn.Module, weight: torch.Tensor) -> nn.Module:
    """A float64 copy of the plain ``layer`` (made once per layer) carrying ``weight``."""
    carrier = _CARRIERS.get(layer)
    if carrier is None:
        carrier = _CARRIERS[layer] = copy.deepcopy(layer).to(torch.float64)
    carrier.weight = nn.Parameter(weight, requires_grad=False)
    return carrier

def measure_layers(claim: Claim, target: float, plain: nn.Module, plan: dict[str, Any],
                   record: dict[str, Any]) -> list[ClaimMeasurement]:
    """The claim on every observed layer (exact float64 references); a layer that cannot be
    read raises :class:`Unobservable`, one whose map does not fit its geometry
    :class:`~harness.methods.forward_map.ClaimMeasurementError`."""
    layers = _layers(plain)
    found = []
    for path in plan["paths"]:
        layer, shape = layers[path], tuple(plan["shapes"][path])
        how, value = layer_map(path, layer, record["layers"].get(path, {}), shape)
        if how == "weight":
            found.append(measure_layer(path, _carrying(layer, value[0]), "weight", claim.quantity, claim.kind,
                                       target, shape))
        else:
            found.append(measure_layer(path, layer, "forward", claim.quantity, claim.kind, target, shape, fmap=value))
    return found


# --- the whole model -----------------------------------------------------------------------------

class _DenseAffine(nn.Module):
    """``x ↦ M x + f(0)``: an observed layer's affine map in the judge's rebuilt model (one node
    of Lipschitz constant ``‖M‖₂`` for :mod:`harness.exact`'s network bounds)."""

    def __init__(self, dense: DenseMap) -> None:
        super().__init__()
        self.dense = dense

    @property
    def lipschitz_constant(self) -> float:
        return self.dense.operator_norm()[0]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        zero = self.dense.zero
        out = x.to(torch.float64).flatten(1) @ self.dense.matrix().t() + zero.flatten(1)
        return out.view(x.shape[0], *zero.shape[1:])


def rebuild(plain: nn.Module, plan: dict[str, Any], record: dict[str, Any]) -> nn.Module:
    """A float64 copy of the plain model carrying the observed effective weights (and maps, and
    the rest of the observed state), in eval mode: what the method-applied model computes, if
    :func:`model_difference` says it is; :class:`Unobservable` for a :class:`LayersOnly`)."""
    if not graph_known(plain):
        raise Unobservable(plain.reason)
    model = copy.deepcopy(plain).to(torch.float64).eval()
    layers = _layers(model)
    for path in plan["paths"]:
        how, value = layer_map(path, layers[path], record["layers"].get(path, {}), tuple(plan["shapes"][path]))
        if how == "forward":
            parent, _, child = path.rpartition(".")
            setattr(model.get_submodule(parent) if parent else model, child, _DenseAffine(value))
            continue
        weight, bias = value
        layers[path].weight = nn.Parameter(weight, requires_grad=False)
        if (bias is None) != (layers[path].bias is None):
            raise Unobservable(f"layer {path!r} {'lost' if bias is None else 'gained'} its bias")
        if bias is not None:
            layers[path].bias = nn.Parameter(bias.reshape(layers[path].bias.shape), requires_grad=False)
    state = model.state_dict()
    for key in plan["keys"]:
        value = record["state"].get(key)
        if value is None or key not in state or tuple(value.shape) != tuple(state[key].shape):
            raise Unobservable(f"the model's {key} was not reported as lipbench's model has it")
        with torch.no_grad():
            state[key].copy_(value.to(state[key].dtype))
    return model


def model_difference(plain: nn.Module, plan: dict[str, Any], record: dict[str, Any]) -> float:
    """Relative difference between the model's reported outputs at the judge's inputs and the
    outputs of :func:`rebuild` (``inf`` when the report cannot be rebuilt)."""
    try:
        model = rebuild(plain, plan, record)
        got = _tensor(record.get("output"), "the model's outputs")
    except Unobservable:
        return math.inf
    with torch.no_grad():
        want = model(plan["inputs"].to(torch.float64))
    return relative_change(got.reshape(want.shape), want) if got.numel() == want.numel() else math.inf


# --- modes and settling ------------------------------------------------------------------------

def _effective(plain: nn.Module, plan: dict[str, Any], record: dict[str, Any]) -> dict[str, torch.Tensor]:
    layers = _layers(plain)
    out = {}
    for path in plan["paths"]:
        try:
            how, value = layer_map(path, layers[path], record["layers"].get(path, {}), tuple(plan["shapes"][path]))
        except Unobservable:
            continue
        out[path] = value[0] if how == "weight" else value.matrix()
    if isinstance(record.get("output"), torch.Tensor):
        out["(model output)"] = record["output"]
    return out


def mode_differences(plain: nn.Module, plan: dict[str, Any],
                     records: dict[str, dict[str, Any]]) -> list[tuple[str, str, str, float]]:
    """``(mode, reference mode, layer, relative difference)`` for every mode whose effective
    weights (or model outputs) differ from the training mode's by more than :data:`MODES_RTOL`."""
    reference = _effective(plain, plan, records[TRAINING_MODE])
    found = []
    for name, _, _ in MODES:
        if name == TRAINING_MODE or name not in records:
            continue
        other = _effective(plain, plan, records[name])
        for path, value in reference.items():
            rel = relative_change(other[path], value) if path in other else math.inf
            if not rel <= MODES_RTOL:
                found.append((name, TRAINING_MODE, path, rel))
    return found


def settled(report: dict[str, Any]) -> tuple[bool, float, int]:
    """``(at rest, largest relative change of its weights over the window and between steps,
    steps)`` of a :func:`harness.observe.effective.settle` report, recomputed here: at rest
    when, after a whole window, weights and outputs moved less than the settling tolerances."""
    weights, outputs = settle_changes(report)
    steps = int(report["steps"])
    rest = steps >= SETTLE_WINDOW == len(report["outputs"]) and weights < SETTLE_RTOL and outputs < SETTLE_OUTPUT_RTOL
    return bool(rest), max(weights, outputs * SETTLE_RTOL / SETTLE_OUTPUT_RTOL), steps


def worst(values: Iterable[float]) -> float:
    """The largest value (``inf`` beats everything, NaN counts as ``inf``); NaN for none."""
    values = [math.inf if math.isnan(v) else v for v in values]
    return max(values) if values else math.nan


__all__ = ["CONSISTENCY_RTOL", "LayersOnly", "MODES_RTOL", "Unobservable", "covered_layers", "graph_known", "expected_output",
           "layer_differences", "layer_map", "layer_shapes", "make_plan", "measure_layers",
           "mode_differences", "model_difference", "rebuild", "settled", "worst", "ClaimMeasurementError"]
