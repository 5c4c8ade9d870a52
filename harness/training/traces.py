"""Per-layer traces of a discriminator during training, as long rows ``series, step, value``.

Series (``<layer>`` is the qualified name from :func:`harness.layers.weight_layers`):

* ``loss_d``, ``loss_g``, ``penalty``: the losses of the iteration (D's from its last D step);
* ``grad_norm/<layer>``: ``‖∇L_D‖`` (Frobenius) w.r.t. the layer's *unconstrained* parameter,
  read from ``.grad`` after the iteration's last D step (``L_D`` = loss + penalty): for a
  parametrized layer that is ``parametrizations.weight.original``, the tensor Adam updates;
  otherwise ``weight`` (Lin et al. 2021 Figs. 2, 12, 13 plot per-layer gradient norms);
* ``grad_norm_effective/<layer>`` (opt-in): ``‖∇_{W_eff} L_D‖`` w.r.t. the effective
  (normalised) weight the forward pass uses, the ``∇_{w_t}`` of Lin et al. 2021 Prop. 1, recomputed
  on the last D step's batch without the penalty;
* ``sigma_reshaped/<layer>``: ``‖Ŵ‖₂`` of the effective weight, float64
  ``torch.linalg.matrix_norm(ord=2)`` (Miyato et al. 2018 App. C.1, Fig. 9);
* ``variance/<layer>`` and ``variance_bound/<layer>``: the variance of the effective weight's
  entries (population variance, float64) next to Lin et al. 2021 Thm 2's ``1 / max(m, n)`` for
  ``Ŵ ∈ R^{m×n}`` (Lin et al. 2021 Fig. 7);
* ``operator_norm/<layer>`` (opt-in, expensive): ``operator_norm(layer, input_shape)`` from the
  caller (e.g. built on ``harness.exact``); ``input_shape`` is the layer's per-sample input
  shape without the batch dimension, e.g. ``(C, H, W)``, recorded by a forward hook.

Effective weights are read with D in eval mode, inside a forked RNG, and every buffer of D
(power-iteration ``u``/``v``) is restored afterwards: tracing never changes the trajectory.
"""
from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Iterator, Sequence

import torch
from torch import nn
from torch.nn.utils import parametrize

from ..layers import layer_kind, reshape_matrix, weight_layers

OperatorNorm = Callable[[nn.Module, tuple], float]


@dataclass
class TraceContext:
    """What a collector may look at after iteration ``step`` (1-based count of G updates)."""

    step: int
    G: nn.Module
    D: nn.Module
    loss: Any  # harness.training.losses.GANLoss
    real: torch.Tensor
    fake: torch.Tensor
    losses: dict[str, float]
    input_shapes: dict[str, tuple]
    operator_norm: OperatorNorm | None = None


Collector = Callable[[TraceContext], Iterable[tuple[str, float]]]


def unconstrained_weight(layer: nn.Module) -> torch.Tensor:
    """The parameter the optimiser updates for ``layer.weight``: the parametrization's
    ``original`` when the weight is parametrized, else ``weight`` itself."""
    if parametrize.is_parametrized(layer, "weight"):
        plist = layer.parametrizations.weight
        if hasattr(plist, "original"):
            return plist.original
        return plist.original0  # right_inverse returned a tuple: first tensor
    return layer.weight


def collect_losses(ctx: TraceContext) -> Iterator[tuple[str, float]]:
    for key in ("loss_d", "loss_g", "penalty"):
        if key in ctx.losses:
            yield key, float(ctx.losses[key])


def collect_grad_norm(ctx: TraceContext) -> Iterator[tuple[str, float]]:
    for name, layer in weight_layers(ctx.D):
        g = unconstrained_weight(layer).grad
        yield f"grad_norm/{name}", float(g.detach().double().norm()) if g is not None else math.nan


def collect_grad_norm_effective(ctx: TraceContext) -> Iterator[tuple[str, float]]:
    layers = weight_layers(ctx.D)
    with torch.enable_grad(), parametrize.cached():
        weights = [layer.weight for _, layer in layers]
        loss = ctx.loss.d_loss(ctx.D(ctx.real), ctx.D(ctx.fake))
        grads = torch.autograd.grad(loss, weights, allow_unused=True)
    for (name, _), g in zip(layers, grads):
        yield f"grad_norm_effective/{name}", float(g.double().norm()) if g is not None else math.nan


