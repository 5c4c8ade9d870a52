"""Lipschitz rules for the nodes of a captured graph (:mod:`.graph`).

``L(node)`` is a certified Lipschitz bound of the map *model input → node value*. A node
that does not depend on the input has ``L = 0``. Every input-dependent node gets a
:class:`Plan`: ``L = factor · combine(w_i · L(input_i))`` where ``combine`` is the sum
(``mode="sum"``: addition, the triangle inequality) or the root of the sum of squares
(``mode="root"``: concatenation, stacking, tuples, multi-input modules:
``‖(f(x) − f(y), g(x) − g(y))‖ ≤ √(L_f² + L_g²)‖x − y‖``). The rules:

* weight layers (``Linear``, ``Conv1d``, ``Conv2d``, ``ConvTranspose2d``, their subclasses,
  and ``F.linear`` / ``F.conv*`` / ``@`` with a constant weight): the certified upper end
  of ``‖W̃‖₂`` at the real input size (bias and constants are translations); computed
  later (:class:`WeightOp`), after the whole graph is validated;
* add / sub (functional, operators, in place): ``Σ w_i L_i`` with ``w_i = |α|·√m_i`` where
  ``m_i`` is how many times broadcasting repeats operand ``i`` (a constant operand gives 0);
* multiplication or division by a constant ``c`` (scalar or broadcast tensor): the exact
  norm of ``x ↦ c ⊙ broadcast(x)``, ``√max_i Σ_{copies of x_i} c²``; a product of two
  input-dependent tensors is refused (not globally Lipschitz);
* data movement (view, reshape, flatten, permute, transpose, squeeze, expand, repeat,
  slicing and indexing, chunk/split, flip, roll, nearest upsampling, pixel shuffle,
  replicate/reflect/circular padding, ...): the exact norm ``√(largest number of copies of
  one input entry)``, found by running the op on the entry indices; constant padding: 1;
* reductions: ``sum`` over ``N`` entries ``√N``, ``mean`` ``1/√N``, ``amax``/``amin``/2-norm 1;
* activations: :mod:`.activations`; pooling: :mod:`.pooling` (exact, at the real size);
  dropout (eval mode): identity;
* BatchNorm and InstanceNorm with running statistics in eval mode: ``max|γ/√(var + ε)|``
  (a diagonal scaling, exact); LayerNorm, GroupNorm, InstanceNorm without running
  statistics and RMSNorm: ``max|γ|/√ε``. For ``y = (x − μ)/σ`` with ``σ = √(var + ε)``,
  ``J = (P − uuᵀ)/σ`` with ``P`` the centring projection and ``‖u‖ < 1`` in its range, so
  ``‖J‖ ≤ 1/σ ≤ 1/√ε``, attained at constant inputs: sound, and exact up to the centring
  (but large: 316 for ε = 1e-5);
* modules with a declared constant (:func:`register_lipschitz_constant` or a
  ``lipschitz_constant`` attribute), and deel-torchlip's GroupSort / MaxMin / FullSort
  (sorting is 1-Lipschitz) times their ``k_coef_lip``.

Anything else that depends on the input raises :class:`UnsupportedOperationError`
naming the node, the op and the module path.
"""
from __future__ import annotations

import math
import operator
from dataclasses import dataclass, field
from typing import Any, Callable

import torch
import torch.fx as fx
import torch.nn.functional as F
from torch import nn

from harness.layers import WEIGHT_LAYERS, apply_operator, geometry, layer_kind

from . import activations as act
from .graph import DTYPE_TOL, Capture, UnsupportedOperationError, describe, target_name
from .pooling import (PoolSpec, adaptive_pool_spec, avg_pool_spec, check_windows, max_pool_spec,
                      pool_constant)

U = 2.0 ** -53

# ---------------------------------------------------------------------------------------
# Plans
# ---------------------------------------------------------------------------------------


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


# ---------------------------------------------------------------------------------------
# Declared constants
# ---------------------------------------------------------------------------------------

_DECLARED: dict[type, Any] = {}


def register_lipschitz_constant(module_type: type, constant) -> None:
    """Declare that every ``module_type`` instance is ``constant``-Lipschitz (ℓ₂, input → output).

    ``constant`` is a number or a callable ``(module, input_shape) -> number`` (the input
    shape is the per-sample shape the module receives). The module is then a leaf of the
    graph: it is not traced into, and its forward is trusted to satisfy the constant; with
    several tensor inputs the constant is taken as a bound for all of them jointly.
    A module instance may instead carry a ``lipschitz_constant`` attribute (same forms).
    """
    if not (isinstance(module_type, type) and issubclass(module_type, nn.Module)):
        raise TypeError(f"register_lipschitz_constant needs an nn.Module subclass, got {module_type!r}")
    if not callable(constant):
        _check_constant(constant, module_type.__name__)
    _DECLARED[module_type] = constant


def unregister_lipschitz_constant(module_type: type) -> None:
    """Remove a declaration made by :func:`register_lipschitz_constant` (no error if absent)."""
    _DECLARED.pop(module_type, None)


