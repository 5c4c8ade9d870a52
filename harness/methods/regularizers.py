"""Methods that do not reparametrize: ``weight_clip``, ``grad_penalty``, ``orthonormal_reg``."""
from __future__ import annotations

import torch
from torch import nn

from ..layers import layer_kind, reshape_matrix, weight_layers
from .base import Method
from .claims import Claim, MethodTags
from .registry import register


def _raw_weight(layer: nn.Module) -> torch.Tensor:
    """The stored weight parameter (the unparametrized original when parametrized)."""
    plist = getattr(getattr(layer, "parametrizations", None), "weight", None)
    return plist.original if plist is not None else layer.weight


@register
class WeightClip(Method):
    """Weight clipping: clamp every weight of every weight layer to ``[-c, c]``, ``c = 0.01``.

    Arjovsky, Chintala, Bottou, "Wasserstein GAN", ICML 2017, Algorithm 1
    (docs/references.md#arjovsky2017); Donovan 2025 §2.1 (docs/references.md#donovan2025);
    Miyato et al. 2018 §4 (docs/references.md#miyato2018) clip "the convolutional weight
    of each layer" with the same ``c``. Applied after every discriminator step and once at ``apply`` (the WGAN
    reference code clamps at the start of each critic iteration, i.e. before the first
    update too). Biases are not clipped (Arjovsky's code clips all parameters).
    """

    name = "weight_clip"
    defaults = {"c": 0.01}
    claim = Claim("entries_within", "c")
    tags = MethodTags(projection=True)

    def apply(self, model: nn.Module) -> nn.Module:
        weight_layers(model)  # unsupported layers raise here, named
        self.after_step(model)
        return model

    @torch.no_grad()
    def after_step(self, D: nn.Module) -> None:
        c = float(self.params["c"])
        for _, layer in weight_layers(D):
            _raw_weight(layer).clamp_(-c, c)


#: Petzka et al. 2018's one-sided claim: input-gradient norms at interpolates at most 1.
ONE_SIDED = Claim("interpolate_gradient_at_most", 1.0)


@register
class GradPenalty(Method):
    """WGAN-GP gradient penalty ``λ E[(‖∇_x̂ D(x̂)‖₂ − 1)²]``, ``x̂ = εx + (1−ε)x̃``.

    Gulrajani et al., "Improved Training of Wasserstein GANs", NeurIPS 2017, Algorithm 1
    (``λ = 10``; docs/references.md#gulrajani2017); Donovan 2025 §2.2
    (docs/references.md#donovan2025). ``ε ~ U(0, 1)`` per sample, drawn as
    ``torch.rand((B,) + (1,)*(x.dim()-1))`` on the inputs' device and dtype; the gradient
    is taken with ``create_graph=True`` so the penalty backpropagates into ``D``.
    ``one_sided=True`` gives ``λ E[max(0, ‖∇‖ − 1)²]`` (Petzka et al., ICLR 2018,
    docs/references.md#petzka2018), and declares the one-sided claim
    ``interpolate_gradient_at_most``: norms at interpolates at most 1. ``lam`` is λ
    (``lambda`` is a Python keyword).
    """

    name = "grad_penalty"
    defaults = {"lam": 10.0, "one_sided": False}
    claim = Claim("interpolate_gradient", 1.0)
    tags = MethodTags(penalty=True)

    def __init__(self, **params) -> None:
        super().__init__(**params)
        if self.params["one_sided"]:
            self.claim = ONE_SIDED

    def interpolate(self, real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
        eps = torch.rand((real.shape[0],) + (1,) * (real.dim() - 1), device=real.device,
                         dtype=real.dtype)
        return eps * real.detach() + (1 - eps) * fake.detach()

    def penalty(self, D: nn.Module, real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
        x_hat = self.interpolate(real, fake).requires_grad_(True)
        out = D(x_hat)
        (grad,) = torch.autograd.grad(out.sum(), x_hat, create_graph=True)
        gap = torch.linalg.vector_norm(grad.flatten(1), dim=1) - 1
        if self.params["one_sided"]:
            gap = gap.clamp_min(0)
        return self.params["lam"] * gap.pow(2).mean()


def gram_deviation(weight: torch.Tensor, kind: str) -> torch.Tensor:
    """``‖G − I‖²_F`` for the smaller Gram matrix ``G`` of ``Ŵ`` (``ŴŴᵀ`` or ``ŴᵀŴ``)."""
    mat = reshape_matrix(weight, kind)
    gram = mat @ mat.t() if mat.shape[0] <= mat.shape[1] else mat.t() @ mat
    eye = torch.eye(gram.shape[0], device=gram.device, dtype=gram.dtype)
    return (gram - eye).pow(2).sum()


@register
class OrthonormalReg(Method):
    """Orthonormal regularization: penalty ``β Σ_layers ‖ŴᵀŴ − I‖²_F``, on the smaller of
    the two Gram matrices (``ŴŴᵀ`` when ``Ŵ`` is wide).

    Brock et al., "Neural Photo Editing with Introspective Adversarial Networks", ICLR 2017
    (docs/references.md#brock2017); compared by Miyato et al., ICLR 2018
    (docs/references.md#miyato2018, §4 and §4.1.2), who also initialise each weight with
    a random orthonormal operator (``orthogonal_init``). Neither paper gives ``β``; the
    default ``1e-4`` is the value Brock et al. use for their orthogonal regularization in
    BigGAN (ICLR 2019, docs/references.md#brock2019, §3.1).
    """

    name = "orthonormal_reg"
    defaults = {"beta": 1e-4, "orthogonal_init": True}
    claim = Claim("gram_orthonormal", 0.0)
    tags = MethodTags(penalty=True)

    @torch.no_grad()
    def apply(self, model: nn.Module) -> nn.Module:
        layers = weight_layers(model)
        if self.params["orthogonal_init"]:
            for name, layer in layers:
                w = _raw_weight(layer)
                kind = layer_kind(layer, name)
                mat = torch.empty_like(reshape_matrix(w, kind))
                nn.init.orthogonal_(mat)
                if kind == "conv_transpose2d":
                    shape = (w.shape[1], w.shape[0], *w.shape[2:])
                    w.copy_(mat.view(shape).transpose(0, 1))
                else:
                    w.copy_(mat.view(w.shape))
        return model

    def penalty(self, D: nn.Module, real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
        total = real.new_zeros(())
        for name, layer in weight_layers(D):
            total = total + gram_deviation(layer.weight, layer_kind(layer, name))
        return self.params["beta"] * total