def collect_sigma_reshaped(ctx: TraceContext) -> Iterator[tuple[str, float]]:
    for name, layer in weight_layers(ctx.D):
        w = reshape_matrix(layer.weight.detach().double(), layer_kind(layer, name))
        yield f"sigma_reshaped/{name}", float(torch.linalg.matrix_norm(w, ord=2))


def collect_variance(ctx: TraceContext) -> Iterator[tuple[str, float]]:
    for name, layer in weight_layers(ctx.D):
        w = layer.weight.detach().double()
        m, n = reshape_matrix(w, layer_kind(layer, name)).shape
        yield f"variance/{name}", float(w.var(correction=0))
        yield f"variance_bound/{name}", 1.0 / max(m, n)


def collect_operator_norm(ctx: TraceContext) -> Iterator[tuple[str, float]]:
    if ctx.operator_norm is None:
        raise ValueError("trace 'operator_norm' needs operator_norm=callable(layer, input_shape)")
    for name, layer in weight_layers(ctx.D):
        shape = ctx.input_shapes.get(name)
        value = float(ctx.operator_norm(layer, shape)) if shape is not None else math.nan
        yield f"operator_norm/{name}", value


COLLECTORS: dict[str, Collector] = {
    "losses": collect_losses,
    "grad_norm": collect_grad_norm,
    "grad_norm_effective": collect_grad_norm_effective,
    "sigma_reshaped": collect_sigma_reshaped,
    "variance": collect_variance,
    "operator_norm": collect_operator_norm,
}
#: Collected when ``trace_every > 0`` and no list is given (``operator_norm`` is added when a
#: callable is passed; ``grad_norm_effective`` costs a forward/backward and is opt-in).
DEFAULT_TRACES = ("losses", "grad_norm", "sigma_reshaped", "variance")


@contextlib.contextmanager
def preserved(module: nn.Module) -> Iterator[None]:
    """Eval mode, forked RNG, and all buffers restored on exit (observation without side effects)."""
    modes = {m: m.training for m in module.modules()}
    saved = {k: v.detach().clone() for k, v in module.named_buffers()}
    devices = sorted({b.device.index or 0 for b in saved.values() if b.is_cuda}
                     | {p.device.index or 0 for p in module.parameters() if p.is_cuda})
    try:
        with torch.random.fork_rng(devices=devices):
            module.eval()
            yield
    finally:
        with torch.no_grad():
            for k, v in module.named_buffers():
                if k in saved and v.shape == saved[k].shape:
                    v.copy_(saved[k])
        for m, mode in modes.items():
            m.training = mode


class Tracer:
    """Runs collectors every ``every`` iterations and accumulates rows ``series, step, value``."""

    def __init__(self, collectors: Sequence[str | Collector] = DEFAULT_TRACES, every: int = 1,
                 operator_norm: OperatorNorm | None = None) -> None:
        names = list(collectors)
        if operator_norm is not None and "operator_norm" not in names:
            names.append("operator_norm")
        self.collectors: list[Collector] = []
        for c in names:
            if isinstance(c, str):
                if c not in COLLECTORS:
                    raise KeyError(f"unknown trace {c!r}; available: {', '.join(COLLECTORS)}")
                c = COLLECTORS[c]
            self.collectors.append(c)
        self.every, self.operator_norm = int(every), operator_norm
        self.input_shapes: dict[str, tuple] = {}
        self._hooks: list[Any] = []

    def attach(self, D: nn.Module) -> None:
        """Record each weight layer's per-sample input shape on D's forwards."""
        self.detach()
        for name, layer in weight_layers(D):
            def hook(mod, args, _name=name):
                if args and isinstance(args[0], torch.Tensor):
                    self.input_shapes[_name] = tuple(args[0].shape[1:])
            self._hooks.append(layer.register_forward_pre_hook(hook))

    def detach(self) -> None:
        for h in self._hooks:
            h.remove()
        self._hooks = []

    def due(self, step: int) -> bool:
        return self.every > 0 and step % self.every == 0

    def collect(self, ctx: TraceContext) -> list[dict[str, Any]]:
        ctx.input_shapes = dict(self.input_shapes)
        ctx.operator_norm = self.operator_norm
        rows: list[dict[str, Any]] = []
        with preserved(ctx.D), torch.no_grad():
            for collector in self.collectors:
                rows += [{"series": s, "step": ctx.step, "value": float(v)} for s, v in collector(ctx)]
        return rows


def to_frame(rows: Sequence[dict[str, Any]]):
    """Rows as a pandas DataFrame with columns ``series, step, value``."""
    import pandas as pd
    return pd.DataFrame(list(rows), columns=["series", "step", "value"])