def _check_constant(value, where: str) -> float:
    try:
        c = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{where}: declared Lipschitz constant {value!r} is not a number") from None
    if not (c >= 0 and math.isfinite(c)):
        raise ValueError(f"{where}: declared Lipschitz constant must be finite and >= 0, got {c}")
    return c


def declared_constant(module: nn.Module):
    """The declared constant (number or callable) of ``module``, or ``None``."""
    attr = getattr(module, "lipschitz_constant", None)
    if attr is not None:
        return attr
    for cls in type(module).__mro__:
        if cls in _DECLARED:
            return _DECLARED[cls]
    return None


_DEEL_SORTS = ("GroupSort", "GroupSort2", "FullSort", "MaxMin")


def _deel_sort(module: nn.Module) -> bool:
    return any(c.__module__.startswith("deel.torchlip") and c.__name__ in _DEEL_SORTS
               for c in type(module).__mro__)


# ---------------------------------------------------------------------------------------
# Leaf modules
# ---------------------------------------------------------------------------------------

_MOVEMENT_MODULES = (nn.Identity, nn.Flatten, nn.Unflatten, nn.PixelShuffle, nn.PixelUnshuffle,
                     nn.ChannelShuffle, nn.ReflectionPad1d, nn.ReflectionPad2d, nn.ReplicationPad1d,
                     nn.ReplicationPad2d, nn.CircularPad1d, nn.CircularPad2d, nn.Upsample,
                     nn.UpsamplingNearest2d)
_ZERO_PADS = (nn.ZeroPad1d, nn.ZeroPad2d, nn.ConstantPad1d, nn.ConstantPad2d)
_DROPOUTS = (nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d, nn.AlphaDropout, nn.FeatureAlphaDropout)
_POOLS = (nn.AvgPool1d, nn.AvgPool2d, nn.MaxPool1d, nn.MaxPool2d, nn.AdaptiveAvgPool1d,
          nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool1d, nn.AdaptiveMaxPool2d)
_NORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.SyncBatchNorm, nn.InstanceNorm1d,
          nn.InstanceNorm2d, nn.InstanceNorm3d, nn.LayerNorm, nn.GroupNorm, nn.RMSNorm)
_ACTIVATION_MODULES = {nn.ReLU: "relu", nn.ReLU6: "relu6", nn.Hardtanh: "hardtanh", nn.Tanh: "tanh",
                       nn.Softsign: "softsign", nn.Tanhshrink: "tanhshrink", nn.LogSigmoid: "logsigmoid",
                       nn.CELU: "celu", nn.Softplus: "softplus", nn.Sigmoid: "sigmoid",
                       nn.Hardsigmoid: "hardsigmoid", nn.Hardswish: "hardswish", nn.Softmax: "softmax",
                       nn.LeakyReLU: "leaky_relu", nn.ELU: "elu", nn.SELU: "selu", nn.GELU: "gelu",
                       nn.SiLU: "silu", nn.RReLU: "rrelu", nn.PReLU: "prelu"}
_RULE_CLASSES = (_MOVEMENT_MODULES + _ZERO_PADS + _DROPOUTS + _POOLS + _NORMS
                 + tuple(_ACTIVATION_MODULES))


def _rule_class(module: nn.Module) -> type | None:
    """The torch class whose rule applies: the first in the MRO, if ``forward`` is not overridden."""
    for cls in type(module).__mro__:
        if cls in _RULE_CLASSES:
            return cls if type(module).forward is cls.forward else None
    return None


def is_leaf(module: nn.Module) -> bool:
    """Whether the tracer keeps ``module`` as one node (see :mod:`.graph`)."""
    if declared_constant(module) is not None or isinstance(module, WEIGHT_LAYERS) or _deel_sort(module):
        return True
    if _rule_class(module) is not None:
        return True
    containers = (nn.Sequential, nn.ModuleList, nn.ModuleDict)
    if isinstance(module, containers):
        return False
    # other torch.nn modules stay whole so that an unsupported one is named as a module
    return type(module).__module__.startswith(("torch.nn", "torch.ao.nn"))


# ---------------------------------------------------------------------------------------
# The view of one node that rules read
# ---------------------------------------------------------------------------------------


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


# ---------------------------------------------------------------------------------------
# Helpers shared by rules
# ---------------------------------------------------------------------------------------

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


def _replay(site: Site) -> Callable[[torch.Tensor], Any]:
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


def _movement(kind: str) -> Callable[[Site], Plan]:
    def rule(site: Site) -> Plan:
        return Plan(kind, movement_factor(site, _replay(site)))
    return rule


def _identity(kind: str, note: str = "") -> Callable[[Site], Plan]:
    return lambda site: Plan(kind, 1.0, note=note)


# ---------------------------------------------------------------------------------------
# Arithmetic
# ---------------------------------------------------------------------------------------

def _operands(site: Site) -> tuple[Any, Any]:
    return site.node.args[0], site.node.args[1] if len(site.node.args) > 1 else site.node.kwargs.get("other")


