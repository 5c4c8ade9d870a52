"""Variants written from scratch, as a researcher or an adversary would (importable as
``corpus:Name`` with ``tests/`` on ``sys.path``, like ``mutants.py``).

Nothing here subclasses a built-in method or uses lipbench's parametrizations: each variant
is a :class:`harness.methods.Method` with its own ``nn.Module`` code (or torch's own
``spectral_norm``), declaring its claim and tags as data. :data:`CORRECT` must pass
``lipbench check`` (issue 16, "Correct variants that fail"); :data:`BROKEN` must fail it,
each naming the claim or invariant it violates (issue 16, "Broken variants that pass").
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import parametrize

from harness.methods import Claim, Method, MethodTags

#: The layer types these variants normalise (anything else is left alone: allowed).
KNOWN = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.ConvTranspose2d)
SPECTRAL_TAGS = MethodTags(power_iteration=True, reparametrizes=True)


def matrix(weight: torch.Tensor, transposed: bool) -> torch.Tensor:
    """Miyato's reshape: output channels by everything else (dim 1 of a transposed conv's weight)."""
    if transposed:
        weight = weight.transpose(0, 1)
    return weight.reshape(weight.shape[0], -1)


def known_layers(model: nn.Module) -> list[nn.Module]:
    return [m for m in model.modules() if isinstance(m, KNOWN)]


class Algorithm1(nn.Module):
    """``W / σ`` with ``σ = uᵀŴv`` after one power-iteration step per training forward
    (Miyato et al. 2018, Algorithm 1); eval forwards use the stored vectors."""

    def __init__(self, weight: torch.Tensor, transposed: bool) -> None:
        super().__init__()
        self.transposed = transposed
        rows, cols = matrix(weight, transposed).shape
        self.register_buffer("u", F.normalize(torch.randn(rows), dim=0))
        self.register_buffer("v", F.normalize(torch.randn(cols), dim=0))

    def step(self, mat: torch.Tensor) -> None:
        with torch.no_grad():
            self.v.copy_(F.normalize(mat.t() @ self.u, dim=0, eps=1e-12))
            self.u.copy_(F.normalize(mat @ self.v, dim=0, eps=1e-12))

    def sigma(self, mat: torch.Tensor) -> torch.Tensor:
        # clones: the stored vectors change in place at the next training forward
        return self.u.clone() @ mat @ self.v.clone()

    def scale(self) -> float:
        return 1.0

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        mat = matrix(weight, self.transposed)
        if self.training:
            self.step(mat.detach())
        return self.scale() * weight / self.sigma(mat)


class Parametrized(Method):
    """Registers ``module(layer.weight, transposed)`` on every known layer."""

    name = "corpus_parametrized"
    module = Algorithm1
    claim = Claim("reshape_spectral", 1.0)
    tags = SPECTRAL_TAGS

    def apply(self, model: nn.Module) -> nn.Module:
        for layer in known_layers(model):
            parametrize.register_parametrization(
                layer, "weight", self.module(layer.weight, isinstance(layer, nn.ConvTranspose2d)))
        return model


# --- correct -------------------------------------------------------------------------------------

class MiyatoSN(Parametrized):
    """Miyato's Algorithm 1 with its own parametrization module: one power-iteration step per
    training forward, no warm-up."""

    name = "miyato_sn"


class TorchSNWrapped(Method):
    """torch's ``parametrizations.spectral_norm`` on the layer types it knows; others are left alone."""

    name = "torch_sn_wrapped"
    claim = Claim("reshape_spectral", 1.0)
    tags = SPECTRAL_TAGS

    def apply(self, model: nn.Module) -> nn.Module:
        for layer in known_layers(model):
            torch.nn.utils.parametrizations.spectral_norm(layer)  # dim 1 for transposed convolutions
        return model


