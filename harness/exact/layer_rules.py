"""Rules for weight layers, pooling and normalisation, as modules and as functions.

Modules kept whole by the tracer (:func:`is_leaf`) are torch's own classes, or subclasses
that override none of the methods that compute (``forward``, ``_conv_forward``,
``__call__``, ...): a subclass that does is traced into, so its own code is what gets
bounded. Weight layers and pooling are also checked against torch's own output on the
probe input (:func:`runtime_check`), so a geometry the rule misreads is refused rather than
mis-bounded.

* weight layers (``Linear``, ``Conv1d``, ``Conv2d``, ``ConvTranspose2d``, ``F.linear``,
  ``F.conv1d``, ``F.conv2d``, ``F.conv_transpose2d`` with a constant weight): the certified
  upper end of ``‖W̃‖₂`` at the real input size (bias: a translation), computed after the
  whole graph is validated (:class:`~.plans.WeightOp`);
* pooling: :mod:`.pooling` (exact, at the real size);
* BatchNorm and InstanceNorm with running statistics in eval mode: ``max|γ/√(var + ε)|``
  (a diagonal scaling, exact); LayerNorm, GroupNorm, InstanceNorm without running
  statistics and RMSNorm: ``max|γ|/√ε``. For ``y = (x − μ)/σ`` with ``σ = √(var + ε)``,
  ``J = (P − uuᵀ)/σ`` with ``P`` the centring projection and ``‖u‖ < 1`` in its range, so
  ``‖J‖ ≤ 1/σ ≤ 1/√ε``, attained at constant inputs (RMSNorm: ``J = (I − uuᵀ)/r``, the same
  bound; ``ε`` defaults to the dtype's machine epsilon there, as in torch).
"""
from __future__ import annotations

import math
from typing import Any, Callable

import torch
import torch.fx as fx
import torch.nn.functional as F
from torch import nn

from harness.layers import (WEIGHT_LAYERS, UnsupportedLayerError, _string_padding, apply_operator, geometry,
                            layer_kind)

from .declared import _deel_sort, declared_constant
from .graph import DTYPE_TOL, UnsupportedOperationError, describe
from .plans import Plan, Site, WeightOp, movement_factor, scale_up, up
from .pooling import PoolSpec, adaptive_pool_spec, avg_pool_spec, check_windows, max_pool_spec, pool_constant
from .rules import only_input
from .signatures import Args

#: Methods that define what a module computes: a subclass overriding one is traced into.
BEHAVIOUR = ("forward", "_conv_forward", "_output_padding", "__call__", "_call_impl", "_wrapped_call_impl",
             "_check_input_dim", "__getattr__", "__getattribute__")


def pristine(module: nn.Module, base: type) -> bool:
    """Whether ``module`` computes exactly what ``base`` (a torch class in its MRO) computes: no
    class between them and no attribute of the instance itself (a patched ``forward``) defines
    how it computes."""
    if any(name in vars(module) for name in BEHAVIOUR):
        return False
    for cls in type(module).__mro__:
        if cls is base:
            return True
        if any(name in vars(cls) for name in BEHAVIOUR):
            return False
    return False


def is_leaf(module: nn.Module, listed: Callable[[nn.Module], type | None]) -> bool:
    """Whether the tracer keeps ``module`` as one node (see :mod:`.graph`); ``listed(module)`` is
    the first allow-listed class in its MRO."""
    if declared_constant(module) is not None or _deel_sort(module):
        return True
    base = listed(module)
    if base is not None:
        return pristine(module, base)  # else traced into: its own code is what gets bounded
    if isinstance(module, (nn.Sequential, nn.ModuleList, nn.ModuleDict)):
        return False
    # other torch.nn classes stay whole so that an unsupported one is named as a module
    return type(module).__module__.startswith(("torch.nn", "torch.ao.nn"))


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


def _tuple(v: Any, dims: int) -> tuple[int, ...]:
    return (int(v),) * dims if isinstance(v, int) else tuple(int(x) for x in v)


