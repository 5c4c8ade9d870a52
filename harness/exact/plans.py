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
from .signatures import Args, BindError, Signature, bind, parse

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


@dataclass(frozen=True)
class OpRule:
    """One allow-list entry: the op, its full signature, its rule, and for docs/exact.md the
    constant the rule gives and where that constant comes from."""

    op: str  # "torch.sum", "Tensor.sum", "F.relu", "nn.ReLU", ...
    signature: Signature
    rule: Callable[["Site", Args], Plan]
    constant: str
    source: str
    attributes: tuple[str, ...] = ()  # modules: the attributes (constructor arguments) the rule reads


def op_rule(op: str, signature: str, rule, constant: str, source: str, attributes=()) -> OpRule:
    return OpRule(op, parse(signature), rule, constant, source, tuple(attributes))


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

    def bind(self, entry: OpRule) -> Args:
        """The node's arguments bound to ``entry``'s signature (modules: plus their attributes)."""
        try:
            raw = bind(entry.signature, tuple(self.node.args), dict(self.node.kwargs))
        except BindError as exc:
            raise self.unsupported(f"{entry.op}: {exc}") from None
        module = self.module
        for name in entry.attributes:
            if not hasattr(module, name):
                raise self.unsupported(f"{entry.op} without its attribute {name!r}")
            raw[name] = getattr(module, name)
        return Args(raw, self.value, lambda n: isinstance(n, fx.Node) and self.dependent(n), self.unsupported)

    def is_dependent(self, a: Any) -> bool:
        found: list[fx.Node] = []
        fx.node.map_arg(a, lambda n: found.append(n) if self.dependent(n) else None)
        return bool(found)

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
    """``x`` inflated for ``terms`` rounded float64 operations (``(1 + (terms+2)u)`` then two ulps,
    which also cover an absolute error of a subnormal result)."""
    return math.nextafter(math.nextafter(x * (1 + (terms + 2) * U), math.inf), math.inf)


def sqrt_up(count: int) -> float:
    """``√count`` rounded up (exact for perfect squares)."""
    root = math.isqrt(count)
    return float(root) if root * root == count else math.nextafter(math.sqrt(count), math.inf)


def sqrt_down(count: int) -> float:
    """``√count`` rounded down (exact for perfect squares)."""
    root = math.isqrt(count)
    return float(root) if root * root == count else math.nextafter(math.sqrt(count), 0.0)


def broadcast_scale(c: Any, x_shape: tuple[int, ...], out_shape: tuple[int, ...]) -> float:
    """Exact ``‖x ↦ c ⊙ broadcast(x)‖₂``: ``√max_i Σ_{copies j of x_i} c_j²`` (c scalar or tensor).

    ``c`` is scaled by a power of two before squaring (exact), so no square under- or
    overflows; ``ValueError`` if the result is beyond float64's range."""
    c = torch.as_tensor(c, dtype=torch.float64).detach().cpu().abs()
    if not bool(torch.isfinite(c).all()):
        raise ValueError("constant factor is not finite")
    top = float(c.max()) if c.numel() else 0.0
    if top == 0.0:
        return 0.0
    e = math.frexp(top)[1]
    c2 = torch.ldexp(c, torch.tensor(-e)) ** 2  # in [0, 1); entries below 2^-1074 flush (covered below)
    full = torch.broadcast_to(c2, out_shape)
    xs = (1,) * (len(out_shape) - len(x_shape)) + tuple(x_shape)
    dims = [i for i, (a, b) in enumerate(zip(xs, out_shape)) if a == 1 and b != 1]
    summed = full.sum(dims) if dims else full
    terms = max(1, math.prod(out_shape[i] for i in dims))
    scaled = up(math.sqrt(up(float(summed.max()) + terms * 2.0 ** -1070, terms)))
    return scale_up(scaled, e)


def scale_up(value: float, exponent: int) -> float:
    """``value · 2^exponent`` rounded up; ``ValueError`` if it exceeds float64's range."""
    out = math.ldexp(value, exponent) if value else 0.0
    if out == math.inf:
        raise ValueError(f"a bound of {value:.6g} x 2^{exponent} exceeds float64's range")
    return math.nextafter(out, math.inf) if value and math.ldexp(out, -exponent) != value else out


def _out_tensors(value: Any) -> list[torch.Tensor]:
    if isinstance(value, torch.Tensor):
        return [value]
    if isinstance(value, (list, tuple)):
        return [t for v in value for t in _out_tensors(v)]
    return []


def movement_factor(site: Site, rerun: Callable[[torch.Tensor], Any], src: fx.Node) -> float:
    """Exact norm of a pure data-movement op: √(largest number of copies of one entry).

    ``rerun(ids)`` applies the op to a float64 tensor holding ``1..n`` in place of its input
    ``src``; entries that are not input entries must come out as 0 (padding).
    """
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
    return sqrt_up(int(torch.bincount(used).max()))


def replay(site: Site) -> Callable[[torch.Tensor], Any]:
    """``ids -> op(ids, *other args)``: the node's own call with ``ids`` as its first argument and
    every other argument as on the probe (modules: their ``forward``, without hooks)."""
    node = site.node
    rest = site.value(tuple(node.args[1:]))
    kwargs = site.value(dict(node.kwargs))
    if node.op == "call_method":
        return lambda ids: getattr(ids, node.target)(*rest, **kwargs)
    if node.op == "call_module":
        return lambda ids: site.module.forward(ids, *rest, **kwargs)
    return lambda ids: node.target(ids, *rest, **kwargs)
