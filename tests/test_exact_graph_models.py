"""Certified bounds on real models are at least an independent Jacobian norm.

torchvision ResNet-18/34 and VGG-11 (small inputs keep them fast), a DCGAN and an SNGAN
discriminator (the project's registry models, one with spectral normalisation), every
discriminator the project registers, and deel-torchlip layers when installed. The
reference is the largest ``‖J(x)v‖`` found by power iteration with ``torch.func`` at
random points (float64), which can only be below the Lipschitz constant.
"""
from __future__ import annotations

import pytest
import torch
import torchvision
from torch import nn

from exact_reference import jacobian_norm
from harness.exact import lipschitz_upper_bound
from harness.training.models import StandardCNNDiscriminator, available_models, build

pytestmark = pytest.mark.usefixtures("one_thread")

#: Float64 rounding in the bound and the reference; both are far below this.
RTOL = 1e-9


def check(model: nn.Module, shape, **kw) -> float:
    kw.setdefault("max_rel_width", 0.5)  # certified either way; the certificate only tightens
    nb = lipschitz_upper_bound(model, shape, **kw)
    jac = jacobian_norm(model, shape, points=1, iters=6)
    assert jac > 0
    assert nb.upper >= jac * (1 - RTOL), (nb.upper, jac)
    assert all(r.operator_norm.lower <= r.operator_norm.upper for r in nb.weight_layers())
    return nb.upper


@pytest.mark.parametrize("name, size", [("resnet18", 16), pytest.param("resnet34", 16, marks=pytest.mark.slow)])
def test_torchvision_resnets(name, size):
    torch.manual_seed(0)
    model = getattr(torchvision.models, name)()
    nb = lipschitz_upper_bound(model, (3, size, size), max_rel_width=0.5)
    assert model.training  # left as found; the bound is for eval mode and says which modules differ
    assert any(n.endswith("bn1") for n in nb.train_mode_modules)
    adds = [r for r in nb.layers if r.kind == "add"]
    assert len(adds) == {"resnet18": 8, "resnet34": 16}[name]  # one per BasicBlock
    assert all(len(r.inputs) == 2 for r in adds)
    assert nb.upper >= jacobian_norm(model, (3, size, size), points=1, iters=6) * (1 - RTOL)


@pytest.mark.slow
def test_torchvision_vgg11():
    """VGG-11 at 32x32: the 1x1 feature map is upsampled to 7x7 before a 25088 -> 4096 layer."""
    torch.manual_seed(0)
    model = torchvision.models.vgg11().eval()
    nb = lipschitz_upper_bound(model, (3, 32, 32), max_rel_width=0.5)
    pool = next(r for r in nb.layers if r.name == "avgpool")
    assert pool.factor == pytest.approx(7.0, rel=1e-12) and pool.output_shape == (512, 7, 7)
    assert nb.upper >= jacobian_norm(model, (3, 32, 32), points=1, iters=4) * (1 - RTOL)


def _discriminator_shape(D: nn.Module) -> tuple[int, ...]:
    for shape in ((3, 32, 32), (1, 28, 28), (1, 8, 8), (2,)):
        try:
            with torch.no_grad():
                D.eval()(torch.zeros(1, *shape))
            return shape
        except RuntimeError:
            continue
    raise AssertionError(f"no known input shape fits {type(D).__name__}")


@pytest.mark.parametrize("name", available_models())
def test_project_discriminators(name):
    """Every registered model's discriminator: DCGAN, SNGAN's ResNet, Miyato's CNN, MLPs."""
    _, D = build(name, seed=0)
    check(D, _discriminator_shape(D))


@pytest.mark.parametrize("name", ["dcgan_digits", "dcgan28", "mlp2d"])
def test_project_generators(name):
    """Generators too: BatchNorm (reported in training mode), transposed convolutions, a view."""
    G, _ = build(name, seed=0)
    check(G, (G.z_dim,))


def test_sngan_discriminator_with_spectral_norm():
    """Miyato's CNN with torch's spectral-norm parametrization (the effective weight is read)."""
    torch.manual_seed(1)
    D = StandardCNNDiscriminator(16)
    for m in D.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            nn.utils.parametrizations.spectral_norm(m)
    D.train()
    with torch.no_grad():
        for _ in range(5):
            D(torch.randn(2, 3, 16, 16))
    upper = check(D, (3, 16, 16))
    assert upper < 30  # every ‖Ŵ‖ ≈ 1: the product of the α-gaps (≤ 3·2·3·2·3·2·3 ≈ 1300) is far above


def test_deel_torchlip_layers():
    torchlip = pytest.importorskip("deel.torchlip")
    torch.manual_seed(2)
    model = nn.Sequential(
        torchlip.SpectralConv2d(3, 8, 3, padding=1), torchlip.GroupSort2(),
        torchlip.SpectralConv2d(8, 8, 3, padding=1), torchlip.MaxMin(),
        nn.Flatten(), torchlip.SpectralLinear(16 * 8 * 8, 4), torchlip.FullSort())
    nb = lipschitz_upper_bound(model, (3, 8, 8), max_rel_width=0.5)
    sorts = [r for r in nb.layers if r.op in ("GroupSort2", "MaxMin", "FullSort")]
    assert [r.factor for r in sorts] == [1.0, 1.0, 1.0]
    assert nb.upper >= jacobian_norm(model, (3, 8, 8), points=2, iters=10) * (1 - RTOL)
    # torchlip's layers are 1-Lipschitz by construction: each certified norm is at most ~1
    assert all(r.operator_norm.lower <= 1 + 1e-3 for r in nb.weight_layers())