def weight_module(site: Site, args: Args) -> Plan:
    """A ``Linear``/``Conv*`` module: its effective ``weight`` and geometry (every attribute)."""
    module = site.module
    x = only_input(site, args)
    args.any(*[n for n in args.raw if n != "input"])  # geometry() reads them all; shapes from weight
    kind = layer_kind(module, str(site.node.target))
    try:
        geom = geometry(module, str(site.node.target))
    except UnsupportedLayerError as exc:
        raise site.unsupported(str(exc)) from None
    dims = _conv_dims(kind)
    spatial = tuple(site.shape(x)[-dims:]) if dims else ()
    weight = module.weight.detach()
    if geom.padding_mode in COPY_PADDING and kind in ("conv1d", "conv2d"):
        return _copy_padded_conv(site, x, module, kind, geom, weight)
    if geom.padding_mode not in ("zeros", "circular"):
        raise site.unsupported(f"padding_mode={geom.padding_mode!r} (only zeros, circular, and reflect or "
                               "replicate for Conv1d/Conv2d)")
    output_padding = geom.output_padding or 0
    if kind == "conv_transpose2d":  # also covers forward(input, output_size=...)
        output_padding = _transpose_output_padding(weight, spatial, tuple(site.out.shape[-2:]),
                                                   geom.stride, geom.padding, geom.dilation)
    op = WeightOp(weight, kind, spatial, geom.stride, geom.padding, geom.dilation, geom.groups,
                  geom.padding_mode, output_padding)
    return Plan(kind, None, weight_op=op, inputs=(x,))


COPY_PADDING = ("reflect", "replicate")


def _copy_padded_conv(site: Site, x, module: nn.Module, kind: str, geom, weight) -> Plan:
    """``Conv(padding_mode='reflect'|'replicate')`` computes ``conv_valid(pad(x))`` (torch's
    ``_conv_forward``): ``‖conv_valid‖₂ · √(largest number of copies of one entry by pad)``, a
    certified upper bound (the product of the two exact norms; docs/certificates.md#movement)."""
    pad = tuple(module._reversed_padding_repeated_twice)
    copies = movement_factor(site, lambda ids: F.pad(ids, pad, mode=geom.padding_mode), x)
    with torch.no_grad():
        padded = F.pad(site.value(x), pad, mode=geom.padding_mode)
    spatial = tuple(padded.shape[-_conv_dims(kind):])
    op = WeightOp(weight, kind, spatial, geom.stride, 0, geom.dilation, geom.groups, "zeros", 0)
    return Plan(kind, None, weights=(copies,), weight_op=op, note=f"{geom.padding_mode} padding: ×{copies:.6g}",
                inputs=(x,))


def weight_function(kind: str) -> Callable[[Site, Args], Plan]:
    """``F.linear`` / ``F.conv1d`` / ``F.conv2d`` / ``F.conv_transpose2d`` with a constant weight."""
    def rule(site: Site, args: Args) -> Plan:
        x = only_input(site, args)
        weight = args.constant("weight")
        args.constant("bias")
        if not isinstance(weight, torch.Tensor):
            raise site.unsupported("the weight is not a tensor")
        weight = weight.detach()
        if kind == "linear":
            return Plan("linear", None, weight_op=WeightOp(weight, "linear", ()), inputs=(x,))
        dims = _conv_dims(kind)
        spatial = tuple(site.shape(x)[-dims:])
        stride, dilation, groups = args.constant("stride"), args.constant("dilation"), args.constant("groups")
        pad = args.constant("padding")
        if isinstance(pad, str):
            try:
                pad = _string_padding(pad, weight.shape[2:], _tuple(dilation, dims))
            except UnsupportedLayerError as exc:
                raise site.unsupported(str(exc)) from None
        output_padding = 0
        if kind == "conv_transpose2d":
            args.any("output_padding")  # read back from the real output size
            output_padding = _transpose_output_padding(weight, spatial, tuple(site.out.shape[-2:]),
                                                       _tuple(stride, dims), _tuple(pad, dims),
                                                       _tuple(dilation, dims))
        op = WeightOp(weight, kind, spatial, stride, pad, dilation, int(groups), "zeros", output_padding)
        return Plan(kind, None, weight_op=op, inputs=(x,))
    return rule


