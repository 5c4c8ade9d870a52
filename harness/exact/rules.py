"""Lipschitz rules for the functions and tensor methods of the allow-list (:mod:`.allowlist`).

``L(node)`` is a certified Lipschitz bound of the map *model input → node value*. A node
that does not depend on the input has ``L = 0``. Every input-dependent node gets a
:class:`~.plans.Plan`: ``L = factor · combine(w_i · L(input_i))`` where ``combine`` is the sum
(``mode="sum"``: addition, the triangle inequality) or the root of the sum of squares
(``mode="root"``: concatenation, stacking, tuples, multi-input modules:
``‖(f(x) − f(y), g(x) − g(y))‖ ≤ √(L_f² + L_g²)‖x − y‖``). Each rule receives every argument
of its call by name (:class:`~.signatures.Args`) and refuses the values it does not model:

* add / sub: ``Σ w_i L_i`` with ``w_i = |α|·√m_i`` where ``m_i`` is how many times
  broadcasting repeats operand ``i`` (``alpha`` scales ``other``; a constant operand is a
  translation); ``tuple + tuple`` is a concatenation;
* multiplication or true division by a constant ``c`` (scalar or broadcast tensor): the
  exact norm of ``x ↦ c ⊙ broadcast(x)``, ``√max_i Σ_{copies of x_i} c²``; a product of two
  input-dependent tensors, division by one, and ``rounding_mode`` (floor, trunc: a
  staircase) are refused; ``x @ W`` / ``W @ x`` with a constant 1-D or 2-D ``W``: ``‖W‖₂``;
* data movement (view, reshape, flatten, permute, transpose, squeeze, expand, repeat,
  slicing and indexing with constant indices, chunk/split, flip, roll, nearest upsampling,
  pixel shuffle, replicate/reflect/circular padding, ...): the exact norm
  ``√(largest number of copies of one input entry)``, found by running the op with all its
  arguments on the entry indices; constant padding: 1;
* linear, bilinear, bicubic and trilinear interpolation: ``Π_k σ₁(A_k)`` of the per-axis
  interpolation matrices, certified (:mod:`.interpolation`, checked against torch's output
  on the probe); ``antialias=True`` refused;
* a product of two input-dependent tensors (``matmul``, and through :mod:`.allowlist`'s
  refusal ``bmm``, ``einsum``, attention): refused with :data:`ATTENTION`, the reason;
* reductions over ``N`` entries (``dim``/``axis``, ``keepdim``/``keepdims``, ``dtype``):
  ``sum`` ``√N``, ``mean`` ``1/√N``, ``amax``/``amin`` 1, the ``p``-norm ``max(1, N^{1/p − 1/2})``
  for ``1 ≤ p ≤ ∞`` (1 for ``p ≥ 2``; other ``p`` refused);
* casts and copies between floating dtypes (``to``, ``float``, ``type_as``, ``clone``, ...):
  the identity; a cast to an integer or bool dtype is discontinuous and refused (so is any
  input-dependent node whose value is not a floating-point tensor, :mod:`.network`);
* activations: :mod:`.activations` (each parameter checked against the domain where the
  constant holds); dropout with ``training=False``: the identity.

Anything else that depends on the input raises :class:`UnsupportedOperationError` naming
the node, the op and the module path.
"""
from __future__ import annotations

import math
from typing import Any, Callable

import torch
import torch.fx as fx

from .activations import DomainError, activation_constant
from .graph import DTYPE_TOL
from .interpolation import MODES, check_against, interpolation_bracket
from .plans import Plan, Site, WeightOp, broadcast_scale, movement_factor, replay, sqrt_up, up
from .signatures import Args

Rule = Callable[[Site, Args], Plan]


def kind_of(site: Site) -> str:
    t = site.node.target
    return t if isinstance(t, str) else getattr(t, "__name__", str(t))


def only_input(site: Site, args: Args, name: str = "input", shape_only: tuple[str, ...] = ()) -> fx.Node:
    """The op's argument ``name``, which must be its only input-dependent argument (arguments in
    ``shape_only`` are used for their shape or dtype alone and may depend on the input)."""
    x = args.node(name)
    others = [n for n in args.raw if n != name and n not in shape_only]
    if not (isinstance(x, fx.Node) and site.dependent(x)):
        raise site.unsupported(f"argument {name!r} does not depend on the input, another one does")
    for other in others:
        if args.is_dependent(other):
            raise site.unsupported(f"argument {other!r} depends on the input (only {name!r} may)")
    for other in shape_only:
        args.node(other)
    return x


