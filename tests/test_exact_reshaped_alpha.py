"""reshaped_norm(s) vs numpy SVD; the α lemma and its precondition."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from harness.exact import alpha, alpha_bound, materialize_operator, reshaped_norm, reshaped_norms
from harness.layers import reshape_matrix





pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.mark.parametrize("kind, shape", [("linear", (5, 7)), ("conv1d", (4, 3, 5)),
                                         ("conv2d", (6, 3, 3, 3)), ("conv_transpose2d", (3, 6, 4, 4))])
def test_reshaped_norm_vs_numpy(kind, shape):
    w = torch.randn(shape, dtype=torch.float32)
    ref = np.linalg.svd(reshape_matrix(w.double(), kind).numpy(), compute_uv=False)[0]
    assert reshaped_norm(w, kind) == pytest.approx(ref, rel=1e-12)


def test_reshaped_norms_batched_vs_loop():
    w = torch.randn(3, 4, 6, 9)
    batched = reshaped_norms(w)
    assert batched.dtype == torch.float64 and batched.shape == (3, 4)
    for i in range(3):
        for j in range(4):
            assert float(batched[i, j]) == pytest.approx(
                np.linalg.svd(w[i, j].double().numpy(), compute_uv=False)[0], rel=1e-12)


def test_reshaped_errors():
    w = torch.randn(4, 3, 3, 3)
    w[1, 1, 1, 1] = float("nan")
    with pytest.raises(ValueError, match="non-finite"):
        reshaped_norm(w)
    with pytest.raises(ValueError, match="non-finite"):
        reshaped_norms(torch.tensor([[[1.0, float("inf")]]]))
    with pytest.raises(ValueError, match="4 dims"):
        reshaped_norm(torch.randn(4, 3), "conv2d")
    with pytest.raises(ValueError, match="kind"):
        reshaped_norm(torch.randn(4, 3), "conv3d")
    with pytest.raises(ValueError, match=r"\[\.\.\., m, n\]"):
        reshaped_norms(torch.randn(5))
    with pytest.raises(ValueError, match="empty"):
        reshaped_norms(torch.randn(2, 0, 3))


def test_alpha_formula():
    assert alpha(3, 3, 1) == pytest.approx(3.0)
    assert alpha(4, 4, 2) == pytest.approx(2.0)
    assert alpha(3, 3, 2) == pytest.approx(2.0)
    assert alpha(4, 3, (2, 1)) == pytest.approx(np.sqrt(6))
    # dilation: taps hitting one pixel form a progression of step s/gcd(s, d)
    assert alpha(3, 3, 2, dilation=2) == pytest.approx(3.0)
    assert alpha(3, 3, 2, dilation=3) == pytest.approx(2.0)


@settings(max_examples=60, deadline=None)
@given(k=st.integers(1, 4), s=st.integers(1, 3), d=st.integers(1, 3), p=st.integers(0, 2),
       n=st.integers(1, 10), mode=st.sampled_from(["zeros", "circular"]), seed=st.integers(0, 999))
def test_alpha_lemma_on_random_kernels(k, s, d, p, n, mode, seed):
    gen = torch.Generator().manual_seed(seed)
    w = torch.randn(3, 2, k, k, generator=gen, dtype=torch.float64)
    try:
        a = materialize_operator(w, n, stride=s, padding=p, dilation=d, padding_mode=mode)
    except ValueError:
        return
    op = float(torch.linalg.matrix_norm(a, 2))
    hat = reshaped_norm(w)
    ab = alpha_bound((k, k), s, d, p, (n, n), mode)
    assert op <= ab.alpha * hat * (1 + 1e-9)
    if mode == "zeros":
        assert ab.alpha <= alpha(k, k, s, d) + 1e-12
    if ab.lower_holds_precondition:
        assert hat <= op * (1 + 1e-9)


def test_lower_precondition_fails_on_tiny_input():
    ab = alpha_bound((3, 3), 1, 1, 1, (2, 2))
    assert not ab.lower_holds_precondition and "smaller than the dilated kernel" in ab.reason
    # and the lower inequality really can fail there
    torch.manual_seed(0)
    fails = 0
    for _ in range(20):
        w = torch.randn(4, 4, 3, 3, dtype=torch.float64)
        a = materialize_operator(w, 2, padding=1)
        fails += reshaped_norm(w) > float(torch.linalg.matrix_norm(a, 2))
    assert fails > 0
    assert not alpha_bound((3, 3), 1, input_hw=None).lower_holds_precondition
    assert not alpha_bound((3, 3), 1, 1, 1, (8, 8), groups=2).lower_holds_precondition
    assert alpha_bound((3, 3), 1, 1, 1, (8, 8)).lower_holds_precondition
