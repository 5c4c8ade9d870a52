"""The allow-list: every op and module type the network bound accepts, with its full signature,
its rule, the constant the rule gives and where that constant comes from.

An input-dependent node whose op is not listed here is refused (:func:`plan_node`), and so is
a listed op called with an argument its signature does not have or its rule does not read.
:func:`markdown_table` renders the list for docs/exact.md. Derivations:
``docs/certificates.md`` (anchors in the ``source`` column).
"""
from __future__ import annotations

import builtins
import operator
from typing import Any

import torch
import torch.fx as fx
import torch.nn.functional as F
from torch import nn

from . import layer_rules as L
from . import rules as R
from .declared import _check_constant, _deel_sort, declared_constant
from .graph import target_name
from .plans import OpRule, Plan, Site, movement_factor, op_rule
from .signatures import BindError, bind, parse

FUNCTIONS: dict[Any, OpRule] = {}
METHODS: dict[str, OpRule] = {}
MODULES: dict[type, OpRule] = {}

DOC = "docs/certificates.md"


def _fn(targets, signature: str, rule, constant: str, source: str) -> None:
    for t in targets:
        FUNCTIONS[t] = op_rule(_label(t), signature, rule, constant, source)


def _meth(names, signature: str, rule, constant: str, source: str) -> None:
    for n in names.split():
        METHODS[n] = op_rule(f"Tensor.{n}", signature, rule, constant, source)


def _mod(classes, attributes: str, rule, constant: str, source: str, call: str = "input") -> None:
    for cls in classes:
        MODULES[cls] = op_rule(f"nn.{cls.__name__}", call, rule, constant, source, attributes.split())


def _label(target: Any) -> str:
    name = target_name(target)
    for long, short in (("torch.nn.functional.", "F."), ("torch._C._nn.", "F."), ("torch._C._VariableFunctions.", "torch."),
                        ("torch.functional.", "torch."), ("_operator.", "operator."),
                        ("torch._C._linalg.linalg_", "torch.linalg.")):
        name = name.replace(long, short)
    return name if "." in name else f"torch.{name}"


# --- arithmetic ---------------------------------------------------------------------------
_ADD = ("1 per operand, × |alpha| and √(broadcast copies); sum", f"{DOC}#arithmetic")
_fn((operator.add, operator.iadd, operator.sub, operator.isub), "input, other", R.add, *_ADD)
_fn((torch.add, torch.sub, torch.subtract), "input, other, *, alpha=1, out=None", R.add, *_ADD)
_meth("add add_ sub sub_ subtract subtract_", "input, other, *, alpha=1", R.add, *_ADD)
_MUL = ("√max_i Σ_copies c² (exact norm of x ↦ c ⊙ x)", f"{DOC}#arithmetic")
_fn((operator.mul, operator.imul), "input, other", R.scale(False), *_MUL)
_fn((torch.mul, torch.multiply), "input, other, *, out=None", R.scale(False), *_MUL)
_meth("mul mul_ multiply multiply_", "input, other", R.scale(False), *_MUL)
_fn((operator.truediv, operator.itruediv), "input, other", R.scale(True), *_MUL)
_fn((torch.div, torch.divide), "input, other, *, rounding_mode=None, out=None", R.scale(True), *_MUL)
_fn((torch.true_divide,), "input, other, *, out=None", R.scale(True), *_MUL)
_meth("div div_ divide divide_", "input, other, *, rounding_mode=None", R.scale(True), *_MUL)
_meth("true_divide true_divide_", "input, other", R.scale(True), *_MUL)
_NEG = ("1", f"{DOC}#arithmetic")
_fn((operator.neg, operator.pos), "input", R.negate, *_NEG)
_fn((torch.neg, torch.negative), "input, *, out=None", R.negate, *_NEG)
_fn((torch.positive,), "input", R.negate, *_NEG)
_meth("neg neg_ negative negative_ positive", "input", R.negate, *_NEG)
_MM = ("‖W‖₂ (certified, as a linear layer)", f"{DOC}#weights")
_fn((operator.matmul,), "input, other", R.matmul, *_MM)
_fn((torch.matmul,), "input, other, *, out=None", R.matmul, *_MM)
_fn((torch.mm,), "input, mat2, out_dtype=None, *, out=None", R.matmul, *_MM)
_meth("matmul", "input, other", R.matmul, *_MM)
_meth("mm", "input, mat2, out_dtype=None", R.matmul, *_MM)
_CAT = ("1; √Σ L_i² over the parts", f"{DOC}#arithmetic")
_fn((torch.cat, torch.concat, torch.concatenate, torch.stack), "tensors, dim=0, *, out=None", R.cat, *_CAT)
_fn((torch.hstack, torch.vstack), "tensors, *, out=None", R.cat, *_CAT)

