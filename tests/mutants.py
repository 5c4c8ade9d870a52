"""A zoo of broken methods (mutants) and correct re-implementations, for the contract.

Importable as ``mutants:Name`` when ``tests/`` is on ``sys.path`` (``lipbench check
mutants:SNwDeclaredScale``), like ``variants.py``. Every mutant subclasses a built-in
method and inherits its claim; :data:`MUTANTS` maps each to the invariants of
:mod:`harness.methods.contract` that must report it as a violation. :data:`CORRECT` lists
re-implementations that must pass the whole contract. :func:`mutation_score` runs the
contract over the zoo (the tests and the benchmarks call it).
"""
from __future__ import annotations

import copy
import math
from dataclasses import dataclass, replace

import torch
from torch import nn
from torch.nn.utils import parametrize

from harness.layers import (WEIGHT_LAYERS, apply_operator, geometry, layer_kind, reshape_matrix,
                            weight_layers)
from harness.methods import InvariantResult, Method, run_contract
from harness.methods.normalization import FrobeniusNorm, FrobeniusNormalization, RowNormalization, WeightNorm
from harness.methods.operator import SNConv
from harness.methods.power import power_iteration
from harness.methods.regularizers import GradPenalty, OrthonormalReg, WeightClip, _raw_weight
from harness.methods.spectral import BSN, BSSN, SNw, SSN, ReshapeSpectralNorm, TorchSN

# --- sn_w ----------------------------------------------------------------------------------------


class SNwUndeclaredScale(SNw):
    """Divides by 0.8·σ (so ‖Ŵ_eff‖ = 1.25) while ``scale()`` still says 1."""

    name = "mutant_sn_w_undeclared_scale"

    def parametrization(self, name, layer, kind):
        return ReshapeSpectralNorm(layer.weight, kind, scale=1 / 0.8)


class SNwDeclaredScale(SNw):
    """Declares ``scale() = 1.25``; the claim (‖Ŵ‖ = 1) is unchanged."""

    name = "mutant_sn_w_declared_scale"

    def scale(self):
        return 1.25


class _FrozenVectors(ReshapeSpectralNorm):
    def iterate(self, weight, k):
        mat = reshape_matrix(weight.detach(), self.kind)
        u, v, sigma = power_iteration(lambda x: mat @ x, lambda y: mat.t() @ y, self._u, k, self.eps)
        return ((u, v),), sigma  # never stored: every step restarts from the initial random u


class SNwFrozenU(SNw):
    """The power iteration never updates the stored vectors (one step from the random
    initial ``u`` every time)."""

    name = "mutant_sn_w_frozen_u"

    def parametrization(self, name, layer, kind):
        return _FrozenVectors(layer.weight, kind)


class _StaleVectors(ReshapeSpectralNorm):
    def iterate(self, weight, k):
        if getattr(self, "_initialised", False):
            return self.current_state(), self.sigma(weight.detach(), self.current_state())
        self._initialised = True
        return super().iterate(weight, k)


class SNwStaleU(SNw):
    """The stored vectors are never updated after the initial steps at registration."""

    name = "mutant_sn_w_stale_u"

    def parametrization(self, name, layer, kind):
        return _StaleVectors(layer.weight, kind)


class SNwZeroIterations(SNw):
    """``init_iterations = 0`` and ``n_power_iterations = 0`` forced: ``σ = ‖Ŵᵀu‖`` for the
    random initial ``u``."""

    name = "mutant_sn_w_zero_iterations"

    def parametrization(self, name, layer, kind):
        return ReshapeSpectralNorm(layer.weight, kind, n_power_iterations=0, init_iterations=0)


class FrobeniusAsSNw(SNw):
    """Frobenius normalisation posing as ``sn_w`` (‖Ŵ‖ < 1 on any matrix of rank > 1)."""

    name = "mutant_frobenius_as_sn_w"

    def parametrization(self, name, layer, kind):
        return FrobeniusNormalization()


