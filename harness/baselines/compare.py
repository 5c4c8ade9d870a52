"""Compare a run with its baselines and turn everything into verdicts.

Verdicts: ``pass``, ``regression``, ``improvement``, ``new`` (no baseline),
``missing`` (a baseline row whose planned case produced no such metric), ``error``
(the case raised or gave a non-finite value), plus the checks' ``violation`` / ``n/a``.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import numpy as np
import pandas as pd

from harness.results import samples_of
from harness.suite import Suite

from .checks import evaluate_checks
from .rules import compare_directional, compare_exact, compare_noisy
from .store import load_baseline
from .verdict import to_frame, verdict_row


def run_errors(rows: pd.DataFrame) -> list[dict[str, Any]]:
    """One ``error`` verdict per error row (a case that raised, or a non-finite metric)."""
    return [verdict_row(suite=r.suite, case=r.case, method=r.method, seed=r.seed, metric=r.metric,
                        check="run", kind="run", verdict="error", detail=r.message)
            for r in rows[rows["status"] == "error"].itertuples(index=False)]


def _keyed(frame: pd.DataFrame) -> dict[tuple, Any]:
    return {(r.case, r.method, int(r.seed), r.metric): r for r in frame.itertuples(index=False)}


def compare_suite(suite: Suite, rows: pd.DataFrame, baseline: pd.DataFrame | None,
                  planned: Iterable[tuple] = ()) -> list[dict[str, Any]]:
    """Comparison verdicts of one suite's rows against its baseline rows."""
    mine = rows[rows["suite"] == suite.name]
    base = baseline if baseline is not None else pd.DataFrame(columns=mine.columns)
    verdicts: list[dict[str, Any]] = []
    for rule in suite.compare:
        cur = mine[mine["metric"] == rule["metric"]]
        old = base[base["metric"] == rule["metric"]]
        if rule["rule"] == "noisy":
            verdicts += _compare_groups(suite.name, rule, cur, old)
        else:
            verdicts += _compare_rows(suite.name, rule, cur, old)
        verdicts += _missing(suite.name, rule["metric"], mine, old, planned)
    return verdicts


def _compare_rows(suite: str, rule: dict, cur: pd.DataFrame, old: pd.DataFrame) -> list[dict]:
    olds = _keyed(old)
    out = []
    for key, row in _keyed(cur).items():
        if row.status == "error":
            continue  # reported once by run_errors
        ident = dict(suite=suite, case=row.case, method=row.method, seed=row.seed, metric=row.metric,
                     check=rule["rule"], kind="comparison", value=row.value)
        ref = olds.get(key)
        if ref is None:
            out.append(verdict_row(**ident, verdict="new", detail="no baseline for this metric"))
            continue
        if row.status == "diverged" or ref.status == "diverged":
            same = row.status == ref.status
            out.append(verdict_row(**ident, reference=ref.value, verdict="pass" if same else "regression",
                                   detail=f"status {row.status} vs baseline {ref.status}: {row.message}"))
            continue
        if rule["rule"] == "exact":
            verdict, detail = compare_exact(row.value, ref.value, **_opts(rule, "rtol", "atol"))
        else:
            verdict, detail = compare_directional(row.value, ref.value, rule["better"],
                                                  **_opts(rule, "threshold", "atol"))
        out.append(verdict_row(**ident, reference=ref.value, verdict=verdict, detail=detail))
    return out


def _compare_groups(suite: str, rule: dict, cur: pd.DataFrame, old: pd.DataFrame) -> list[dict]:
    """Noisy metrics: all samples of all seeds of a (case, method) against the baseline's."""
    out = []
    for (case, method), group in cur[cur["status"] == "ok"].groupby(["case", "method"], sort=False):
        values = [s for _, r in group.iterrows() for s in samples_of(r)]
        ref = old[(old["case"] == case) & (old["method"] == method) & (old["status"] == "ok")]
        ident = dict(suite=suite, case=case, method=method, seed=int(group["seed"].iloc[0]),
                     metric=rule["metric"], check="noisy", kind="comparison", value=float(np.median(values)))
        if ref.empty:
            out.append(verdict_row(**ident, verdict="new", detail="no baseline for this metric"))
            continue
        base = [s for _, r in ref.iterrows() for s in samples_of(r)]
        verdict, detail = compare_noisy(values, base, rule["better"], **_opts(rule, "alpha", "min_effect"))
        out.append(verdict_row(**ident, reference=float(np.median(base)), verdict=verdict, detail=detail))
    return out


def _missing(suite: str, metric: str, mine: pd.DataFrame, old: pd.DataFrame,
             planned: Iterable[tuple]) -> list[dict]:
    """Baseline rows of planned cases that produced neither this metric nor an error."""
    planned_keys = {(c, m, int(s)) for (su, c, m, s) in planned if su == suite}
    present = {(r.case, r.method, int(r.seed)) for r in mine.itertuples(index=False)
               if r.metric == metric or r.status == "error"}
    errored = {(r.case, r.method) for r in mine.itertuples(index=False) if r.status == "error"}
    out = []
    for r in old.itertuples(index=False):
        key = (r.case, r.method, int(r.seed))
        summary = r.case == "summary"
        if (key in planned_keys or (summary and planned_keys)) and key not in present \
                and (r.case, r.method) not in errored:
            out.append(verdict_row(suite=suite, case=r.case, method=r.method, seed=r.seed, metric=metric,
                                   check="baseline", kind="comparison", verdict="missing",
                                   reference=r.value, detail="the baseline has this metric; the run has not"))
    return out


def _opts(rule: dict, *keys: str) -> dict[str, Any]:
    return {k: rule[k] for k in keys if k in rule}


def judge(suites: Sequence[Suite], rows: pd.DataFrame,
          baseline_for: Callable[[str], pd.DataFrame | None],
          planned: Iterable[Sequence] = ()) -> pd.DataFrame:
    """All verdicts of a run: errors, bound checks, comparisons with ``baseline_for(suite)``."""
    planned = [tuple(p) for p in planned]
    verdicts = run_errors(rows)
    for suite in suites:
        verdicts += evaluate_checks(suite, rows)
        verdicts += compare_suite(suite, rows, baseline_for(suite.name), planned)
    return to_frame(verdicts)


def stored_baselines(root: str | Path, device_class: str, preset: str) -> Callable[[str], pd.DataFrame | None]:
    """``baseline_for`` reading ``baselines/<device class>/<suite>.<preset>.json``."""
    return lambda suite: load_baseline(root, device_class, suite, preset)


def results_as_baseline(rows: pd.DataFrame) -> Callable[[str], pd.DataFrame | None]:
    """``baseline_for`` taking another run's rows (``lipbench compare A B``)."""
    def lookup(suite: str) -> pd.DataFrame | None:
        mine = rows[rows["suite"] == suite]
        return mine if len(mine) else None
    return lookup