# --- reductions ---------------------------------------------------------------------------
_SUM = "input, dim=None, keepdim=False, *, dtype=None"
_fn((torch.sum,), _SUM + ", out=None", R.reduction("sum"), "√N (N entries per output)", f"{DOC}#reductions")
_meth("sum", _SUM, R.reduction("sum"), "√N (N entries per output)", f"{DOC}#reductions")
_fn((torch.mean,), _SUM + ", out=None", R.reduction("mean"), "1/√N", f"{DOC}#reductions")
_meth("mean", _SUM, R.reduction("mean"), "1/√N", f"{DOC}#reductions")
_MAX = ("1 (disjoint groups)", f"{DOC}#reductions")
_fn((torch.amax, torch.amin), "input, dim=(), keepdim=False, *, out=None", R.reduction("amax"), *_MAX)
_meth("amax amin", "input, dim=(), keepdim=False", R.reduction("amax"), *_MAX)
_NORM = ("max(1, N^(1/p − 1/2)) for 1 ≤ p ≤ ∞", f"{DOC}#reductions")
_fn((torch.linalg.vector_norm,), "x, ord=2, dim=None, keepdim=False, *, dtype=None, out=None",
    R.vector_norm("x", "ord"), *_NORM)
_fn((torch.norm,), "input, p='fro', dim=None, keepdim=False, out=None, dtype=None",
    R.vector_norm("input", "p"), *_NORM)
_meth("norm", "input, p='fro', dim=None, keepdim=False, dtype=None", R.vector_norm("input", "p"), *_NORM)

# --- activations (docs/certificates.md#activations, harness/exact/activations.py) ----------
_ACT = f"{DOC}#activations"
for _kind, _c, _fns, _sig, _meths, _msig in (
        ("relu", "1", (F.relu,), "input, inplace=False", "relu relu_", "input"),
        ("relu", "1", (torch.relu,), "input, *, out=None", "", ""), ("relu", "1", (torch.relu_,), "input", "", ""),
        ("relu6", "1", (F.relu6,), "input, inplace=False", "", ""),
        ("hardtanh", "1", (F.hardtanh,), "input, min_val=-1.0, max_val=1.0, inplace=False", "", ""),
        ("hardtanh", "1", (F.hardtanh_,), "input, min_val=-1.0, max_val=1.0", "", ""),
        ("clamp", "1", (torch.clamp, torch.clip), "input, min=None, max=None, *, out=None",
         "clamp clamp_ clip clip_", "input, min=None, max=None"),
        ("clamp", "1", (torch.clamp_, torch.clip_), "input, min=None, max=None", "", ""),
        ("abs", "1", (torch.abs, torch.absolute), "input, *, out=None", "abs abs_ absolute absolute_", "input"),
        ("abs", "1", (operator.abs,), "input", "", ""),
        ("tanh", "1", (torch.tanh,), "input, *, out=None", "tanh tanh_", "input"),
        ("tanh", "1", (F.tanh,), "input", "", ""), ("softsign", "1", (F.softsign,), "input", "", ""),
        ("tanhshrink", "1", (F.tanhshrink,), "input", "", ""), ("logsigmoid", "1", (F.logsigmoid,), "input, *, out=None", "", ""),
        ("celu", "1 (alpha > 0)", (F.celu,), "input, alpha=1.0, inplace=False", "", ""),
        ("celu", "1 (alpha > 0)", (torch.celu,), "input, alpha=1.0, *, out=None", "", ""),
        ("celu", "1 (alpha > 0)", (torch.celu_,), "input, alpha=1.0", "", ""),
        ("softplus", "1 (beta > 0, jump at the threshold below the dtype's resolution)", (F.softplus,),
         "input, beta=1, threshold=20, *, out=None", "", ""),
        ("softshrink", "1 (lambd ≥ 0)", (F.softshrink,), "input, lambd=0.5, *, out=None", "", ""),
        ("sigmoid", "1/4", (torch.sigmoid,), "input, *, out=None", "sigmoid sigmoid_", "input"),
        ("sigmoid", "1/4", (F.sigmoid,), "input", "", ""),
        ("hardsigmoid", "1/6", (F.hardsigmoid,), "input, inplace=False", "", ""),
        ("hardswish", "3/2", (F.hardswish,), "input, inplace=False", "", ""),
        ("softmax", "1/2 (explicit dim)", (F.softmax,), "input, dim=None, _stacklevel=3, dtype=None", "", ""),
        ("softmax", "1/2 (explicit dim)", (torch.softmax,), "input, dim, dtype=None, *, out=None", "softmax",
         "input, dim, dtype=None"),
        ("leaky_relu", "max(1, |slope|)", (F.leaky_relu,), "input, negative_slope=0.01, inplace=False", "", ""),
        ("leaky_relu", "max(1, |slope|)", (F.leaky_relu_,), "input, negative_slope=0.01", "", ""),
        ("elu", "max(|scale|, |scale·alpha·input_scale|)", (F.elu,), "input, alpha=1.0, inplace=False", "", ""),
        ("elu", "max(|scale|, |scale·alpha·input_scale|)", (F.elu_,),
         "input, alpha=1.0, scale=1.0, input_scale=1.0", "", ""),
        ("selu", "1.0507·1.6733", (F.selu,), "input, inplace=False", "", ""),
        ("selu", "1.0507·1.6733", (torch.selu, torch.selu_), "input", "", ""),
        ("gelu", "1.1289 (tanh: 1.1293)", (F.gelu,), "input, *, approximate='none', out=None", "", ""),
        ("silu", "1.0998", (F.silu,), "input, inplace=False", "", ""),
        ("rrelu", "max(1, |(lower + upper)/2|) (training=False)", (F.rrelu,),
         "input, lower=0.125, upper=0.3333333333333333, training=False, inplace=False", "", ""),
        ("rrelu", "max(1, |(lower + upper)/2|) (training=False)", (torch.rrelu, torch.rrelu_, F.rrelu_),
         "input, lower=0.125, upper=0.3333333333333333, training=False, generator=None", "", ""),
        ("prelu", "max(1, max|weight|) (constant weight)", (torch.prelu,), "input, weight", "prelu",
         "input, weight")):
    _fn(_fns, _sig, R.activation(_kind), _c, _ACT)
    if _meths:
        _meth(_meths, _msig, R.activation(_kind), _c, _ACT)
