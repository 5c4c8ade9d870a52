"""The defendant's side: observe what a method-applied model computes, as plain data.

The judge names what to observe in a *plan* (:func:`harness.observe.verify.make_plan`: the
weight layers of lipbench's own model, the inputs of each and of the model); this module
reads, in the defendant's process:

* every planned layer in each mode of :data:`MODES` (train/eval × autograd on/off), on a
  fresh deep copy per mode so that observing never changes the model that trains: a
  standard layer's effective weight and bias (``layer.weight`` as its forward uses it,
  read inside ``torch.nn.utils.parametrize.cached()`` together with the layer's outputs at
  the judge's inputs), or, for a layer whose forward is not the standard one, its whole
  affine map (its outputs at 0 and at every basis vector, one batched call);
* the model's own outputs at the judge's inputs, *outside* the cache (as training runs);
* :func:`settle`: training steps with a zero learning rate (a training-mode forward with
  autograd, an in-place no-op on every parameter so that anything keyed to a weight update
  sees one, then ``after_step``), what any implementation does in training, repeated until
  its effective weights stop changing or a budget is spent; the judge decides from what it
  reports whether the method settled.

Nothing here is trusted: the judge recomputes every layer's outputs from its reported
weights and the model's outputs from the layers (:mod:`.verify`).
"""
from __future__ import annotations

import copy
import math
from collections import deque
from typing import Any

import torch
from torch import nn
from torch.nn.utils import parametrize

from harness.layers import standard_forward

#: The four ways a model can be run: (name, training mode, autograd enabled).
MODES = (("train+grad", True, True), ("train+no_grad", True, False),
         ("eval+grad", False, True), ("eval+no_grad", False, False))
#: The mode training runs in: the reference the others are compared with.
TRAINING_MODE = "train+grad"

#: :func:`settle`: a method is at rest when, over the last ``SETTLE_WINDOW`` zero-learning-rate
#: steps (checked every ``SETTLE_CHUNK``), its effective weights changed by less than
#: ``SETTLE_RTOL`` (relative) between any two consecutive steps and from the first to the
#: last, and its outputs between consecutive steps by less than ``SETTLE_OUTPUT_RTOL``. A power iteration converges
#: geometrically; over a window of 200 steps its weights still move by more than 1e-6 unless
#: its claim error is below 1e-4 for every rate down to r²⁵ = 0.998 per chunk (the slowest
#: measured on the suites' models, sn_conv's near-degenerate operators); at rest, float32
#: effective weights move by ≤ 2e-7 from step to step (one ulp in some entries). Outputs are
#: small sums with cancellation: at rest they move by ≤ 5e-6 (measured), so 1e-4.
SETTLE_RTOL = 1e-6
SETTLE_CHUNK = 25
SETTLE_WINDOW = 200
SETTLE_OUTPUT_RTOL = 1e-4

def snapshot_of(value: Any) -> torch.Tensor | None:
    """A detached copy of a tensor (what it holds now, whatever later changes it in place); ``None``
    for anything else."""
    return value.detach().clone() if isinstance(value, torch.Tensor) else None


def like(model: nn.Module) -> torch.Tensor:
    """A floating parameter or buffer of ``model`` (its device and dtype); float32 if none."""
    for t in list(model.parameters()) + list(model.buffers()):
        if t.is_floating_point():
            return t
    return torch.empty(0)