def _optional(args: Args, *names: str) -> list[str]:
    return [n for n in names if n in args.raw]


def _standard(args: Args) -> None:
    """``out=`` (writes elsewhere) must be ``None``; ``inplace`` is followed by version counters."""
    for name in _optional(args, "out"):
        args.none(name)
    for name in _optional(args, "inplace"):
        args.any(name)


# ---------------------------------------------------------------------------------------
# Arithmetic
# ---------------------------------------------------------------------------------------

def add(site: Site, args: Args) -> Plan:
    _standard(args)
    a, b = args.node("input"), args.node("other")
    alpha = args.number("alpha") if "alpha" in args.raw else 1.0
    if isinstance(site.out, torch.Tensor):
        alpha = float(effective(alpha, site.out.dtype))
    va, vb = site.value(a), site.value(b)
    if isinstance(va, (tuple, list)) and isinstance(vb, (tuple, list)):
        return concatenation(site, [x for x in (a, b) if site.is_dependent(x)])
    if not isinstance(site.out, torch.Tensor):
        raise site.unsupported(f"adding a {type(va).__name__} and a {type(vb).__name__}")
    inputs, weights = [], []
    for operand, scale in ((a, 1.0), (b, abs(alpha))):
        if site.is_dependent(operand):
            if not isinstance(operand, fx.Node):
                raise site.unsupported("an input-dependent operand inside a container")
            inputs.append(operand)
            weights.append(broadcast_scale(scale, site.shape(operand), tuple(site.out.shape)))
    return Plan(kind_of(site), 1.0, "sum", tuple(weights), inputs=tuple(inputs))


def as_float64(c: Any) -> torch.Tensor:
    """A Python number or tensor in float64, without a detour through float32."""
    if isinstance(c, torch.Tensor):
        return c.detach().to(torch.float64)
    return torch.tensor(float(c), dtype=torch.float64)


def effective(c: Any, dtype: torch.dtype) -> torch.Tensor:
    """``|c|`` as the op may use it: the larger of ``|c|`` and ``|c|`` rounded to the computation's
    dtype (torch casts a Python scalar or a 0-dim constant to the tensor's dtype)."""
    exact = as_float64(c).abs()
    return torch.maximum(exact, exact.to(dtype).to(torch.float64)) if dtype.is_floating_point else exact


def _factor(site: Site, c: Any, divide: bool) -> torch.Tensor:
    if isinstance(c, torch.Tensor) and c.is_complex() or isinstance(c, complex):
        raise site.unsupported("a complex factor is not modelled")
    if not isinstance(c, (torch.Tensor, int, float, bool)):
        raise site.unsupported(f"a factor of type {type(c).__name__} is not modelled")
    dtype = site.out.dtype
    if divide:
        c = as_float64(c)
        if bool((c == 0).any()):
            raise site.unsupported("division by a constant containing zeros")
        rounded = c.to(dtype).to(torch.float64) if dtype.is_floating_point else c
        if bool((rounded == 0).any()):
            raise site.unsupported(f"division by a constant that is 0 in {dtype}")
        return torch.maximum(1.0 / c.abs(), 1.0 / rounded.abs())
    return effective(c, dtype)


def scale(divide: bool) -> Rule:
    """``x·c``, ``c·x`` or ``x/c`` with ``c`` constant (``rounding_mode`` must be ``None``)."""
    def rule(site: Site, args: Args) -> Plan:
        _standard(args)
        if "rounding_mode" in args.raw and args.constant("rounding_mode") is not None:
            raise site.unsupported(f"rounding_mode={args.value('rounding_mode')!r} rounds the "
                                   "quotient: discontinuous, no Lipschitz constant")
        a, b = args.node("input"), args.node("other")
        dep = [o for o in (a, b) if site.is_dependent(o)]
        if len(dep) != 1 or not isinstance(dep[0], fx.Node):
            raise site.unsupported("a product of two input-dependent tensors is not globally Lipschitz")
        x = dep[0]
        if divide and x is not a:
            raise site.unsupported("division by an input-dependent tensor is not globally Lipschitz")
        c = _factor(site, site.value(b if x is a else a), divide)
        try:
            factor = broadcast_scale(c, site.shape(x), tuple(site.out.shape))
        except ValueError as exc:
            raise site.unsupported(str(exc)) from None
        return Plan(kind_of(site), factor, inputs=(x,))
    return rule


