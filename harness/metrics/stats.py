"""Mean and standard error over seeds (as in Lin et al. 2021, Table 1: mean ± s.e., 5 seeds).

The standard error is ``scipy.stats.sem`` (sample std with ``ddof=1`` over √n); NaNs
(diverged or failed seeds) are dropped and counted, never silently averaged.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Iterable

import numpy as np
from scipy import stats


@dataclass(frozen=True)
class MeanSE:
    mean: float
    se: float
    n: int
    n_nan: int = 0

    def __str__(self) -> str:
        return f"{self.mean:.4g} ± {self.se:.2g} (n={self.n})"

    def to_dict(self) -> dict:
        return asdict(self)


def mean_se(values: Iterable[float]) -> MeanSE:
    """Mean and standard error of the finite values; se is NaN for fewer than 2 values."""
    v = np.asarray(list(values), dtype=np.float64)
    ok = v[np.isfinite(v)]
    n_nan = int(v.size - ok.size)
    if ok.size == 0:
        return MeanSE(math.nan, math.nan, 0, n_nan)
    se = float(stats.sem(ok)) if ok.size >= 2 else math.nan
    return MeanSE(float(ok.mean()), se, int(ok.size), n_nan)
