"""Network-level Lipschitz bounds (../shared/REFERENCE.md, Claim 6).

Upper bound (rigorous): for a composition ``D = f_L ∘ … ∘ f_1``,
``Lip₂(D) ≤ Π Lip₂(f_i)``, with ``Lip(W̃) = ‖W̃‖₂`` for a weight layer (bias is a
translation); :func:`lipschitz_upper_bound` uses the certified ``OperatorNorm.upper`` of
each layer so the product stays rigorous. Activation constants: ReLU, Tanh, Identity,
Flatten/Unflatten (isometric reshapes), Dropout (identity in eval) 1; LeakyReLU and ELU
``max(1, |slope|)``/``max(1, α)``; Sigmoid 1/4; Softplus 1; MaxPool ``sqrt(Π ⌈k/s⌉)``
(``|max a − max b| ≤ ‖a − b‖_∞``, each input in at most that many windows); AvgPool is a
depthwise convolution with taps ``1/(k_h k_w)`` whose exact operator norm is computed like
any convolution (one channel suffices: the channels are identical diagonal blocks);
BatchNorm in eval mode is the diagonal scaling ``γ/sqrt(var + eps)``: ``max |·|``. A
residual block ``x + f(x)`` (:class:`Residual`, or any module with
``lipschitz_residual = True`` and a ``body`` submodule) has ``Lip ≤ 1 + Lip(f)``.

How the model is followed: one forward pass with hooks records, in call order, the
outermost *units* (weight layers, activations, pools, norms, residual blocks) with their
input and output tensors. The model is accepted as the composition of those units only
if every unit's input is (a view of) the previous unit's output, the first unit reads the
model's input and the model returns (a view of) the last unit's output; otherwise the
error names the module where the chain breaks (functional ops, additions, concatenations
in a custom ``forward`` cannot be followed). The bound is for the model's eval-mode map:
modules are switched to eval for the pass (BatchNorm running statistics, no power-iteration
updates of ``spectral_norm`` parametrizations) and their modes restored afterwards.
"""
from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field
from typing import Sequence

import torch
from torch import nn

from harness.layers import WEIGHT_LAYERS, geometry, layer_kind

from ._spec import as_float64
from .alpha import AlphaBound, alpha_bound
from .conv_norm import OperatorNorm, conv_operator_norm, layer_operator_norm
from .reshaped import reshaped_norm


class Residual(nn.Module):
    """``x + body(x)``: a residual block the network bound can follow (``Lip ≤ 1 + Lip(body)``)."""

    lipschitz_residual = True

    def __init__(self, body: nn.Module) -> None:
        super().__init__()
        self.body = body

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class UnfollowableModelError(ValueError):
    """The model is not a chain of supported units; the message names the module."""


@dataclass(frozen=True)
class LayerRecord:
    """One unit of the chain: its Lipschitz factor and, for weight layers, the references."""

    name: str
    kind: str
    input_shape: tuple[int, ...]
    factor: float
    reshaped_norm: float | None = None
    operator_norm: OperatorNorm | None = None
    alpha: AlphaBound | None = None
    ratio: float | None = None  # ‖W̃‖ / ‖Ŵ‖ (value / reshaped norm)
    children: tuple["LayerRecord", ...] = ()


@dataclass(frozen=True)
class NetworkBound:
    """``upper`` = product of the records' factors, a rigorous bound on ``Lip₂`` of the model."""

    upper: float
    layers: tuple[LayerRecord, ...]
    input_shape: tuple[int, ...]

    def weight_layers(self) -> list[LayerRecord]:
        out = []
        for r in self.layers:
            out += [r] if r.operator_norm is not None else []
            out += [c for c in _flatten(r.children) if c.operator_norm is not None]
        return out


def _flatten(records) -> list[LayerRecord]:
    out = []
    for r in records:
        out.append(r)
        out += _flatten(r.children)
    return out


_CONST = {nn.ReLU: 1.0, nn.Tanh: 1.0, nn.Identity: 1.0, nn.Flatten: 1.0, nn.Unflatten: 1.0,
          nn.Dropout: 1.0, nn.Dropout2d: 1.0, nn.Sigmoid: 0.25, nn.Softplus: 1.0, nn.ReLU6: 1.0,
          nn.Hardtanh: 1.0}
_UNITS = (WEIGHT_LAYERS + tuple(_CONST) + (nn.LeakyReLU, nn.ELU, nn.MaxPool2d, nn.AvgPool2d,
                                           nn.AdaptiveAvgPool2d, nn.modules.batchnorm._BatchNorm))