class _EvalIterating(ReshapeSpectralNorm):
    def forward(self, weight):
        if not self.training:
            self.iterate(weight, 1)
        return super().forward(weight)


class SNwIteratesInEval(SNw):
    """Advances the power iteration in eval mode too (evaluation changes the state)."""

    name = "mutant_sn_w_iterates_in_eval"

    def parametrization(self, name, layer, kind):
        return _EvalIterating(layer.weight, kind)


class _UnsavedVectors(ReshapeSpectralNorm):
    def __init__(self, weight, kind):
        super().__init__(weight, kind)
        for key in ("_u", "_v"):
            self.register_buffer(key, self._buffers.pop(key), persistent=False)


class SNwUnsavedVectors(SNw):
    """Keeps ``u``/``v`` as non-persistent buffers: a checkpoint loses them."""

    name = "mutant_sn_w_unsaved_vectors"

    def parametrization(self, name, layer, kind):
        return _UnsavedVectors(layer.weight, kind)


class _NoSigmaGrad(ReshapeSpectralNorm):
    def add_sigma_grad(self, grad, beta, alpha, state):
        return grad * beta  # forgets the ∂σ/∂W term of the quotient rule


class SNwNoSigmaGradient(SNw):
    """Backward without the ``∂σ/∂W`` term (the gradient of a constant division)."""

    name = "mutant_sn_w_no_sigma_gradient"

    def parametrization(self, name, layer, kind):
        return _NoSigmaGrad(layer.weight, kind)


class SNwSkipsTransposed(SNw):
    """Normalises ``Conv2d`` and ``Linear`` layers and silently leaves ``ConvTranspose2d`` alone:
    a weight layer its claim covers, unconstrained."""

    name = "mutant_sn_w_skips_transposed"

    def apply(self, model):
        for module in model.modules():
            if isinstance(module, WEIGHT_LAYERS) and not isinstance(module, nn.ConvTranspose2d):
                parametrize.register_parametrization(
                    module, "weight", self.parametrization("", module, layer_kind(module)), unsafe=True)
        return model


class _GradScaled(ReshapeSpectralNorm):
    def forward(self, weight):
        return super().forward(weight) * (1.25 if torch.is_grad_enabled() else 1.0)


class SNwScaledWithGrad(SNw):
    """Exact without autograd (where lipbench used to measure), 1.25× with it (where training runs)."""

    name = "mutant_sn_w_scaled_with_grad"

    def parametrization(self, name, layer, kind):
        return _GradScaled(layer.weight, kind)


class _Alternating(ReshapeSpectralNorm):
    def forward(self, weight):
        if self.training:
            self.flips = getattr(self, "flips", 0) + 1
        return super().forward(weight) * (1.25 if getattr(self, "flips", 0) % 2 else 1.0)


class SNwAlternates(SNw):
    """Exact on every other training forward, 1.25× on the others: never at rest."""

    name = "mutant_sn_w_alternates"

    def parametrization(self, name, layer, kind):
        return _Alternating(layer.weight, kind)


# --- ssn, bsn, bssn, sn_conv, torch_sn -------------------------------------------------------------

class SSNIgnoresS(SSN):
    """Ignores ``s`` (always 1)."""

    name = "mutant_ssn_ignores_s"

    def scale(self):
        return 1.0


class BSNOneReshape(BSN):
    """Normalises by the first reshape only (``sn_w`` under BSN's claim)."""

    name = "mutant_bsn_one_reshape"
    balanced = False


class BSSNSquaresS(BSSN):
    """Scales by ``s²``: right at the default ``s = 1``, wrong at any other ``s``."""

    name = "mutant_bssn_squares_s"

    def scale(self):
        return float(self.params["s"]) ** 2


