"""FID / KID / IS against independent computations; extractor ids are never mixed."""
import numpy as np
import pytest
from scipy import linalg

from harness.metrics import (ExtractorMismatchError, Features, SampleQuality,
                             compare_sample_quality, fid, inception_score, kid, sample_quality)
from harness.metrics.stats import mean_se


def _gauss(n, d, seed, shift=0.0):
    rng = np.random.default_rng(seed)
    a = rng.standard_normal((d, d)) / np.sqrt(d)
    return rng.standard_normal((n, d)) @ a + shift


def _frechet_reference(x, y):
    """Independent: ||mu1-mu2||^2 + Tr(S1 + S2 - 2 (S1 S2)^{1/2}) with scipy.linalg.sqrtm."""
    mu1, mu2 = x.mean(0), y.mean(0)
    s1, s2 = np.atleast_2d(np.cov(x, rowvar=False)), np.atleast_2d(np.cov(y, rowvar=False))
    root = linalg.sqrtm(s1 @ s2)
    return float(np.sum((mu1 - mu2) ** 2) + np.trace(s1 + s2 - 2 * np.real(root)))


def test_identical_sets_give_zero():
    x = _gauss(300, 8, 0)
    assert abs(fid(x, x)) < 1e-6
    assert abs(kid(x, x, num_subsets=20)) < 1e-3 * kid(x, x + 3.0, num_subsets=20)


def test_fid_grows_with_mean_shift():
    x, y = _gauss(300, 6, 0), _gauss(300, 6, 1)
    vals = [fid(x, y + s) for s in (0.0, 0.5, 1.0, 2.0)]
    assert all(a < b for a, b in zip(vals, vals[1:]))
    ks = [kid(x, y + s, num_subsets=20) for s in (0.0, 1.0, 2.0)]
    assert ks[0] < ks[1] < ks[2]


@pytest.mark.parametrize("d,seed", [(1, 3), (3, 4), (10, 5)])
def test_fid_matches_independent_frechet(d, seed):
    x, y = _gauss(300, d, seed), _gauss(250, d, seed + 100, shift=0.3)
    assert fid(x, y) == pytest.approx(_frechet_reference(x, y), rel=1e-6, abs=1e-9)


def test_fid_closed_form_on_known_gaussians():
    # Exact Fréchet distance of N(0, I) and N(m, 4I) in d dims: |m|^2 + d (1 + 4 - 2*2) = |m|^2 + d.
    d, n = 3, 200_000
    rng = np.random.default_rng(0)
    x = rng.standard_normal((n, d))
    y = 2 * rng.standard_normal((n, d)) + 1.0
    assert fid(x, y) == pytest.approx(d * 1.0 + d, rel=0.02)


def test_kid_is_deterministic_and_leaves_global_rng_alone():
    x, y = _gauss(200, 5, 0), _gauss(200, 5, 1, shift=0.5)
    np.random.seed(123)
    before = np.random.get_state()[1].copy()
    kw = dict(num_subsets=10, max_subset_size=50)  # subsets smaller than the sets
    a, b = kid(x, y, seed=7, **kw), kid(x, y, seed=7, **kw)
    assert a != kid(x, y, seed=8, **kw)
    assert a == b
    assert np.array_equal(np.random.get_state()[1], before)


def test_different_extractors_refuse_to_compare():
    x = _gauss(50, 4, 0)
    fa, fb = Features(x, "digits-cnn-v1-aaaa"), Features(x, "inception-v3-clean")
    with pytest.raises(ExtractorMismatchError, match="different feature extractors"):
        fid(fa, fb)
    with pytest.raises(ExtractorMismatchError):
        kid(fa, fb)
    with pytest.raises(ExtractorMismatchError):
        sample_quality(fa, fb)
    q1 = SampleQuality(1.0, 0.1, "digits-cnn-v1-aaaa", 10, 10)
    q2 = SampleQuality(2.0, 0.2, "inception-v3-clean", 10, 10)
    with pytest.raises(ExtractorMismatchError):
        compare_sample_quality(q1, q2)
    q3 = SampleQuality(3.0, 0.3, "digits-cnn-v1-aaaa", 10, 10)
    assert compare_sample_quality(q1, q3)["fid_delta"] == pytest.approx(2.0)


def test_sample_quality_record():
    fa = Features(_gauss(60, 4, 0), "x")
    fb = Features(_gauss(40, 4, 1, shift=1.0), "x")
    q = sample_quality(fa, fb)
    assert (q.extractor, q.n_real, q.n_fake) == ("x", 60, 40)
    assert q.fid == pytest.approx(fid(fa.values, fb.values))
    assert set(q.to_dict()) == {"fid", "kid", "extractor", "n_real", "n_fake"}


def test_inception_score_limits():
    k, n = 10, 1000
    uniform = np.full((n, k), 1.0 / k)
    assert inception_score(uniform)[0] == pytest.approx(1.0)
    onehot = np.eye(k)[np.arange(n) % k]          # confident and balanced in every split
    assert inception_score(onehot)[0] == pytest.approx(k, rel=1e-6)
    collapsed = np.eye(k)[np.zeros(n, dtype=int)]  # confident, one class
    assert inception_score(collapsed)[0] == pytest.approx(1.0)


def test_mean_se_matches_scipy_and_drops_nan():
    from scipy import stats
    r = mean_se([1.0, 2.0, 4.0, float("nan")])
    assert r.mean == pytest.approx(7 / 3) and r.n == 3 and r.n_nan == 1
    assert r.se == pytest.approx(stats.sem([1.0, 2.0, 4.0]))
    assert np.isnan(mean_se([5.0]).se)