def check_weight_layer(module: nn.Module, name: str, x: torch.Tensor, out: torch.Tensor) -> None:
    """``UnsupportedOperationError`` unless the module computed ``W̃x + b`` with ``layer.weight``
    on the probe (float tolerance of the dtype): the rule reads ``layer.weight`` and the geometry."""
    try:
        geom = geometry(module, name)
    except UnsupportedLayerError:
        return  # refused by the rule
    copy_padded = geom.padding_mode in COPY_PADDING and geom.kind in ("conv1d", "conv2d")
    if geom.padding_mode not in ("zeros", "circular") and not copy_padded:
        return  # refused by the rule with a clearer message
    with torch.no_grad():
        conv = F.conv1d if geom.kind == "conv1d" else F.conv2d
        ref = conv(F.pad(x, tuple(module._reversed_padding_repeated_twice), mode=geom.padding_mode),
                   module.weight, None, geom.stride, 0, geom.dilation, geom.groups) if copy_padded else \
            apply_operator(geom, module.weight, x) if geom.kind != "conv_transpose2d" else \
            F.conv_transpose2d(x, module.weight, stride=geom.stride, padding=geom.padding,
                               output_padding=_transpose_output_padding(
                                   module.weight, x.shape[-2:], out.shape[-2:], geom.stride,
                                   geom.padding, geom.dilation),
                               groups=geom.groups, dilation=geom.dilation)
        bias = getattr(module, "bias", None)
        if bias is not None:
            ref = ref + (bias if geom.kind == "linear" else bias.view(-1, *([1] * (ref.dim() - 2))))
    tol = DTYPE_TOL.get(out.dtype, 1e-4) * (float(out.abs().max()) + 1e-30)
    if ref.shape != out.shape or not float((ref - out).abs().max()) <= tol:
        raise UnsupportedOperationError(
            f"module {name!r} ({type(module).__name__}) does not compute its layer's map "
            "x -> W x + b with layer.weight; declare its constant with register_lipschitz_constant")


# ---------------------------------------------------------------------------------------
# Pooling
# ---------------------------------------------------------------------------------------

POOL_ARGS = ("kernel_size", "stride", "padding", "dilation", "ceil_mode", "count_include_pad",
             "divisor_override", "output_size", "return_indices")


def pool_params(args: Args) -> dict:
    """Every pooling argument by name (``None`` stride means the kernel size)."""
    return {name: args.constant(name) for name in POOL_ARGS if name in args.raw}


def pool_spec(shape: tuple[int, ...], family: str, dims: int, params: dict) -> PoolSpec:
    if len(shape) < dims + 1:
        raise ValueError(f"pooling input of shape {shape}")
    spatial = tuple(shape[-dims:])
    if family.startswith("adaptive"):
        return adaptive_pool_spec("avg" if "avg" in family else "max", spatial, params["output_size"])
    if family == "avg_pool":
        return avg_pool_spec(spatial, params["kernel_size"], params.get("stride"), params.get("padding", 0),
                             params.get("ceil_mode", False), params.get("count_include_pad", True),
                             params.get("divisor_override"))
    return max_pool_spec(spatial, params["kernel_size"], params.get("stride"), params.get("padding", 0),
                         params.get("dilation", 1), params.get("ceil_mode", False))


def pool(family: str, dims: int) -> Callable[[Site, Args], Plan]:
    def rule(site: Site, args: Args) -> Plan:
        x = only_input(site, args)
        params = pool_params(args)
        if params.get("return_indices"):
            raise site.unsupported("pooling with return_indices=True (indices are not Lipschitz)")
        try:
            spec = pool_spec(site.shape(x), family, dims, params)
        except ValueError as exc:
            raise site.unsupported(str(exc)) from None
        lower, upper, detail = pool_constant(spec, site.shape(x)[-dims:])
        return Plan(f"{family}{dims}d", upper, bracket=(lower, upper) if spec.kind == "avg" else None,
                    note=detail, inputs=(x,))
    rule.pool_family = (family, dims)  # for the runtime check of the windows
    return rule


# ---------------------------------------------------------------------------------------
# Normalisation
# ---------------------------------------------------------------------------------------

def _abs_max(t: Any) -> float:
    if t is None:
        return 1.0
    if not isinstance(t, torch.Tensor):
        raise ValueError(f"a normalisation weight of type {type(t).__name__}")
    t = t.detach().double()
    if not bool(torch.isfinite(t).all()):
        raise ValueError("the normalisation weight is not finite")
    return float(t.abs().max()) if t.numel() else 0.0


def _label(site: Site) -> str:
    return type(site.module).__name__ if site.module is not None else str(site.node.target.__name__)


def _running_scale(site: Site, weight: Any, running_var: torch.Tensor, eps: float) -> Plan:
    """Eval-mode BatchNorm: the diagonal ``|γ|/√(var + ε)``, largest entry (exact)."""
    var = running_var.detach().double()
    if not (bool(torch.isfinite(var).all()) and math.isfinite(eps)):
        raise site.unsupported("running variance or eps is not finite")
    denom = var + eps  # rounding of var + ε, of the square root and of the quotient: up() below
    if not bool((denom >= torch.finfo(torch.float64).tiny).all()):
        raise site.unsupported("running_var + eps is not a positive normal float64: no certified scale")
    gamma = torch.ones_like(var) if weight is None else weight.detach().double().abs().expand_as(var)
    scale = (gamma / torch.sqrt(denom)).max()
    if not bool(torch.isfinite(scale)):
        raise site.unsupported("normalisation scale is not finite")
    return Plan(_label(site), up(float(scale), 4), note="eval mode: diagonal scale γ/√(running_var+ε)")


