"""``measure_claim``: every quantity against an independent numpy reference, layers measured
through their forward map (replaced layers, hooks, overridden forwards), no side effects."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from harness.methods import Claim, ClaimMeasurementError, Method, get, measure_claim, sigma_parametrization
from harness.methods.forward_map import ForwardMap, kernel_from_forward
from harness.methods.measure import claim_layers

LAYERS = {
    "linear": (lambda: nn.Linear(6, 5), (6,)),
    "conv1d": (lambda: nn.Conv1d(3, 4, 3, padding=1), (3, 7)),
    "conv2d_s2": (lambda: nn.Conv2d(2, 3, 4, stride=2, padding=1), (2, 6, 6)),
    "conv_transpose2d": (lambda: nn.ConvTranspose2d(4, 3, 4, stride=2, padding=1), (4, 3, 3)),
}


def claiming(quantity, target=1.0):
    """A method that changes nothing and claims ``quantity``: measures the raw layer."""
    return type("Claims", (Method,), {"name": "claims", "claim": Claim(quantity, target)})()


def make(key, seed=0):
    torch.manual_seed(seed)
    factory, shape = LAYERS[key]
    return factory().double(), shape


def out_first(layer) -> np.ndarray:
    """The weight with output channels first, as numpy (ConvTranspose stores them in dim 1)."""
    w = layer.weight.detach().numpy()
    return w.swapaxes(0, 1) if isinstance(layer, nn.ConvTranspose2d) else w


def numpy_reference(quantity, layer, target=1.0):
    w = out_first(layer)
    mat = w.reshape(w.shape[0], -1)
    if quantity in ("reshape_spectral", "reshape_spectral_at_most"):
        return np.linalg.norm(mat, 2)
    if quantity == "reshape_singular_values":
        values = np.linalg.svd(mat, compute_uv=False)
        return values[np.argmax(np.abs(values / target - 1))]
    if quantity == "balanced_spectral":
        if w.ndim == 2:
            return np.linalg.norm(mat, 2)
        return 0.5 * (np.linalg.norm(mat, 2) + np.linalg.norm(w.swapaxes(0, 1).reshape(w.shape[1], -1), 2))
    if quantity == "row_norms":
        rows = np.linalg.norm(mat, axis=1)
        return rows[np.argmax(np.abs(rows / target - 1))]
    if quantity == "frobenius":
        return np.linalg.norm(w)
    if quantity == "entries_within":
        return np.abs(w).max()
    gram = mat @ mat.T if mat.shape[0] <= mat.shape[1] else mat.T @ mat
    return np.linalg.norm(gram - np.eye(gram.shape[0]))


def dense_operator(layer, shape) -> np.ndarray:
    """The layer without bias applied to the identity basis (torch.nn.functional directly)."""
    n = int(np.prod(shape))
    basis = torch.eye(n, dtype=torch.float64).view(n, *shape)
    w = layer.weight.detach()
    if isinstance(layer, nn.Linear):
        out = F.linear(basis, w)
    elif isinstance(layer, nn.ConvTranspose2d):
        out = F.conv_transpose2d(basis, w, stride=layer.stride, padding=layer.padding)
    else:
        conv = F.conv1d if isinstance(layer, nn.Conv1d) else F.conv2d
        out = conv(basis, w, stride=layer.stride, padding=layer.padding)
    return out.reshape(n, -1).T.numpy()


QUANTITIES = ["reshape_spectral", "reshape_spectral_at_most", "reshape_singular_values", "balanced_spectral",
              "row_norms", "frobenius", "entries_within", "gram_orthonormal"]


@pytest.mark.parametrize("key", LAYERS)
@pytest.mark.parametrize("quantity", QUANTITIES)
def test_weight_quantities_match_numpy(key, quantity):
    layer, _ = make(key)
    target = 0.0 if quantity == "gram_orthonormal" else 0.7
    (m,) = measure_claim(claiming(quantity, target), layer)
    want = numpy_reference(quantity, layer, target)
    assert m.measured == pytest.approx(want, rel=1e-12)  # float64 SVDs agree to ~1e-15
    assert m.layer == "" and m.how == "weight" and m.target == target
    if m.kind == "bound":
        assert m.error == max(0.0, want / target - 1)
    elif target:
        assert m.error == pytest.approx(abs(want / target - 1), rel=1e-12)
    else:
        assert m.error == m.measured


@pytest.mark.parametrize("key", LAYERS)
def test_operator_norm_matches_dense_svd_both_ways(key):
    layer, shape = make(key)
    want = np.linalg.norm(dense_operator(layer, shape), 2)
    (through_weight,) = measure_claim(claiming("operator_spectral"), layer, shape)
    assert through_weight.how == "weight" and through_weight.measured == pytest.approx(want, rel=1e-9)

    class Wrapper(nn.Module):
        lipbench_layer = True

        def __init__(self):
            super().__init__()
            self.inner = layer

        def forward(self, x):
            return self.inner(x)

    (through_forward,) = measure_claim(claiming("operator_spectral"), Wrapper(), shape)
    assert through_forward.how == "forward" and through_forward.measured == pytest.approx(want, rel=1e-12)


class DoubledConv(nn.Conv2d):
    """Overrides forward: the map it computes uses twice its weight."""

    def forward(self, x):
        return self._conv_forward(x, 2 * self.weight, self.bias)


def test_overridden_forward_is_measured_through_its_map():
    torch.manual_seed(0)
    layer = DoubledConv(2, 3, 3, stride=2, padding=1).double()
    (m,) = measure_claim(claiming("reshape_spectral"), layer, (2, 6, 6))
    assert m.how == "forward"
    assert m.measured == pytest.approx(2 * numpy_reference("reshape_spectral", layer), rel=1e-9)
    recovered = kernel_from_forward(ForwardMap(layer, (2, 6, 6)))
    assert torch.allclose(recovered, 2 * layer.weight.detach(), atol=1e-10)


@pytest.mark.parametrize("key", ["conv1d", "conv_transpose2d"])
def test_kernel_recovery_other_geometries(key):
    layer, shape = make(key)
    layer.register_forward_hook(lambda mod, args, out: 3 * out)  # hooks change the map too
    (m,) = measure_claim(claiming("frobenius"), layer, shape)
    assert m.how == "forward" and m.measured == pytest.approx(3 * np.linalg.norm(out_first(layer)), rel=1e-9)


def test_replaced_layers_need_the_input_shape_and_name_the_layer():
    model = nn.Sequential(nn.Linear(3, 3), DoubledConv(2, 2, 3).double())
    with pytest.raises(ClaimMeasurementError, match=r"layer '1' \(DoubledConv\).*needs the model's input shape"):
        measure_claim(claiming("reshape_spectral"), model)
    with pytest.raises(ClaimMeasurementError, match=r"layer '0' .*operator norm needs"):
        measure_claim(claiming("operator_spectral"), nn.Sequential(nn.Conv2d(2, 2, 3)))


class ReluConv(nn.Conv2d):
    def forward(self, x):
        return torch.relu(super().forward(x))


class FlippedConv(nn.Conv2d):
    """Affine, but not a convolution with its own geometry (the input is mirrored)."""

    def forward(self, x):
        return super().forward(torch.flip(x, dims=(-1,)))


def test_forward_maps_that_cannot_be_measured():
    torch.manual_seed(0)
    with pytest.raises(ClaimMeasurementError, match="not an affine map"):
        measure_claim(claiming("operator_spectral"), ReluConv(2, 2, 3).double(), (2, 5, 5))
    flipped = FlippedConv(2, 2, 3, padding=1).double()
    with pytest.raises(ClaimMeasurementError, match="not a conv2d with the layer's geometry"):
        measure_claim(claiming("reshape_spectral"), flipped, (2, 5, 5))
    (m,) = measure_claim(claiming("operator_spectral"), flipped, (2, 5, 5))  # the operator is fine
    assert m.measured == pytest.approx(np.linalg.norm(dense_operator(flipped, (2, 5, 5)), 2), rel=1e-9)


class OwnsWeight(nn.Module):
    def __init__(self):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(3, 3, dtype=torch.float64))

    def forward(self, x):
        return x @ self.weight.t()


def test_claim_layers_and_custom_layers():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2), nn.Flatten(), nn.Linear(2, 3),
                          OwnsWeight()).double()
    get("sn_w").apply(model[0])
    assert [(n, how) for n, _, how in claim_layers(model)] == [("0", "weight"), ("3", "weight"), ("4", "forward")]
    (_, _, m) = measure_claim(claiming("operator_spectral"), model, (1, 3, 3))
    assert m.measured == pytest.approx(np.linalg.norm(model[4].weight.detach().numpy(), 2), rel=1e-12)
    with pytest.raises(ClaimMeasurementError, match="layer '4' .*only an operator_spectral claim"):
        measure_claim(claiming("frobenius"), model, (1, 3, 3))


def test_measuring_changes_no_state_and_restores_modes():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(2, 3, 3), nn.Flatten(), nn.Linear(3 * 4 * 4, 1))
    method = get("sn_w")
    method.apply(model)
    model[2].eval()  # mixed modes must come back as they were
    u = sigma_parametrization(model[0])._u.clone()
    measure_claim(method, model, (2, 6, 6))
    assert torch.equal(sigma_parametrization(model[0])._u, u)
    assert [m.training for m in model] == [True, True, False]


def test_measurement_reads_the_effective_weight_not_the_estimate():
    """A wrong σ estimate shows in the measurement: the exact norm of what the layer uses."""
    torch.manual_seed(0)
    layer = get("sn_w", init_iterations=0, n_power_iterations=0).apply(nn.Linear(8, 8).double())
    (m,) = measure_claim(get("sn_w"), layer)
    p = sigma_parametrization(layer)
    w = layer.parametrizations.weight.original
    estimate = float(p._u @ w.detach() @ p._v)
    assert m.measured == pytest.approx(np.linalg.norm(w.detach().numpy(), 2) / estimate, rel=1e-9)


def test_non_finite_weights_are_infinitely_wrong():
    layer = nn.Linear(2, 2)
    with torch.no_grad():
        layer.weight[0, 0] = float("nan")
    (m,) = measure_claim(get("sn_w"), layer)
    assert np.isnan(m.measured) and m.error == float("inf")


def test_interpolate_gradient_against_a_per_sample_loop():
    torch.manual_seed(0)
    D = nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 1)).double()
    real, fake = torch.randn(6, 4, dtype=torch.float64), torch.randn(6, 4, dtype=torch.float64)
    (m,) = measure_claim(get("grad_penalty"), D, real=real, fake=fake, seed=3)
    eps = torch.rand((6, 1), generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    norms = []
    for i in range(6):
        x = (eps[i] * real[i] + (1 - eps[i]) * fake[i]).requires_grad_(True)
        (g,) = torch.autograd.grad(D(x).sum(), x)
        norms.append(float(g.norm()))
    assert m.how == "model" and m.layer == ""
    assert m.measured == pytest.approx(np.mean(norms), rel=1e-12)
    assert m.error == pytest.approx(np.mean(np.abs(np.array(norms) - 1)), rel=1e-12)
    assert m.summary["min"] == pytest.approx(min(norms)) and m.summary["max"] == pytest.approx(max(norms))


def test_none_claims_nothing():
    assert measure_claim(get("none"), nn.Linear(2, 2)) == []


def test_large_replaced_layer_by_lanczos_and_conjugate_gradients(one_thread):
    """A map too large to materialise: operator norm by Lanczos through the forward map and its
    VJP adjoint, kernel by conjugate gradients; both against the exact references of the
    layer's own weight."""
    from harness.exact import layer_operator_norm

    torch.manual_seed(0)
    inner = nn.Conv2d(8, 16, 3, stride=2, padding=1).double()
    wrapped = DoubledConv(8, 16, 3, stride=2, padding=1).double()
    with torch.no_grad():
        wrapped.weight.copy_(inner.weight / 2)
        wrapped.bias.copy_(inner.bias)
    shape = (8, 32, 32)
    fmap = ForwardMap(wrapped, shape)
    assert fmap.in_dim * fmap.out_dim > 4_000_000  # the Lanczos path
    (m,) = measure_claim(claiming("operator_spectral"), wrapped, shape)
    assert "Lanczos" in m.summary["method"]
    assert m.measured == pytest.approx(layer_operator_norm(inner, shape).value, rel=1e-8)
    (m,) = measure_claim(claiming("reshape_spectral"), wrapped, shape)
    assert m.measured == pytest.approx(numpy_reference("reshape_spectral", inner), rel=1e-9)
