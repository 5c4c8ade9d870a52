"""Compare a run with its baselines and turn everything into verdicts.

Verdicts: ``pass``, ``regression``, ``changed`` (a metric without a better direction
moved), ``improvement``, ``new`` (no baseline), ``missing`` (a baseline row whose planned
case produced no such metric), ``error`` (the case raised or gave a non-finite value), plus
the checks' ``violation`` / ``n/a``.

Under ``lipbench check VARIANT --as NAME`` the rows of ``VARIANT as NAME`` are compared with
NAME's baseline rows (:mod:`.identity`); where the variant is another implementation, a
metric correct implementations differ in by design (declared ``implementation_specific``) or
without a better direction is reported against NAME's baseline (``n/a`` with both values),
never failed: only what has a better direction and must not differ is judged.

Which rule judges a metric is not written in the suite: it follows from the metric's
declared kind (:mod:`harness.runners.spec`, :mod:`.rules`; Monte Carlo estimates, computed
with the baseline's seeds and settings, like exact ones). Tolerance metrics are judged
row by row (one seed at a time) against the median over the baseline's sources; training
outcomes per (case, method) over all seeds; timings per (case, method) over all samples.
"""
from __future__ import annotations

import math
from typing import Any, Callable, Iterable, Sequence

import numpy as np
import pandas as pd

from harness.results import samples_of
from harness.runners import runner_for
from harness.runners.spec import FLOAT32_TOL, FLOAT64_RTOL, Declarations, Metric
from harness.suite import Suite

from .checks import evaluate_checks
from .identity import baseline_label, judged_as, other_implementation
from .rules import Judgement, compare_outcomes, compare_timing, compare_tolerance
from .verdict import to_frame, verdict_row

ALL_SEEDS = -1  # the seed column of verdicts about every seed of a (case, method)


def run_errors(rows: pd.DataFrame) -> list[dict[str, Any]]:
    """One ``error`` verdict per error row (a case that raised, or a non-finite metric)."""
    return [verdict_row(suite=r.suite, case=r.case, method=r.method, seed=r.seed, metric=r.metric,
                        check="run", kind="run", verdict="error", detail=r.message)
            for r in rows[rows["status"] == "error"].itertuples(index=False)]


def tolerance_of(metric: Metric) -> tuple[float, float, str]:
    """``(rtol, atol, source)`` of a tolerance-compared metric."""
    if metric.kind == "identity":
        return 0.0, 0.0, "must be identical"
    if metric.kind == "float32":
        return FLOAT32_TOL, FLOAT32_TOL, "float32 rounding"
    if metric.rtol is not None:
        return metric.rtol, 0.0, metric.tolerance_source
    return FLOAT64_RTOL, 1e-300, "float64 rounding"


def rule_of(metric: Metric) -> str:
    """How a metric of this declaration is compared, in words (for reports)."""
    if metric.kind in ("exact", "monte_carlo", "float32", "identity"):
        rtol, atol, source = tolerance_of(metric)
        fixed = " (a Monte Carlo estimate: fixed seeds and settings)" if metric.kind == "monte_carlo" else ""
        return f"tolerance rtol={rtol:g}, atol={atol:g} ({source}){fixed}"
    if metric.kind == "outcome":
        return "outcome over seeds and machines (k standard errors, resolution, minimum effect)"
    if metric.kind == "timing":
        return "timing samples (Mann-Whitney U and minimum effect)"
    return "not compared"


def compare_suite(suite: Suite, rows: pd.DataFrame, baseline: pd.DataFrame | None,
                  planned: Iterable[tuple] = (), declarations: Declarations | None = None,
                  profiles: dict[str, dict] | None = None) -> list[dict[str, Any]]:
    """Comparison verdicts of one suite's rows against its baseline rows (``profiles``: method
    label -> profile, which says whose baseline rows a label is compared with: its own when the
    baseline has them, as another run of the same check under ``lipbench compare``, else
    NAME's under ``--as NAME``)."""
    declarations = declarations or runner_for(suite.kind).declarations
    profiles = profiles or {}
    mine = rows[rows["suite"] == suite.name]
    base = baseline if baseline is not None else pd.DataFrame(columns=list(mine.columns) + ["source"])
    planned = [p for p in planned if p[0] == suite.name]
    present = set(base["method"])
    stored = {label: label if label in present else baseline_label(label, profiles.get(label))
              for label in set(mine["method"]) | {p[2] for p in planned}}
    verdicts: list[dict[str, Any]] = []
    for metric_name in sorted(set(mine["metric"]) | set(base["metric"])):
        metric = declarations.metric(metric_name)
        if metric is None or metric.kind == "info" or not metric_name:
            continue
        cur, old = mine[mine["metric"] == metric_name], base[base["metric"] == metric_name]
        if metric.kind in ("outcome", "timing"):
            found = _compare_groups(suite.name, metric_name, metric, cur, old, stored)
        else:
            found = _compare_rows(suite.name, metric_name, metric, cur, old, stored)
        verdicts += [_reported(v, metric, profiles.get(v["method"])) if stored.get(v["method"]) != v["method"]
                     else v for v in found]
        verdicts += _missing(suite.name, metric_name, mine, old, planned, stored)
    return verdicts


