"""2-D mixture metrics: VEEGAN mode counts / HQ share, energy distance."""
from functools import partial

import numpy as np
import pytest
import torch
from scipy import stats

from harness.metrics.two_d import (GRID25, RING8, energy_distance, grid_centers, mode_metrics,
                                   ring_centers, sample_mixture)


def test_centres():
    r = ring_centers(8, 2.0)
    assert torch.allclose(r.norm(dim=1), torch.full((8,), 2.0, dtype=torch.float64))
    g = grid_centers(5, 2.0)
    assert len(g) == 25 and set(g[:, 0].tolist()) == {-4.0, -2.0, 0.0, 2.0, 4.0}


@pytest.mark.parametrize("mix", [RING8, GRID25], ids=["ring8", "grid25"])
def test_samples_at_modes(mix):
    m = mode_metrics(mix.centers.repeat(3, 1), mix.centers, mix.std)
    assert m.modes_covered == m.n_modes == len(mix.centers) and m.hq_share == 1.0
    assert m.counts == [3] * len(mix.centers)
    one = mode_metrics(mix.centers[2:3].repeat(50, 1) + mix.std, mix.centers, mix.std)
    assert one.modes_covered == 1 and one.hq_share == 1.0 and one.counts[2] == 50


def test_threshold_is_three_std_and_min_count():
    c, s = RING8.centers, RING8.std
    e = torch.tensor([[1.0, 0.0]], dtype=torch.float64)
    inside = c[:1] + 2.99 * s * e
    outside = c[:1] + 3.01 * s * e
    assert mode_metrics(inside, c, s).hq_share == 1.0
    assert mode_metrics(outside, c, s).hq_share == 0.0
    assert mode_metrics(outside, c, s).modes_covered == 0
    few = torch.cat([c[:1].repeat(5, 1), c[1:2].repeat(30, 1)])
    assert mode_metrics(few, c, s, min_count=10).modes_covered == 1


def _passes_true_mixture_check(metric) -> bool:
    """A generator that *is* the target mixture must score all modes and HQ ≈ 1 − e^{−4.5}."""
    ok = True
    for mix in (RING8, GRID25):
        x = sample_mixture(mix.centers, mix.std, 2500, seed=1)
        m = metric(x, mix.centers, mix.std)
        ok &= m.modes_covered == len(mix.centers)
        ok &= abs(m.hq_share - (1 - np.exp(-4.5))) < 0.01
    return bool(ok)


def _broken_variance_threshold(x, centers, std):
    # Bug on purpose: threshold 3·std² (variance units) instead of 3·std.
    return mode_metrics(x, centers, std ** 2)


def test_real_metric_passes_and_broken_variants_fail():
    assert _passes_true_mixture_check(mode_metrics)
    assert not _passes_true_mixture_check(_broken_variance_threshold)
    assert not _passes_true_mixture_check(partial(mode_metrics, n_std=1.0))


def test_energy_distance():
    x = sample_mixture(GRID25.centers, GRID25.std, 500, seed=0)
    assert energy_distance(x, x) == 0.0
    assert energy_distance(x, x + 0.3) > 0.0
    y = sample_mixture(GRID25.centers, GRID25.std, 500, seed=1)
    assert energy_distance(x, y) < energy_distance(x, y + 0.3) < energy_distance(x, y + 1.0)
    assert energy_distance(x, y) == pytest.approx(energy_distance(y, x), rel=1e-12)


def test_energy_distance_matches_scipy_in_1d():
    # scipy.stats.energy_distance returns the square root of the same V-statistic in 1-D.
    rng = np.random.default_rng(0)
    u, v = rng.standard_normal(300), rng.standard_normal(200) + 0.5
    ours = energy_distance(torch.from_numpy(u[:, None]), torch.from_numpy(v[:, None]))
    assert ours == pytest.approx(stats.energy_distance(u, v) ** 2, rel=1e-9)
