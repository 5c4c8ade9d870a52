"""Metrics for 2-D Gaussian-mixture GAN benchmarks (ring of 8, grid of 25).

Benchmarks: ring of 8 Gaussians of radius 2 and std 0.02 (Metz et al., "Unrolled GANs",
ICLR 2017); grid of 25 Gaussians at ``{-4,-2,0,2,4}²`` with std 0.05 (Srivastava et al.,
"VEEGAN", NeurIPS 2017). The code takes any mode centres and std.

Mode metrics follow VEEGAN §5.1: a sample is *high quality* (HQ) if it lies within
three standard deviations of the nearest mode centre (Euclidean distance ≤ 3·std);
the *number of modes captured* is the number of components whose centre is the
nearest centre of at least one HQ sample (``min_count=1``; raise ``min_count`` for a
stricter count that ignores a few stray samples). Also reported: the share of HQ
samples.

Energy distance (Székely & Rizzo, "energy statistics", 2004/2013):
``E(X, Y) = 2 E‖X − Y‖ − E‖X − X'‖ − E‖Y − Y'‖``, estimated here by the V-statistic
(means over all pairs, including the zero diagonal), which is ≥ 0 for any two
samples and exactly 0 for identical ones; it is a metric between distributions
(0 iff equal). Computed in float64 with ``torch.cdist``; memory is O(n·m).

All functions are deterministic (no randomness besides :func:`sample_mixture`, which
takes a seed).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import torch


# The mixtures are defined once, with the data (harness.training.data); re-exported here.
from harness.training.data import GRID25, RING8, Mixture, grid_centers, ring_centers  # noqa: E402,F401


def sample_mixture(centers: torch.Tensor, std: float, n: int, seed: int = 0) -> torch.Tensor:
    """``n`` samples (float64) from the equal-weight mixture, reproducible from ``seed``."""
    g = torch.Generator().manual_seed(seed)
    centers = centers.to(torch.float64)
    idx = torch.randint(len(centers), (n,), generator=g)
    return centers[idx] + std * torch.randn(n, centers.shape[1], generator=g, dtype=torch.float64)


@dataclass(frozen=True)
class ModeMetrics:
    modes_covered: int
    n_modes: int
    hq_share: float
    counts: list[int] = field(default_factory=list)  # HQ samples per mode

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def mode_metrics(samples: torch.Tensor, centers: torch.Tensor, std: float,
                 n_std: float = 3.0, min_count: int = 1) -> ModeMetrics:
    """VEEGAN mode metrics: modes captured and share of high-quality samples."""
    x = torch.as_tensor(samples).detach().to(torch.float64).cpu()
    c = torch.as_tensor(centers).to(torch.float64).cpu()
    if x.ndim != 2 or x.shape[1] != c.shape[1]:
        raise ValueError(f"samples must be (N, {c.shape[1]}), got {tuple(x.shape)}")
    if len(x) == 0:
        return ModeMetrics(0, len(c), float("nan"), [0] * len(c))
    d, nearest = torch.cdist(x, c).min(dim=1)
    hq = d <= n_std * std
    counts = torch.bincount(nearest[hq], minlength=len(c))
    return ModeMetrics(modes_covered=int((counts >= min_count).sum()), n_modes=len(c),
                       hq_share=float(hq.to(torch.float64).mean()), counts=counts.tolist())


def energy_distance(x: torch.Tensor, y: torch.Tensor) -> float:
    """Energy distance ``2E‖X−Y‖ − E‖X−X'‖ − E‖Y−Y'‖`` (V-statistic, float64)."""
    x = torch.as_tensor(x).detach().to(torch.float64).cpu()
    y = torch.as_tensor(y).detach().to(torch.float64).cpu()
    exy = torch.cdist(x, y).mean()
    exx = torch.cdist(x, x).mean()
    eyy = torch.cdist(y, y).mean()
    return float(2 * exy - exx - eyy)
