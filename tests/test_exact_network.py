"""Network Lipschitz bounds and the checks that catch broken operators."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from harness.exact import (UnsupportedOperationError, adjoint_mismatch, check_bracket,
                           conv_operator_norm, lanczos_operator_norm, lipschitz_lower_bound,
                           lipschitz_upper_bound, materialize_operator)
from harness.exact._spec import make_spec
from harness.training.models import StandardCNNDiscriminator

pytestmark = pytest.mark.usefixtures("one_thread")


def test_single_linear_layer_is_exact():
    torch.manual_seed(0)
    lin = nn.Linear(6, 1)
    nb = lipschitz_upper_bound(lin, (6,))
    # certified: at or above the exact norm, by the certificate's rounding margin only
    assert nb.upper >= float(lin.weight.detach().double().norm())
    assert nb.upper == pytest.approx(float(lin.weight.detach().double().norm()), rel=1e-12)
    lb = lipschitz_lower_bound(lin, torch.randn(3, 6), n_random=2, steps=2)
    assert lb.value == pytest.approx(nb.upper, rel=1e-9)


def test_mlp_upper_above_lower():
    torch.manual_seed(1)
    mlp = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 16), nn.Tanh(), nn.Linear(16, 1))
    nb = lipschitz_upper_bound(mlp, (8,))
    lb = lipschitz_lower_bound(mlp, torch.randn(4, 8), n_random=4, steps=10, seed=0)
    assert 0 < lb.value <= nb.upper
    again = lipschitz_lower_bound(mlp, torch.randn(4, 8), n_random=4, steps=10, seed=0)
    assert isinstance(again.value, float)
    same = lipschitz_lower_bound(mlp, torch.ones(2, 8), n_random=3, steps=5, seed=7)
    same2 = lipschitz_lower_bound(mlp, torch.ones(2, 8), n_random=3, steps=5, seed=7)
    assert same.value == same2.value  # deterministic for a seed


def test_standard_cnn_bounds():
    torch.manual_seed(0)
    d = StandardCNNDiscriminator(16)  # smaller size keeps the test fast; structure identical
    nb = lipschitz_upper_bound(d, (3, 16, 16))
    convs = [r for r in nb.layers if r.kind == "conv2d"]
    assert len(convs) == 7 and nb.layers[-1].kind == "linear" and nb.layers[-1].name == "head"
    assert [r.kind for r in nb.weight_layers()] == ["conv2d"] * 7 + ["linear"]
    for r in convs:
        assert r.operator_norm.lower <= r.operator_norm.upper
        assert r.factor == r.operator_norm.upper
        if r.alpha.lower_holds_precondition:
            assert r.reshaped_norm <= r.operator_norm.upper * (1 + 1e-9)
        assert r.operator_norm.lower <= r.alpha.alpha * r.reshaped_norm * (1 + 1e-9)
    assert [r.input_shape for r in convs][:3] == [(3, 16, 16), (64, 16, 16), (64, 8, 8)]
    lb = lipschitz_lower_bound(d, torch.randn(2, 3, 16, 16), n_random=2, steps=3)
    assert 0 < lb.value <= nb.upper


def test_parametrized_weights_are_read():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(2, 4, 3, padding=1), nn.LeakyReLU(0.2), nn.Flatten(), nn.Linear(4 * 36, 1))
    before = lipschitz_upper_bound(net, (2, 6, 6)).weight_layers()[0].operator_norm.value
    nn.utils.parametrizations.spectral_norm(net[0])
    net.train()
    after = lipschitz_upper_bound(net, (2, 6, 6))
    assert net.training  # modes restored
    net.eval()
    w = net[0].weight.detach()  # eval-mode effective weight (no power-iteration update)
    net.train()
    ref = conv_operator_norm(w, 6, padding=1).value
    conv = after.weight_layers()[0]
    assert conv.operator_norm.value == pytest.approx(ref, rel=1e-9)
    assert conv.operator_norm.value != pytest.approx(before, rel=1e-3)
    assert conv.reshaped_norm == pytest.approx(1.0, rel=1e-3)
    assert after.train_mode_modules == ("0",)  # the parametrized layer was in training mode


class _ResidualNet(nn.Module):
    def __init__(self, bn: nn.Module) -> None:
        super().__init__()
        self.conv0, self.bn = nn.Conv2d(1, 3, 3, padding=1), bn
        self.body = nn.Sequential(nn.ReLU(), nn.Conv2d(3, 3, 3, padding=1))
        self.pools = nn.Sequential(nn.AvgPool2d(2), nn.MaxPool2d(2), nn.Flatten())
        self.head = nn.Linear(3 * 16, 1)

    def forward(self, x):
        h = self.bn(self.conv0(x))
        return self.head(self.pools(h + self.body(h)))


def test_residual_batchnorm_pool():
    torch.manual_seed(0)
    bn = nn.BatchNorm2d(3)
    bn.running_var.fill_(4.0)
    net = _ResidualNet(bn).eval()
    nb = lipschitz_upper_bound(net, (1, 16, 16))
    by_name = {r.name: r for r in nb.layers}
    assert [r.name for r in nb.layers] == ["input", "conv0", "bn", "body.0", "body.1", "add", "pools.0",
                                           "pools.1", "pools.2", "head"]
    assert by_name["bn"].factor == pytest.approx(1 / (4 + bn.eps) ** 0.5, rel=1e-12)
    add = by_name["add"]  # h + body(h): the triangle inequality
    assert add.inputs == ("bn", "body.1") and add.mode == "sum"
    assert add.bound == pytest.approx(by_name["bn"].bound + by_name["body.1"].bound, rel=1e-12)
    assert by_name["pools.0"].factor == pytest.approx(0.5, rel=1e-12)  # 2x2 average: 1/2
    assert by_name["pools.1"].factor == 1.0  # non-overlapping max pooling
    lb = lipschitz_lower_bound(net, torch.randn(2, 1, 16, 16), n_random=2, steps=3)
    assert lb.value <= nb.upper


def test_unsupported_ops_are_named():
    class Square(nn.Module):
        def __init__(self):
            super().__init__()
            self.a = nn.Linear(4, 4)

        def forward(self, x):
            h = self.a(x)
            return h * h

    with pytest.raises(UnsupportedOperationError, match="mul.*two input-dependent"):
        lipschitz_upper_bound(Square(), (4,))
    with pytest.raises(UnsupportedOperationError, match="module '1'.*Hardshrink"):
        lipschitz_upper_bound(nn.Sequential(nn.Linear(3, 3), nn.Hardshrink()), (3,))


def test_broken_adjoint_is_caught():
    """A transpose-skipping adjoint: Lanczos disagrees with dense SVD, and both checks flag it."""
    torch.manual_seed(0)
    w = torch.randn(3, 3, 3, 3, dtype=torch.float64)
    spec = make_spec(w, 6, padding=1)
    truth = float(torch.linalg.matrix_norm(materialize_operator(w, 6, padding=1), 2))

    good = lanczos_operator_norm(spec.forward, spec.adjoint, spec.x_shape, spec.y_shape)
    assert check_bracket(good, truth).ok
    assert adjoint_mismatch(spec.forward, spec.adjoint, spec.x_shape, spec.y_shape) < 1e-13

    # "adjoint" that re-applies the forward convolution (no flip / channel transpose)
    broken = lanczos_operator_norm(spec.forward, spec.forward, spec.x_shape, spec.y_shape)
    check = check_bracket(broken, truth)
    assert not check.ok and "differs from truth" in check.message
    assert adjoint_mismatch(spec.forward, spec.forward, spec.x_shape, spec.y_shape) > 1e-3

    # a bracket that misses the truth is reported as such
    from harness.exact import OperatorNorm
    wrong = OperatorNorm(truth * 1.01, truth * 1.005, truth * 1.02, "lanczos")
    assert "outside the bracket" in check_bracket(wrong, truth).message