_fn((F.dropout, F.alpha_dropout, F.feature_alpha_dropout, F.dropout1d, F.dropout2d, F.dropout3d),
    "input, p=0.5, training=True, inplace=False", R.dropout, "1 (training=False: identity)", _ACT)

# --- data movement, padding, casts ---------------------------------------------------------
_MOVE = ("√(largest number of copies of one entry), exact", f"{DOC}#movement")
for _fns, _sig in (((torch.flatten,), "input, start_dim=0, end_dim=-1"), ((torch.unflatten,), "input, dim, sizes"),
                   ((torch.reshape,), "input, shape"), ((torch.permute,), "input, dims"),
                   ((torch.transpose, torch.swapdims), "input, dim0, dim1"), ((torch.swapaxes,), "input, axis0, axis1"),
                   ((torch.movedim, torch.moveaxis), "input, source, destination"),
                   ((torch.squeeze,), "input, dim=None"), ((torch.unsqueeze,), "input, dim"),
                   ((torch.t, torch.fliplr, torch.flipud), "input"), ((torch.narrow,), "input, dim, start, length"),
                   ((torch.select,), "input, dim, index"), ((torch.flip,), "input, dims, *, out=None"),
                   ((torch.roll,), "input, shifts, dims=None, *, out=None"), ((torch.tile,), "input, dims"),
                   ((torch.chunk,), "input, chunks, dim=0"), ((torch.unbind,), "input, dim=0"),
                   ((torch.tensor_split,), "input, indices_or_sections=None, dim=0, *, sections=None, indices=None, "
                                           "tensor_indices_or_sections=None"),
                   ((torch.broadcast_to,), "input, size"), ((torch.diagonal,), "input, offset=0, dim1=0, dim2=1"),
                   ((torch.repeat_interleave,), "input, repeats=None, dim=None, *, output_size=None, out=None"),
                   ((operator.getitem,), "input, index"), ((F.pixel_shuffle,), "input, upscale_factor, *, out=None"),
                   ((F.pixel_unshuffle,), "input, downscale_factor, *, out=None"),
                   ((F.channel_shuffle,), "input, groups, *, out=None"),
                   ((F.unfold,), "input, kernel_size, dilation=1, padding=0, stride=1")):
    _fn(_fns, _sig, R.movement(), *_MOVE)