def _is_residual(m: nn.Module) -> bool:
    return bool(getattr(m, "lipschitz_residual", False)) and isinstance(getattr(m, "body", None), nn.Module)


def _is_unit(m: nn.Module) -> bool:
    return isinstance(m, _UNITS) or _is_residual(m) or not any(True for _ in m.children())


def _same(a: torch.Tensor, b: torch.Tensor) -> bool:
    """``b`` is ``a`` or a reshape/view of it (same storage, offset and number of elements)."""
    return (a.untyped_storage().data_ptr() == b.untyped_storage().data_ptr()
            and a.storage_offset() == b.storage_offset() and a.numel() == b.numel())


def _trace(module: nn.Module, x: torch.Tensor, prefix: str):
    """Outermost units called by ``module(x)`` in order, as ``(name, unit, input, output)``."""
    names = {m: (f"{prefix}.{n}" if prefix and n else (n or prefix)) for n, m in module.named_modules()}
    calls, depth, handles = [], [0], []

    def pre(m, args):
        if depth[0] == 0:
            calls.append([names.get(m, type(m).__name__), m, args[0] if args else None, None])
        depth[0] += 1

    def post(m, args, out):
        depth[0] -= 1
        if depth[0] == 0:
            calls[-1][3] = out

    for m in module.modules():
        if _is_unit(m) and (m is not module or _is_unit(module)):
            handles += [m.register_forward_pre_hook(pre), m.register_forward_hook(post)]
    try:
        with torch.no_grad():
            out = module(x)
    finally:
        for h in handles:
            h.remove()
    if not calls:
        if not isinstance(out, torch.Tensor) or not _same(x, out):
            raise UnfollowableModelError(f"module {prefix or type(module).__name__!r} "
                                         "calls no supported unit and is not the identity")
        return [], out
    prev_name, prev = "the model input", x
    for name, m, inp, o in calls:
        if not isinstance(inp, torch.Tensor) or not _same(prev, inp):
            raise UnfollowableModelError(
                f"cannot follow the model at {name!r} ({type(m).__name__}): its input is not "
                f"{prev_name} (functional ops, additions or concatenations between modules are not "
                "supported; wrap x + f(x) in harness.exact.network.Residual)")
        if not isinstance(o, torch.Tensor):
            raise UnfollowableModelError(f"module {name!r} ({type(m).__name__}) does not return a tensor")
        prev_name, prev = f"the output of {name!r}", o
    if not isinstance(out, torch.Tensor) or not _same(prev, out):
        raise UnfollowableModelError(f"the model's output is not {prev_name}: something after it "
                                     "(a functional op?) cannot be followed")
    return calls, out