def _reported(verdict: dict[str, Any], metric: Metric, profile: dict | None) -> dict[str, Any]:
    """Under ``--as NAME``, another implementation's failing comparison of a quantity correct
    implementations differ in (declared so, or without a better direction): reported against NAME's
    baseline, not failed. Improvements stay improvements."""
    if verdict["verdict"] not in ("regression", "changed") or not other_implementation(profile):
        return verdict
    if metric.better is not None and not metric.implementation_specific:
        return verdict
    why = ("has no better direction" if metric.better is None
           else "differs between correct implementations by design")
    return {**verdict, "verdict": "n/a",
            "detail": f"reported, not judged: {verdict['method']} is another implementation of "
                      f"{judged_as(profile)}'s claim and {verdict['metric']} {why}; {verdict['detail']}"}


def _ident(suite: str, metric: str, case: str, method: str, seed: int, value: float, check: str) -> dict:
    return dict(suite=suite, case=case, method=method, seed=int(seed), metric=metric, check=check,
                kind="comparison", value=value)


def _judged(ident: dict, reference: float, j: Judgement) -> dict[str, Any]:
    return verdict_row(**ident, reference=reference, verdict=j.verdict, effect=j.effect, threshold=j.threshold,
                       detail=f"{j.test}: {j.detail}")


def _compare_rows(suite: str, name: str, metric: Metric, cur: pd.DataFrame, old: pd.DataFrame,
                  stored: dict[str, str]) -> list[dict]:
    rtol, atol, source = tolerance_of(metric)
    olds = {key: g for key, g in old.groupby(["case", "method", "seed"])}
    out = []
    for r in cur.itertuples(index=False):
        if r.status == "error":
            continue  # reported once by run_errors
        ident = _ident(suite, name, r.case, r.method, r.seed, r.value, "tolerance")
        if r.status == "n/a":  # the suite could not observe the method: nothing to compare
            out.append(verdict_row(**ident, verdict="n/a", detail=r.message))
            continue
        ref = olds.get((r.case, stored.get(r.method, r.method), int(r.seed)))
        if ref is None:
            out.append(verdict_row(**ident, verdict="new", detail="no baseline for this metric"))
            continue
        statuses = set(ref["status"])
        if r.status != "ok" or statuses != {"ok"}:
            same = statuses == {r.status}
            out.append(verdict_row(**ident, verdict="pass" if same else "regression",
                                   detail=f"status {r.status} vs baseline {', '.join(sorted(statuses))}: {r.message}"))
            continue
        reference = float(np.median(ref["value"].astype(float)))
        spread = _spread_note(ref)
        j = compare_tolerance(r.value, reference, rtol=rtol, atol=atol, better=metric.better, source=source)
        out.append(_judged(ident, reference, Judgement(j.verdict, j.test, j.effect, j.threshold, j.detail + spread)))
    return out


def _spread_note(ref: pd.DataFrame) -> str:
    if len(ref) < 2:
        return ""
    values = ref["value"].astype(float)
    return f"; baseline over {len(ref)} sources spans {values.min():.10g}..{values.max():.10g}"


def _compare_groups(suite: str, name: str, metric: Metric, cur: pd.DataFrame, old: pd.DataFrame,
                    stored: dict[str, str]) -> list[dict]:
    """Outcomes and timings: every seed (and sample) of a (case, method) against the baseline's."""
    out = []
    for (case, method), group in cur.groupby(["case", "method"], sort=False):
        if (group["status"] == "error").all():
            continue
        if (group["status"] == "n/a").all():  # the suite could not observe the method
            out.append(verdict_row(**_ident(suite, name, case, method, ALL_SEEDS if len(group) > 1 else
                                            group["seed"].iloc[0], math.nan, metric.kind),
                                   verdict="n/a", detail=str(group["message"].iloc[0])))
            continue
        ref = old[(old["case"] == case) & (old["method"] == stored.get(method, method))]
        values = judged_values(group, metric)
        ident = _ident(suite, name, case, method, ALL_SEEDS if len(group) > 1 else group["seed"].iloc[0],
                       float(np.mean(values)) if values else math.nan, metric.kind)
        if ref.empty:
            out.append(verdict_row(**ident, verdict="new", detail="no baseline for this metric"))
            continue
        base = judged_values(ref, metric)
        if metric.kind == "timing":
            j = compare_timing(values, base, better=metric.better or "lower")
        else:
            sources = ref["source"].nunique() if "source" in ref else 1
            note = f", {sources} machine(s) x {ref['seed'].nunique()} seed(s)"
            j = compare_outcomes(values, base, better=metric.better, resolution=metric.resolution,
                                 baseline_note=note)
        location = np.median if metric.kind == "outcome" else np.mean  # the outcome rule's robust location
        out.append(_judged(ident, float(location(base)) if base else math.nan, j))
    return out