FUNCTIONS[torch.split] = op_rule("torch.split", "tensor, split_size_or_sections, dim=0",
                                 R.movement(input_name="tensor"), *_MOVE)
for _names, _sig in (("flatten", "input, start_dim=0, end_dim=-1"), ("unflatten", "input, dim, sizes"),
                     ("view", "input, *size, dtype=None"), ("reshape", "input, *shape"), ("permute", "input, *dims"),
                     ("transpose swapdims", "input, dim0, dim1"), ("swapaxes", "input, axis0, axis1"),
                     ("movedim moveaxis", "input, source, destination"), ("squeeze", "input, dim=None"),
                     ("unsqueeze", "input, dim"), ("t fliplr flipud", "input"), ("narrow", "input, dim, start, length"),
                     ("select", "input, dim, index"), ("flip", "input, *dims"), ("roll", "input, shifts, dims=None"),
                     ("tile", "input, *dims"), ("repeat", "input, *repeats"), ("expand", "input, *size, implicit=False"),
                     ("broadcast_to", "input, *size"),
                     ("chunk", "input, chunks, dim=0"), ("split", "input, split_size, dim=0"),
                     ("tensor_split", "input, indices_or_sections=None, dim=0, *, sections=None, indices=None, "
                                      "tensor_indices_or_sections=None"),
                     ("unbind", "input, dim=0"), ("unfold", "input, dimension, size, step"),
                     ("diagonal", "input, offset=0, dim1=0, dim2=1"),
                     ("repeat_interleave", "input, repeats=None, dim=None, *, output_size=None")):
    _meth(_names, _sig, R.movement(), *_MOVE)
_meth("view_as reshape_as expand_as", "input, other", R.movement(shape_only=("other",)), *_MOVE)
_INTERP = ("copies (nearest modes); Π σ₁(A_axis), certified (linear, bilinear, bicubic, trilinear)",
           f"{DOC}#interpolation")
_fn((F.pad,), "input, pad, mode='constant', value=None", R.pad,
    "1 (constant); copies (reflect, replicate, circular)", f"{DOC}#movement")
_fn((F.interpolate,), "input, size=None, scale_factor=None, mode='nearest', align_corners=None, "
    "recompute_scale_factor=None, antialias=False", R.interpolate, *_INTERP)
_CAST = ("1 (floating dtypes only)", f"{DOC}#casts")
_fn((torch.clone,), "input, *, memory_format=None, out=None", R.cast(), *_CAST)
_fn((torch.detach,), "input", R.cast(), *_CAST)
_meth("contiguous float double half bfloat16 cpu", "input, memory_format=None", R.cast(), *_CAST)
_meth("clone", "input, *, memory_format=None", R.cast(), *_CAST)
_meth("detach", "input", R.cast(), *_CAST)
_meth("type", "input, dtype=None, non_blocking=False", R.cast(), *_CAST)
_meth("requires_grad_", "input, requires_grad=True", R.cast(), *_CAST)
_meth("to", "input, *args, dtype=None, device=None, non_blocking=False, copy=False, memory_format=None, "
      "layout=None, pin_memory=None, other=None", R.cast(shape_only=("args", "other")), *_CAST)
_meth("type_as", "input, other", R.cast(shape_only=("other",)), *_CAST)

# --- weight layers, pooling, normalisation as functions -----------------------------------
_W = ("certified upper end of ‖W̃‖₂ at the real input size", f"{DOC}#weights")
_fn((F.linear,), "input, weight, bias=None, *, out=None", L.weight_function("linear"), *_W)
_fn((F.conv1d,), "input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1", L.weight_function("conv1d"), *_W)
_fn((F.conv2d,), "input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1", L.weight_function("conv2d"), *_W)
_fn((F.conv_transpose2d,), "input, weight, bias=None, stride=1, padding=0, output_padding=0, groups=1, dilation=1",
    L.weight_function("conv_transpose2d"), *_W)
