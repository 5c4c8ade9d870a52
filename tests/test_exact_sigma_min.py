"""conv_smallest_singular_value against dense SVD of the materialised operator (hypothesis)."""
from __future__ import annotations

import math

import pytest
import torch
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from harness.exact import materialize_operator
from harness.exact.sigma_min import SmallestSingularValue, cholesky_lower, conv_smallest_singular_value
from test_exact_conv_norm import conv_case  # random layers of every kind (conv1d/2d, transposed, groups)

pytestmark = pytest.mark.usefixtures("one_thread")

SETTINGS = settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                         HealthCheck.filter_too_much])


def dense_sigma_min(a: torch.Tensor) -> tuple[float, float]:
    """``(σ_min, σ_max)``: the smallest of the min(m, n) singular values, and the largest."""
    s = torch.linalg.svdvals(a)
    return float(s[-1]), float(s[0])


def contains(r: SmallestSingularValue, truth: float, scale: float) -> bool:
    """The bracket holds the dense SVD's value, up to that SVD's own error (~1e-15 of σ_max)."""
    slack = 1e-12 * scale
    return r.lower - slack <= truth <= r.upper + slack


@SETTINGS
@given(conv_case())
def test_dense_and_lanczos_paths_bracket_the_svd(case):
    w, n, args, a = case
    truth, top = dense_sigma_min(a)
    for method in ("auto", "dense", "lanczos"):
        r = conv_smallest_singular_value(w, n, method=method, **args)
        assert contains(r, truth, top), (method, args, n, truth, r)


@st.composite
def periodic_case(draw):
    """Circular padding whose outputs are one period of the strided map: ``s | n``, ``m = n/s``."""
    stride = draw(st.integers(1, 2))
    k = draw(st.integers(1, 4))
    n = stride * draw(st.integers(max(1, -(-k // stride)), 4))
    padding = draw(st.integers(0, min(n, k - 1)))
    ci, co = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    w = torch.randn(co, ci, k, k, generator=torch.Generator().manual_seed(draw(st.integers(0, 2 ** 16))))
    args = dict(stride=stride, padding=padding, padding_mode="circular")
    a = materialize_operator(w, n, **args)
    assume(a.shape[0] == co * (n // stride) ** 2)  # (n + 2p - k)//s + 1 == n/s
    return w, n, args, a


@SETTINGS
@given(periodic_case())
def test_fft_path_is_exact_per_frequency(case):
    """Circular, exactly periodic: a certified bracket around the dense value, and tight."""
    w, n, args, a = case
    truth, top = dense_sigma_min(a)
    r = conv_smallest_singular_value(w, n, method="fft", **args)
    assert r.method == "fft"
    assert contains(r, truth, top), (args, n, truth, r)
    assert r.upper - r.lower <= 1e-8 * top, r  # exact per frequency: only rounding separates the ends


@SETTINGS
@given(conv_case(circular_ok=False))
def test_the_witness_vector_reproduces_the_upper_end(case):
    """``upper`` is ``‖W̃x‖/‖x‖`` (or ``‖W̃ᵀy‖/‖y‖``) of the returned vector, plus rounding only."""
    w, n, args, a = case
    r = conv_smallest_singular_value(w, n, **args)
    if r.method == "zero":
        return
    v = torch.as_tensor(r.vector, dtype=torch.float64).reshape(-1)
    transposed = args["kind"] == "conv_transpose2d"
    # the witness lives on the convolution's side (a transposed layer is the adjoint of one)
    op = a.T if transposed else a
    ratio = float((op @ v).norm() / v.norm()) if r.side == "input" else float((op.T @ v).norm() / v.norm())
    assert ratio <= r.upper
    assert ratio == pytest.approx(r.upper, rel=1e-9, abs=1e-12)


def test_well_conditioned_layers_get_tight_brackets():
    """Zero padding, the certificate path: a well-conditioned layer's bracket is within 1e-6."""
    torch.manual_seed(0)
    w = torch.randn(6, 3, 3, 3)
    w[:, :, 1, 1] += 6 * torch.eye(6, 3)  # a strong centre tap keeps σ_min away from 0
    a = materialize_operator(w, 6, padding=1)
    truth, _ = dense_sigma_min(a)
    for method in ("dense", "lanczos"):
        r = conv_smallest_singular_value(w, 6, padding=1, method=method)
        assert r.lower <= truth <= r.upper
        assert r.rel_width <= 1e-6, (method, r)


def test_an_orthogonal_convolution_has_every_singular_value_one():
    """A 1x1 orthogonal kernel, circular or zero padding: σ_min = 1 certified to rounding."""
    q, _ = torch.linalg.qr(torch.randn(5, 5, dtype=torch.float64))
    w = q.reshape(5, 5, 1, 1)
    for mode in ("circular", "zeros"):
        r = conv_smallest_singular_value(w, 4, padding_mode=mode)
        assert r.lower <= 1 <= r.upper and r.upper - r.lower <= 1e-12, (mode, r)


def test_larger_side_than_the_certificate_limit_gives_the_trivial_lower_end():
    torch.manual_seed(1)
    w = torch.randn(4, 2, 3, 3)
    r = conv_smallest_singular_value(w, 6, padding=1, method="lanczos", certify_limit=10)
    truth, _ = dense_sigma_min(materialize_operator(w, 6, padding=1))
    assert r.lower == 0.0 and truth <= r.upper and "lower end 0" in r.detail


def test_zero_weight_and_bad_arguments():
    assert conv_smallest_singular_value(torch.zeros(2, 2, 3, 3), 4, padding=1).upper == 0.0
    with pytest.raises(ValueError, match="method must be"):
        conv_smallest_singular_value(torch.ones(1, 1, 1, 1), 3, method="svd")
    with pytest.raises(ValueError, match="exactly|circular padding"):
        conv_smallest_singular_value(torch.ones(1, 1, 3, 3), 4, padding=1, method="fft")


def test_cholesky_lower_refuses_a_shift_above_the_smallest_eigenvalue():
    g = torch.diag(torch.tensor([1.0, 2.0, 3.0], dtype=torch.float64))
    assert cholesky_lower(g, 0.0, 1.5) is None
    bound = cholesky_lower(g, 0.0, 0.9)
    assert bound is not None and 0.9 - 1e-12 <= bound <= 0.9
    assert cholesky_lower(g, 0.05, 0.9) <= 0.85 + 1e-12  # the error of forming G is subtracted
    assert math.isclose(cholesky_lower(g.to(torch.complex128), 0.0, 0.9), 0.9, rel_tol=1e-12)