class _Bjorck(Algorithm1):
    """Algorithm 1, then Björck's orthonormalisation ``W ← 1.5 W − 0.5 (W Wᵀ) W`` (Björck &
    Bowie 1971; Anil et al. 2019): every singular value of ``Ŵ`` goes to 1."""

    iterations = 25

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        mat = matrix(weight, self.transposed)
        if self.training:
            self.step(mat.detach())
        mat = mat / self.sigma(mat)
        wide = mat.shape[0] <= mat.shape[1]
        for _ in range(self.iterations):
            mat = 1.5 * mat - 0.5 * ((mat @ mat.t()) @ mat if wide else mat @ (mat.t() @ mat))
        if self.transposed:
            return mat.reshape(weight.transpose(0, 1).shape).transpose(0, 1)
        return mat.reshape(weight.shape)


class BjorckSN(Parametrized):
    """Spectral normalisation followed by Björck orthonormalisation; claims orthonormal layers."""

    name = "bjorck_sn"
    module = _Bjorck
    claim = Claim("reshape_singular_values", 1.0)


class _PeriodicSVD(Algorithm1):
    """An exact SVD every ``period`` training forwards, one power-iteration step in between."""

    period = 10

    def __init__(self, weight: torch.Tensor, transposed: bool) -> None:
        super().__init__(weight, transposed)
        self.register_buffer("forwards", torch.zeros((), dtype=torch.long))

    def step(self, mat: torch.Tensor) -> None:
        if int(self.forwards) % self.period == 0:
            u, _, vh = torch.linalg.svd(mat)
            self.u.copy_(u[:, 0])
            self.v.copy_(vh[0])
        else:
            super().step(mat)
        self.forwards += 1


class PeriodicSVDSN(Parametrized):
    """Exact SVD every 10 steps, power iteration between: correct."""

    name = "periodic_svd_sn"
    module = _PeriodicSVD


class _Frobenius(nn.Module):
    def __init__(self, weight: torch.Tensor, transposed: bool) -> None:
        super().__init__()

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        return weight / weight.norm()


class FrobeniusAtMost(Parametrized):
    """``W / ‖W‖_F``, claiming what it guarantees: ``‖Ŵ‖₂ ≤ ‖Ŵ‖_F = 1`` (Miyato et al. 2018, App. D.1)."""

    name = "frobenius_at_most"
    module = _Frobenius
    claim = Claim("reshape_spectral_at_most", 1.0)
    tags = MethodTags(reparametrizes=True)