def _pool_norm(m: nn.Module, shape: tuple[int, ...], name: str, tol: float) -> OperatorNorm:
    if isinstance(m, nn.AdaptiveAvgPool2d):
        h, w = shape[-2:]
        oh, ow = (m.output_size, m.output_size) if isinstance(m.output_size, int) else m.output_size
        oh, ow = oh or h, ow or w
        if h % oh or w % ow:
            raise UnfollowableModelError(f"{name}: AdaptiveAvgPool2d {h}x{w} -> {oh}x{ow} is not a "
                                         "uniform pooling")
        k, s, p, div = (h // oh, w // ow), (h // oh, w // ow), (0, 0), None
    else:
        k = (m.kernel_size,) * 2 if isinstance(m.kernel_size, int) else tuple(m.kernel_size)
        s = (m.stride,) * 2 if isinstance(m.stride, int) else tuple(m.stride)
        p = (m.padding,) * 2 if isinstance(m.padding, int) else tuple(m.padding)
        div = m.divisor_override
        if m.ceil_mode or (any(p) and not m.count_include_pad and div is None):
            raise UnfollowableModelError(f"{name}: AvgPool2d with ceil_mode or count_include_pad=False "
                                         "is not a fixed convolution")
    weight = torch.full((1, 1, *k), 1.0 / (div or k[0] * k[1]), dtype=torch.float64)
    return conv_operator_norm(weight, shape[-2:], stride=s, padding=p, tol=tol)


def _unit(name: str, m: nn.Module, inp: torch.Tensor, tol: float) -> LayerRecord:
    shape = tuple(inp.shape[1:])
    kind = type(m).__name__
    if _is_residual(m):
        sub = _chain(m.body, inp, f"{name}.body", tol)
        body = math.prod(r.factor for r in sub)
        return LayerRecord(name, "residual", shape, 1.0 + body, children=tuple(sub))
    if isinstance(m, WEIGHT_LAYERS):
        kind = layer_kind(m, name)
        w = as_float64(m.weight, f"{name}.weight")
        op = layer_operator_norm(m, shape, tol=tol)
        rn = reshaped_norm(w, kind)
        ab = None
        if kind != "linear":
            g = geometry(m, name)
            two = (lambda v: (1, v[0]) if len(v) == 1 else tuple(v))
            k = tuple(w.shape[2:])
            hw = shape[-len(k):]
            if kind == "conv_transpose2d":  # the lemma is for the conv whose adjoint this is
                ab = AlphaBound(alpha_bound(two(k), two(g.stride), two(g.dilation)).alpha, False,
                                "ConvTranspose2d: the lemma holds for the dim-0 reshape, not Ŵ")
            else:
                ab = alpha_bound(two(k), two(g.stride), two(g.dilation), two(g.padding), two(hw),
                                 g.padding_mode, g.groups)
        ratio = op.value / rn if rn > 0 else math.nan
        return LayerRecord(name, kind, shape, op.upper, rn, op, ab, ratio)
    if type(m) in _CONST:
        return LayerRecord(name, kind, shape, _CONST[type(m)])
    if isinstance(m, nn.LeakyReLU):
        return LayerRecord(name, kind, shape, max(1.0, abs(m.negative_slope)))
    if isinstance(m, nn.ELU):
        return LayerRecord(name, kind, shape, max(1.0, abs(m.alpha)))
    if isinstance(m, nn.MaxPool2d):
        k = (m.kernel_size,) * 2 if isinstance(m.kernel_size, int) else tuple(m.kernel_size)
        s = (m.stride,) * 2 if isinstance(m.stride, int) else tuple(m.stride)
        d = (m.dilation,) * 2 if isinstance(m.dilation, int) else tuple(m.dilation)
        from .alpha import alpha as _alpha
        return LayerRecord(name, kind, shape, _alpha(k[0], k[1], s, d))
    if isinstance(m, (nn.AvgPool2d, nn.AdaptiveAvgPool2d)):
        op = _pool_norm(m, shape, name, tol)
        return LayerRecord(name, kind, shape, op.upper, operator_norm=op)
    if isinstance(m, nn.modules.batchnorm._BatchNorm):
        if m.running_var is None:
            raise UnfollowableModelError(f"{name}: BatchNorm without running statistics has no "
                                         "fixed eval-mode map")
        scale = 1.0 / torch.sqrt(m.running_var.detach().double() + m.eps)
        if m.weight is not None:
            scale = scale * m.weight.detach().double().abs()
        if not bool(torch.isfinite(scale).all()):
            raise ValueError(f"{name}: BatchNorm scale is not finite")
        return LayerRecord(name, kind, shape, float(scale.max()))
    raise UnfollowableModelError(f"module {name!r} ({kind}) has no known Lipschitz constant; "
                                 "supported: weight layers, ReLU/LeakyReLU/ELU/Tanh/Sigmoid/Softplus, "
                                 "Identity/Flatten/Dropout, Max/AvgPool2d, BatchNorm (eval), Residual")


def _chain(module: nn.Module, x: torch.Tensor, prefix: str, tol: float) -> list[LayerRecord]:
    calls, _ = _trace(module, x, prefix)
    return [_unit(name, m, inp, tol) for name, m, inp, _ in calls]


class _eval_mode:
    """Switch every module to eval for the pass and restore each module's flag afterwards."""

    def __init__(self, model: nn.Module) -> None:
        self.model = model
        self.flags = {m: m.training for m in model.modules()}

    def __enter__(self):
        self.model.eval()

    def __exit__(self, *exc):
        for m, flag in self.flags.items():
            m.training = flag


def lipschitz_upper_bound(model: nn.Module, input_shape: Sequence[int], tol: float = 1e-6) -> NetworkBound:
    """Rigorous ``Lip₂`` upper bound of ``model`` (eval mode) on inputs of ``input_shape``.

    ``input_shape`` excludes the batch dim (e.g. ``(3, 32, 32)``). Product of the exact
    per-layer operator norms' certified upper ends (:func:`.conv_norm.layer_operator_norm`,
    reading ``layer.weight``: the effective weight, parametrizations included) and the
    activation constants of the module docstring (REFERENCE.md Claim 6). Each weight
    layer's record also holds ``‖Ŵ‖``, the α bound and ``‖W̃‖/‖Ŵ‖``.
    """
    shape = tuple(int(s) for s in input_shape)
    if any(s <= 0 for s in shape):
        raise ValueError(f"input_shape must be positive, got {shape}")
    param = next(model.parameters(), None)
    dtype = param.dtype if param is not None and param.is_floating_point() else torch.float32
    device = param.device if param is not None else "cpu"
    x = torch.zeros((1, *shape), dtype=dtype, device=device)
    with _eval_mode(model):
        records = _chain(model, x, "", tol)
    upper = math.prod(r.factor for r in records)
    return NetworkBound(upper, tuple(records), shape)


@dataclass(frozen=True)
class LowerBound:
    """``value = max ‖∇ₓD(x)‖₂`` over the points visited; ``point`` attains it (batch of 1)."""

    value: float
    point: torch.Tensor = field(repr=False)
    per_start: tuple[float, ...] = ()


def _grad_norms(model: nn.Module, x: torch.Tensor, create_graph: bool):
    x = x.detach().requires_grad_(True)
    out = model(x)
    if out.numel() != x.shape[0]:
        raise ValueError(f"lipschitz_lower_bound needs one scalar output per sample, got output "
                         f"shape {tuple(out.shape)} for a batch of {x.shape[0]}")
    (g,) = torch.autograd.grad(out.sum(), x, create_graph=create_graph)
    return x, g.flatten(1).norm(dim=1)


def lipschitz_lower_bound(model: nn.Module, samples: torch.Tensor, n_random: int = 8,
                          steps: int = 30, seed: int = 0, step_size: float = 0.05) -> LowerBound:
    """Empirical lower bound on ``Lip₂(D)``: the largest ``‖∇ₓD(x)‖₂`` found (REFERENCE.md Claim 6).

    Starts: the given ``samples`` (batch first) and ``n_random`` Gaussian points with the
    samples' mean and standard deviation. Each start takes ``steps`` ascent steps on
    ``‖∇ₓD(x)‖``: a normalised step along ``∇ₓ‖∇ₓD‖`` (double backprop) when that is
    non-zero, else (piecewise-linear nets, where it vanishes) a random step kept only
    if it increases the norm. Computed on a float64 copy of the model in eval mode;
    deterministic for ``seed``. Any differentiable point ``x`` gives ``‖∇D(x)‖ ≤ Lip(D)``,
    so the returned value is a valid lower bound; the upper bound must be ``≥`` it.
    """
    if samples.dim() < 2:
        raise ValueError("samples must have a batch dim")
    if not bool(torch.isfinite(samples).all()):
        raise ValueError("samples contain non-finite values")
    gen = torch.Generator().manual_seed(seed)
    net = copy.deepcopy(model).to(device="cpu", dtype=torch.float64).eval()
    for p in net.parameters():
        p.requires_grad_(False)
    s = samples.detach().to("cpu", torch.float64)
    scale = float(s.std()) if s.numel() > 1 and float(s.std()) > 0 else 1.0
    rand = s.mean() + scale * torch.randn((n_random, *s.shape[1:]), generator=gen, dtype=torch.float64)
    x = torch.cat([s, rand])
    _, best = _grad_norms(net, x, False)
    best_x = x.clone()
    step = step_size * scale * math.sqrt(x[0].numel())
    for _ in range(steps):
        xr, gn = _grad_norms(net, best_x, True)
        d = None
        if gn.requires_grad:
            (d,) = torch.autograd.grad(gn.sum(), xr, allow_unused=True)
        d = torch.zeros_like(best_x) if d is None else d.detach()
        dn = d.flatten(1).norm(dim=1).view(-1, *[1] * (x.dim() - 1))
        noise = torch.randn(best_x.shape, generator=gen, dtype=torch.float64)
        noise = noise / noise.flatten(1).norm(dim=1).view_as(dn)
        direction = torch.where(dn > 1e-12, d / dn.clamp_min(1e-300), noise)
        cand = best_x + step * direction
        _, val = _grad_norms(net, cand, False)
        better = val > best
        best = torch.where(better, val, best)
        best_x = torch.where(better.view_as(dn), cand, best_x)
    i = int(best.argmax())
    return LowerBound(float(best[i]), best_x[i:i + 1].clone(), tuple(float(b) for b in best))
