"""Verdict bookkeeping shared by the HTML, JUnit and terminal reporters.

A verdict row (see ``harness.baselines``) has the columns
``harness.baselines.verdict.VERDICT_COLUMNS``.

Failing verdicts are ``violation``, ``regression``, ``missing`` and ``error``.  The
reporters *fail closed*: a verdict string they do not know (a typo, ``NaN``, an empty
string) is counted as failing too, so a bug upstream can never turn into a green run.
"""
from __future__ import annotations

import math
from typing import Any

import pandas as pd

from .data import seed_str
from harness.baselines.verdict import FAILING, NON_FAILING, VERDICT_COLUMNS, VERDICTS

_TEXT_COLUMNS = ("suite", "case", "method", "metric", "check", "kind", "detail")
_NUMERIC = ("value", "reference", "effect", "threshold")

#: Sort rank: failing verdicts first (unknown ones right after the known failing ones).
_RANK = {v: i for i, v in enumerate(VERDICTS)}
_UNKNOWN_RANK = len(FAILING)


def normalize_verdict(v: Any) -> str:
    """Lower-cased, stripped verdict string; ``''`` for None/NaN."""
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return ""
    return str(v).strip().lower()


def is_failing(verdict: Any) -> bool:
    """True for violation/regression/missing/error, and for anything unknown (fail closed)."""
    return normalize_verdict(verdict) not in NON_FAILING


def verdict_rank(verdict: Any) -> int:
    v = normalize_verdict(verdict)
    return _RANK.get(v, _UNKNOWN_RANK if is_failing(v) else len(VERDICTS))


def normalize_verdicts(verdicts: pd.DataFrame | None) -> pd.DataFrame:
    """A copy with every contract column present, text columns as ``str`` (no NaN),
    ``value``/``reference`` numeric and ``verdict`` normalised."""
    if verdicts is None:
        verdicts = pd.DataFrame(columns=list(VERDICT_COLUMNS))
    df = verdicts.copy()
    for col in VERDICT_COLUMNS:
        if col not in df.columns:
            df[col] = float("nan") if col in _NUMERIC or col == "seed" else ""
    for col in _TEXT_COLUMNS:
        df[col] = df[col].map(_text).astype(object)
    df["verdict"] = df["verdict"].map(normalize_verdict).astype(object)
    for col in _NUMERIC:
        df[col] = pd.to_numeric(df[col], errors="coerce")
    df["seed"] = df["seed"].map(_seed).astype(object)
    return df.reset_index(drop=True)


def sort_verdicts(df: pd.DataFrame) -> pd.DataFrame:
    """Failing first (error, violation, regression, missing, unknown), then the rest;
    stable within a rank by suite, case, method, metric, check, seed."""
    if df.empty:
        return df
    key = df["verdict"].map(verdict_rank)
    out = df.assign(_rank=key, _seed=df["seed"].map(_seed_key))
    out = out.sort_values(["_rank", "suite", "case", "method", "metric", "check", "_seed"],
                          kind="stable")
    return out.drop(columns=["_rank", "_seed"]).reset_index(drop=True)


def verdict_counts(verdicts: pd.DataFrame | None) -> dict[str, int]:
    """Count per verdict: every known verdict (zeros included, in :data:`VERDICTS` order),
    then any unknown verdict strings that occur (``''`` shown as ``'(blank)'``)."""
    df = normalize_verdicts(verdicts)
    counts = {v: 0 for v in VERDICTS}
    for v, n in df["verdict"].value_counts(sort=False).items():
        counts[v if v else "(blank)"] = counts.get(v if v else "(blank)", 0) + int(n)
    return counts


def failing_verdicts(verdicts: pd.DataFrame | None) -> pd.DataFrame:
    df = normalize_verdicts(verdicts)
    return sort_verdicts(df[df["verdict"].map(is_failing)])


def overall_passed(verdicts: pd.DataFrame | None) -> bool:
    """True iff no verdict is failing (violation, regression, missing, error or unknown).

    An empty (or ``None``) verdict table passes vacuously; the reports say "no verdicts"
    so that an empty run is visible.
    """
    df = normalize_verdicts(verdicts)
    return not bool(df["verdict"].map(is_failing).any())


def _seed_key(s: str) -> int:
    try:
        return int(s)
    except (TypeError, ValueError):
        return -1


def _text(v: Any) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return ""
    return str(v)


def _seed(v: Any) -> str:
    """Seeds as display strings: ``'3'``, or ``''`` when the verdict spans seeds."""
    return seed_str(v)
