"""``sn_conv``: spectral normalization of the layer's real operator ``W̃`` (Lin et al.,
NeurIPS 2021, docs/references.md#lin2021, §2).

``W_eff = W / σ(W̃)`` where ``W̃`` is the layer (without bias) as a linear map on inputs
of its real size, with its stride, padding, dilation and groups; ``σ`` is a persistent
power iteration through the operator and its adjoint (:func:`.power.power_iteration`).

Input size. ``W̃`` depends on the input size, which a layer does not know. It is either
given (``input_shape``: the model's input shape without batch, from which every layer's
size is recorded by one forward at ``apply``; or a mapping ``{layer name: shape}``) or
taken from the layer's first forward (a forward pre-hook records ``x.shape`` without the
batch, allocates ``u``, runs ``init_iterations`` steps, and removes itself). Later
forwards at another size keep the recorded size (call
:meth:`OperatorSpectralNorm.set_input_shape` to change it).

Before the size is known (e.g. reading ``layer.weight`` right after ``apply``), the
parametrization is still well defined and still certifies ``‖W̃‖ ≤ 1`` for *every*
input size: it divides by the upper bound ``α‖Ŵ‖_F`` with
``α = sqrt(∏ ⌈k_i/s_i⌉)`` (dilation 1; ``sqrt(∏ k_i)`` otherwise) — Tsuzuku et al.
2018's ``‖W̃‖ ≤ α‖Ŵ‖`` (docs/references.md#tsuzuku2018) and ``‖Ŵ‖ ≤ ‖Ŵ‖_F``. It keeps
no state and is replaced by the power iteration at the first forward.
"""
from __future__ import annotations

import math
from dataclasses import replace
from typing import Any, Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn import grad as nn_grad

from ..layers import LayerGeometry, apply_adjoint, apply_operator, geometry, output_shape
from .claims import Claim
from .power import SigmaParametrization, power_iteration, random_unit
from .registry import register
from .reparam import ReparametrizationMethod
from .spectral import SPECTRAL_TAGS

#: Steps run when the input size becomes known. Convolution operators often have close
#: top singular values (many frequencies), so more steps than ``sn_w``'s 15 are needed
#: for a sensible first estimate; at batch 1 they cost a few milliseconds.
OPERATOR_INIT_ITERATIONS = 50

_SPATIAL = {"linear": 1, "conv1d": 2, "conv2d": 3, "conv_transpose2d": 3}


