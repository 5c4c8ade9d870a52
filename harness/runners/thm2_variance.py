"""``thm2_variance``: Monte Carlo of Var(a_ij / ||A||) (Lin et al. 2021, Thm 2).

For ``A`` (m x n) with i.i.d. symmetric zero-mean entries, Thm 2 bounds
``Var(a_ij/||A||) <= 1/max(m, n)``: ``sum_k s_k^2 = ||A||_F^2`` has at most min(m, n)
terms. The mean is 0 by symmetry, so the variance is ``E[a_ij^2/||A||^2]``; entries are
exchangeable, so each matrix contributes ``||A||_F^2 / (m n ||A||^2)``, an i.i.d. sample
over matrices from which the mean and a Student-t confidence interval follow.

Gaussian reference (Bai-Yin, random-matrix theory): ``||A|| ~ sqrt(m) + sqrt(n)``, so
``Var * max(m,n) -> max(m,n) / (sqrt(m) + sqrt(n))^2``, an asymptotic approximation.
"""
from __future__ import annotations

import json
import math
from typing import Any, Iterable

import numpy as np
import pandas as pd
import torch
from scipy import stats

from harness.results import Measurement
from harness.suite import Case

from .base import RunContext, Runner, register
from .randomness import DISTRIBUTIONS, case_generator, random_entries
from .spec import Declarations, Metric, Setting

#: Largest batch of float64 entries materialised at once (memory bound, not a tolerance).
CHUNK_ENTRIES = 2**24


def top_singular_values(a: torch.Tensor) -> torch.Tensor:
    """||A_k|| for a batch (k, m, n), from the smaller Gram matrix's largest eigenvalue (float64)."""
    gram = a @ a.transpose(-1, -2) if a.shape[-2] <= a.shape[-1] else a.transpose(-1, -2) @ a
    return torch.linalg.eigvalsh(gram)[..., -1].clamp_min(0).sqrt()


def normalized_second_moments(m: int, n: int, count: int, distribution: str,
                              gen: torch.Generator) -> torch.Tensor:
    """Per matrix: mean over entries of (a_ij / ||A||)^2, batched in chunks."""
    per_chunk = max(1, CHUNK_ENTRIES // (m * n))
    out = []
    for start in range(0, count, per_chunk):
        a = random_entries((min(per_chunk, count - start), m, n), distribution, gen)
        frob = a.pow(2).sum(dim=(-1, -2))
        out.append(frob / (m * n * top_singular_values(a) ** 2))
    return torch.cat(out)


def standard_error(samples: np.ndarray) -> float:
    """The standard error of the sample mean, ``sd / sqrt(n)`` (infinite for one sample)."""
    return float(stats.sem(samples)) if len(samples) > 1 else math.inf


def mean_with_interval(samples: np.ndarray, confidence: float) -> tuple[float, float, float]:
    """Sample mean and its two-sided Student-t confidence interval."""
    mean = float(samples.mean())
    sem = standard_error(samples)
    half = float(stats.t.ppf(0.5 + confidence / 2, len(samples) - 1)) * sem if sem > 0 else 0.0
    return mean, mean - half, mean + half


def _exact(description: str) -> Metric:
    return Metric("exact", description)


def _estimate(description: str, standard_error: str | None) -> Metric:
    return Metric("monte_carlo", description, standard_error=standard_error)


@register
class Thm2VarianceRunner(Runner):
    kind = "thm2_variance"
    uses_methods = False
    declarations = Declarations(
        params={"m": Setting(int, description="rows of A"), "n": Setting(int, description="columns of A"),
                "distribution": Setting(str, description=f"entries: {', '.join(DISTRIBUTIONS)}")},
        settings={"matrices": Setting(int, description="matrices per shape (Monte Carlo samples)", sampling=True),
                  "confidence": Setting(float, 0.99, "two-sided level of the Student-t interval", sampling=True)},
        metrics={
            "variance": _estimate("Monte Carlo estimate of Var(a_ij/||A||) = E[(a_ij/||A||)^2]", "variance_se"),
            "variance_se": Metric("info", "standard error of that mean over the matrices"),
            "variance_ci_low": _exact("lower end of the Student-t confidence interval of the mean"),
            "variance_ci_high": _exact("upper end of the confidence interval"),
            "bound": _exact("1/max(m, n), Thm 2"),
            "scaled_variance": _estimate("variance * max(m, n); Thm 2 says <= 1", "scaled_variance_se"),
            "scaled_variance_se": Metric("info", "its standard error, variance_se * max(m, n)"),
            "rmt_prediction": _exact("max(m,n)/(sqrt m + sqrt n)^2, Bai-Yin asymptotics for Gaussian entries"),
            "loglog_slope_*": _estimate("slope of log Var against log max(m,n), per distribution",
                                        "loglog_slope_stderr_*"),
            "loglog_slope_stderr_*": Metric("info", "standard error of that slope (least squares over the cases)"),
            "largest_square": _exact("the largest n of an n x n case (the lower constant is reached there)"),
            "lower_constant": _estimate("smallest Var * max(m,n) over the cases: the empirical constant L of "
                                        "Thm 2's lower bound L/max(m,n) (standard error from the seeds)", None),
        })

    def run(self, case: Case, ctx: RunContext) -> Iterable[Measurement]:
        m, n, dist = int(case.params["m"]), int(case.params["n"]), case.params["distribution"]
        count, confidence = case.settings["matrices"], case.settings["confidence"]
        gen = case_generator(case.seed, case.case)
        samples = normalized_second_moments(m, n, count, dist, gen).numpy()
        mean, low, high = mean_with_interval(samples, confidence)
        se, big = standard_error(samples), max(m, n)
        return [
            Measurement("variance", mean),
            Measurement("variance_se", se),
            Measurement("variance_ci_low", low),
            Measurement("variance_ci_high", high),
            Measurement("bound", 1 / big),
            Measurement("scaled_variance", mean * big),
            Measurement("scaled_variance_se", se * big),
            Measurement("rmt_prediction", big / (math.sqrt(m) + math.sqrt(n)) ** 2),
        ]

    def summarize(self, rows: pd.DataFrame, config: dict[str, Any]) -> list[Measurement]:
        """Log-log slope of Var against max(m, n) per distribution; empirical lower-bound constant."""
        out = []
        var = rows[rows["metric"] == "variance"]
        if var.empty:
            return out
        params = pd.json_normalize(var["params"].map(json.loads).tolist())
        frame = pd.DataFrame({"value": var["value"].to_numpy(), "big": params[["m", "n"]].max(axis=1),
                              "dist": params["distribution"]})
        for dist, group in frame.groupby("dist"):
            if group["big"].nunique() >= 2:
                fit = stats.linregress(np.log(group["big"]), np.log(group["value"]))
                out.append(Measurement(f"loglog_slope_{dist}", float(fit.slope)))
                out.append(Measurement(f"loglog_slope_stderr_{dist}", float(fit.stderr)))
        out.append(Measurement("lower_constant", float((frame["value"] * frame["big"]).min())))
        square = params[params["m"] == params["n"]]["m"]
        out.append(Measurement("largest_square", float(square.max()) if len(square) else 0.0))
        return out
