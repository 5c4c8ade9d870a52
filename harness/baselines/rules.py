"""How a metric is compared with its baseline follows from its kind of variability.

Each rule returns a :class:`Judgement`: the verdict (``pass``, ``regression`` or
``improvement``), the test it used, the effect (relative change, positive = worse), the
threshold it was held against and a one-line detail for reports. A change in the metric's
better direction is never a regression.

* :func:`compare_tolerance` (kinds ``exact``, ``float32``, ``identity``): one value against
  the baseline's, equal within ``atol + rtol·|baseline|`` (the float type's rounding or
  the metric's stated tolerance); beyond it, worse is a regression, better an improvement
  (metrics without a better direction: any change is ``changed``, never called worse).
* :func:`compare_outcomes` (kind ``outcome``, results of training): the run's seeds against
  the baseline's values over seeds and machines, with robust statistics
  (:func:`robust_location_spread`): the baseline's location is its median and its spread a
  winsorized standard deviation, so no single seed x machine value can move the threshold by
  more than an ordinary value would (a mean and standard deviation let one outlier of 1e6
  widen it to 7.5e5).
  Regression when the run's mean *and* median are worse than the baseline's median by more
  than ``k`` robust standard errors of the difference (``s · sqrt(1/n + 1/n_base)``, ``s``
  the baseline's robust spread: a run's two or three seeds cannot estimate a spread), the
  metric's resolution and a minimum relative effect. GAN outcomes are heavy-tailed: another
  machine's rounding sent one seed of grad_penalty's ring8 run to an energy distance of 8.4
  where the other eleven seed-machine runs gave 0.4-2.2 (docs/results.md, "Portability"); that moves
  the mean, not the median; a real regression moves the typical seed.
* :func:`compare_timing` (kind ``timing``): repeated per-round ratios, Mann-Whitney U and a
  minimum effect on the ratio of medians (as asv does: a factor and a significance test).
* :func:`compare_estimates` (kind ``monte_carlo`` under ``lipbench compare`` of runs whose
  samples differ): two estimates with standard errors; a change only when the confidence
  interval of their difference excludes 0 at the stated level (docs/theory.md#compare).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np
from scipy import stats

#: Outcome rule: how many (robust) standard errors of the difference a regression must exceed.
#: Chosen from the measured false-alarm and detection rates (benchmarks/bench_verdicts.py,
#: docs/results.md, "Portability"): with k = 4 and the baseline's spread from >= 12 values, a one-
#: sided false alarm needs a deviate above 4 (p = 1e-3 per metric under normality; the robust
#: spread's own sampling error, larger than the standard deviation's, fattens that tail).
OUTCOME_K = 4.0
#: Outcome rule: smallest relative change (of the baseline's median) worth a regression.
OUTCOME_MIN_EFFECT = 0.10
#: Outcome rule: share of the baseline's values winsorized at each end for its spread (at least
#: one value each side). Measured on the shipped baselines (each source judged against the
#: others, benchmarks/bench_verdicts.py --from-baselines): with a median and MAD instead, 19 of
#: 1632 outcome verdicts came within half of their threshold and the closest at 0.98 of it (the
#: MAD sees one cluster of a bimodal spread of seeds); with this spread 11 and 0.77.
OUTCOME_TRIM = 0.2
#: Timing rule (per-round ratio samples): significance and smallest change of the median.
TIMING_ALPHA = 0.01
TIMING_MIN_EFFECT = 0.15


@dataclass(frozen=True)
class Judgement:
    verdict: str
    test: str
    effect: float  # relative change, positive when worse (NaN when undefined)
    threshold: float
    detail: str


def _worse(value: float, baseline: float, better: str | None) -> float:
    """Signed change, positive when worse (for two-sided metrics: the absolute change)."""
    diff = value - baseline
    if better == "lower":
        return diff
    if better == "higher":
        return -diff
    return abs(diff)


def _relative(change: float, baseline: float) -> float:
    return change / abs(baseline) if baseline else (0.0 if change == 0 else math.copysign(math.inf, change))


def compare_tolerance(value: float, baseline: float, *, rtol: float, atol: float = 0.0,
                      better: str | None = None, source: str = "", against: str = "baseline") -> Judgement:
    """``|value - baseline| <= atol + rtol·|baseline|``; beyond it, the direction decides
    (``against``: what the reference is called in the detail)."""
    limit = atol + rtol * abs(baseline)
    worse = _worse(value, baseline, better)
    moved = abs(value - baseline) > limit
    why = f" ({source})" if source else ""
    detail = (f"{value:.10g} vs {against} {baseline:.10g}: |difference| {abs(value - baseline):.3g} "
              f"{'>' if moved else '<='} tolerance {limit:.3g}{why}")
    if not moved:
        verdict = "pass"
    elif better is None:
        verdict = "changed"
    elif worse < 0:
        verdict = "improvement"
    else:
        verdict = "regression"
    return Judgement(verdict, "tolerance", _relative(worse, baseline), limit, detail)


def robust_location_spread(values: Sequence[float], trim: float = OUTCOME_TRIM) -> tuple[float, float, int]:
    """Median, robust standard deviation and how many values were winsorized at each end.

    The spread is the winsorized standard deviation (the ``g = max(1, floor(trim·n))`` lowest
    and highest values replaced by their nearest kept neighbours) divided by ``1 - 2g/n``,
    which makes it about the standard deviation for normal values (docs/references.md#tukeymclaughlin1963;
    #yuen1974, the standard error of a trimmed mean). One value, however far out, is replaced by an ordinary one, so no single
    seed x machine value widens it. Fewer than four values give no spread (0): with three,
    winsorizing leaves one value, and with two nothing tells an outlier from a value.
    """
    data = np.sort(np.asarray(values, float))
    n = data.size
    median = float(np.median(data)) if n else math.nan
    if n < 4:
        return median, 0.0, 0
    g = max(1, int(trim * n))
    kept = np.clip(data, data[g], data[n - g - 1])
    return median, float(kept.std(ddof=1)) / (1 - 2 * g / n), g


def compare_outcomes(values: Sequence[float], baseline: Sequence[float], *, better: str | None,
                     resolution: float = 0.0, k: float = OUTCOME_K,
                     min_effect: float = OUTCOME_MIN_EFFECT, baseline_note: str = "") -> Judgement:
    """The run's seed values against the baseline's values (seeds x machines), see module doc."""
    cur = np.asarray([v for v in values if math.isfinite(v)], float)
    base = np.asarray([v for v in baseline if math.isfinite(v)], float)
    if cur.size == 0 or base.size == 0:
        return Judgement("pass" if cur.size == base.size else "regression", "outcome", math.nan, math.nan,
                         f"{cur.size} finite value(s) vs {base.size} in the baseline")
    mean, median = float(cur.mean()), float(np.median(cur))
    base_median, spread, trimmed = robust_location_spread(base)
    threshold = outcome_threshold(spread, cur.size, base.size, base_median, resolution, k, min_effect)
    changes = [_worse(x, base_median, better) if better else abs(x - base_median) for x in (mean, median)]
    if min(changes) > threshold:
        verdict, worse = "regression" if better else "changed", min(changes)
    elif better is not None and -max(changes) > threshold:
        verdict, worse = "improvement", max(changes)
    else:
        verdict, worse = "pass", min(changes)  # the change held against the threshold (both must exceed it)
    se = spread * math.sqrt(1 / cur.size + 1 / base.size)
    direction = ("worse" if worse > 0 else "better") if better else "size: no better direction"
    detail = (f"mean {mean:.4g} (median {median:.4g}) over {cur.size} seed(s) vs baseline median "
              f"{base_median:.4g} (robust sd {spread:.3g}, {trimmed} value(s) winsorized each side, over "
              f"{base.size} value(s)"
              f"{baseline_note}); change {worse:+.3g} ({direction}), threshold "
              f"max({k:g} s.e. = {k * se:.3g}, resolution {resolution:g}, {min_effect:.0%} of the median) = "
              f"{threshold:.3g}; mean and median must both pass it")
    return Judgement(verdict, f"outcome ({k:g} robust s.e.)", _relative(worse, base_median), threshold, detail)


def outcome_threshold(spread: float, n_run: int, n_base: int, location: float, resolution: float = 0.0,
                      k: float = OUTCOME_K, min_effect: float = OUTCOME_MIN_EFFECT) -> float:
    """The smallest change of an outcome the rule calls a regression (its minimum detectable effect)."""
    se = spread * math.sqrt(1 / max(n_run, 1) + 1 / max(n_base, 1))
    return max(k * se, resolution, min_effect * abs(location))


def compare_timing(values: Sequence[float], baseline: Sequence[float], *, better: str = "lower",
                   alpha: float = TIMING_ALPHA, min_effect: float = TIMING_MIN_EFFECT) -> Judgement:
    """Mann-Whitney U (two-sided p < alpha) and a median ratio beyond ``1 ± min_effect``."""
    cur, base = np.asarray(values, float), np.asarray(baseline, float)
    med, base_med = float(np.median(cur)), float(np.median(base))
    ratio = med / base_med if base_med else math.inf
    worse = ratio - 1 if better == "lower" else 1 - ratio
    if len(cur) < 2 or len(base) < 2:
        p = math.nan
        significant = True  # no test possible: the effect alone decides
    else:
        p = float(stats.mannwhitneyu(cur, base, alternative="two-sided").pvalue)
        significant = p < alpha
    detail = (f"median {med:.4g} vs baseline {base_med:.4g} (ratio {ratio:.3f}, {better} is better); "
              f"Mann-Whitney p={p:.3g} (n={len(cur)},{len(base)}), alpha={alpha:g}, min effect {min_effect:.0%}")
    if significant and worse > min_effect:
        verdict = "regression"
    elif significant and worse < -min_effect:
        verdict = "improvement"
    else:
        verdict = "pass"
    return Judgement(verdict, "Mann-Whitney U", worse, min_effect, detail)


def detectable_effects(verdicts) -> dict[tuple[str, str], str]:
    """Per (suite, metric) compared: the smallest change its rule calls a regression, in words.

    It is each comparison's threshold relative to its baseline value (for timings the
    threshold already is one): the median over the metric's comparisons, and their range.
    """
    out: dict[tuple[str, str], str] = {}
    compared = verdicts[(verdicts["kind"] == "comparison") & verdicts["threshold"].notna()]
    for (suite, metric), group in compared.groupby(["suite", "metric"], sort=False):
        timing = group["check"] == "timing"
        reference = group["reference"].abs()
        relative = np.where(timing, group["threshold"], group["threshold"] / reference.where(reference > 0))
        relative = relative[np.isfinite(relative)]
        if relative.size:
            low, mid, high = np.min(relative), np.median(relative), np.max(relative)
            spread = f", {_percent(low)}-{_percent(high)}" if high > low else ""
            out[(suite, metric)] = (f"minimum detectable effect {_percent(mid)} of the baseline (median over "
                                    f"{relative.size} comparison(s){spread})")
        else:
            out[(suite, metric)] = f"minimum detectable effect {np.median(group['threshold']):.3g} (absolute)"
    return out


def _percent(x: float) -> str:
    return f"{x:.2g}" if x < 1e-4 else f"{100 * x:.3g}%"


#: Monte Carlo rule: family-wise false-alarm rate of one ``lipbench compare`` (Bonferroni over its
#: Monte Carlo comparisons, docs/theory.md#compare).
ESTIMATE_ALPHA = 0.01


@dataclass(frozen=True)
class Estimate:
    """A Monte Carlo estimate: its value, standard error and the degrees of freedom of that
    standard error (``inf``: reported by the runner from many samples; ``k - 1``: from ``k`` seeds)."""

    value: float
    se: float
    df: float
    note: str = ""


def compare_estimates(new: Estimate, old: Estimate, *, better: str | None, comparisons: int = 1,
                      alpha: float = ESTIMATE_ALPHA, floor: float = 0.0) -> Judgement:
    """Two Monte Carlo estimates of one quantity: Welch's interval for the difference.

    ``d = new - old`` with ``se_d = sqrt(se_new² + se_old²)`` and Welch-Satterthwaite degrees of
    freedom; each of the ``comparisons`` is held at level ``1 - alpha/comparisons`` (Bonferroni),
    so all of them together raise a false alarm with probability at most ``alpha``. The change is
    real when ``|d| > t · se_d`` (and above ``floor``, the rounding of the arithmetic): the
    interval of the difference excludes 0. Each side's own interval at that level is reported;
    their overlap is not the test (two intervals can overlap while the difference is significant).
    """
    level = 1 - alpha / max(comparisons, 1)
    se = math.hypot(new.se, old.se)
    parts = [x.se ** 4 / x.df for x in (new, old) if math.isfinite(x.df) and x.df > 0 and x.se > 0]
    df = se ** 4 / sum(parts) if parts else math.inf
    t = float(stats.t.ppf(0.5 + level / 2, df)) if math.isfinite(df) else float(stats.norm.ppf(0.5 + level / 2))
    threshold = max(t * se, floor)
    diff = new.value - old.value
    worse = _worse(new.value, old.value, better)
    moved = abs(diff) > threshold
    if not moved:
        verdict = "pass"
    elif better is None:
        verdict = "changed"
    else:
        verdict = "regression" if worse > 0 else "improvement"
    sides = "; ".join(f"{name} {x.value:.6g} ± {t * x.se:.3g}{x.note}" for name, x in (("A", old), ("B", new)))
    detail = (f"{sides} ({level:.6g} intervals, t={t:.3g}, df={df:.3g}); difference {diff:+.3g}, "
              f"{'outside' if moved else 'inside'} ±{threshold:.3g} (Welch, Bonferroni over {comparisons} "
              f"estimate(s), family-wise alpha {alpha:g})")
    return Judgement(verdict, f"confidence interval ({level:.6g})", _relative(worse, old.value), threshold, detail)
