"""The pieces every Lipschitz rule uses: the plan of a node, its view of the graph, exact helpers.

A rule (:mod:`.rules`, :mod:`.layer_rules`) turns one input-dependent node into a
:class:`Plan`: ``L(node) = factor · combine(w_i · L(input_i))``. :class:`Site` is what a
rule sees of the node (probe values, which arguments depend on the input, its module).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable

import torch
import torch.fx as fx
from torch import nn

from .graph import Capture, UnsupportedOperationError, describe

U = 2.0 ** -53


@dataclass
class WeightOp:
    """A linear weight map whose certified operator norm is computed after validation."""

    weight: torch.Tensor  # effective weight, detached, in torch layout
    kind: str  # "linear", "conv1d", "conv2d" or "conv_transpose2d"
    spatial: tuple[int, ...]  # input spatial size (empty for linear)
    stride: Any = 1
    padding: Any = 0
    dilation: Any = 1
    groups: int = 1
    padding_mode: str = "zeros"
    output_padding: Any = 0


@dataclass
class Plan:
    """How a node's bound follows from its inputs' bounds (module docstring)."""

    kind: str
    factor: float | None = 1.0  # None: the WeightOp's certified operator norm
    mode: str = "sum"
    weights: tuple[float, ...] | None = None
    weight_op: WeightOp | None = None
    bracket: tuple[float, float] | None = None  # exact-constant bracket (pooling)
    note: str = ""
    inputs: tuple[fx.Node, ...] = field(default=())


@dataclass
class Site:
    """One input-dependent node as the rules see it (probe values, dependence, module)."""

    node: fx.Node
    capture: Capture
    dependent: Callable[[fx.Node], bool]

    @property
    def module(self) -> nn.Module | None:
        return self.capture.modules.get(str(self.node.target)) if self.node.op == "call_module" else None

    @property
    def out(self) -> Any:
        return self.capture.values[self.node]

    def value(self, a: Any) -> Any:
        return fx.node.map_arg(a, lambda n: self.capture.values[n])

    def arg(self, index: int, name: str, default: Any = None) -> Any:
        if index < len(self.node.args):
            return self.value(self.node.args[index])
        return self.value(self.node.kwargs.get(name, default))

    def dep_inputs(self) -> list[fx.Node]:
        """Input-dependent nodes among the arguments, in order (a repeated one counts twice)."""
        found: list[fx.Node] = []
        fx.node.map_arg((self.node.args, self.node.kwargs),
                        lambda n: found.append(n) if self.dependent(n) else None)
        return found

    def shape(self, n: fx.Node) -> tuple[int, ...]:
        v = self.capture.values[n]
        if not isinstance(v, torch.Tensor):
            raise self.unsupported(f"argument {n.name!r} is a {type(v).__name__}, not a tensor")
        return tuple(v.shape)

    def unsupported(self, why: str) -> UnsupportedOperationError:
        return UnsupportedOperationError(f"{describe(self.node)}: {why}")


def up(x: float, terms: int = 1) -> float:
    """``x`` inflated for ``terms`` rounded float64 operations (``(1 + (terms+2)u)`` then one ulp)."""
    return math.nextafter(x * (1 + (terms + 2) * U), math.inf)


def broadcast_scale(c: Any, x_shape: tuple[int, ...], out_shape: tuple[int, ...]) -> float:
    """Exact ``‖x ↦ c ⊙ broadcast(x)‖₂``: ``√max_i Σ_{copies j of x_i} c_j²`` (c scalar or tensor)."""
    c2 = torch.as_tensor(c, dtype=torch.float64).detach().cpu() ** 2
    if not bool(torch.isfinite(c2).all()):
        raise ValueError("constant factor is not finite")
    full = torch.broadcast_to(c2, out_shape)
    xs = (1,) * (len(out_shape) - len(x_shape)) + tuple(x_shape)
    dims = [i for i, (a, b) in enumerate(zip(xs, out_shape)) if a == 1 and b != 1]
    summed = full.sum(dims) if dims else full
    terms = max(1, math.prod(out_shape[i] for i in dims))
    return up(math.sqrt(float(summed.max())) if summed.numel() else 0.0, terms)


def _out_tensors(value: Any) -> list[torch.Tensor]:
    if isinstance(value, torch.Tensor):
        return [value]
    if isinstance(value, (list, tuple)):
        return [t for v in value for t in _out_tensors(v)]
    return []


def movement_factor(site: Site, rerun: Callable[[torch.Tensor], Any]) -> float:
    """Exact norm of a pure data-movement op: √(largest number of copies of one entry).

    ``rerun(ids)`` applies the op to a float64 tensor holding ``1..n`` in place of its
    input; entries that are not input entries must come out as 0 (padding).
    """
    (src,) = site.dep_inputs()
    shape = site.shape(src)
    n = math.prod(shape)
    if n >= 2 ** 52:
        raise site.unsupported("tensor too large to index exactly in float64")
    ids = torch.arange(1, n + 1, dtype=torch.float64).reshape(shape)
    try:
        with torch.no_grad():
            moved = _out_tensors(rerun(ids))
    except Exception as exc:
        raise site.unsupported(f"cannot replay the op on entry indices: {exc}") from None
    vals = torch.cat([t.reshape(-1).to(torch.float64) for t in moved]) if moved else torch.zeros(0)
    if not bool(((vals == vals.round()) & (vals >= 0) & (vals <= n)).all()):
        raise site.unsupported("the op is not a pure rearrangement of its input's entries")
    used = vals[vals > 0].long()
    if used.numel() == 0:
        return 0.0
    return math.sqrt(int(torch.bincount(used).max()))


def replay(site: Site) -> Callable[[torch.Tensor], Any]:
    """``ids -> op(ids, *other args)`` for a node whose first argument is the dependent one."""
    node = site.node
    if not node.args or not isinstance(node.args[0], fx.Node) or len(site.dep_inputs()) != 1 \
            or site.dep_inputs()[0] is not node.args[0]:
        raise site.unsupported("a data-movement op must have its only input-dependent tensor "
                               "as first argument")
    rest = site.value(tuple(node.args[1:]))
    kwargs = {k: v for k, v in site.value(dict(node.kwargs)).items() if k != "inplace"}
    if node.op == "call_method":
        return lambda ids: getattr(ids, node.target)(*rest, **kwargs)
    if node.op == "call_module":
        module = site.module
        return lambda ids: module(ids)
    return lambda ids: node.target(ids, *rest, **kwargs)