def interpolates(real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
    eps = torch.rand((real.shape[0],) + (1,) * (real.dim() - 1), dtype=real.dtype, device=real.device)
    return (eps * real.detach() + (1 - eps) * fake.detach()).requires_grad_(True)


def gradient_norms(D: nn.Module, x: torch.Tensor) -> torch.Tensor:
    (grad,) = torch.autograd.grad(D(x).sum(), x, create_graph=True)
    return grad.flatten(1).norm(dim=1)


class WGANGP(Method):
    """Gulrajani et al. 2017's penalty, ``λ E[(‖∇D(x̂)‖ − 1)²]``, written again."""

    name = "wgan_gp_copy"
    defaults = {"lam": 10.0}
    claim = Claim("interpolate_gradient", 1.0)
    tags = MethodTags(penalty=True)

    def gap(self, norms: torch.Tensor) -> torch.Tensor:
        return norms - 1

    def penalty(self, D, real, fake):
        return self.params["lam"] * self.gap(gradient_norms(D, interpolates(real, fake))).pow(2).mean()


class OneSidedGP(WGANGP):
    """Petzka et al. 2018's one-sided penalty ``λ E[max(0, ‖∇D(x̂)‖ − 1)²]``, claiming ``‖∇D‖ ≤ 1``."""

    name = "one_sided_gp"
    claim = Claim("interpolate_gradient_at_most", 1.0)

    def gap(self, norms):
        return (norms - 1).clamp_min(0)


# --- broken and adversarial ----------------------------------------------------------------------

class _Scaled(Algorithm1):
    def scale(self) -> float:
        return 1.25


class ScaledSN(Parametrized):
    """Algorithm 1 times 1.25 (claims ‖Ŵ‖ = 1)."""

    name = "scaled_sn"
    module = _Scaled


def _zero(*args, **kwargs):
    return 0.0


class PatchesMeasurement(ScaledSN):
    """Algorithm 1 × 1.25 that, in ``apply``, replaces lipbench's measurement functions, torch's and
    numpy's linear algebra and lipbench's results writer with ones that report a perfect method."""

    name = "patches_measurement"

    def apply(self, model):
        import numpy as np

        from harness.baselines import checks
        from harness.methods import measure
        from harness.methods.contract import claim_invariants
        from harness.observe import verify
        from harness.results import store
        ones = lambda x, *a, **k: torch.ones((), dtype=torch.float64)  # noqa: E731
        measure.claim_error = _zero
        measure.weight_quantity = lambda quantity, w, kind, target=1.0: (target, {})
        verify.measure_layers = lambda *a, **k: []
        verify.layer_differences = lambda *a, **k: {}
        verify.model_difference = _zero
        verify.settled = lambda report: (True, 0.0, 0)
        claim_invariants.CLAIM_RTOL = float("inf")
        torch.linalg.matrix_norm = ones
        torch.linalg.norm = ones
        torch.linalg.svdvals = lambda x, *a, **k: torch.ones(min(x.shape[-2:]), dtype=x.dtype)
        np.linalg.norm = lambda *a, **k: 1.0
        store.ResultsDir.append_case = lambda *a, **k: None
        checks.evaluate_checks = lambda *a, **k: []
        return super().apply(model)


class ScaledAtMost(ScaledSN):
    """Algorithm 1 × 1.25 claiming only ``‖Ŵ‖ ≤ 1``: still false."""

    name = "scaled_at_most"
    claim = Claim("reshape_spectral_at_most", 1.0)


class _GradScaled(Algorithm1):
    def scale(self) -> float:
        return 1.25 if torch.is_grad_enabled() else 1.0


class GradModeScaledSN(Parametrized):
    """Algorithm 1, scaled by 1.25 only while autograd is enabled (as in training)."""

    name = "grad_mode_scaled_sn"
    module = _GradScaled


class _TrainScaled(Algorithm1):
    def scale(self) -> float:
        return 1.25 if self.training else 1.0


class TrainModeScaledSN(Parametrized):
    """Algorithm 1, scaled by 1.25 only in training mode."""

    name = "train_mode_scaled_sn"
    module = _TrainScaled


class _Lazy(nn.Module):
    """An exact σ at every ``period``-th update, 0.8 × the last exact σ in between (1.25× too large)."""

    def __init__(self, weight: torch.Tensor, transposed: bool, period: int, by_weight: bool) -> None:
        super().__init__()
        self.transposed, self.period, self.by_weight = transposed, period, by_weight
        self.register_buffer("updates", torch.zeros((), dtype=torch.long))
        self.register_buffer("exact", torch.ones(()))
        self.register_buffer("seen", weight.detach().clone())

    def count(self, weight: torch.Tensor) -> None:
        """An update: every ``after_step``, or (``by_weight``) only when the weight really changed."""
        if not self.by_weight or not torch.equal(weight, self.seen):
            self.updates += 1
            self.seen.copy_(weight.detach())

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        mat = matrix(weight, self.transposed)
        if int(self.updates) % self.period == 0:
            with torch.no_grad():
                self.exact.copy_(torch.linalg.matrix_norm(mat.detach(), ord=2))
        # a copy: the stored value changes in place at the next refresh
        return weight / (self.exact.clone() if int(self.updates) % self.period == 0 else 0.8 * self.exact)


class LazySN(Method):
    """Exact only every ``period`` updates and wrong (1.25×) in between; ``by_weight``: counts only
    updates that change the weight (so steps with a zero learning rate never advance it)."""

    name = "lazy_sn"
    defaults = {"period": 10, "by_weight": False}
    claim = Claim("reshape_spectral", 1.0)
    tags = MethodTags(reparametrizes=True)

    def apply(self, model):
        for layer in known_layers(model):
            parametrize.register_parametrization(
                layer, "weight", _Lazy(layer.weight, isinstance(layer, nn.ConvTranspose2d),
                                       self.params["period"], self.params["by_weight"]))
        return model

    def after_step(self, D):
        for layer in known_layers(D):
            for p in layer.parametrizations.weight:
                if isinstance(p, _Lazy):
                    p.count(layer.parametrizations.weight.original)


class _BiasScaled(Algorithm1):
    def __init__(self, weight, transposed, layer: nn.Module) -> None:
        super().__init__(weight, transposed)
        self.has_bias = layer.bias is not None

    def scale(self) -> float:
        return 1.0 if self.has_bias else 1.25


class BiasDependentSN(Parametrized):
    """Algorithm 1, exact on layers with a bias, 1.25× on layers without one."""

    name = "bias_dependent_sn"

    def apply(self, model):
        for layer in known_layers(model):
            parametrize.register_parametrization(
                layer, "weight", _BiasScaled(layer.weight, isinstance(layer, nn.ConvTranspose2d), layer))
        return model


class OneSidedPosingAsTwoSided(OneSidedGP):
    """A one-sided penalty that claims the two-sided ``interpolate_gradient``."""

    name = "one_sided_posing_as_two_sided"
    claim = Claim("interpolate_gradient", 1.0)


class TwoSidedPosingAsOneSided(WGANGP):
    """A two-sided penalty that claims the one-sided ``interpolate_gradient_at_most``."""

    name = "two_sided_posing_as_one_sided"
    claim = Claim("interpolate_gradient_at_most", 1.0)


class ComputesWithAnother(MiyatoSN):
    """Reports Algorithm 1's weight but computes with 1.25 times it: patches ``Conv2d`` and
    ``Linear`` themselves (so every layer still looks standard)."""

    name = "computes_with_another"

    def apply(self, model):
        conv, linear = nn.Conv2d._conv_forward, nn.Linear.forward

        def conv_scaled(self, x, weight, bias):
            return conv(self, x, 1.25 * weight, bias)

        def linear_scaled(self, x):
            return F.linear(x, 1.25 * self.weight, self.bias)
        nn.Conv2d._conv_forward, nn.Linear.forward = conv_scaled, linear_scaled
        return super().apply(model)


#: name -> class: correct re-implementations; each must pass.
CORRECT = {cls.__name__: cls for cls in (MiyatoSN, TorchSNWrapped, BjorckSN, PeriodicSVDSN, FrobeniusAtMost, WGANGP,
                                         OneSidedGP)}
#: name -> (class, parameters, the contract invariants that must report it); each must fail.
BROKEN = {
    "PatchesMeasurement": (PatchesMeasurement, {}, ("claim_on_fixed_weights",)),
    "ScaledAtMost": (ScaledAtMost, {}, ("claim_on_fixed_weights",)),
    "GradModeScaledSN": (GradModeScaledSN, {}, ("modes_agree", "claim_on_fixed_weights")),
    "TrainModeScaledSN": (TrainModeScaledSN, {}, ("modes_agree", "claim_on_fixed_weights")),
    "LazySN": (LazySN, {}, ("settles",)),
    "BiasDependentSN": (BiasDependentSN, {}, ("claim_on_fixed_weights",)),
    "OneSidedPosingAsTwoSided": (OneSidedPosingAsTwoSided, {}, ("penalty_side",)),
    "TwoSidedPosingAsOneSided": (TwoSidedPosingAsOneSided, {}, ("penalty_side",)),
    "ComputesWithAnother": (ComputesWithAnother, {}, ("computes_what_it_reports",)),
}

__all__ = ["BROKEN", "CORRECT", *CORRECT, *BROKEN, "LazySN", "ScaledSN"]
