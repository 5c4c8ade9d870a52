"""Non-spectral methods (weight/Frobenius normalization, clipping, gradient penalty,
orthonormal regularization) and unsupported layers; each check also shown to fail on a
deliberately broken variant (more in the mutant zoo, tests/mutants.py)."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from harness.layers import UnsupportedLayerError, weight_layers
from harness.methods import get
from harness.methods.measure import measure_claim
from harness.methods.normalization import RowNormalization, WeightNorm
from harness.methods.regularizers import GradPenalty, OrthonormalReg, WeightClip
from mutants import FrobeniusTwice

LAYERS = {
    "linear": lambda: nn.Linear(6, 5),
    "conv1d": lambda: nn.Conv1d(3, 4, 3, padding=1),
    "conv2d": lambda: nn.Conv2d(3, 4, 3, padding=1),
    "conv_transpose2d": lambda: nn.ConvTranspose2d(4, 3, 4, stride=2, padding=1),
}


def layer(key, method, seed=0):
    torch.manual_seed(seed)
    return method.apply(LAYERS[key]().double())


def small_D(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(2, 4, 3, stride=2, padding=1), nn.LeakyReLU(0.1),
                         nn.Conv2d(4, 4, 3, padding=1), nn.LeakyReLU(0.1), nn.Flatten(),
                         nn.Linear(4 * 3 * 3, 1)).double()


# --- weight / Frobenius normalization ---------------------------------------------------------

class _Columns(RowNormalization):
    def forward(self, w):  # normalises the input-channel slices instead of the output rows
        keep = 1 - self.dim
        return w / torch.linalg.vector_norm(w, dim=[d for d in range(w.dim()) if d != keep], keepdim=True)


class ColumnWeightNorm(WeightNorm):
    name = "broken_columns"

    def parametrization(self, name, layer, kind):
        return _Columns(kind)


def claim_error(method, model):
    """Worst relative error of ``method``'s claim over the layers of ``model``."""
    return max(m.error for m in measure_claim(method, model))


# float64 weights: a normalised row or weight is exact to a few ulps (1e-12 is ample)
@pytest.mark.parametrize("key", LAYERS)
def test_weight_norm_rows(key):
    assert claim_error(get("weight_norm"), layer(key, get("weight_norm"))) < 1e-12
    assert claim_error(ColumnWeightNorm(), layer(key, ColumnWeightNorm())) > 1e-3


@pytest.mark.parametrize("key", LAYERS)
def test_frobenius_norm(key):
    assert claim_error(get("frobenius_norm"), layer(key, get("frobenius_norm"))) < 1e-12
    assert claim_error(FrobeniusTwice(), layer(key, FrobeniusTwice())) > 1e-3


# --- weight clipping --------------------------------------------------------------------------

class OneSidedClip(WeightClip):
    """Sign error: only the upper bound is enforced."""
    name = "broken_clip"

    @torch.no_grad()
    def after_step(self, D):
        for _, l in weight_layers(D):
            l.weight.clamp_(max=self.params["c"])


def _inflate(D):
    with torch.no_grad():
        for p in D.parameters():
            p.mul_(10)
    return D


def clip_deviation(method, D, c):
    """Largest difference between the weights after ``after_step`` and their clamp to [-c, c]."""
    before = [l.weight.detach().clone() for _, l in weight_layers(D)]
    method.after_step(D)
    return max(float((l.weight.detach() - w0.clamp(-c, c)).abs().max())
               for (_, l), w0 in zip(weight_layers(D), before))


def test_clip_clips():
    D = _inflate(small_D())
    assert clip_deviation(get("weight_clip"), D, 0.01) == 0.0
    assert all(l.weight.abs().max() <= 0.01 for _, l in weight_layers(D))
    D = _inflate(small_D())
    assert clip_deviation(OneSidedClip(), D, 0.01) > 0.0


def test_clip_at_apply_and_custom_c():
    D = _inflate(small_D())
    get("weight_clip", c=0.05).apply(D)
    assert max(float(l.weight.detach().abs().max()) for _, l in weight_layers(D)) == pytest.approx(0.05)
    biases = [l.bias for _, l in weight_layers(D)]
    assert max(float(b.detach().abs().max()) for b in biases) > 0.05  # biases are not clipped


# --- gradient penalty -------------------------------------------------------------------------

def same_seed(method, D, real, fake, reference, seed=0):
    """``method.penalty`` and ``reference()``, each drawn from the same RNG seed."""
    torch.manual_seed(seed)
    got = method.penalty(D, real, fake)
    torch.manual_seed(seed)
    return got, reference()


def reference_gp(D, real, fake, lam, one_sided=False):
    """Per-sample loop, separate graph per sample; ε drawn as documented."""
    eps = torch.rand((real.shape[0],) + (1,) * (real.dim() - 1), dtype=real.dtype)
    terms = []
    for i in range(real.shape[0]):
        xi = (real[i] * eps[i] + fake[i] - fake[i] * eps[i]).unsqueeze(0).requires_grad_(True)
        (g,) = torch.autograd.grad(D(xi)[0, 0], xi, create_graph=True)
        norm = torch.sqrt((g ** 2).sum())
        d = torch.relu(norm - 1) if one_sided else norm - 1
        terms.append(d ** 2)
    return lam * torch.stack(terms).mean()