class ReshapeAsSNConv(SNConv):
    """Normalises the reshape ``Ŵ`` while claiming the operator norm ``‖W̃‖ = 1``."""

    name = "mutant_reshape_as_sn_conv"

    def parametrization(self, name, layer, kind):
        return ReshapeSpectralNorm(layer.weight, kind)

    def registered(self, name, layer, module):
        pass


class SNConvHookOnOriginal(SNConv):
    """The input-size hook reads the parametrization from its closure, not from the module
    it is called on: a deep copy (EMA) made before the first forward initialises the
    original's state instead of its own."""

    name = "mutant_sn_conv_hook_on_original"

    def registered(self, name, layer, module):
        if module.input_shape is not None:
            return

        def record(mod, args):
            if module.input_shape is None:
                with torch.no_grad():
                    module.set_input_shape(args[0].shape[1:], mod.parametrizations.weight.original)

        layer.register_forward_pre_hook(record)


class TorchSNHugeEps(TorchSN):
    """torch's ``spectral_norm`` with ``eps = 1e3``: ``u``/``v`` are divided by
    ``max(‖·‖, eps)``, no longer unit vectors, so ``σ`` is far too small."""

    name = "mutant_torch_sn_huge_eps"
    defaults = {**TorchSN.defaults, "eps": 1e3}


# --- weight_norm, frobenius_norm ------------------------------------------------------------------

class _RowsAt(RowNormalization):
    def forward(self, weight):
        return 1.1 * super().forward(weight)


class WeightNormRowsAt1p1(WeightNorm):
    """Rows of ``Ŵ`` at norm 1.1."""

    name = "mutant_weight_norm_rows_1p1"

    def parametrization(self, name, layer, kind):
        return _RowsAt(kind)


class _HalfFrobenius(nn.Module):
    def forward(self, weight):
        return weight / (0.5 * torch.linalg.vector_norm(weight))


class FrobeniusTwice(FrobeniusNorm):
    """Divides by half the Frobenius norm (‖W‖_F = 2)."""

    name = "mutant_frobenius_twice"

    def parametrization(self, name, layer, kind):
        return _HalfFrobenius()


# --- weight_clip -------------------------------------------------------------------------------

@torch.no_grad()
def _clamp_weights(D, low, high):
    for _, layer in weight_layers(D):
        _raw_weight(layer).clamp_(low, high)


class ClipUpTo2c(WeightClip):
    """Clamps to ``[-c, 2c]``."""

    name = "mutant_clip_up_to_2c"

    def after_step(self, D):
        _clamp_weights(D, -self.params["c"], 2 * self.params["c"])


class ClipHalfBelow(WeightClip):
    """Clamps to ``[-c/2, c]``: inside ``[-c, c]`` (the bound holds) but not a projection."""

    name = "mutant_clip_half_below"

    def after_step(self, D):
        _clamp_weights(D, -self.params["c"] / 2, self.params["c"])


# --- grad_penalty, orthonormal_reg ---------------------------------------------------------------

class GPOneSidedAsTwoSided(GradPenalty):
    """Computes the one-sided penalty while keeping the two-sided claim."""

    name = "mutant_gp_one_sided_as_two_sided"

    def __init__(self, **params):
        super().__init__(**params)
        self.params["one_sided"] = True
        self.claim = GradPenalty.claim


class GPZeroLambda(GradPenalty):
    """``λ = 0`` by default."""

    name = "mutant_gp_zero_lambda"
    defaults = {**GradPenalty.defaults, "lam": 0.0}


class GPAtRealPoints(GradPenalty):
    """Penalises the gradient at the real samples instead of at interpolates."""

    name = "mutant_gp_at_real_points"

    def interpolate(self, real, fake):
        return real.detach().clone()


class GPFixedEps(GradPenalty):
    """Interpolates with a fixed ``ε = 0.5`` (midpoints only)."""

    name = "mutant_gp_fixed_eps"

    def interpolate(self, real, fake):
        return 0.5 * real.detach() + 0.5 * fake.detach()