_POOL = ("exact: product of per-axis norms (average), √(window multiplicity) (max)", f"{DOC}#pooling")
_AVG = "input, kernel_size, stride=None, padding=0, ceil_mode=False, count_include_pad=True"
_OUT = ", *, out=None"
_MAXP = "input, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False, return_indices=False"
for _f, _family, _dims, _sig in ((F.avg_pool1d, "avg_pool", 1, _AVG + _OUT),
                                 (F.avg_pool2d, "avg_pool", 2, _AVG + ", divisor_override=None" + _OUT),
                                 (F.max_pool1d, "max_pool", 1, _MAXP), (F.max_pool2d, "max_pool", 2, _MAXP),
                                 (F.adaptive_avg_pool1d, "adaptive_avg_pool", 1, "input, output_size" + _OUT),
                                 (F.adaptive_avg_pool2d, "adaptive_avg_pool", 2, "input, output_size"),
                                 (F.adaptive_max_pool1d, "adaptive_max_pool", 1, "input, output_size, return_indices=False"),
                                 (F.adaptive_max_pool2d, "adaptive_max_pool", 2, "input, output_size, return_indices=False")):
    _fn((_f,), _sig, L.pool(_family, _dims), *_POOL)
_BN = ("max|γ/√(running_var + ε)| (eval statistics)", f"{DOC}#normalisation")
_LN = ("max|γ|/√ε", f"{DOC}#normalisation")
_fn((F.batch_norm,), "input, running_mean, running_var, weight=None, bias=None, training=False, momentum=0.1, "
    "eps=1e-05", L.batch_norm, *_BN)
_fn((F.instance_norm,), "input, running_mean=None, running_var=None, weight=None, bias=None, use_input_stats=True, "
    "momentum=0.1, eps=1e-05", L.instance_norm, *_LN)
_fn((F.layer_norm,), "input, normalized_shape, weight=None, bias=None, eps=1e-05", L.layer_norm, *_LN)
_fn((F.group_norm,), "input, num_groups, weight=None, bias=None, eps=1e-05", L.layer_norm, *_LN)
_fn((F.rms_norm,), "input, normalized_shape, weight=None, eps=None", L.layer_norm, *_LN)

# --- modules ------------------------------------------------------------------------------
_mod((nn.Linear,), "in_features out_features bias", L.weight_module, *_W)
_mod((nn.Conv1d, nn.Conv2d), "in_channels out_channels kernel_size stride padding dilation groups bias padding_mode",
     L.weight_module, *_W)
_mod((nn.ConvTranspose2d,), "in_channels out_channels kernel_size stride padding output_padding groups bias "
     "dilation padding_mode", L.weight_module, *_W, call="input, output_size=None")
for _cls, _kind, _attrs, _c in (
        (nn.ReLU, "relu", "inplace", "1"), (nn.ReLU6, "relu6", "inplace", "1"),
        (nn.Hardtanh, "hardtanh", "min_val max_val inplace", "1"), (nn.Tanh, "tanh", "", "1"),
        (nn.Softsign, "softsign", "", "1"), (nn.Tanhshrink, "tanhshrink", "", "1"),
        (nn.LogSigmoid, "logsigmoid", "", "1"),
        (nn.CELU, "celu", "alpha inplace", "1 (alpha > 0)"),
        (nn.Softplus, "softplus", "beta threshold", "1 (beta > 0, jump at the threshold below the dtype's resolution)"),
        (nn.Softshrink, "softshrink", "lambd", "1 (lambd ≥ 0)"), (nn.Sigmoid, "sigmoid", "", "1/4"),
        (nn.Hardsigmoid, "hardsigmoid", "inplace", "1/6"), (nn.Hardswish, "hardswish", "inplace", "3/2"),
        (nn.Softmax, "softmax", "dim", "1/2 (explicit dim)"), (nn.Softmax2d, "softmax", "", "1/2"),
        (nn.LeakyReLU, "leaky_relu", "negative_slope inplace", "max(1, |slope|)"),
        (nn.ELU, "elu", "alpha inplace", "max(1, |alpha|)"), (nn.SELU, "selu", "inplace", "1.0507·1.6733"),
        (nn.GELU, "gelu", "approximate", "1.1289 (tanh: 1.1293)"), (nn.SiLU, "silu", "inplace", "1.0998"),
        (nn.RReLU, "rrelu", "lower upper inplace", "max(1, |(lower + upper)/2|)"),
        (nn.PReLU, "prelu", "num_parameters init weight", "max(1, max|weight|)")):
    _mod((_cls,), _attrs, R.activation(_kind), _c, _ACT)