def _add(site: Site) -> Plan:
    a, b = _operands(site)
    alpha = abs(float(site.arg(2, "alpha", 1.0)))
    out_shape = tuple(site.out.shape)
    inputs, weights = [], []
    for operand, scale in ((a, 1.0), (b, alpha)):
        if isinstance(operand, fx.Node) and site.dependent(operand):
            inputs.append(operand)
            weights.append(scale * broadcast_scale(1.0, site.shape(operand), out_shape))
    return Plan(_kind(site), 1.0, "sum", tuple(weights), inputs=tuple(inputs))


def _scale_by_constant(site: Site, divide: bool) -> Plan:
    a, b = _operands(site)
    dep = [o for o in (a, b) if isinstance(o, fx.Node) and site.dependent(o)]
    if len(dep) != 1:
        raise site.unsupported("a product of two input-dependent tensors is not globally Lipschitz")
    x = dep[0]
    if divide and x is not a:
        raise site.unsupported("division by an input-dependent tensor is not globally Lipschitz")
    c = site.value(b if x is a else a)
    if isinstance(c, torch.Tensor) and (c.is_complex() or not c.is_floating_point() and c.dtype == torch.bool):
        c = c.to(torch.float64)
    c = torch.as_tensor(c, dtype=torch.float64)
    if divide:
        if bool((c == 0).any()):
            raise site.unsupported("division by a constant containing zeros")
        c = 1.0 / c
    try:
        factor = broadcast_scale(c, site.shape(x), tuple(site.out.shape))
    except ValueError as exc:
        raise site.unsupported(str(exc)) from None
    return Plan(_kind(site), factor, inputs=(x,))


def _kind(site: Site) -> str:
    t = site.node.target
    return t if isinstance(t, str) else getattr(t, "__name__", str(t))


def _neg(site: Site) -> Plan:
    return Plan(_kind(site), 1.0)


def _cat(site: Site) -> Plan:
    deps = site.dep_inputs()
    return Plan(_kind(site), 1.0, "root", tuple(1.0 for _ in deps), inputs=tuple(deps))


def _setitem(site: Site) -> Plan:
    """``x[idx] = v``: disjoint parts, ``√(L_x² + (√m·L_v)²)`` (``m``: copies of ``v`` by broadcasting)."""
    x, idx, v = site.node.args[:3]
    inputs, weights = [], []
    if isinstance(x, fx.Node) and site.dependent(x):
        inputs.append(x)
        weights.append(1.0)
    if isinstance(v, fx.Node) and site.dependent(v):
        region = site.capture.values[x][site.value(idx)]
        inputs.append(v)
        weights.append(broadcast_scale(1.0, site.shape(v), tuple(region.shape)))
    return Plan("setitem", 1.0, "root", tuple(weights), inputs=tuple(inputs))


def _matmul(site: Site) -> Plan:
    a, b = _operands(site)
    dep = [o for o in (a, b) if isinstance(o, fx.Node) and site.dependent(o)]
    if len(dep) != 1:
        raise site.unsupported("a product of two input-dependent tensors is not globally Lipschitz")
    w = site.value(b if dep[0] is a else a)
    if not isinstance(w, torch.Tensor) or w.dim() != 2:
        raise site.unsupported("matrix products are supported with a constant 2-D matrix only")
    weight = w.detach().T if dep[0] is a else w.detach()  # x @ W acts as Wᵀ on rows
    return Plan("matmul", None, weight_op=WeightOp(weight, "linear", ()), inputs=(dep[0],))


# ---------------------------------------------------------------------------------------
# Activations, dropout, reductions
# ---------------------------------------------------------------------------------------

def activation_constant(name: str, params: dict) -> float:
    """Exact (or, for softmax, bounding) constant of an elementwise activation (:mod:`.activations`)."""
    if name in act.CONSTANT_ONE:
        return 1.0
    if name in act.FIXED:
        return act.FIXED[name]
    if name == "leaky_relu":
        return act.slope_max(params.get("negative_slope", 0.01))
    if name == "rrelu":
        return act.slope_max((params.get("lower", 1 / 8) + params.get("upper", 1 / 3)) / 2)
    if name == "prelu":
        return act.slope_max(float(torch.as_tensor(params["weight"]).detach().abs().max()))
    if name == "elu":
        return act.slope_max(params.get("alpha", 1.0))
    if name == "selu":
        return act.round_up(1.0507009873554804934193349852946 * 1.6732632423543772848170429916717)
    if name == "gelu":
        return act.gelu(params.get("approximate", "none"))
    if name == "silu":
        return act.silu()
    raise KeyError(name)


_ACT_ARGS = {"leaky_relu": ("negative_slope",), "elu": ("alpha",), "gelu": (), "prelu": ("weight",),
             "rrelu": ("lower", "upper")}


def _activation(name: str) -> Callable[[Site], Plan]:
    def rule(site: Site) -> Plan:
        params = {}
        for i, key in enumerate(_ACT_ARGS.get(name, ()), start=1):
            v = site.arg(i, key, None)
            if v is not None:
                params[key] = v
        if name == "gelu":
            params["approximate"] = site.arg(1, "approximate", "none")
        if name == "rrelu" and bool(site.arg(3, "training", False)):
            raise site.unsupported("rrelu with training=True is random")
        if name == "softmax" and site.arg(1, "dim", None) is None:
            raise site.unsupported("softmax without an explicit dim")
        deps = site.dep_inputs()
        if len(deps) != 1:
            raise site.unsupported(f"{name} with {len(deps)} input-dependent arguments")
        return Plan(name, activation_constant(name, params), inputs=(deps[0],))
    return rule