class WrongInterpolationGP(GradPenalty):
    name = "broken_gp"

    def interpolate(self, real, fake):
        eps = torch.rand((real.shape[0],) + (1,) * (real.dim() - 1), dtype=real.dtype)
        return eps * real + eps * fake  # should be (1 - eps) * fake


@pytest.mark.parametrize("one_sided", [False, True])
def test_gradient_penalty_matches_independent_computation(one_sided):
    D = small_D()
    with torch.no_grad():  # input gradients of norm around 1, so one-sided terms are not all 0
        for p in D.parameters():
            p.mul_(3)
    torch.manual_seed(1)
    real, fake = torch.randn(5, 2, 6, 6, dtype=torch.float64), torch.randn(5, 2, 6, 6, dtype=torch.float64)
    m = get("grad_penalty", lam=3.0, one_sided=one_sided)
    ref = lambda: reference_gp(D, real, fake, 3.0, one_sided)  # noqa: E731
    got, want = same_seed(m, D, real, fake, ref)
    assert got.requires_grad and torch.allclose(got, want, rtol=1e-6, atol=1e-12)
    got, want = same_seed(WrongInterpolationGP(lam=3.0, one_sided=one_sided), D, real, fake, ref)
    assert not torch.allclose(got, want, rtol=1e-6, atol=1e-12)


def test_gradient_penalty_backpropagates():
    D = small_D()
    real, fake = torch.randn(4, 2, 6, 6, dtype=torch.float64), torch.randn(4, 2, 6, 6, dtype=torch.float64)
    get("grad_penalty").penalty(D, real, fake).backward()
    assert all(l.weight.grad is not None and l.weight.grad.abs().sum() > 0 for _, l in weight_layers(D))


# --- orthonormal regularization ---------------------------------------------------------------

def reference_orthonormal(D, beta):
    """Σ_layers Σ_i (σ_i² − 1)² over the min(m, n) singular values of Ŵ."""
    total = 0.0
    for _, l in weight_layers(D):
        w = l.weight.detach()
        w = w.transpose(0, 1) if isinstance(l, nn.ConvTranspose2d) else w
        s = torch.linalg.svdvals(w.reshape(w.shape[0], -1))
        total = total + ((s ** 2 - 1) ** 2).sum()
    return beta * total


class LargerGramOrtho(OrthonormalReg):
    name = "broken_ortho"

    def penalty(self, D, real, fake):
        total = 0
        for _, l in weight_layers(D):
            m = l.weight.flatten(1)
            g = m.t() @ m if m.shape[0] <= m.shape[1] else m @ m.t()  # the larger Gram
            total = total + ((g - torch.eye(g.shape[0], dtype=g.dtype)) ** 2).sum()
        return self.params["beta"] * total


def test_orthonormal_penalty_matches_singular_value_formula():
    D = small_D()
    x = torch.zeros(1, 2, 6, 6, dtype=torch.float64)
    m = get("orthonormal_reg", beta=0.5, orthogonal_init=False)
    m.apply(D)
    ref = lambda: reference_orthonormal(D, 0.5)  # noqa: E731
    got, want = same_seed(m, D, x, x, ref)
    assert got.requires_grad and torch.allclose(got, want, rtol=1e-9, atol=1e-12)
    got, want = same_seed(LargerGramOrtho(beta=0.5), D, x, x, ref)
    assert not torch.allclose(got, want, rtol=1e-9, atol=1e-12)


def test_orthonormal_init_makes_penalty_vanish():
    D = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ConvTranspose2d(4, 3, 2), nn.Linear(5, 7)).double()
    m = get("orthonormal_reg")
    m.apply(D)
    assert float(m.penalty(D, torch.zeros(1), torch.zeros(1)).detach()) < 1e-20


# --- unsupported layers -----------------------------------------------------------------------

LAYER_METHODS = ["weight_clip", "sn_w", "ssn", "bsn", "bssn", "sn_conv", "torch_sn", "weight_norm",
                 "frobenius_norm", "orthonormal_reg"]


@pytest.mark.parametrize("name", LAYER_METHODS)
@pytest.mark.parametrize("bad", [lambda: nn.Conv3d(2, 2, 1), lambda: nn.Bilinear(2, 2, 2)],
                         ids=["conv3d", "bilinear"])
def test_unsupported_layer_is_named(name, bad):
    model = nn.Sequential(nn.Conv2d(2, 2, 1), nn.Sequential(nn.ReLU(), bad()))
    with pytest.raises(UnsupportedLayerError, match=r"layer 1\.1 "):
        get(name).apply(model)
    # nothing was half-applied before the error
    assert not hasattr(model[0], "parametrizations")


def test_unsupported_error_type():
    with pytest.raises(UnsupportedLayerError, match="1.1"):
        get("sn_w").apply(nn.Sequential(nn.Linear(2, 2), nn.Sequential(nn.ReLU(), nn.Conv3d(1, 1, 1))))