_mod((nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d, nn.AlphaDropout, nn.FeatureAlphaDropout), "p inplace",
     R.module_identity, "1 (eval mode: identity)", _ACT)
_mod((nn.Identity,), "", R.module_identity, "1", f"{DOC}#movement")
for _cls, _attrs in ((nn.Flatten, "start_dim end_dim"), (nn.Unflatten, "dim unflattened_size"),
                     (nn.PixelShuffle, "upscale_factor"), (nn.PixelUnshuffle, "downscale_factor"),
                     (nn.ChannelShuffle, "groups"), (nn.ReflectionPad1d, "padding"), (nn.ReflectionPad2d, "padding"),
                     (nn.ReplicationPad1d, "padding"), (nn.ReplicationPad2d, "padding"), (nn.CircularPad1d, "padding"),
                     (nn.CircularPad2d, "padding"), (nn.ReflectionPad3d, "padding"),
                     (nn.ReplicationPad3d, "padding"), (nn.CircularPad3d, "padding"), (nn.UpsamplingNearest2d, "size scale_factor")):
    _mod((_cls,), _attrs, R.movement(), *_MOVE)
_mod((nn.Upsample,), "size scale_factor mode align_corners recompute_scale_factor", R.upsample_module, *_INTERP)
_mod((nn.ZeroPad1d, nn.ZeroPad2d), "padding", R.constant_pad_module, "1", f"{DOC}#movement")
_mod((nn.ConstantPad1d, nn.ConstantPad2d), "padding value", R.constant_pad_module, "1", f"{DOC}#movement")
for _cls, _family, _dims, _attrs in (
        (nn.AvgPool1d, "avg_pool", 1, "kernel_size stride padding ceil_mode count_include_pad"),
        (nn.AvgPool2d, "avg_pool", 2, "kernel_size stride padding ceil_mode count_include_pad divisor_override"),
        (nn.MaxPool1d, "max_pool", 1, "kernel_size stride padding dilation return_indices ceil_mode"),
        (nn.MaxPool2d, "max_pool", 2, "kernel_size stride padding dilation return_indices ceil_mode"),
        (nn.AdaptiveAvgPool1d, "adaptive_avg_pool", 1, "output_size"),
        (nn.AdaptiveAvgPool2d, "adaptive_avg_pool", 2, "output_size"),
        (nn.AdaptiveMaxPool1d, "adaptive_max_pool", 1, "output_size return_indices"),
        (nn.AdaptiveMaxPool2d, "adaptive_max_pool", 2, "output_size return_indices")):
    _mod((_cls,), _attrs, L.pool(_family, _dims), *_POOL)
_mod((nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.InstanceNorm1d, nn.InstanceNorm2d, nn.InstanceNorm3d),
     "num_features eps momentum affine bias track_running_stats", L.norm_module,
     "max|γ/√(running_var + ε)| with running statistics, else max|γ|/√ε", f"{DOC}#normalisation")
_mod((nn.SyncBatchNorm,), "num_features eps momentum affine bias track_running_stats process_group", L.norm_module,
     *_BN)
_mod((nn.LayerNorm,), "normalized_shape eps elementwise_affine bias", L.norm_module, *_LN)
_mod((nn.GroupNorm,), "num_groups num_channels eps affine bias", L.norm_module, *_LN)
_mod((nn.RMSNorm,), "normalized_shape eps elementwise_affine", L.norm_module,
     "max|γ|/√ε (ε: the dtype's epsilon when None)", f"{DOC}#normalisation")

#: Attributes of a tensor that are data movement (real tensors: ``.real`` is the identity).
ATTRIBUTES = ("T", "mT", "H", "mH", "real", "data")
_METADATA = ("size", "dim", "numel", "ndimension", "nelement", "is_contiguous", "get_device",
             "element_size", "stride", "is_floating_point", "is_complex")
_METADATA_ATTRS = ("shape", "dtype", "device", "ndim", "is_cuda", "requires_grad", "layout", "is_sparse")
#: Functions and methods whose value depends on the input's shape, dtype and device only.
_SHAPE_ONLY_FUNCTIONS = (torch.zeros_like, torch.ones_like, torch.full_like)
_SHAPE_ONLY_METHODS = ("new_zeros", "new_ones", "new_full")


def listed_class(module: nn.Module) -> type | None:
    """The first allow-listed torch class in ``module``'s MRO."""
    return next((cls for cls in type(module).__mro__ if cls in MODULES), None)