def _eps_scale(site: Site, weight: Any, eps: float | None) -> Plan:
    """``max|γ|/√ε`` for normalisation by the input's own statistics."""
    if eps is None:  # RMSNorm: torch uses the machine epsilon of the input's dtype
        eps = torch.finfo(site.out.dtype).eps
    if not (isinstance(eps, (int, float)) and eps > 0 and math.isfinite(eps)):
        raise site.unsupported(f"eps={eps!r}: no finite Lipschitz constant")
    try:
        gamma = _abs_max(weight)
    except ValueError as exc:
        raise site.unsupported(str(exc)) from None
    e = math.frexp(gamma)[1] if gamma else 0
    scaled = up(math.ldexp(gamma, -e) / math.sqrt(eps), 3)
    return Plan(_label(site), scale_up(scaled, e) if gamma else 0.0,
                note=f"max|γ|/√ε (global constant, attained at constant inputs; ε={eps:g})")


def _with_input(plan: Plan, x: fx.Node) -> Plan:
    plan.inputs = (x,)
    return plan


def batch_norm(site: Site, args: Args) -> Plan:
    """``F.batch_norm``: eval mode (``training=False``) with running statistics only."""
    x = only_input(site, args)
    args.any("momentum")
    args.constant("bias")
    running_mean, running_var = args.constant("running_mean"), args.constant("running_var")
    if args.constant("training") or running_var is None or running_mean is None:
        raise site.unsupported("batch_norm normalises by batch statistics (training=True or no running "
                               "statistics): no fixed map to bound")
    return _with_input(_running_scale(site, args.constant("weight"), running_var, args.number("eps")), x)


def instance_norm(site: Site, args: Args) -> Plan:
    x = only_input(site, args)
    args.any("momentum")
    args.constant("bias")
    running_mean, running_var = args.constant("running_mean"), args.constant("running_var")
    if not args.constant("use_input_stats") and running_var is not None and running_mean is not None:
        return _with_input(_running_scale(site, args.constant("weight"), running_var, args.number("eps")), x)
    return _with_input(_eps_scale(site, args.constant("weight"), args.number("eps")), x)


def layer_norm(site: Site, args: Args) -> Plan:
    """``F.layer_norm`` / ``F.group_norm`` / ``F.rms_norm``: ``max|γ|/√ε``."""
    x = only_input(site, args)
    args.any(*[n for n in ("normalized_shape", "num_groups") if n in args.raw])
    if "bias" in args.raw:
        args.constant("bias")
    eps = args.constant("eps")
    return _with_input(_eps_scale(site, args.constant("weight"), None if eps is None else args.number("eps")), x)


def norm_module(site: Site, args: Args) -> Plan:
    """BatchNorm/InstanceNorm/LayerNorm/GroupNorm/RMSNorm modules in eval mode (every attribute)."""
    module = site.module
    x = only_input(site, args)
    args.any(*[n for n in ("num_features", "momentum", "affine", "elementwise_affine", "bias",
                           "normalized_shape", "num_groups", "num_channels", "process_group")
               if n in args.raw])
    eps = args.constant("eps")
    weight = getattr(module, "weight", None)
    if "track_running_stats" in args.raw:
        running = args.constant("track_running_stats") and module.running_var is not None
        if isinstance(module, nn.modules.batchnorm._BatchNorm) and not running:
            raise site.unsupported(f"{type(module).__name__} without running statistics normalises by "
                                   "batch statistics even in eval mode; no fixed map to bound")
        if running:
            return _with_input(_running_scale(site, weight, module.running_var, float(eps)), x)
    return _with_input(_eps_scale(site, weight, eps), x)


# ---------------------------------------------------------------------------------------
# Runtime checks on the probe
# ---------------------------------------------------------------------------------------

def runtime_check(node: fx.Node, module: nn.Module | None, family_dims: tuple[str, int] | None,
                  params: dict, x: torch.Tensor, out: Any) -> None:
    """Weight layers must compute ``W̃x + b`` and pooling the modelled windows on the probe."""
    if not isinstance(x, torch.Tensor) or not isinstance(out, torch.Tensor):
        return
    if module is not None and isinstance(module, WEIGHT_LAYERS):
        check_weight_layer(module, str(node.target), x, out)
        return
    if family_dims is None or params.get("return_indices"):
        return
    family, dims = family_dims
    try:
        check_windows(pool_spec(tuple(x.shape), family, dims, params), x, out, describe(node))
    except ValueError as exc:
        raise UnsupportedOperationError(str(exc)) from None