def _dropout(site: Site) -> Plan:
    if bool(site.arg(2, "training", True)):
        raise site.unsupported("functional dropout with training=True is random; pass "
                               "training=self.training")
    return Plan("dropout", 1.0, note="eval: identity")


def _reduction(kind: str) -> Callable[[Site], Plan]:
    def rule(site: Site) -> Plan:
        deps = site.dep_inputs()
        if len(deps) != 1 or deps[0] is not site.node.args[0]:
            raise site.unsupported(f"{kind} of more than one input-dependent tensor")
        shape = site.shape(deps[0])
        dims = site.arg(1, "dim", None)
        dims = (dims,) if isinstance(dims, int) else tuple(dims or ())
        if not dims:  # no dim (or an empty one) reduces every dim
            dims = tuple(range(len(shape)))
        count = math.prod(shape[d] for d in dims)
        if kind == "sum":
            return Plan("sum", up(math.sqrt(count)), note=f"sum of {count} entries")
        if kind == "mean":
            return Plan("mean", up(1 / math.sqrt(count), 2), note=f"mean of {count} entries")
        if kind == "vector_norm":
            p = site.arg(1, "ord", 2) if site.node.target is torch.linalg.vector_norm else site.arg(1, "p", 2)
            if p not in (2, 2.0, "fro", None):
                raise site.unsupported(f"{kind} with p={p!r} (only the 2-norm is supported)")
            return Plan("norm", 1.0, note="each output is the 2-norm of a disjoint group")
        return Plan(kind, 1.0, note="max/min over disjoint groups")
    return rule


# ---------------------------------------------------------------------------------------
# Pooling, padding, interpolation
# ---------------------------------------------------------------------------------------

def pool_spec_from_args(kind: str, spatial: tuple[int, ...], params: dict) -> PoolSpec:
    if kind.startswith("adaptive"):
        return adaptive_pool_spec("avg" if "avg" in kind else "max", spatial, params["output_size"])
    if kind.startswith("avg"):
        return avg_pool_spec(spatial, params["kernel_size"], params.get("stride"),
                             params.get("padding", 0), params.get("ceil_mode", False),
                             params.get("count_include_pad", True), params.get("divisor_override"))
    return max_pool_spec(spatial, params["kernel_size"], params.get("stride"),
                         params.get("padding", 0), params.get("dilation", 1),
                         params.get("ceil_mode", False))


_POOL_ARGS = {
    "avg_pool": ("kernel_size", "stride", "padding", "ceil_mode", "count_include_pad", "divisor_override"),
    "max_pool": ("kernel_size", "stride", "padding", "dilation", "ceil_mode", "return_indices"),
    "adaptive_avg_pool": ("output_size",),
    "adaptive_max_pool": ("output_size", "return_indices"),
}


def _pool_params_from_module(module: nn.Module) -> dict:
    return {k: getattr(module, k) for k in ("kernel_size", "stride", "padding", "dilation", "ceil_mode",
                                             "count_include_pad", "divisor_override", "output_size",
                                             "return_indices") if hasattr(module, k)}


_POOL_CLASSES = {nn.AvgPool1d: ("avg_pool", 1), nn.AvgPool2d: ("avg_pool", 2),
                 nn.MaxPool1d: ("max_pool", 1), nn.MaxPool2d: ("max_pool", 2),
                 nn.AdaptiveAvgPool1d: ("adaptive_avg_pool", 1), nn.AdaptiveAvgPool2d: ("adaptive_avg_pool", 2),
                 nn.AdaptiveMaxPool1d: ("adaptive_max_pool", 1), nn.AdaptiveMaxPool2d: ("adaptive_max_pool", 2)}


def pool_spec(site_shape: tuple[int, ...], family: str, dims: int, params: dict) -> PoolSpec:
    if len(site_shape) < dims + 1:
        raise ValueError(f"pooling input of shape {site_shape}")
    return pool_spec_from_args(family, tuple(site_shape[-dims:]), params)


def pool_plan(site: Site, kind: str, family: str, dims: int, params: dict) -> Plan:
    (x,) = site.dep_inputs()
    if params.get("return_indices"):
        raise site.unsupported("pooling with return_indices=True (indices are not Lipschitz)")
    try:
        spec = pool_spec(site.shape(x), family, dims, params)
    except ValueError as exc:
        raise site.unsupported(str(exc)) from None
    lower, upper, detail = pool_constant(spec, site.shape(x)[-dims:])
    return Plan(kind, upper, bracket=(lower, upper) if spec.kind == "avg" else None, note=detail,
                inputs=(x,))


def _functional_pool_params(family: str, args: tuple, kwargs: dict) -> dict:
    names = _POOL_ARGS[family]
    params = dict(zip(names, args[1:]))
    params.update({k: v for k, v in kwargs.items() if k in names})
    return {k: v for k, v in params.items() if v is not None}


