"""Comparison rules of a metric against its baseline: exact, directional, noisy.

Each returns ``(verdict, detail)`` with verdict ``pass``, ``regression`` or ``improvement``.
"""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np
from scipy import stats

DEFAULT_RTOL = 1e-6
DEFAULT_ATOL = 1e-12
DEFAULT_THRESHOLD = 0.05
DEFAULT_ALPHA = 0.01
DEFAULT_MIN_EFFECT = 0.05


def compare_exact(value: float, baseline: float, rtol: float = DEFAULT_RTOL,
                  atol: float = DEFAULT_ATOL) -> tuple[str, str]:
    """Equal within ``atol + rtol * |baseline|``; any larger change is a regression."""
    diff = abs(value - baseline)
    limit = atol + rtol * abs(baseline)
    if diff <= limit:
        return "pass", f"|{value:.6g} - {baseline:.6g}| = {diff:.3g} <= {limit:.3g}"
    return "regression", f"|{value:.6g} - {baseline:.6g}| = {diff:.3g} > {limit:.3g} (rtol={rtol:g}, atol={atol:g})"


def _relative_change(value: float, baseline: float, better: str) -> float:
    """Signed relative change, positive when worse."""
    scale = abs(baseline) if baseline != 0 else 1.0
    change = (value - baseline) / scale
    return change if better == "lower" else -change


def compare_directional(value: float, baseline: float, better: str,
                        threshold: float = DEFAULT_THRESHOLD, atol: float = 0.0) -> tuple[str, str]:
    """Worse by more than ``threshold`` (relative) and ``atol`` is a regression; better, an improvement."""
    worse = _relative_change(value, baseline, better)
    moved = abs(value - baseline) > atol
    detail = f"{value:.6g} vs baseline {baseline:.6g} ({better} is better; change {worse:+.1%} worse, threshold {threshold:.0%})"
    if moved and worse > threshold:
        return "regression", detail
    if moved and worse < -threshold:
        return "improvement", detail
    return "pass", detail


def compare_noisy(values: Sequence[float], baseline: Sequence[float], better: str,
                  alpha: float = DEFAULT_ALPHA, min_effect: float = DEFAULT_MIN_EFFECT) -> tuple[str, str]:
    """Mann-Whitney U test and a minimum effect on the ratio of medians.

    A regression needs both a significant difference (two-sided p < ``alpha``) and a
    median ratio beyond ``1 ± min_effect`` in the worse direction: noise alone, or a
    real but negligible shift, passes.
    """
    cur, base = np.asarray(values, float), np.asarray(baseline, float)
    ratio = float(np.median(cur) / np.median(base)) if np.median(base) != 0 else math.inf
    if len(cur) < 2 or len(base) < 2:  # no test possible: judge the effect alone
        verdict, detail = compare_directional(float(np.median(cur)), float(np.median(base)), better,
                                              threshold=min_effect)
        return verdict, f"too few samples for a test ({len(cur)} vs {len(base)}); {detail}"
    p = float(stats.mannwhitneyu(cur, base, alternative="two-sided").pvalue)
    worse = ratio - 1 if better == "lower" else 1 - ratio
    detail = (f"median {np.median(cur):.4g} vs {np.median(base):.4g} (ratio {ratio:.3f}, {better} is better); "
              f"Mann-Whitney p={p:.3g} (n={len(cur)},{len(base)}), alpha={alpha:g}, min effect {min_effect:.0%}")
    if p < alpha and worse > min_effect:
        return "regression", detail
    if p < alpha and worse < -min_effect:
        return "improvement", detail
    return "pass", detail