def _on(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    t = like(model)
    return x.to(t.device, t.dtype)


def _module(model: nn.Module, path: str) -> nn.Module | None:
    try:
        return model.get_submodule(path) if path else model
    except AttributeError:
        return None


def stored_weight(layer: nn.Module) -> torch.Tensor | None:
    """The weight parameter an optimiser updates (a parametrization's ``original``), if any."""
    plist = getattr(getattr(layer, "parametrizations", None), "weight", None)
    if plist is not None:
        return plist.original
    weight = getattr(layer, "weight", None)
    return weight if isinstance(weight, nn.Parameter) else None


def observe_layer(model: nn.Module, path: str, plan: dict[str, Any]) -> dict[str, Any]:
    """One planned layer in the current mode (call inside ``parametrize.cached()``)."""
    module = _module(model, path)
    probe = plan["probes"][path]
    if module is None:
        return {"how": "missing"}
    if standard_forward(module):
        return {"how": "weight", "weight": snapshot_of(module.weight), "bias": snapshot_of(module.bias),
                "out": module(_on(module, probe)).detach()}
    in_dim = math.prod(probe.shape[1:])
    out_dim = int(plan["out_dims"][path])
    if in_dim * out_dim > int(plan["dense_limit"]):
        return {"how": "forward", "too_large": True, "out": module(_on(model, probe))}
    basis = torch.eye(in_dim, dtype=torch.float64).view(in_dim, *probe.shape[1:])
    batch = torch.cat([torch.zeros_like(basis[:1]), basis, probe.to(torch.float64)])
    out = module(_on(model, batch))
    return {"how": "forward", "zero": out[:1], "basis": out[1:1 + in_dim], "out": out[1 + in_dim:]}


def observe_state(model: nn.Module, keys: list[str]) -> dict[str, Any]:
    """The tensors at the plan's other state keys (``a.b.weight`` read as an attribute, so a
    parametrized one is effective); ``None`` where there is none."""
    out: dict[str, Any] = {}
    for key in keys:
        path, _, attr = key.rpartition(".")
        module = _module(model, path)
        value = getattr(module, attr, None) if module is not None else None
        out[key] = snapshot_of(value)
    return out


def observe_now(model: nn.Module, plan: dict[str, Any], output: bool = True) -> dict[str, Any]:
    """In the model's current mode: its outputs at the judge's inputs (outside the cache, as
    training runs it; a first forward also runs what a method initialises then), then its
    layers and state."""
    record: dict[str, Any] = {}
    if output:
        record["output"] = model(_on(model, plan["inputs"]))
    with parametrize.cached():
        record["layers"] = {p: observe_layer(model, p, plan) for p in plan["paths"]}
        record["state"] = observe_state(model, plan["keys"])
    return record


def observe_modes(model: nn.Module, plan: dict[str, Any], modes=MODES) -> dict[str, Any]:
    """:func:`observe_now` in each mode, each on its own deep copy of ``model`` (which is left
    as it was)."""
    out = {}
    for name, train, grad in modes:
        copied = copy.deepcopy(model)
        copied.train(train)
        with torch.set_grad_enabled(grad):
            out[name] = observe_now(copied, plan)
    return out


def mode_named(name: str):
    """The :data:`MODES` entry called ``name``."""
    return next(m for m in MODES if m[0] == name)


def zero_lr_step(model: nn.Module, method: Any, x: torch.Tensor,
                 plan: dict[str, Any] | None = None) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """A training step that changes no weight: a training-mode forward with autograd (as
    training runs it; its graph is dropped: lipbench's methods and torch's keep no state in
    the backward), an in-place multiplication of every parameter by 1 (exact; it counts as
    an update for anything keyed to one, such as a parametrization's memo of the weight
    version), then ``method.after_step``. Returns the forward's output and, with a ``plan``,
    the effective weights of its standard layers as that forward used them (read inside
    ``parametrize.cached()`` around it)."""
    model.train()
    with torch.enable_grad(), parametrize.cached():
        out = model(_on(model, x)).detach()
        weights = _weights(model, plan) if plan is not None else {}
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(1.0)
    method.after_step(model)
    return out, weights


def _weights(model: nn.Module, plan: dict[str, Any]) -> dict[str, torch.Tensor]:
    """The standard layers' effective weights in the current mode (inside the caller's
    ``parametrize.cached()``: the values the forward just used)."""
    out = {}
    for path in plan["paths"]:
        module = _module(model, path)
        if module is not None and standard_forward(module):
            out[path] = module.weight.detach().clone()
    return out


def relative_change(a: torch.Tensor, b: torch.Tensor) -> float:
    """``‖a − b‖ / ‖b‖`` in float64 (``inf`` for shapes that differ, ``nan`` if not finite)."""
    if a.shape != b.shape:
        return math.inf
    a, b = a.detach().double(), b.detach().double()
    return float((a - b).norm() / b.norm().clamp_min(1e-300))


def weights_change(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> float:
    """The largest relative change of a layer's effective weight from ``b`` to ``a`` (``inf``
    for a layer only one of them has)."""
    return max([relative_change(a[k], b[k]) if k in a else math.inf for k in b]
               + [math.inf for k in a if k not in b] or [0.0])


def settle_changes(report: dict[str, Any]) -> tuple[float, float]:
    """From a :func:`settle` report: the largest relative change of the effective weights
    between any two steps of the window (consecutive, and first to last), and of the model's
    outputs between consecutive steps."""
    trace, outputs = report["trace"], report["outputs"]
    steps = [{k: v[i] for k, v in trace.items()} for i in range(len(outputs))]
    weights = [weights_change(b, a) for a, b in zip(steps, steps[1:])]
    weights.append(weights_change(steps[-1], steps[0]) if steps else math.inf)
    outs = [relative_change(b, a) for a, b in zip(outputs, outputs[1:])]
    return max(weights), max(outs or [0.0])


def settle(model: nn.Module, method: Any, x: torch.Tensor, plan: dict[str, Any], *, budget: int,
           rtol: float = SETTLE_RTOL, chunk: int = SETTLE_CHUNK, window: int = SETTLE_WINDOW,
           output_rtol: float = SETTLE_OUTPUT_RTOL) -> dict[str, Any]:
    """:func:`zero_lr_step` until the method is at rest on these fixed weights, or ``budget`` steps.

    At rest: over the last ``window`` steps, the effective weights (as every step's forward
    used them) changed by less than ``rtol`` (relative) between any two consecutive steps and
    from the first to the last, and the outputs between consecutive steps by less than
    ``output_rtol`` (these alone see layers read through their map); checked every ``chunk``
    steps. Reports the steps taken and the window's weights and outputs, step by step: the
    judge decides (:func:`harness.observe.verify.settled`)."""
    weights: deque[dict[str, torch.Tensor]] = deque(maxlen=window)
    outputs: deque[torch.Tensor] = deque(maxlen=window)
    moves: deque[tuple[float, float]] = deque(maxlen=window - 1)  # between consecutive steps
    steps = 0
    while True:
        for _ in range(chunk):
            out, used = zero_lr_step(model, method, x, plan)
            if weights:
                moves.append((weights_change(used, weights[-1]), relative_change(out, outputs[-1])))
            outputs.append(out)
            weights.append(used)
        steps += chunk
        moved = max([weights_change(weights[-1], weights[0])] + [m[0] for m in moves])
        outs = max([m[1] for m in moves] or [0.0])
        if (steps >= window and moved < rtol and outs < output_rtol) or steps >= budget or math.isnan(moved):
            return {"steps": steps, "outputs": torch.stack(list(outputs)),
                    "trace": {k: torch.stack([w[k] for w in weights]) for k in weights[-1]
                              if all(k in w and w[k].shape == weights[-1][k].shape for w in weights)}}


__all__ = ["MODES", "SETTLE_CHUNK", "SETTLE_OUTPUT_RTOL", "SETTLE_RTOL", "SETTLE_WINDOW", "TRAINING_MODE", "like",
           "mode_named", "observe_layer", "observe_modes", "observe_now", "observe_state", "relative_change", "settle",
           "settle_changes", "snapshot_of", "stored_weight", "weights_change", "zero_lr_step"]