def negate(site: Site, args: Args) -> Plan:
    _standard(args)
    return Plan(kind_of(site), 1.0, inputs=(only_input(site, args),))


#: Why a product of two input-dependent tensors is refused: ``x ↦ (Ax)(Bx)ᵀ`` has a gradient that
#: grows with ``‖x‖``; for dot-product self-attention see [Kim2021] Theorem 3.1.
ATTENTION = ("a product of two input-dependent tensors, as in dot-product attention, has no global Lipschitz "
             "constant (Kim et al. 2021, Theorem 3.1; docs/references.md)")


def matmul(site: Site, args: Args) -> Plan:
    """``x @ W`` (``Wᵀ`` on the last dim) or ``W @ x`` (``W`` on the second-to-last): ``‖W‖₂``."""
    _standard(args)
    for name in _optional(args, "out_dtype"):
        args.float_dtype(name)
    other = "mat2" if "mat2" in args.raw else "other"
    a, b = args.node("input"), args.node(other)
    dep = [o for o in (a, b) if site.is_dependent(o)]
    if len(dep) != 1:
        raise site.unsupported(ATTENTION)
    w = site.value(b if dep[0] is a else a)
    if not isinstance(w, torch.Tensor) or w.dim() not in (1, 2) or w.is_complex():
        raise site.unsupported("matrix products are modelled with a constant real 1-D or 2-D matrix only")
    w = w.detach()
    if dep[0] is a:  # x @ W acts on the last dim as Wᵀ (a vector v as vᵀ)
        weight = (w.reshape(-1, 1) if w.dim() == 1 else w).T
    else:  # W @ x acts on the second-to-last dim as W (a vector v as vᵀ)
        weight = w.reshape(1, -1) if w.dim() == 1 else w
    return Plan("matmul", None, weight_op=WeightOp(weight, "linear", ()), inputs=(dep[0],))


def concatenation(site: Site, parts: list) -> Plan:
    return Plan(kind_of(site), 1.0, "root", tuple(1.0 for _ in parts), inputs=tuple(parts))


def cat(site: Site, args: Args) -> Plan:
    """Disjoint blocks: ``√Σ L_i²`` (any ``dim``)."""
    _standard(args)
    for name in _optional(args, "dim"):
        args.any(name)
    tensors = args.node("tensors")
    parts: list[fx.Node] = []
    fx.node.map_arg(tensors, lambda n: parts.append(n) if site.dependent(n) else None)
    return concatenation(site, parts)


# ---------------------------------------------------------------------------------------
# Reductions
# ---------------------------------------------------------------------------------------

def _reduced(site: Site, args: Args, x: fx.Node, name: str = "dim") -> int:
    """How many entries each output reduces (``dim``: an int, a sequence, ``None`` or empty: all)."""
    shape = site.shape(x)
    dims = args.constant(name)
    if isinstance(dims, int):
        dims = (dims,)
    elif dims is None or (isinstance(dims, (tuple, list, torch.Size)) and len(dims) == 0):
        dims = tuple(range(len(shape)))
    elif not (isinstance(dims, (tuple, list, torch.Size)) and all(isinstance(d, int) for d in dims)):
        raise site.unsupported(f"{name}={dims!r} is not modelled (integer dims only)")
    return math.prod(shape[d] for d in {d % max(len(shape), 1) for d in dims}) if shape else 1


def reduction(kind: str) -> Rule:
    def rule(site: Site, args: Args) -> Plan:
        _standard(args)
        x = only_input(site, args)
        for name in _optional(args, "dtype"):
            args.float_dtype(name)
        args.any("keepdim")
        count = _reduced(site, args, x)
        if kind == "sum":
            return Plan("sum", sqrt_up(count), note=f"sum of {count} entries", inputs=(x,))
        if kind == "mean":
            return Plan("mean", up(1 / math.sqrt(count), 2), note=f"mean of {count} entries", inputs=(x,))
        return Plan(kind, 1.0, note="max/min over disjoint groups", inputs=(x,))
    return rule