class OrthoFlippedSign(OrthonormalReg):
    """Subtracts the orthonormal penalty (pushes the Gram matrix away from ``I``)."""

    name = "mutant_ortho_flipped_sign"

    def penalty(self, D, real, fake):
        return -super().penalty(D, real, fake)


# --- none ---------------------------------------------------------------------------------------

class NoneCountsForwards(Method):
    """``none`` with a monitoring hook that counts forwards in a buffer, in eval mode too."""

    name = "mutant_none_counts_forwards"

    def apply(self, model):
        model.register_buffer("forwards_seen", torch.zeros((), dtype=torch.long))
        model.register_forward_hook(_count)
        return model


def _count(module, args, out):
    module.forwards_seen.add_(1)


class NoneScalesOutput(Method):
    """``none`` whose model multiplies its output by 1.25 in a forward hook: every layer is as it
    reports, the model is not."""

    name = "mutant_none_scales_output"

    def apply(self, model):
        model.register_forward_hook(lambda module, args, out: 1.25 * out)
        return model


# --- correct re-implementations -----------------------------------------------------------------

class SNw3(SNw):
    """``sn_w`` with 3 power-iteration steps per weight update (a better, correct variant)."""

    name = "sn_w_3_steps"
    defaults = {**SNw.defaults, "n_power_iterations": 3}


class _ExactSigma(nn.Module):
    def __init__(self, kind):
        super().__init__()
        self.kind = kind

    def forward(self, weight):
        return weight / torch.linalg.matrix_norm(reshape_matrix(weight, self.kind), ord=2)

    def right_inverse(self, value):
        return value


class ExactSigmaSN(SNw):
    """Divides by the exact ``‖Ŵ‖`` (SVD) at every forward; differentiable through the SVD."""

    name = "sn_w_exact_sigma"
    tags = replace(SNw.tags, power_iteration=False)

    def parametrization(self, name, layer, kind):
        return _ExactSigma(kind)


class _OperatorNormalised(nn.Module):
    """A weight layer replaced by ``x ↦ W̃x/‖W̃‖ + b`` with ``‖W̃‖`` the exact norm at the
    input size of each call (dense SVD of the materialised operator: tiny layers only)."""

    lipbench_layer = True  # measured as one map by harness.methods.measure

    def __init__(self, layer: nn.Module) -> None:
        super().__init__()
        self.inner = layer
        self.geom = geometry(layer)

    def forward(self, x):
        w = self.inner.weight
        n = math.prod(x.shape[1:])
        basis = torch.eye(n, dtype=w.dtype, device=w.device).view(n, *x.shape[1:])
        sigma = torch.linalg.matrix_norm(apply_operator(self.geom, w, basis).reshape(n, -1), ord=2)
        out = apply_operator(self.geom, w / sigma, x)
        bias = self.inner.bias
        if bias is None:
            return out
        return out + bias.view(1, -1, *([1] * (out.dim() - 2)))


class SwappedOperatorSN(SNConv):
    """Replaces every weight layer by :class:`_OperatorNormalised` in a new model (the
    input model is left as it was): ``apply`` returns the model to use."""

    name = "swapped_operator_sn"
    tags = replace(SNConv.tags, power_iteration=False, reparametrizes=False, replaces_layers=True)

    def apply(self, model):
        model = copy.deepcopy(model)
        for name, layer in weight_layers(model):  # raises, naming unsupported layers
            parent_name, _, child = name.rpartition(".")
            parent = model.get_submodule(parent_name) if parent_name else model
            setattr(parent, child, _OperatorNormalised(layer))
        return model


# --- the zoo ---------------------------------------------------------------------------------------