def rule_class(module: nn.Module) -> type | None:
    """The allow-listed torch class whose rule applies to ``module``, if it computes what that
    class computes (:func:`.layer_rules.pristine`); ``None``: trace into it or refuse it."""
    cls = listed_class(module)
    return cls if cls is not None and L.pristine(module, cls) else None


def _hashable(target: Any) -> bool:
    try:
        hash(target)
    except TypeError:
        return False
    return True


def lookup(site: Site) -> OpRule | None:
    node = site.node
    if node.op == "call_module":
        cls = rule_class(site.module)
        return MODULES.get(cls) if cls is not None else None
    if node.op == "call_method":
        return METHODS.get(str(node.target))
    if node.op == "call_function" and _hashable(node.target):
        return FUNCTIONS.get(node.target)
    return None


def is_metadata(node: fx.Node, dependent) -> bool:
    """Nodes that read only sizes, dtypes or devices of the input: constant for a fixed shape."""
    if node.op == "call_method":
        if node.target in _METADATA:
            return True
        rest = node.args[1:]
        return node.target in _SHAPE_ONLY_METHODS and not any(dependent(n) for n in _nodes((rest, node.kwargs)))
    if node.op == "call_function" and _hashable(node.target):
        if node.target is builtins.getattr:
            return len(node.args) > 1 and node.args[1] in _METADATA_ATTRS
        if node.target in _SHAPE_ONLY_FUNCTIONS:
            return not any(dependent(n) for n in _nodes((node.args[1:], node.kwargs)))
        return node.target in (builtins.len, torch.numel)
    return False


def _nodes(arg) -> list[fx.Node]:
    found: list[fx.Node] = []
    fx.node.map_arg(arg, found.append)
    return found


def _declared_plan(site: Site, module: nn.Module, constant) -> Plan:
    deps = site.dep_inputs()
    if callable(constant):
        constant = constant(module, site.shape(deps[0])[1:] if deps else ())
    c = _check_constant(constant, f"module {site.node.target!r}")
    return Plan(type(module).__name__, c, "root", tuple(1.0 for _ in deps), note="declared constant",
                inputs=tuple(deps))


def plan_node(site: Site) -> Plan:
    """The :class:`Plan` of one input-dependent node; ``UnsupportedOperationError`` if the op is
    not allow-listed, is called with an argument its rule does not model, or its rule refuses."""
    plan = _plan_of(site)
    if plan.weights is None:
        plan.weights = tuple(1.0 for _ in plan.inputs)
    return plan


def _plan_of(site: Site) -> Plan:
    node = site.node
    if node.op == "call_module":
        module = site.module
        declared = declared_constant(module)
        if declared is not None:
            return _declared_plan(site, module, declared)
        if _deel_sort(module):
            coef = abs(float(getattr(module, "_coefficient_lip", 1.0)))
            return Plan(type(module).__name__, coef, note="sorting is 1-Lipschitz, times k_coef_lip",
                        inputs=tuple(site.dep_inputs()))
    if node.op == "call_function" and node.target is operator.getitem \
            and not isinstance(site.capture.values[node.args[0]], torch.Tensor):
        if site.is_dependent(node.args[1:]):
            raise site.unsupported("an index that depends on the input")
        return Plan("getitem", 1.0, note="element of a bounded tuple", inputs=(node.args[0],))
    if node.op == "call_function" and node.target is builtins.getattr and node.args[1] in ATTRIBUTES:
        x = node.args[0]
        return Plan(f".{node.args[1]}", movement_factor(site, lambda ids: getattr(ids, node.args[1]), x),
                    inputs=(x,))
    entry = lookup(site)
    if entry is None:
        raise site.unsupported(_no_rule(site))
    if node.op == "call_module" and site.module.training:
        raise site.unsupported(f"{type(site.module).__name__} is still in training mode after model.eval() "
                               "(an overridden train()?): its eval-mode rule does not apply")
    args = site.bind(entry)
    plan = entry.rule(site, args)
    missing = args.unread()
    if missing:
        raise site.unsupported(f"the rule for {entry.op} does not model argument(s) {', '.join(missing)}")
    if node.op == "call_module" and plan.weight_op is None:
        plan.kind = type(site.module).__name__
    return plan


