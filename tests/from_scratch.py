"""Correct methods a researcher would write, importable as ``from_scratch:Name``: written from
scratch against the public interface (own ``nn.Module`` parametrizations), and one built on
sn_w (:class:`SNwBjorck`).

lipbench must judge them by what they claim and compute, never by their name or class: a
copy of WGAN-GP under its own name trains with the loss its claim implies; SN followed by
Björck orthonormalisation is correct and slow by design; Miyato's Algorithm 1 with its own
vectors is sn_w done differently.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import parametrize

from harness.layers import weight_layers
from harness.methods import Claim, Method, MethodTags
from harness.methods.spectral import SNw


class WGANGPCopy(Method):
    """Gulrajani et al. 2017, Algorithm 1, as its paper states it: ``λ E[(‖∇D(x̂)‖ − 1)²]`` at
    ``x̂ = εx + (1 − ε)G(z)``, ``ε ~ U[0, 1]`` per sample (docs/references.md#gulrajani2017)."""

    name = "wgan_gp_copy"
    defaults = {"lam": 10.0}
    claim = Claim("interpolate_gradient", 1.0)
    tags = MethodTags(penalty=True)

    def penalty(self, D: nn.Module, real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
        shape = (real.shape[0],) + (1,) * (real.dim() - 1)
        eps = torch.rand(shape, device=real.device, dtype=real.dtype)
        x_hat = (eps * real.detach() + (1 - eps) * fake.detach()).requires_grad_(True)
        (grad,) = torch.autograd.grad(D(x_hat).sum(), x_hat, create_graph=True)
        return self.params["lam"] * (grad.flatten(1).norm(dim=1) - 1).pow(2).mean()


def _matrix(weight: torch.Tensor, transposed: bool) -> torch.Tensor:
    """``Ŵ``: output channels by everything else (a transposed conv stores c_in first)."""
    return (weight.transpose(0, 1) if transposed else weight).flatten(1)


class _PowerIteration(nn.Module):
    """``W / σ``, ``σ = uᵀŴv`` from one power-iteration step per training-mode forward
    (Miyato et al. 2018, App. A, Algorithm 1: ``u`` starts random, no warm-up)."""

    def __init__(self, weight: torch.Tensor, transposed: bool) -> None:
        super().__init__()
        self.transposed = transposed
        rows = _matrix(weight, transposed).shape[0]
        gen = torch.Generator().manual_seed(rows)
        self.register_buffer("u", F.normalize(torch.randn(rows, generator=gen), dim=0).to(weight))

    def sigma(self, mat: torch.Tensor) -> torch.Tensor:
        if self.training:
            with torch.no_grad():
                v = F.normalize(mat.t() @ self.u, dim=0)
                self.u.copy_(F.normalize(mat @ v, dim=0))
        u = self.u.clone()  # a constant of this forward's graph: the next forward updates self.u in place
        v = F.normalize(mat.t() @ u, dim=0).detach()
        return u @ mat @ v

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        return weight / self.sigma(_matrix(weight, self.transposed))


class _PowerThenBjorck(_PowerIteration):
    """``W / σ`` as above, then ``steps`` Björck iterations ``A ← A(3I − AᵀA)/2`` on ``Ŵ``
    (Björck & Bowie 1971; Anil et al. 2019): each singular value ``s ≤ √3`` maps to
    ``s(3 − s²)/2 ≤ 1``, equal to 1 only at ``s = 1``, so the top one converges to 1
    quadratically and the spectral norm claim holds even where σ's estimate lags."""

    def __init__(self, weight: torch.Tensor, transposed: bool, steps: int) -> None:
        super().__init__(weight, transposed)
        self.steps = steps

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        mat = _matrix(weight, self.transposed)
        return _unmatrix(bjorck(mat / self.sigma(mat), self.steps), weight, self.transposed)


def bjorck(a: torch.Tensor, steps: int) -> torch.Tensor:
    """``steps`` Björck iterations ``A ← A(3I − AᵀA)/2`` (the smaller Gram side)."""
    wide = a.shape[0] < a.shape[1]
    for _ in range(steps):
        a = 1.5 * a - 0.5 * ((a @ a.t()) @ a if wide else a @ (a.t() @ a))
    return a


def _unmatrix(a: torch.Tensor, weight: torch.Tensor, transposed: bool) -> torch.Tensor:
    if transposed:
        return a.reshape(weight.shape[1], weight.shape[0], *weight.shape[2:]).transpose(0, 1)
    return a.reshape(weight.shape)


class _Bjorck(nn.Module):
    def __init__(self, transposed: bool, steps: int) -> None:
        super().__init__()
        self.transposed, self.steps = transposed, steps

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        return _unmatrix(bjorck(_matrix(weight, self.transposed), self.steps), weight, self.transposed)


class _Reparametrize(Method):
    """Registers ``self.module(weight, transposed)`` on every weight layer."""

    tags = MethodTags(reparametrizes=True)

    def module(self, weight: torch.Tensor, transposed: bool) -> nn.Module:
        raise NotImplementedError

    def apply(self, model: nn.Module) -> nn.Module:
        for _, layer in weight_layers(model):  # raises, naming the layer, on any it cannot handle
            transposed = isinstance(layer, nn.ConvTranspose2d)
            parametrize.register_parametrization(layer, "weight", self.module(layer.weight.detach(), transposed))
        return model


class MiyatoSN(_Reparametrize):
    """Miyato's Algorithm 1 with its own vectors: the claim of sn_w, reached another way."""

    name = "miyato_sn"
    claim = Claim("reshape_spectral", 1.0)

    def module(self, weight: torch.Tensor, transposed: bool) -> nn.Module:
        return _PowerIteration(weight, transposed)


class BjorckSN(_Reparametrize):
    """SN followed by Björck orthonormalisation: every layer's ``Ŵ`` close to orthonormal, its
    spectral norm 1. Correct, and several times slower than sn_w by design."""

    name = "bjorck_sn"
    defaults = {"steps": 15}
    claim = Claim("reshape_spectral", 1.0)

    def module(self, weight: torch.Tensor, transposed: bool) -> nn.Module:
        return _PowerThenBjorck(weight, transposed, int(self.params["steps"]))


class SNwBjorck(SNw):
    """sn_w, then Björck orthonormalisation of the normalised weight: sn_w's claim and tags
    (``power_iteration``: its σ is sn_w's), several times sn_w's cost by design."""

    name = "sn_w_bjorck"
    defaults = {**SNw.defaults, "steps": 15}

    def apply(self, model: nn.Module) -> nn.Module:
        model = super().apply(model)
        for _, layer in weight_layers(model):
            transposed = isinstance(layer, nn.ConvTranspose2d)
            parametrize.register_parametrization(layer, "weight", _Bjorck(transposed, int(self.params["steps"])))
        return model