def _norm_constant(site: Site, p: Any, count: int) -> float:
    if p is None or p == "fro":
        p = 2.0
    if isinstance(p, bool) or not isinstance(p, (int, float)) or math.isnan(p):
        raise site.unsupported(f"norm with p={p!r} is not modelled")
    if p == -math.inf or p >= 2:
        return 1.0  # |‖a‖_p − ‖b‖_p| ≤ ‖a − b‖_p ≤ ‖a − b‖₂ (min|·| for −∞)
    if p < 1:
        raise site.unsupported(f"norm with p={p!r} < 1 is not Lipschitz")
    return max(1.0, up(count ** (1 / p - 0.5), 4))  # ‖·‖_p ≤ N^{1/p−1/2}‖·‖₂, attained


def vector_norm(input_name: str, p_name: str) -> Rule:
    """``‖·‖_p`` over disjoint groups of ``N`` entries (see the module docstring)."""
    def rule(site: Site, args: Args) -> Plan:
        _standard(args)
        x = only_input(site, args, input_name)
        for name in _optional(args, "dtype"):
            args.float_dtype(name)
        args.any("keepdim")
        count = _reduced(site, args, x)
        factor = _norm_constant(site, args.constant(p_name), count)
        return Plan("norm", factor, note=f"p-norm over groups of {count} entries", inputs=(x,))
    return rule


# ---------------------------------------------------------------------------------------
# Activations, dropout
# ---------------------------------------------------------------------------------------

_NUMBERS = ("negative_slope", "alpha", "beta", "threshold", "lower", "upper", "lambd", "scale",
            "input_scale")


def activation_params(site: Site, args: Args, names) -> dict:
    """Read every parameter of an activation call or module by name (each has one meaning)."""
    params: dict[str, Any] = {"dtype": site.out.dtype if isinstance(site.out, torch.Tensor) else None}
    for name in names:
        if name in _NUMBERS:
            params[name] = args.number(name)
        elif name in ("min", "max", "min_val", "max_val"):  # clamps: 1 for any constant bounds
            args.constant(name)
        elif name in ("inplace", "_stacklevel", "generator", "num_parameters", "init", "min_value",
                      "max_value"):
            args.any(name)
        elif name == "out":
            args.none(name)
        elif name == "training":
            if args.constant(name):
                raise site.unsupported("training=True draws random slopes: no fixed map")
        elif name == "weight":
            params[name] = args.constant(name)
            if not isinstance(params[name], torch.Tensor) or not bool(torch.isfinite(params[name]).all()):
                raise site.unsupported("PReLU weight must be a finite constant tensor")
        elif name == "approximate":
            params[name] = args.constant(name)
        elif name == "dim":
            if args.constant(name) is None:
                raise site.unsupported("softmax without an explicit dim")
        elif name == "dtype":
            args.float_dtype(name)
        else:
            raise site.unsupported(f"argument {name!r} is not modelled")
    return params


def activation(kind: str, input_name: str = "input") -> Rule:
    def rule(site: Site, args: Args) -> Plan:
        x = only_input(site, args, input_name)
        params = activation_params(site, args, [n for n in args.raw if n != input_name])
        try:
            return Plan(kind, activation_constant(kind, params), inputs=(x,))
        except DomainError as exc:
            raise site.unsupported(str(exc)) from None
    return rule


def dropout(site: Site, args: Args) -> Plan:
    _standard(args)
    x = only_input(site, args)
    args.any("p")
    if args.constant("training"):
        raise site.unsupported("dropout with training=True is random; pass training=self.training")
    return Plan("dropout", 1.0, note="training=False: identity", inputs=(x,))


# ---------------------------------------------------------------------------------------
# Data movement, padding, casts
# ---------------------------------------------------------------------------------------

def movement(shape_only: tuple[str, ...] = (), input_name: str = "input") -> Rule:
    """A pure rearrangement: every argument (modules: every attribute, read by their own
    ``forward``) goes to the replay on entry indices."""
    def rule(site: Site, args: Args) -> Plan:
        _standard(args)
        x = only_input(site, args, input_name, shape_only=shape_only)
        for name in args.raw:  # all of them go to the replay
            value = args.value(name)
            if isinstance(value, torch.dtype) or isinstance(value, tuple) and \
                    any(isinstance(v, torch.dtype) for v in value):
                raise site.unsupported(f"{name}={value!r} reinterprets the bits: not Lipschitz")
        return Plan(kind_of(site), movement_factor(site, replay(site), x), inputs=(x,))
    return rule


def module_identity(site: Site, args: Args) -> Plan:
    """``nn.Identity`` and dropout modules (in eval mode, where the bound is computed)."""
    x = only_input(site, args)
    args.any(*[n for n in args.raw if n != "input"])
    if site.module.training:
        raise site.unsupported("a dropout module in training mode is random")
    return Plan(type(site.module).__name__, 1.0, note="identity (eval mode)", inputs=(x,))