#: Ops that are not on the allow-list because two input-dependent operands make them products
#: without a global Lipschitz constant: their refusal says so (:data:`.rules.ATTENTION`).
PRODUCTS: dict[Any, tuple[str, tuple[str, ...]]] = {
    torch.bmm: ("input, mat2, out_dtype=None, *, out=None", ("input", "mat2")),
    torch.baddbmm: ("input, batch1, batch2, out_dtype=None, *, beta=1, alpha=1, out=None", ("batch1", "batch2")),
    torch.einsum: ("equation, *operands", ("operands",)),
    F.scaled_dot_product_attention: ("query, key, value, attn_mask=None, dropout_p=0.0, is_causal=False, "
                                     "scale=None, enable_gqa=False", ("query", "key")),
    "bmm": ("input, mat2, out_dtype=None", ("input", "mat2")),
    "baddbmm": ("input, batch1, batch2, out_dtype=None, *, beta=1, alpha=1", ("batch1", "batch2")),
    nn.MultiheadAttention: ("query, key, value, key_padding_mask=None, need_weights=True, attn_mask=None, "
                            "average_attn_weights=True, is_causal=False", ("query", "key")),
}


def _product_of_dependents(site: Site) -> bool:
    """Whether the node is one of :data:`PRODUCTS` with two or more input-dependent operands."""
    node = site.node
    key = type(site.module) if node.op == "call_module" else node.target
    if not _hashable(key) or key not in PRODUCTS:
        return False
    signature, operands = PRODUCTS[key]
    try:
        bound = bind(parse(signature), tuple(node.args), dict(node.kwargs))
    except BindError:
        return False
    return sum(1 for name in operands for n in _nodes(bound.get(name)) if site.dependent(n)) >= 2


def _no_rule(site: Site) -> str:
    node = site.node
    if _product_of_dependents(site):
        return R.ATTENTION
    if node.op == "call_module":
        return (f"{type(site.module).__name__} has no Lipschitz rule; declare one with "
                "harness.exact.register_lipschitz_constant")
    if node.op == "call_method":
        return f"no Lipschitz rule for tensor method .{node.target}()"
    return f"no Lipschitz rule for function {target_name(node.target)}"


def bind_values(entry: OpRule, args: tuple, kwargs: dict) -> dict:
    """An allow-listed call's argument values by name (runtime checks on the probe)."""
    try:
        return bind(entry.signature, args, kwargs)
    except BindError:
        return {}


def entries() -> list[OpRule]:
    """Every allow-list entry once (functions, methods, modules), in table order."""
    seen, out = set(), []
    for entry in (*FUNCTIONS.values(), *METHODS.values(), *MODULES.values()):
        if entry.op not in seen:
            seen.add(entry.op)
            out.append(entry)
    return out


def markdown_table() -> str:
    """The allow-list as a Markdown table for docs/exact.md: ops (grouped when they share the
    arguments, constant and source), the arguments their rule reads besides the input, the
    constant and its source (linked relative to docs/)."""
    groups: dict[tuple, list[str]] = {}
    for e in entries():
        names = ", ".join(e.signature.all_names[1:] + e.attributes) or "(input only)"
        groups.setdefault((names, e.constant, e.source), []).append(f"`{e.op}`")
    rows = ["| op | arguments read (besides the input) | constant | source |", "| --- | --- | --- | --- |"]
    for (names, constant, source), ops in groups.items():
        cell = lambda text: text.replace("|", "\\|")  # noqa: E731
        rows.append(f"| {', '.join(ops)} | {cell(names)} | {cell(constant)} | "
                    f"[{source.split('#')[-1]}]({source.removeprefix('docs/')}) |")
    return "\n".join(rows)


def runtime_check(node: fx.Node, modules: dict[str, nn.Module], args: tuple, kwargs: dict, out: Any) -> None:
    """Checks that need the values at the moment the node runs (probe input): weight layers and
    pooling must compute what their rule models."""
    module = modules.get(str(node.target)) if node.op == "call_module" else None
    if module is not None:
        cls = rule_class(module)
        entry = MODULES.get(cls) if cls is not None else None
        if entry is None or declared_constant(module) is not None:
            return
        params = {a: getattr(module, a) for a in entry.attributes}
    elif node.op == "call_function" and _hashable(node.target) and node.target in FUNCTIONS:
        entry = FUNCTIONS[node.target]
        params = bind_values(entry, args, kwargs)
    else:
        return
    family = getattr(entry.rule, "pool_family", None)
    L.runtime_check(node, module, family, params, args[0] if args else None, out)
