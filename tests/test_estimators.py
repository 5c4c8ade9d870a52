"""The published estimators (harness.estimators) against dense SVD of the materialised operator.

Each estimator's mathematics is checked in float64 (its reference arithmetic is float32
for most): a claimed exact value equals the dense norm, a claimed bound lies on its side
of it, on random small layers (hypothesis). The float32 versions are what the bound_zoo
suite judges on real layers.
"""
from __future__ import annotations

import math

import pytest
import torch
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from torch import nn

from harness.estimators import ESTIMATORS, Claim, ConvLayer, make_estimator
from harness.estimators.singla_feizi import four_reshapes
from harness.exact import materialize_operator

pytestmark = pytest.mark.usefixtures("one_thread")

SETTINGS = settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                         HealthCheck.filter_too_much])
RTOL = 1e-9  # float64 estimators against float64 SVD


def float64(name: str, **params):
    est = make_estimator(name, **params)
    est.dtype = torch.float64
    return est


def layer_of(w: torch.Tensor, n: int, stride: int, padding: int, mode: str) -> ConvLayer:
    conv = nn.Conv2d(w.shape[1], w.shape[0], tuple(w.shape[2:]), stride, padding, padding_mode=mode, bias=False,
                     dtype=torch.float64)
    with torch.no_grad():
        conv.weight.copy_(w)
    return ConvLayer.from_module(f"c{tuple(w.shape)}s{stride}p{padding}n{n}{mode}", conv, (w.shape[1], n, n))


def dense_norm(w, n, stride, padding, mode) -> float:
    a = materialize_operator(w, n, stride=stride, padding=padding, padding_mode=mode)
    return float(torch.linalg.matrix_norm(a, 2))


@st.composite
def conv_layer(draw, modes=("zeros", "circular")):
    mode = draw(st.sampled_from(modes))
    k = draw(st.integers(1, 4))
    stride = draw(st.integers(1, 2))
    padding = draw(st.integers(0, 2))
    n = draw(st.integers(k, 8))
    ci, co = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    w = torch.randn(co, ci, k, k, generator=torch.Generator().manual_seed(draw(st.integers(0, 2 ** 16))),
                    dtype=torch.float64)
    assume(padding <= n)
    try:
        truth = dense_norm(w, n, stride, padding, mode)
    except ValueError:
        assume(False)
    assume(truth > 1e-6)
    return layer_of(w, n, stride, padding, mode), truth


def holds(claim: Claim, estimate: float, truth: float, slack: float = RTOL) -> bool:
    if claim.bounds_above and estimate < truth * (1 - slack):
        return False
    return not (claim.bounds_below and estimate > truth * (1 + slack))


@SETTINGS
@given(conv_layer())
def test_every_claim_holds_in_float64(case):
    """Exact claims equal the dense norm; bounds lie on their side (iterative ones converged)."""
    layer, truth = case
    params = {"gram_iteration": {"iterations": 12}, "singla_feizi2021": {"iterations": 3000},
              "power_iteration": {"iterations": 50}, "lip4conv_power_iteration": {"iterations": 50}}
    for name in ESTIMATORS:
        if name == "lipgrid":  # a finite grid: see test_lipgrid_is_its_formula_and_grid_bound
            continue
        est = float64(name, **params.get(name, {}))
        claim = est.claim(layer)
        if claim.kind == "none":
            continue
        if name == "lip4conv_power_iteration" and (layer.stride != (1, 1) or layer.padding != (1, 1)
                                                   or layer.circular):
            continue  # another map: test_lip4conv_iterates_the_unstrided_one_pixel_map
        value = est.estimate(layer)
        slack = 1e-6 if name == "singla_feizi2021" else RTOL  # power-iterated reshape norms
        assert holds(claim, value, truth, slack), (name, claim, value, truth, layer.name)


@SETTINGS
@given(conv_layer(modes=("circular",)))
def test_exact_claims_are_exact_on_circular_layers(case):
    layer, truth = case
    assume(layer.exactly_periodic() and layer.kernel_fits())
    assert make_estimator("senderovich2022").estimate(layer) == pytest.approx(truth, rel=RTOL)
    if layer.stride == (1, 1):
        assert make_estimator("sedghi2019").estimate(layer) == pytest.approx(truth, rel=RTOL)
    # Gram iteration converges to the circular norm from above (stride 1: the same map)
    if layer.stride == (1, 1):
        assert float64("gram_iteration", iterations=14).estimate(layer) == pytest.approx(truth, rel=1e-6)


@SETTINGS
@given(conv_layer())
def test_power_iteration_is_a_lower_bound_and_converges(case):
    layer, truth = case
    few = float64("power_iteration", iterations=2).estimate(layer)
    assert few <= truth * (1 + RTOL)
    many = float64("power_iteration", iterations=300).estimate(layer)
    assert many <= truth * (1 + RTOL)
    assert many >= few * (1 - 1e-9)


def test_lip4conv_iterates_the_unstrided_one_pixel_map():
    """On a stride-2 layer it estimates the stride-1 map padded by one pixel: above the layer's norm."""
    torch.manual_seed(0)
    w = torch.randn(6, 4, 4, 4, dtype=torch.float64)
    strided = layer_of(w, 8, 2, 1, "zeros")
    unstrided = layer_of(w, 8, 1, 1, "zeros")
    est = float64("lip4conv_power_iteration", iterations=500)
    assert est.estimate(strided) == pytest.approx(dense_norm(w, 8, 1, 1, "zeros"), rel=1e-4)
    assert est.estimate(strided) > 1.2 * dense_norm(w, 8, 2, 1, "zeros")
    assert est.estimate(unstrided) == pytest.approx(float64("power_iteration", iterations=500).estimate(unstrided),
                                                    rel=1e-4)