#: mutant -> invariants that must each report a violation.
MUTANTS: dict[type, tuple[str, ...]] = {
    SNwUndeclaredScale: ("claim_on_fixed_weights",),
    SNwDeclaredScale: ("claim_on_fixed_weights",),
    SNwFrozenU: ("claim_on_fixed_weights",),
    SNwStaleU: ("claim_on_fixed_weights",),
    SNwZeroIterations: ("claim_on_fixed_weights",),
    FrobeniusAsSNw: ("claim_on_fixed_weights",),
    SNwIteratesInEval: ("eval_leaves_state_unchanged",),
    SNwUnsavedVectors: ("state_dict_round_trip",),
    SNwNoSigmaGradient: ("gradients_flow",),
    SNwSkipsTransposed: ("claim_on_fixed_weights",),
    SNwScaledWithGrad: ("modes_agree", "claim_on_fixed_weights"),
    SNwAlternates: ("settles",),
    SSNIgnoresS: ("claim_follows_parameter",),
    BSNOneReshape: ("claim_on_fixed_weights",),
    BSSNSquaresS: ("claim_follows_parameter",),
    ReshapeAsSNConv: ("claim_on_fixed_weights",),
    SNConvHookOnOriginal: ("deepcopy_keeps_weights",),
    TorchSNHugeEps: ("claim_on_fixed_weights",),
    WeightNormRowsAt1p1: ("claim_on_fixed_weights",),
    FrobeniusTwice: ("claim_on_fixed_weights",),
    ClipUpTo2c: ("claim_on_fixed_weights", "projection_after_step"),
    ClipHalfBelow: ("projection_after_step",),
    GPZeroLambda: ("penalty_pulls_towards_claim", "gradients_flow"),
    GPOneSidedAsTwoSided: ("penalty_side",),
    GPAtRealPoints: ("penalty_vanishes_only_at_claim",),
    GPFixedEps: ("penalty_vanishes_only_at_claim",),
    OrthoFlippedSign: ("penalty_pulls_towards_claim",),
    NoneCountsForwards: ("eval_leaves_state_unchanged",),
    NoneScalesOutput: ("computes_what_it_reports",),
}


def _third_party():
    from examples.third_party import TorchSpectralNorm  # needs the repository root on sys.path
    return TorchSpectralNorm


class SNwLeavesUnknownLayers(SNw):
    """Normalises every layer its claim covers and leaves any other layer with a weight alone
    (allowed: raising on an unknown layer is never required)."""

    name = "sn_w_leaves_unknown_layers"

    def apply(self, model):
        for module in model.modules():
            if isinstance(module, WEIGHT_LAYERS):
                parametrize.register_parametrization(
                    module, "weight", self.parametrization("", module, layer_kind(module)), unsafe=True)
        return model


#: Correct re-implementations (factories) that must pass the whole contract.
CORRECT = {"third_party_torch_sn": _third_party, "sn_w_3_steps": lambda: SNw3,
           "sn_w_exact_sigma": lambda: ExactSigmaSN, "swapped_operator_sn": lambda: SwappedOperatorSN,
           "sn_w_leaves_unknown_layers": lambda: SNwLeavesUnknownLayers}


@dataclass(frozen=True)
class MutationScore:
    """How many mutants the contract catches (any violation), with every contract result."""

    caught: int
    total: int
    results: dict[str, list[InvariantResult]]

    @property
    def score(self) -> float:
        return self.caught / self.total

    def violated(self, mutant: str) -> list[str]:
        """The invariants the contract reported as violated for ``mutant`` (a class name)."""
        return [r.invariant for r in self.results[mutant] if r.verdict == "violation"]


def mutation_score(seed: int = 0) -> MutationScore:
    """Run the contract on every mutant of :data:`MUTANTS`."""
    results = {cls.__name__: run_contract(cls, seed=seed) for cls in MUTANTS}
    caught = sum(1 for rs in results.values() if any(r.verdict == "violation" for r in rs))
    return MutationScore(caught, len(MUTANTS), results)


__all__ = ["CORRECT", "MUTANTS", "MutationScore", "mutation_score"] + [c.__name__ for c in MUTANTS]