def _functional_pool(family: str, dims: int) -> Callable[[Site], Plan]:
    def rule(site: Site) -> Plan:
        params = _functional_pool_params(family, site.value(tuple(site.node.args)),
                                         site.value(dict(site.node.kwargs)))
        return pool_plan(site, f"{family}{dims}d", family, dims, params)
    return rule


def _pad(site: Site) -> Plan:
    mode = site.arg(2, "mode", "constant")
    if mode == "constant":
        return Plan("pad", 1.0, note="constant padding: an isometric embedding plus a constant")
    return Plan(f"pad ({mode})", movement_factor(site, _replay(site)))


def _interpolate(site: Site) -> Plan:
    mode = site.arg(3, "mode", "nearest")
    if mode not in ("nearest", "nearest-exact"):
        raise site.unsupported(f"interpolation mode {mode!r} (only nearest is supported)")
    return Plan(f"interpolate ({mode})", movement_factor(site, _replay(site)))


# ---------------------------------------------------------------------------------------
# Weight layers
# ---------------------------------------------------------------------------------------

def _conv_dims(kind: str) -> int:
    return {"linear": 0, "conv1d": 1, "conv2d": 2, "conv_transpose2d": 2}[kind]


def _transpose_output_padding(weight, spatial, out_spatial, stride, padding, dilation) -> tuple[int, ...]:
    k = weight.shape[2:]
    natural = [(n - 1) * s - 2 * p + d * (kk - 1) + 1
               for n, s, p, d, kk in zip(spatial, stride, padding, dilation, k)]
    return tuple(int(o) - nat for o, nat in zip(out_spatial, natural))


def _module_weight_op(site: Site) -> Plan:
    module = site.module
    kind = layer_kind(module, str(site.node.target))
    geom = geometry(module, str(site.node.target))
    deps = site.dep_inputs()
    if len(deps) != 1 or deps[0] is not site.node.args[0]:
        raise site.unsupported("weight layer whose input-dependent argument is not its input")
    shape = site.shape(deps[0])
    dims = _conv_dims(kind)
    spatial = tuple(shape[-dims:]) if dims else ()
    weight = module.weight.detach()
    output_padding = geom.output_padding or 0
    if kind == "conv_transpose2d":
        output_padding = _transpose_output_padding(weight, spatial, tuple(site.out.shape[-2:]),
                                                   geom.stride, geom.padding, geom.dilation)
    if geom.padding_mode not in ("zeros", "circular"):
        raise site.unsupported(f"padding_mode={geom.padding_mode!r} (only zeros and circular)")
    op = WeightOp(weight, kind, spatial, geom.stride, geom.padding, geom.dilation, geom.groups,
                  geom.padding_mode, output_padding)
    return Plan(kind, None, weight_op=op, inputs=(deps[0],))


_FUNCTIONAL_CONV = {F.linear: "linear", F.conv1d: "conv1d", F.conv2d: "conv2d",
                    F.conv_transpose2d: "conv_transpose2d"}


def _functional_weight_op(site: Site) -> Plan:
    kind = _FUNCTIONAL_CONV[site.node.target]
    x, w = site.node.args[0], site.node.args[1] if len(site.node.args) > 1 else site.node.kwargs.get("weight")
    if not (isinstance(x, fx.Node) and site.dependent(x)) or (isinstance(w, fx.Node) and site.dependent(w)) \
            or len(site.dep_inputs()) != 1:
        raise site.unsupported(f"{kind} needs a constant weight and bias and an input-dependent input")
    weight = site.value(w).detach()
    if kind == "linear":
        return Plan("linear", None, weight_op=WeightOp(weight, "linear", ()), inputs=(x,))
    dims = _conv_dims(kind)
    spatial = site.shape(x)[-dims:]
    names = (("stride", 1), ("padding", 0), ("dilation", 1), ("groups", 1)) if kind != "conv_transpose2d" \
        else (("stride", 1), ("padding", 0), ("output_padding", 0), ("groups", 1), ("dilation", 1))
    params = {name: site.arg(3 + i, name, default) for i, (name, default) in enumerate(names)}
    pad = params["padding"]
    if isinstance(pad, str):
        from harness.layers import _string_padding
        ks = weight.shape[2:]
        dil = params["dilation"]
        pad = _string_padding(pad, ks, (dil,) * len(ks) if isinstance(dil, int) else dil)
    rep = lambda v: (v,) * dims if isinstance(v, int) else tuple(v)  # noqa: E731
    output_padding = 0
    if kind == "conv_transpose2d":
        output_padding = _transpose_output_padding(weight, spatial, tuple(site.out.shape[-2:]),
                                                   rep(params["stride"]), rep(pad), rep(params["dilation"]))
    op = WeightOp(weight, kind, tuple(spatial), params["stride"], pad, params["dilation"],
                  int(params["groups"]), "zeros", output_padding)
    return Plan(kind, None, weight_op=op, inputs=(x,))


