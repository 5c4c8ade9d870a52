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
* :func:`settle`: training steps with a zero learning rate (forward, backward, an in-place
  no-op on every parameter so that anything keyed to a weight update sees one, then
  ``after_step``), what any implementation does in training, repeated until its outputs and
  effective weights stop changing or a budget is spent; the judge decides from what it
  reports whether the method settled.

Nothing here is trusted: the judge recomputes every layer's outputs from its reported
weights and the model's outputs from the layers (:mod:`.verify`).
"""
from __future__ import annotations

import copy
import math
from typing import Any, Iterator

import torch
from torch import nn
from torch.nn.utils import parametrize

#: The four ways a model can be run: (name, training mode, autograd enabled).
MODES = (("train+grad", True, True), ("train+no_grad", True, False),
         ("eval+grad", False, True), ("eval+no_grad", False, False))
#: The mode training runs in: the reference the others are compared with.
TRAINING_MODE = "train+grad"

_STANDARD = ((nn.ConvTranspose2d, ("forward", "_conv_forward")),
             (nn.Conv2d, ("forward", "_conv_forward")),
             (nn.Conv1d, ("forward", "_conv_forward")),
             (nn.Linear, ("forward",)))


def standard_forward(module: nn.Module) -> bool:
    """A ``Linear``/``Conv*`` whose forward is its class's own, without hooks: it computes
    with ``module.weight`` (the judge checks that it does)."""
    for cls, attrs in _STANDARD:
        if isinstance(module, cls):
            same = all(getattr(type(module), a) is getattr(cls, a) for a in attrs)
            return (same and not module._forward_hooks and not module._forward_pre_hooks
                    and isinstance(getattr(module, "weight", None), torch.Tensor))
    return False


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


def observe_layer(model: nn.Module, path: str, plan: dict[str, Any]) -> dict[str, Any]:
    """One planned layer in the current mode (call inside ``parametrize.cached()``)."""
    module = _module(model, path)
    probe = plan["probes"][path]
    if module is None:
        return {"how": "missing"}
    if standard_forward(module):
        return {"how": "weight", "weight": module.weight, "bias": module.bias,
                "out": module(_on(module, probe))}
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
        out[key] = value if isinstance(value, torch.Tensor) else None
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


def zero_lr_step(model: nn.Module, method: Any, x: torch.Tensor) -> torch.Tensor:
    """A training step that changes no weight: a training-mode forward with autograd and its
    backward, an in-place multiplication of every parameter by 1 (exact; it counts as an
    update for anything keyed to one, such as a parametrization's memo of the weight
    version), then ``method.after_step``. Returns the forward's output."""
    model.train()
    with torch.enable_grad():
        out = model(_on(model, x))
        if out.requires_grad:
            out.double().sum().backward()
    with torch.no_grad():
        for p in model.parameters():
            p.grad = None
            p.mul_(1.0)
    method.after_step(model)
    return out.detach()


def _weights(model: nn.Module, plan: dict[str, Any]) -> dict[str, torch.Tensor]:
    """The standard layers' effective weights as training reads them (train mode, autograd)."""
    out = {}
    model.train()
    with torch.enable_grad(), parametrize.cached():
        for path in plan["paths"]:
            module = _module(model, path)
            if module is not None and standard_forward(module):
                out[path] = module.weight.detach().clone()
    return out


def _change(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> float:
    return max([relative_change(a[k], b[k]) for k in a if k in b] or [0.0])


def relative_change(a: torch.Tensor, b: torch.Tensor) -> float:
    """``‖a − b‖ / ‖b‖`` in float64 (``inf`` for shapes that differ, ``nan`` if not finite)."""
    if a.shape != b.shape:
        return math.inf
    a, b = a.detach().double(), b.detach().double()
    return float((a - b).norm() / b.norm().clamp_min(1e-300))


def steps_changes(outputs: list[torch.Tensor]) -> Iterator[float]:
    """Relative changes between consecutive outputs and between the first and the last."""
    for a, b in zip(outputs, outputs[1:]):
        yield relative_change(a, b)
    if len(outputs) > 1:
        yield relative_change(outputs[0], outputs[-1])


def settle(model: nn.Module, method: Any, x: torch.Tensor, plan: dict[str, Any], *, rtol: float,
           chunk: int, budget: int) -> dict[str, Any]:
    """:func:`zero_lr_step` in chunks of ``chunk`` until, over a chunk, the steps' outputs and
    the effective weights change by less than ``rtol`` (relative), or ``budget`` steps.

    Reports the steps taken, the last chunk's outputs and the effective weights at the end
    of the last two chunks; the judge decides (:func:`harness.observe.verify.settled`)."""
    before = _weights(model, plan)
    steps = 0
    while True:
        outputs = [zero_lr_step(model, method, x) for _ in range(chunk)]
        steps += chunk
        after = _weights(model, plan)
        change = max([_change(after, before), *steps_changes(outputs)])
        if not change >= rtol or steps >= budget:  # settled, not finite, or out of budget
            return {"steps": steps, "outputs": outputs, "before": before, "after": after}
        before = after


__all__ = ["MODES", "TRAINING_MODE", "like", "mode_named", "observe_layer", "observe_modes", "observe_now",
           "observe_state", "relative_change", "settle", "standard_forward", "steps_changes", "zero_lr_step"]