def test_singla_feizi_theorem_with_exact_reshape_norms():
    """Thm. 1 with the exact ‖R_i‖: at least the dense norm wherever the estimator claims it
    (zero padding; circular padding that is one period of the map)."""
    gen = torch.Generator().manual_seed(3)
    judged = 0
    for shape, padding in [((3, 2, 3, 2), 1), ((2, 3, 3, 3), 1), ((3, 3, 1, 3), 0), ((4, 2, 2, 2), 0)]:
        for _ in range(10):
            w = torch.randn(*shape, generator=gen, dtype=torch.float64)
            bound = math.sqrt(shape[2] * shape[3]) * min(float(torch.linalg.matrix_norm(r, 2))
                                                         for r in four_reshapes(w))
            for mode in ("zeros", "circular"):
                if make_estimator("singla_feizi2021").claim(layer_of(w, 6, 1, padding, mode)).kind == "none":
                    continue
                judged += 1
                assert bound >= dense_norm(w, 6, 1, padding, mode) * (1 - RTOL), (shape, padding, mode)
    assert judged >= 50


def test_lipgrid_is_its_formula_and_grid_bound():
    """LipGrid evaluates sqrt(Σ_i max_grid Σ_j |F_ij|²) (checked by a direct double sum); on one
    channel its grid maximum is at most the continuous supremum, the norm of the map on ℤ²."""
    torch.manual_seed(1)
    w = torch.randn(2, 3, 3, 3, dtype=torch.float64)
    layer = layer_of(w, 8, 1, 1, "zeros")
    est = float64("lipgrid", samples=7)
    grid = torch.linspace(0, 2 * math.pi, 7, dtype=torch.float64)
    total = 0.0
    for i in range(2):  # rows: the smaller side (c_out = 2)
        best = 0.0
        for a in grid:
            for b in grid:
                f = sum(w[i, :, p, q] * torch.exp(1j * (p * a + q * b)) for p in range(3) for q in range(3))
                best = max(best, float((f.abs() ** 2).sum()))
        total += best
    assert est.estimate(layer) == pytest.approx(math.sqrt(total), rel=1e-12)
    one = torch.randn(1, 1, 3, 3, dtype=torch.float64)
    fine = float64("lipgrid", samples=400).estimate(layer_of(one, 8, 1, 1, "zeros"))
    assert float64("lipgrid", samples=9).estimate(layer_of(one, 8, 1, 1, "zeros")) <= fine * (1 + 1e-12)


def test_claims_follow_the_papers_scopes():
    w = torch.randn(4, 3, 3, 3, dtype=torch.float64)
    zeros, circ = layer_of(w, 8, 1, 1, "zeros"), layer_of(w, 8, 1, 1, "circular")
    strided = layer_of(torch.randn(4, 3, 4, 4, dtype=torch.float64), 8, 2, 1, "circular")
    kinds = {name: (make_estimator(name).claim(zeros).kind, make_estimator(name).claim(circ).kind,
                    make_estimator(name).claim(strided).kind) for name in ESTIMATORS}
    assert kinds["sedghi2019"] == ("none", "exact", "none")
    assert kinds["senderovich2022"] == ("none", "exact", "exact")
    assert kinds["gram_iteration"] == ("none", "upper", "upper")
    assert kinds["delattre2024"] == ("upper", "upper", "upper")
    assert kinds["lipgrid"] == ("upper", "upper", "none")  # the authors' code takes odd kernels
    assert kinds["power_iteration"] == ("lower", "lower", "lower")
    assert kinds["tsuzuku_alpha"] == ("upper", "upper", "upper")
    assert make_estimator("sedghi2019").tolerance < make_estimator("gram_iteration").tolerance  # float64, float32
    strided_zero = layer_of(torch.randn(4, 3, 4, 4, dtype=torch.float64), 8, 2, 1, "zeros")
    assert make_estimator("lip4conv_power_iteration").claim(strided_zero).known_miss
    assert not make_estimator("lip4conv_power_iteration").claim(zeros).known_miss
    tiny = layer_of(torch.randn(2, 2, 3, 3, dtype=torch.float64), 2, 1, 1, "zeros")
    assert make_estimator("miyato_reshape").claim(tiny).kind == "none"  # no patch inside a 2x2 input


def test_bad_layers_and_estimators_are_refused():
    conv = nn.Conv2d(4, 4, 3, groups=2)
    with pytest.raises(ValueError, match="groups=2"):
        ConvLayer.from_module("g", conv, (4, 8, 8))
    with pytest.raises(ValueError, match="does not read"):
        ConvLayer.from_module("c", nn.Conv2d(3, 4, 3), (5, 8, 8))
    with pytest.raises(KeyError, match="unknown estimator 'nope'"):
        make_estimator("nope")
    with pytest.raises(TypeError, match="gram_iteration"):
        make_estimator("gram_iteration", samples=3)
    with pytest.raises(ValueError, match="at least one iteration"):
        make_estimator("power_iteration", iterations=0)
    with pytest.raises(ValueError, match="known miss needs a claim"):
        Claim("none", "x", known_miss="y")


def test_estimates_are_deterministic_and_leave_the_layer_alone():
    layer = layer_of(torch.randn(5, 3, 3, 3, dtype=torch.float64), 8, 1, 1, "zeros")
    before = layer.weight.clone()
    for name in ESTIMATORS:
        est = make_estimator(name)
        assert est.estimate(layer) == est.estimate(layer), name
    assert torch.equal(layer.weight, before)