def check_weight_layer(module: nn.Module, name: str, x: torch.Tensor, out: torch.Tensor) -> None:
    """``UnsupportedOperationError`` unless the module computed ``W̃x + b`` with ``layer.weight``.

    Subclasses and hooks can change what a layer computes; the bound uses ``layer.weight``
    and the geometry, so their output must match on the probe (float tolerance of the dtype).
    """
    geom = geometry(module, name)
    if geom.padding_mode not in ("zeros", "circular"):
        return  # refused by the rule with a clearer message
    with torch.no_grad():
        ref = apply_operator(geom, module.weight, x) if geom.kind != "conv_transpose2d" else \
            F.conv_transpose2d(x, module.weight, stride=geom.stride, padding=geom.padding,
                               output_padding=_transpose_output_padding(
                                   module.weight, x.shape[-2:], out.shape[-2:], geom.stride,
                                   geom.padding, geom.dilation),
                               groups=geom.groups, dilation=geom.dilation)
        bias = getattr(module, "bias", None)
        if bias is not None:
            ref = ref + (bias if geom.kind == "linear" else bias.view(-1, *([1] * (ref.dim() - 2))))
    tol = DTYPE_TOL.get(out.dtype, 1e-4) * (float(out.abs().max()) + 1e-30)
    if ref.shape != out.shape or float((ref - out).abs().max()) > tol:
        raise UnsupportedOperationError(
            f"module {name!r} ({type(module).__name__}) does not compute its layer's map "
            "x -> W x + b with layer.weight (an overridden forward or a forward hook changes it); "
            "declare its constant with register_lipschitz_constant")


# ---------------------------------------------------------------------------------------
# Module rules
# ---------------------------------------------------------------------------------------

def _norm_plan(site: Site, module: nn.Module) -> Plan:
    name = type(module).__name__
    running = isinstance(module, nn.modules.batchnorm._NormBase) and module.track_running_stats \
        and module.running_var is not None
    if isinstance(module, nn.modules.batchnorm._BatchNorm) and not running:
        raise site.unsupported(f"{name} without running statistics normalises by batch statistics "
                               "even in eval mode; no fixed map to bound")
    weight = getattr(module, "weight", None)
    gamma = weight.detach().double().abs() if weight is not None else torch.ones(1, dtype=torch.float64)
    if running:
        scale = gamma / torch.sqrt(module.running_var.detach().double() + module.eps)
        if not bool(torch.isfinite(scale).all()):
            raise site.unsupported("normalisation scale is not finite")
        return Plan(name, up(float(scale.max()), 4), note="eval mode: diagonal scale γ/√(running_var+ε)")
    eps = getattr(module, "eps", None)
    if eps is None or eps <= 0:
        raise site.unsupported(f"{name} with eps={eps!r}: no finite Lipschitz constant")
    return Plan(name, up(float(gamma.max()) / math.sqrt(eps), 4),
                note=f"max|γ|/√ε (global constant, attained at constant inputs; ε={eps:g})")


def _declared_plan(site: Site, module: nn.Module, constant) -> Plan:
    deps = site.dep_inputs()
    if callable(constant):
        constant = constant(module, site.shape(deps[0])[1:] if deps else ())
    c = _check_constant(constant, f"module {site.node.target!r}")
    return Plan(type(module).__name__, c, "root", tuple(1.0 for _ in deps), note="declared constant",
                inputs=tuple(deps))


def _module_plan(site: Site) -> Plan:
    module = site.module
    name = type(module).__name__
    declared = declared_constant(module)
    if declared is not None:
        return _declared_plan(site, module, declared)
    if isinstance(module, WEIGHT_LAYERS):
        return _module_weight_op(site)
    if _deel_sort(module):
        coef = abs(float(getattr(module, "_coefficient_lip", 1.0)))
        return Plan(name, coef, note="sorting is 1-Lipschitz, times k_coef_lip")
    cls = _rule_class(module)
    if cls is None:
        raise site.unsupported(f"{name} has no Lipschitz rule; declare one with "
                               "harness.exact.register_lipschitz_constant")
    if cls in _ACTIVATION_MODULES:
        key = _ACTIVATION_MODULES[cls]
        params = {k: getattr(module, k) for k in ("negative_slope", "alpha", "approximate", "lower", "upper")
                  if hasattr(module, k)}
        if key == "prelu":
            params["weight"] = module.weight
        if key == "softmax" and module.dim is None:
            raise site.unsupported("Softmax without an explicit dim")
        return Plan(name, activation_constant(key, params))
    if cls in _DROPOUTS:
        return Plan(name, 1.0, note="eval mode: identity")
    if cls in _ZERO_PADS:
        return Plan(name, 1.0, note="constant padding: an isometric embedding plus a constant")
    if cls in _POOLS:
        family, dims = _POOL_CLASSES[cls]
        return pool_plan(site, name, family, dims, _pool_params_from_module(module))
    if cls in _NORMS:
        return _norm_plan(site, module)
    if cls in (nn.Upsample, nn.UpsamplingNearest2d) and module.mode not in ("nearest", "nearest-exact"):
        raise site.unsupported(f"Upsample mode {module.mode!r} (only nearest is supported)")
    return Plan(name, movement_factor(site, _replay(site)))