def judged_values(frame: pd.DataFrame, metric: Metric) -> list[float]:
    """The values a group is judged on: every timing sample; for outcomes one value per seed and
    distinct result (machines that round alike repeat a seed's value, which is no new evidence)."""
    ok = frame[frame["status"] == "ok"]
    if metric.kind == "timing":
        return [s for _, r in ok.iterrows() for s in samples_of(r)]
    return [float(v) for v in ok.drop_duplicates(["seed", "value"])["value"]]


def _missing(suite: str, metric: str, mine: pd.DataFrame, old: pd.DataFrame,
             planned: Iterable[tuple], stored: dict[str, str]) -> list[dict]:
    """Baseline rows of planned cases that produced neither this metric nor an error (a planned
    label's baseline rows are those of ``stored[label]``: NAME's under ``--as NAME``)."""
    planned_keys = {(c, m, int(s)) for (su, c, m, s) in planned if su == suite}
    labels: dict[tuple, list[str]] = {}
    for case, label, seed in sorted(planned_keys):
        labels.setdefault((case, stored.get(label, label), seed), []).append(label)
    present = {(r.case, r.method, int(r.seed)) for r in mine.itertuples(index=False)
               if r.metric == metric or r.status == "error"}
    errored = {(r.case, r.method) for r in mine.itertuples(index=False) if r.status == "error"}
    out, seen = [], set()
    for r in old.itertuples(index=False):
        summary = r.case == "summary"
        if summary and not planned_keys:
            continue
        for label in [r.method] if summary else labels.get((r.case, r.method, int(r.seed)), []):
            key = (r.case, label, int(r.seed))
            if key in seen or key in present or (r.case, label) in errored:
                continue
            seen.add(key)
            out.append(verdict_row(suite=suite, case=r.case, method=label, seed=r.seed, metric=metric,
                                   check="baseline", kind="comparison", verdict="missing",
                                   reference=r.value, detail="the baseline has this metric; the run has not"))
    return out


def not_run(planned: Iterable[tuple], completed: set[tuple]) -> list[dict[str, Any]]:
    """One ``missing`` verdict per planned case that never finished (an interrupted run)."""
    return [verdict_row(suite=s, case=c, method=m, seed=seed, metric="", check="run", kind="run",
                        verdict="missing", detail="planned but never ran (the run was interrupted: "
                                                  "--resume continues it)")
            for s, c, m, seed in planned if (s, c, m, int(seed)) not in completed]


def judge(suites: Sequence[Suite], rows: pd.DataFrame,
          baseline_for: Callable[[str], pd.DataFrame | None],
          planned: Iterable[Sequence] = (), profiles: dict[str, dict] | None = None,
          completed: set[tuple] | None = None) -> pd.DataFrame:
    """All verdicts of a run: errors, cases that never ran, bound checks, comparisons with
    ``baseline_for(suite)``.

    ``profiles``: method label -> claim and tags (the run manifest's ``methods``);
    ``completed``: the keys of the cases that finished (``None``: not known)."""
    planned = [tuple(p) for p in planned]
    verdicts = run_errors(rows)
    if completed is not None:
        verdicts += not_run(planned, completed)
    for suite in suites:
        verdicts += evaluate_checks(suite, rows, profiles)
        verdicts += compare_suite(suite, rows, baseline_for(suite.name), planned, profiles=profiles)
    return to_frame(verdicts)


def stored_baselines(root, device_class: str, preset: str) -> Callable[[str], pd.DataFrame | None]:
    """``baseline_for`` reading ``baselines/<device class>/<suite>.<preset>.json`` (validated)."""
    from .store import load_baseline
    return lambda suite: load_baseline(root, device_class, suite, preset)


def results_as_baseline(rows: pd.DataFrame) -> Callable[[str], pd.DataFrame | None]:
    """``baseline_for`` taking another run's rows (``lipbench compare A B``)."""
    def lookup(suite: str) -> pd.DataFrame | None:
        mine = rows[rows["suite"] == suite]
        return mine.assign(source="A") if len(mine) else None
    return lookup
