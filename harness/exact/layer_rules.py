"""Rules for modules kept whole in the graph: weight layers, pooling, normalisation, activations.

Leaves of the trace (:func:`is_leaf`): weight layers and their subclasses, modules with a
declared constant, and ``torch.nn`` modules (a subclass that overrides ``forward`` is
traced into instead). Weight layers and pooling are checked against torch's own output
on the probe input (:func:`runtime_check`), so a subclass, hook or pooling mode that
computes something else is refused rather than mis-bounded. Formulas: :mod:`.rules`.
"""
from __future__ import annotations

import math
from typing import Any, Callable

import torch
import torch.fx as fx
import torch.nn.functional as F
from torch import nn

from harness.layers import WEIGHT_LAYERS, apply_operator, geometry, layer_kind

from .activations import activation_constant
from .declared import _check_constant, _deel_sort, declared_constant
from .graph import DTYPE_TOL, UnsupportedOperationError, describe
from .plans import Plan, Site, WeightOp, movement_factor, replay, up
from .pooling import PoolSpec, adaptive_pool_spec, avg_pool_spec, check_windows, max_pool_spec, pool_constant


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


FUNCTIONAL_POOLS = {F.avg_pool1d: ("avg_pool", 1), F.avg_pool2d: ("avg_pool", 2),
                     F.max_pool1d: ("max_pool", 1), F.max_pool2d: ("max_pool", 2),
                     F.adaptive_avg_pool1d: ("adaptive_avg_pool", 1),
                     F.adaptive_avg_pool2d: ("adaptive_avg_pool", 2),
                     F.adaptive_max_pool1d: ("adaptive_max_pool", 1),
                     F.adaptive_max_pool2d: ("adaptive_max_pool", 2)}


def _hashable(target: Any) -> bool:
    try:
        hash(target)
    except TypeError:
        return False
    return True


def _functional_pool(family: str, dims: int) -> Callable[[Site], Plan]:
    def rule(site: Site) -> Plan:
        params = _functional_pool_params(family, site.value(tuple(site.node.args)),
                                         site.value(dict(site.node.kwargs)))
        return pool_plan(site, f"{family}{dims}d", family, dims, params)
    return rule


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
    return Plan(name, movement_factor(site, replay(site)))


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
    elif node.op == "call_function" and _hashable(node.target) and node.target in FUNCTIONAL_POOLS:
        family, dims = FUNCTIONAL_POOLS[node.target]
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