def runtime_check(node: fx.Node, modules: dict[str, nn.Module], args: tuple, kwargs: dict, out: Any) -> None:
    """Semantic checks that need the values at the moment the node runs (probe input)."""
    if not args or not isinstance(args[0], torch.Tensor) or not isinstance(out, torch.Tensor):
        return
    if node.op == "call_module":
        module = modules[str(node.target)]
        if declared_constant(module) is not None:
            return
        if isinstance(module, WEIGHT_LAYERS):
            check_weight_layer(module, str(node.target), args[0], out)
            return
        cls = _rule_class(module)
        if cls not in _POOL_CLASSES:
            return
        (family, dims), params = _POOL_CLASSES[cls], _pool_params_from_module(module)
    elif node.op == "call_function" and function_rule(node.target) is not None \
            and node.target in _FUNCTIONAL_POOLS:
        family, dims = _FUNCTIONAL_POOLS[node.target]
        params = _functional_pool_params(family, args, kwargs)
    else:
        return
    if params.get("return_indices"):
        return
    try:
        check_windows(pool_spec(tuple(args[0].shape), family, dims, params), args[0], out,
                      describe(node))
    except ValueError as exc:
        raise UnsupportedOperationError(str(exc)) from None


# ---------------------------------------------------------------------------------------
# Function and method tables
# ---------------------------------------------------------------------------------------

_MOVEMENT_NAMES = ("view", "view_as", "reshape", "reshape_as", "flatten", "unflatten", "permute",
                   "transpose", "t", "swapaxes", "swapdims", "movedim", "moveaxis", "squeeze",
                   "unsqueeze", "expand", "expand_as", "broadcast_to", "repeat", "tile", "flip",
                   "fliplr", "flipud", "roll", "narrow", "select", "chunk", "split", "tensor_split",
                   "unbind", "unfold", "repeat_interleave", "getitem", "pixel_shuffle",
                   "pixel_unshuffle", "channel_shuffle", "diagonal")
_IDENTITY_NAMES = ("contiguous", "clone", "detach", "to", "float", "double", "half", "bfloat16",
                   "type_as", "cpu", "cuda", "requires_grad_", "identity")
_METADATA = ("size", "dim", "numel", "ndimension", "nelement", "is_contiguous", "get_device",
             "element_size", "stride", "is_floating_point", "is_complex")
_METADATA_ATTRS = ("shape", "dtype", "device", "ndim", "is_cuda", "requires_grad", "layout", "is_sparse")


def _method_rule(name: str) -> Callable[[Site], Plan] | None:
    base = name[:-1] if name.endswith("_") and not name.startswith("_") else name
    if base in ("add", "sub", "subtract", "__add__", "__sub__", "__radd__", "__iadd__", "__isub__"):
        return _add
    if base in ("mul", "multiply", "__mul__", "__rmul__", "__imul__"):
        return lambda s: _scale_by_constant(s, False)
    if base in ("div", "divide", "true_divide", "__truediv__", "__itruediv__"):
        return lambda s: _scale_by_constant(s, True)
    if base in ("neg", "negative", "__neg__", "positive", "__pos__"):
        return _neg
    if base in ("matmul", "mm", "__matmul__"):
        return _matmul
    if base in ("sum", "mean", "amax", "amin"):
        return _reduction(base)
    if base == "norm":
        return _reduction("vector_norm")
    if base in act.CONSTANT_ONE or base in act.FIXED or base in ("leaky_relu", "elu", "selu", "gelu", "silu",
                                                                 "rrelu", "prelu"):
        return _activation(base)
    if base in _MOVEMENT_NAMES or base == "__getitem__":
        return _movement(base)
    if base in _IDENTITY_NAMES:
        return _identity(base)
    return None


_FUNCTIONS: dict[Any, Callable[[Site], Plan]] = {
    operator.add: _add, operator.iadd: _add, torch.add: _add, operator.sub: _add, operator.isub: _add,
    torch.sub: _add, torch.subtract: _add,
    operator.mul: lambda s: _scale_by_constant(s, False), operator.imul: lambda s: _scale_by_constant(s, False),
    torch.mul: lambda s: _scale_by_constant(s, False), torch.multiply: lambda s: _scale_by_constant(s, False),
    operator.truediv: lambda s: _scale_by_constant(s, True),
    operator.itruediv: lambda s: _scale_by_constant(s, True),
    torch.div: lambda s: _scale_by_constant(s, True), torch.true_divide: lambda s: _scale_by_constant(s, True),
    operator.neg: _neg, operator.pos: _neg, torch.neg: _neg,
    operator.matmul: _matmul, torch.matmul: _matmul, torch.mm: _matmul,
    torch.cat: _cat, torch.concat: _cat, torch.concatenate: _cat, torch.stack: _cat,
    torch.hstack: _cat, torch.vstack: _cat,
    operator.setitem: _setitem,
    torch.sum: _reduction("sum"), torch.mean: _reduction("mean"), torch.amax: _reduction("amax"),
    torch.amin: _reduction("amin"), torch.linalg.vector_norm: _reduction("vector_norm"),
    torch.norm: _reduction("vector_norm"),
    F.dropout: _dropout, F.dropout1d: _dropout, F.dropout2d: _dropout, F.alpha_dropout: _dropout,
    F.pad: _pad, F.interpolate: _interpolate,
    F.linear: _functional_weight_op, F.conv1d: _functional_weight_op, F.conv2d: _functional_weight_op,
    F.conv_transpose2d: _functional_weight_op,
}
_FUNCTIONAL_POOLS = {F.avg_pool1d: ("avg_pool", 1), F.avg_pool2d: ("avg_pool", 2),
                     F.max_pool1d: ("max_pool", 1), F.max_pool2d: ("max_pool", 2),
                     F.adaptive_avg_pool1d: ("adaptive_avg_pool", 1),
                     F.adaptive_avg_pool2d: ("adaptive_avg_pool", 2),
                     F.adaptive_max_pool1d: ("adaptive_max_pool", 1),
                     F.adaptive_max_pool2d: ("adaptive_max_pool", 2)}
