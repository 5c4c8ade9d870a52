"""Verdict bookkeeping shared by the HTML, JUnit and terminal reporters.

A verdict row (see ``harness.baselines``) has the columns
``harness.baselines.verdict.VERDICT_COLUMNS``.

Failing verdicts are ``violation``, ``regression``, ``changed``, ``missing`` and ``error``.  The
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
    """True for violation/regression/changed/missing/error, and for anything unknown (fail closed)."""
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
    """Failing first (error, violation, regression, changed, missing, unknown), then the rest;
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


def _number(x: Any) -> str:
    return f"{float(x):.6g}"


def measured(row) -> str:
    """The numbers a verdict rests on, from its columns (never from the free-text detail):
    ``value 1.22, bound 1.15`` for a check (its bound when the assertion has the form
    ``value <op> EXPR``), ``value 0.0099 vs baseline 0.0071, threshold 2e-05`` for a
    comparison, ``no value vs baseline 0.0071`` for a metric the run lacks; empty when there
    is no number at all (a run error, a case that never ran)."""
    value, reference, threshold = row["value"], row["reference"], row["threshold"]
    if pd.isna(value):
        return "" if pd.isna(reference) or row["kind"] != "comparison" else f"no value vs baseline {_number(reference)}"
    parts = [f"value {_number(value)}"]
    if row["kind"] in ("check", "sanity"):
        if not pd.isna(reference):
            parts.append(f"bound {_number(reference)}")
        return ", ".join(parts)
    if not pd.isna(reference):
        parts[0] += f" vs baseline {_number(reference)}"
    if not pd.isna(threshold):
        parts.append(f"threshold {_number(threshold)}")
    return ", ".join(parts)


def one_line_detail(detail: Any, limit: int | None = None) -> str:
    """A verdict's detail on one line: whitespace collapsed; a traceback by its last line (the
    exception); cut at ``limit`` characters. (A detail's *last* line is only meaningful for a
    traceback: a folded YAML citation ends in a line holding just ``)``.)"""
    text = _text(detail).strip()
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    if lines and lines[0].startswith("Traceback"):
        text = lines[-1]
    text = " ".join(text.split())
    if limit is not None and len(text) > limit:
        text = text[: limit - 1] + "…"
    return text


def summary_line(row, limit: int | None = None) -> str:
    """``[check] value V, bound B: detail``: the check (or comparison rule), the measured value and
    the threshold, then the detail on one line (terminal and JUnit message alike)."""
    head = f"[{row['check']}]" if row["check"] else ""
    numbers = measured(row)
    head = f"{head} {numbers}".strip()
    detail = one_line_detail(row["detail"], limit)
    return f"{head}: {detail}" if head and detail else head or detail


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