class OperatorSpectralNorm(SigmaParametrization):
    """``W_eff = scale · W / σ(W̃)``; buffers ``_u`` (input shape, batch 1) and ``_v``
    (output shape), ``None`` until the input size is known. Loading a state dict that
    holds ``_u``/``_v`` fixes the input size from them (so a fresh model loads a trained
    one's checkpoint before any forward)."""

    normalises = "operator"

    def __init__(self, weight: torch.Tensor, geom: LayerGeometry, input_shape: Sequence[int] | None = None,
                 n_power_iterations: int = 1, scale: float = 1.0, eps: float = 1e-12,
                 init_iterations: int = OPERATOR_INIT_ITERATIONS) -> None:
        super().__init__(n_power_iterations, scale, eps)
        self.geom = geom
        self.init_iterations = int(init_iterations)
        self.input_shape: tuple[int, ...] | None = None
        self.register_buffer("_u", None)
        self.register_buffer("_v", None)
        # the weight's shape, device and dtype, for buffers allocated by a state-dict load
        self.register_buffer("_weight_like", torch.empty(0, device=weight.device, dtype=weight.dtype),
                             persistent=False)
        self._weight_shape = tuple(weight.shape)
        self._fast = geom.padding_mode == "zeros" or geom.kind == "linear"
        k = list(weight.shape[2:])
        if geom.kind == "linear":
            alpha = 1.0
        elif all(d == 1 for d in geom.dilation):
            alpha = math.sqrt(math.prod(math.ceil(a / s) for a, s in zip(k, geom.stride)))
        else:
            alpha = math.sqrt(math.prod(k))
        self.alpha = alpha
        if input_shape is not None:
            self.set_input_shape(input_shape, weight)

    # --- input size -------------------------------------------------------------------
    @torch.no_grad()
    def set_input_shape(self, shape: Sequence[int], weight: torch.Tensor) -> None:
        """Fix the input size (without batch), draw ``u`` and run ``init_iterations`` steps."""
        shape = (1, *tuple(int(s) for s in shape))
        weight = weight.detach()
        self._fix_shapes(shape, weight)
        self._u = random_unit(shape, weight)
        self._v = random_unit(self._out_shape, weight)
        self.run(weight, self.init_iterations)

    def _fix_shapes(self, shape: tuple[int, ...], weight: torch.Tensor) -> None:
        self.input_shape = shape[1:]
        self._out_shape = output_shape(self.geom, weight, shape)
        self._pad = self._output_padding(weight, shape)

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        u, v = state_dict.get(prefix + "_u"), state_dict.get(prefix + "_v")
        if self._u is None and u is not None and v is not None:
            like = self._weight_like
            self._fix_shapes(tuple(u.shape), torch.empty(self._weight_shape, device="meta", dtype=like.dtype))
            self._u = torch.empty(u.shape, device=like.device, dtype=like.dtype)
            self._v = torch.empty(v.shape, device=like.device, dtype=like.dtype)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def _output_padding(self, weight, shape) -> tuple[int, ...]:
        g = self.geom
        if g.kind not in ("conv1d", "conv2d"):
            return ()
        k = weight.shape[2:]
        out = self._out_shape[2:]
        return tuple(n - ((o - 1) * s - 2 * p + d * (kk - 1) + 1)
                     for n, o, s, p, d, kk in zip(shape[2:], out, g.stride, g.padding, g.dilation, k))

    # --- the operator -----------------------------------------------------------------
    def _op(self, w: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return apply_operator(self.geom, w, x)

    def _adjoint(self, w: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        g = self.geom
        if not self._fast:
            return apply_adjoint(g, w, y, (1, *self.input_shape))
        if g.kind == "linear":
            return y @ w
        if g.kind == "conv_transpose2d":
            return F.conv2d(y, w, stride=g.stride, padding=g.padding, dilation=g.dilation,
                            groups=g.groups)
        convt = F.conv_transpose1d if g.kind == "conv1d" else F.conv_transpose2d
        return convt(y, w, stride=g.stride, padding=g.padding, output_padding=self._pad,
                     groups=g.groups, dilation=g.dilation)

    def _sigma_grad(self, w: torch.Tensor, u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """``∂⟨v, W̃u⟩/∂W`` (constant in ``W``: the operator is linear in the weight)."""
        g = self.geom
        if self._fast and g.kind == "linear":
            return v.t() @ u
        if self._fast and g.kind in ("conv1d", "conv2d"):
            fn = nn_grad.conv1d_weight if g.kind == "conv1d" else nn_grad.conv2d_weight
            return fn(u, w.shape, v, stride=g.stride, padding=g.padding, dilation=g.dilation,
                      groups=g.groups)
        if self._fast and g.kind == "conv_transpose2d":  # ⟨v, Tᵀ… ⟩ = ⟨conv2d(v; W), u⟩
            return nn_grad.conv2d_weight(v, w.shape, u, stride=g.stride, padding=g.padding,
                                         dilation=g.dilation, groups=g.groups)
        with torch.enable_grad():
            wg = w.detach().requires_grad_(True)
            (out,) = torch.autograd.grad(self._op(wg, u), wg, grad_outputs=v)
        return out

    # --- SigmaParametrization ---------------------------------------------------------
    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        if self._u is None:  # input size unknown: certified, stateless fallback
            bound = self.alpha * torch.linalg.vector_norm(weight)
            return weight * (self.scale / bound.clamp_min(self.eps))
        return super().forward(weight)

    def current_state(self):
        return (self._u, self._v)

    def iterate(self, weight, k):
        w = weight.detach()
        # persistent u lives in the input space: iterate on A = W̃ᵀ (σ(A) = σ(W̃))
        u, v, sigma = power_iteration(lambda y: self._adjoint(w, y), lambda x: self._op(w, x),
                                      self._u, k, self.eps)
        self._buffers["_u"], self._buffers["_v"] = u, v
        return (u, v), sigma

    def sigma(self, weight, state):
        u, v = state
        if u is None:
            return self.alpha * torch.linalg.vector_norm(weight)
        return torch.vdot(v.reshape(-1), self._op(weight, u).reshape(-1))

    def add_sigma_grad(self, grad, beta, alpha, state):
        u, v = state
        return torch.add(grad * beta, self._sigma_grad(grad, u, v), alpha=float(alpha)) \
            if not grad.is_cuda else grad * beta + self._sigma_grad(grad, u, v) * alpha

    def extra_repr(self) -> str:
        return (f"kind={self.geom.kind}, input_shape={self.input_shape}, "
                + super().extra_repr())


@register
class SNConv(ReparametrizationMethod):
    """SNConv: ``W_eff = W / ‖W̃‖`` with ``W̃`` the convolution as an operator on the
    layer's real input size (Lin et al., NeurIPS 2021, docs/references.md#lin2021, §2;
    after Tsuzuku et al. 2018 and Sedghi et al. 2019, docs/references.md#tsuzuku2018,
    #sedghi2019).

    ``‖W̃‖`` is a persistent power iteration through ``W̃`` and ``W̃ᵀ`` (``u`` of the input
    shape), one step per training forward; the adjoint of a zero-padded convolution is
    ``conv_transpose`` with the matching ``output_padding`` (other padding modes: the
    VJP ``harness.layers.apply_adjoint``). ``input_shape``: ``None`` (taken from each
    layer's first forward), the model's input shape without batch (one forward at
    ``apply``), or a mapping from layer name to that layer's input shape. See the module
    docstring for the well-defined fallback before the size is known.
    """

    name = "sn_conv"
    defaults = {"n_power_iterations": 1, "init_iterations": OPERATOR_INIT_ITERATIONS,
                "eps": 1e-12, "input_shape": None}
    claim = Claim("operator_spectral", 1.0)
    tags = replace(SPECTRAL_TAGS, needs_input_shape=True, certifies_lipschitz=True)

    def scale(self) -> float:
        return 1.0

    def _layer_shape(self, name: str) -> Any:
        shape = self.params["input_shape"]
        if isinstance(shape, Mapping):
            return shape.get(name)
        return None

    def parametrization(self, name, layer, kind):
        return OperatorSpectralNorm(layer.weight, geometry(layer, name), self._layer_shape(name),
                                    n_power_iterations=self.params["n_power_iterations"],
                                    scale=self.scale(), eps=self.params["eps"],
                                    init_iterations=self.params["init_iterations"])

    def registered(self, name, layer, module):
        if module.input_shape is not None:
            return
        ndim = _SPATIAL[module.geom.kind]
        index = len(layer.parametrizations.weight) - 1

        def record(mod, args):
            # Everything is looked up on ``mod``, the module being called, so that a deep
            # copy made before the first forward (an EMA copy) records its own size.
            plist = mod.parametrizations.weight
            if plist[index].input_shape is None:
                with torch.no_grad():
                    plist[index].set_input_shape(args[0].shape[-ndim:], plist.original)
            for key in [k for k, hook in mod._forward_pre_hooks.items() if hook is record]:
                del mod._forward_pre_hooks[key]

        layer.register_forward_pre_hook(record)

    def apply(self, model: nn.Module) -> nn.Module:
        super().apply(model)
        shape = self.params["input_shape"]
        if shape is not None and not isinstance(shape, Mapping):
            _record_by_forward(model, shape)
        return model


@torch.no_grad()
def _record_by_forward(model: nn.Module, shape: Sequence[int]) -> None:
    """One eval-mode forward on zeros of ``(1, *shape)`` so every hook records its size."""
    p = next(model.parameters())
    modes = {m: m.training for m in model.modules()}
    model.eval()
    try:
        model(torch.zeros((1, *tuple(shape)), device=p.device, dtype=p.dtype))
    finally:
        for m, t in modes.items():
            m.train(t)


__all__ = ["OperatorSpectralNorm", "SNConv", "OPERATOR_INIT_ITERATIONS"]