for _f, (_family, _dims) in _FUNCTIONAL_POOLS.items():
    _FUNCTIONS[_f] = _functional_pool(_family, _dims)
for _name, _fn in (("relu", (F.relu, torch.relu, F.relu_, torch.relu_)), ("relu6", (F.relu6,)),
                   ("hardtanh", (F.hardtanh, F.hardtanh_)), ("clamp", (torch.clamp, torch.clip, torch.clamp_)),
                   ("abs", (torch.abs, torch.absolute, operator.abs)), ("tanh", (torch.tanh, F.tanh)),
                   ("softsign", (F.softsign,)), ("tanhshrink", (F.tanhshrink,)),
                   ("logsigmoid", (F.logsigmoid,)), ("celu", (F.celu,)), ("softplus", (F.softplus,)),
                   ("sigmoid", (torch.sigmoid, F.sigmoid)), ("hardsigmoid", (F.hardsigmoid,)),
                   ("hardswish", (F.hardswish,)), ("softmax", (F.softmax, torch.softmax)),
                   ("leaky_relu", (F.leaky_relu, F.leaky_relu_)), ("elu", (F.elu, F.elu_)),
                   ("selu", (F.selu, torch.selu)), ("gelu", (F.gelu,)), ("silu", (F.silu,)),
                   ("rrelu", (F.rrelu,)), ("prelu", (F.prelu,))):
    for _f in _fn:
        _FUNCTIONS[_f] = _activation(_name)
for _f in (torch.flatten, torch.reshape, torch.permute, torch.transpose, torch.swapaxes, torch.movedim,
           torch.squeeze, torch.unsqueeze, torch.t, torch.narrow, torch.select, torch.flip, torch.roll,
           torch.tile, torch.chunk, torch.split, torch.tensor_split, torch.unbind, torch.broadcast_to,
           torch.repeat_interleave, operator.getitem, F.pixel_shuffle, F.pixel_unshuffle, F.unfold,
           torch.diagonal):
    _FUNCTIONS[_f] = _movement(getattr(_f, "__name__", "movement"))
for _f in (torch.clone, torch.detach):
    _FUNCTIONS[_f] = _identity(_f.__name__)


def function_rule(target: Any) -> Callable[[Site], Plan] | None:
    try:
        return _FUNCTIONS.get(target)
    except TypeError:  # unhashable target
        return None


def is_metadata(node: fx.Node) -> bool:
    """Nodes that read only sizes/dtypes of a tensor: constant for a fixed input shape."""
    import builtins
    if node.op == "call_method":
        return node.target in _METADATA
    if node.op == "call_function":
        if node.target is builtins.getattr:
            return len(node.args) > 1 and node.args[1] in _METADATA_ATTRS
        return node.target in (builtins.len, torch.numel)
    return False


def plan_node(site: Site) -> Plan:
    """The :class:`Plan` of one input-dependent node; ``UnsupportedOperationError`` if none applies."""
    node = site.node
    import builtins
    if node.op == "call_module":
        plan = _module_plan(site)
    elif node.op == "call_method":
        rule = _method_rule(str(node.target))
        if rule is None:
            raise site.unsupported(f"no Lipschitz rule for tensor method .{node.target}()")
        plan = rule(site)
    elif node.op == "call_function":
        if node.target is operator.getitem and not isinstance(site.capture.values[node.args[0]], torch.Tensor):
            plan = Plan("getitem", 1.0, note="element of a bounded tuple")
        elif node.target is builtins.getattr and node.args[1] in ("T", "mT", "real"):
            plan = Plan(f".{node.args[1]}", movement_factor(site, lambda ids: getattr(ids, node.args[1])))
        else:
            rule = function_rule(node.target)
            if rule is None:
                raise site.unsupported(f"no Lipschitz rule for function {target_name(node.target)}")
            plan = rule(site)
    else:
        raise site.unsupported(f"unexpected {node.op} node")
    if not plan.inputs:
        plan.inputs = tuple(site.dep_inputs())
    if plan.weights is None:
        plan.weights = tuple(1.0 for _ in plan.inputs)
    return plan
