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
from typing import Any, Callable

import torch
import torch.fx as fx
import torch.nn.functional as F

from . import activations as act
from .activations import activation_constant
from .graph import target_name
from .layer_rules import (FUNCTIONAL_POOLS, _functional_pool, _functional_weight_op, _module_plan)
from .plans import Plan, Site, WeightOp, broadcast_scale, movement_factor, replay, up


def _movement(kind: str) -> Callable[[Site], Plan]:
    def rule(site: Site) -> Plan:
        return Plan(kind, movement_factor(site, replay(site)))
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


def _pad(site: Site) -> Plan:
    mode = site.arg(2, "mode", "constant")
    if mode == "constant":
        return Plan("pad", 1.0, note="constant padding: an isometric embedding plus a constant")
    return Plan(f"pad ({mode})", movement_factor(site, replay(site)))


def _interpolate(site: Site) -> Plan:
    mode = site.arg(3, "mode", "nearest")
    if mode not in ("nearest", "nearest-exact"):
        raise site.unsupported(f"interpolation mode {mode!r} (only nearest is supported)")
    return Plan(f"interpolate ({mode})", movement_factor(site, replay(site)))


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
for _f, (_family, _dims) in FUNCTIONAL_POOLS.items():
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