def constant_pad_module(site: Site, args: Args) -> Plan:
    x = only_input(site, args)
    args.any("padding")
    if "value" in args.raw and not math.isfinite(args.number("value")):
        raise site.unsupported("padding value is not finite")
    return Plan(type(site.module).__name__, 1.0, note="constant padding: an isometric embedding plus a constant",
                inputs=(x,))


NEAREST = ("nearest", "nearest-exact")


def _resize(site: Site, args: Args, x: fx.Node, label: str) -> Plan:
    """Nearest modes: a copy map (movement); linear, bilinear, bicubic, trilinear: a Kronecker
    product of per-axis interpolation matrices (:mod:`.interpolation`), checked on the probe."""
    mode = args.equal("mode", *NEAREST, *MODES)
    size, scale_factor = args.constant("size"), args.constant("scale_factor")
    align_corners, recompute = args.constant("align_corners"), args.constant("recompute_scale_factor")
    if mode in NEAREST:
        return Plan(f"{label} ({mode})", movement_factor(site, replay(site), x), inputs=(x,))
    spatial, out = site.shape(x)[2:], tuple(site.out.shape[2:])
    if len(spatial) != MODES[mode] or len(out) != len(spatial):
        raise site.unsupported(f"mode={mode!r} on an input of shape {site.shape(x)}")
    if size is not None or recompute or scale_factor is None:
        scales = (None,) * len(spatial)  # the kernel gets no scale: in/out per axis
    else:
        scales = tuple(scale_factor) if isinstance(scale_factor, (tuple, list)) else (scale_factor,) * len(spatial)
        scales = tuple(float(s) for s in scales)
    lower, upper, mats = interpolation_bracket(spatial, out, mode, bool(align_corners), scales)
    mismatch = check_against(mats, site.value(x), site.out, DTYPE_TOL.get(site.out.dtype, 1e-4))
    if mismatch:
        raise site.unsupported(f"mode={mode!r}: {mismatch}; this interpolation is not modelled")
    return Plan(f"{label} ({mode})", upper, bracket=(lower, upper),
                note="product of the per-axis interpolation norms (certified)", inputs=(x,))


def upsample_module(site: Site, args: Args) -> Plan:
    return _resize(site, args, only_input(site, args), "Upsample")


def pad(site: Site, args: Args) -> Plan:
    x = only_input(site, args)
    args.any("pad")
    mode = args.constant("mode")
    if mode == "constant":
        value = args.constant("value")
        if value is not None and not math.isfinite(float(value)):
            raise site.unsupported(f"padding value {value!r} is not finite")
        return Plan("pad", 1.0, note="constant padding: an isometric embedding plus a constant", inputs=(x,))
    args.none("value")
    return Plan(f"pad ({mode})", movement_factor(site, replay(site), x), inputs=(x,))


def interpolate(site: Site, args: Args) -> Plan:
    x = only_input(site, args)
    if args.constant("antialias"):
        if args.constant("mode") in ("bilinear", "bicubic"):
            raise site.unsupported("antialias=True (a different, size-dependent filter) is not modelled")
        args.equal("antialias", False)
    return _resize(site, args, x, "interpolate")


def cast(shape_only: tuple[str, ...] = ()) -> Rule:
    """Copies and casts between floating dtypes: the identity (``to``, ``float``, ``clone``, ...)."""
    def rule(site: Site, args: Args) -> Plan:
        _standard(args)
        x = only_input(site, args, shape_only=shape_only)
        for name in args.raw:
            value = args.value(name)
            if isinstance(value, (tuple, list)):
                value = next((v for v in value if isinstance(v, (torch.dtype, torch.Tensor))), None)
            dtype = value.dtype if isinstance(value, torch.Tensor) else value
            if isinstance(dtype, torch.dtype) and not dtype.is_floating_point and name != "input":
                raise site.unsupported(f"a cast to {dtype} is discontinuous: no Lipschitz constant")
        out = site.out
        if not (isinstance(out, torch.Tensor) and out.is_floating_point()):
            raise site.unsupported("a cast to a non-floating type is discontinuous: no Lipschitz constant")
        return Plan(kind_of(site), 1.0, note="floating copy or cast: identity", inputs=(x,))
    return rule
