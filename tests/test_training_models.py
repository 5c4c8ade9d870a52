"""Shapes and structure of every model pair in harness.training.models."""
import pytest
import torch
from torch import nn

from harness.layers import weight_layers
from harness.training import models
from harness.training.models import Residual, build


pytestmark = pytest.mark.usefixtures("one_thread")


def check_pair(G, D, out_shape, batch=3):
    """G maps (N, z_dim) to (N, *out_shape); D maps that to one logit per sample, shape (N, 1)."""
    z = torch.randn(batch, G.z_dim)
    x = G(z)
    assert tuple(x.shape) == (batch, *out_shape), x.shape
    y = D(x)
    assert tuple(y.shape) == (batch, 1), y.shape
    assert torch.isfinite(y).all()
    return x


CASES = [
    ("standard_cnn", {}, (3, 32, 32)),
    ("standard_cnn", {"size": 16, "channels": 1}, (1, 16, 16)),
    ("resnet32", {"g_ch": 16, "d_ch": 16}, (3, 32, 32)),
    ("resnet32", {"size": 48, "g_ch": 8, "d_ch": 8}, (3, 48, 48)),
    ("dcgan28", {"ch": 8}, (1, 28, 28)),
    ("dcgan_digits", {}, (1, 8, 8)),
    ("dcgan_digits", {"size": 16}, (1, 16, 16)),
    ("mlp2d", {}, (2,)),
]


@pytest.mark.parametrize("name,kw,shape", CASES)
def test_shapes(name, kw, shape):
    G, D = build(name, seed=0, **kw)
    x = check_pair(G, D, shape)
    if len(shape) == 3:
        assert x.min() >= -1 and x.max() <= 1  # tanh output
    assert weight_layers(D)  # every layer is one the methods support


def test_shape_check_catches_broken_discriminator():
    G, D = build("mlp2d", seed=0)
    D.head = nn.Linear(D.head.in_features, 4)  # broken: 4 outputs per sample
    with pytest.raises(AssertionError):
        check_pair(G, D, (2,))


def test_resnet_default_widths_and_structure():
    G, D = build("resnet32", seed=0)
    assert G.ch == 256 and D.head.in_features == 128  # Miyato Table 4 (G doubled)
    blocks = [m for m in D.features if isinstance(m, Residual)]
    assert len(blocks) == 4
    for b in blocks:
        assert isinstance(b.residual, nn.Sequential) and isinstance(b.shortcut, nn.Sequential)
        x = torch.randn(2, b.residual[0].in_channels if isinstance(b.residual[0], nn.Conv2d)
                        else b.residual[1].in_channels, 8, 8)
        assert torch.allclose(b(x), b.shortcut(x) + b.residual(x))
    # optimized first block: no leading ReLU; later blocks start with a non-inplace ReLU
    assert isinstance(blocks[0].residual[0], nn.Conv2d)
    assert all(isinstance(b.residual[0], nn.ReLU) and not b.residual[0].inplace for b in blocks[1:])
    # identity shortcut for the non-downsampling, same-width blocks
    assert len(blocks[2].shortcut) == 0 and len(blocks[3].shortcut) == 0
    x = torch.randn(2, 3, 32, 32)
    assert D.features(x).shape == (2, 128)  # global sum pooling


def test_build_seed_is_reproducible_and_leaves_global_rng():
    state = torch.get_rng_state()
    _, D1 = build("mlp2d", seed=5)
    assert torch.equal(state, torch.get_rng_state())
    _, D2 = build("mlp2d", seed=5)
    _, D3 = build("mlp2d", seed=6)
    assert torch.equal(D1.head.weight, D2.head.weight)
    assert not torch.equal(D1.head.weight, D3.head.weight)


def test_registry_errors():
    assert {"standard_cnn", "resnet32", "dcgan28", "dcgan_digits", "mlp2d"} <= set(models.available_models())
    with pytest.raises(KeyError, match="available"):
        build("nope")
    with pytest.raises(ValueError):
        build("dcgan_digits", size=28)
    with pytest.raises(ValueError):
        build("resnet32", size=30)
