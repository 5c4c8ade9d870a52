"""The verdicts of ``lipbench compare A B``: B judged against A, each metric by its declared kind
(:mod:`harness.runners.spec`) and by whether the case is defined alike on both sides (:mod:`.sides`).

============  =====================================  ===============================================
kind          settings identical                     settings differ
============  =====================================  ===============================================
exact,        per seed both ran: tolerance           ``n/a``: not comparable (settings differ: ...)
float32,      (:func:`~harness.baselines.rules.
identity      compare_tolerance`)
monte_carlo   per seed both ran: tolerance (fixed    only in sampling settings (a sample size, an
              seeds: a deterministic computation);   interval's level): the confidence interval of
              no seed in common: by intervals        the difference (:func:`~harness.baselines.rules.
                                                     compare_estimates`); otherwise ``n/a``
outcome       B's seeds against A's seeds (the       ``n/a``
              robust outcome rule)
timing        Mann-Whitney U and minimum effect      only in sampling settings (timed rounds): the
                                                     same; otherwise ``n/a``
============  =====================================  ===============================================

A method, case or metric A has and B lacks is ``missing`` (failing: B does not cover it), and
so is a case B planned and never finished; one only B has is ``new``. B's errors are
``error``; A's errored cases are ``n/a`` (nothing to compare with). Checks are compared by
:mod:`.checks`.
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

from harness.baselines.compare import ALL_SEEDS, judged_values, not_run, run_errors, tolerance_of
from harness.baselines.rules import Estimate, compare_estimates, compare_outcomes, compare_timing, compare_tolerance
from harness.baselines.verdict import to_frame, verdict_row
from harness.runners import runner_for
from harness.runners.spec import FLOAT64_RTOL, Declarations, Metric

from .sides import SUMMARY, Definition, Side, suite_definitions


def compare_sides(a: Side, b: Side) -> pd.DataFrame:
    """Every verdict of B against A (verdict rows: ``value`` is B's, ``reference`` A's)."""
    verdicts = run_errors(b.rows) + not_run(b.unfinished, completed=set())
    pending: list[tuple[dict, Estimate, Estimate, Metric]] = []
    for suite in sorted(set(a.rows["suite"]) | set(b.rows["suite"])):
        kind = b.kinds.get(suite) or a.kinds.get(suite)
        if suite not in set(b.rows["suite"]):
            verdicts.append(_row(suite, "", "", ALL_SEEDS, "", "suites", "missing", detail="suite run in A only"))
            continue
        if suite not in set(a.rows["suite"]):
            verdicts.append(_row(suite, "", "", ALL_SEEDS, "", "suites", "new", detail="suite run in B only"))
            continue
        verdicts += _coverage(a, b, suite)
        verdicts += _a_errors(a, b, suite)
        if kind is None:  # no fingerprint and no suite file names its runner
            verdicts.append(_row(suite, "", "", ALL_SEEDS, "", "suites", "n/a",
                                 detail="not compared: no record or suite file names the suite's runner"))
            continue
        declarations = runner_for(kind).declarations
        found, estimates = _compare_suite(a, b, suite, declarations)
        verdicts += found
        pending += estimates
    for ident, new, old, metric in pending:  # held together: Bonferroni over all of them
        j = compare_estimates(new, old, better=metric.better, comparisons=len(pending),
                              floor=FLOAT64_RTOL * abs(old.value))  # never finer than float64 rounding
        verdicts.append(verdict_row(**ident, value=new.value, reference=old.value, verdict=j.verdict,
                                    effect=j.effect, threshold=j.threshold, detail=f"{j.test}: {j.detail}"))
    return to_frame(verdicts)


def _row(suite: str, case: str, method: str, seed: int, metric: str, check: str, verdict: str,
         **extra: Any) -> dict[str, Any]:
    return verdict_row(suite=suite, case=case, method=method, seed=seed, metric=metric, check=check,
                       kind="comparison", verdict=verdict, **extra)


def _coverage(a: Side, b: Side, suite: str) -> list[dict]:
    """Methods and cases only one side ran."""
    out = [_row(suite, "", m, ALL_SEEDS, "", "methods", "missing", detail=f"method {m} ran in A only")
           for m in sorted(a.methods(suite) - b.methods(suite))]
    out += [_row(suite, "", m, ALL_SEEDS, "", "methods", "new", detail=f"method {m} ran in B only")
            for m in sorted(b.methods(suite) - a.methods(suite))]
    unfinished = {c for (s, c, _, _) in b.unfinished if s == suite}  # reported as never run
    out += [_row(suite, c, "", ALL_SEEDS, "", "cases", "missing", detail="case run in A only")
            for c in sorted(a.cases(suite) - b.cases(suite) - unfinished)]
    out += [_row(suite, c, "", ALL_SEEDS, "", "cases", "new", detail="case run in B only")
            for c in sorted(b.cases(suite) - a.cases(suite))]
    return out


def _a_errors(a: Side, b: Side, suite: str) -> list[dict]:
    """A's errored (case, method): nothing to compare B's with."""
    bad = a.rows[(a.rows["suite"] == suite) & (a.rows["status"] == "error")]
    return [_row(suite, case, method, ALL_SEEDS, "", "run", "n/a",
                 detail=f"A errored here, nothing to compare with: {str(g['message'].iloc[0])[-200:]}")
            for (case, method), g in bad.groupby(["case", "method"], sort=True)]


def _compare_suite(a: Side, b: Side, suite: str, declarations: Declarations):
    rows_a = a.rows[(a.rows["suite"] == suite) & (a.rows["status"] != "error")]
    rows_b = b.rows[(b.rows["suite"] == suite) & (b.rows["status"] != "error")]
    errored_b = set(zip(*[b.rows.loc[(b.rows["suite"] == suite) & (b.rows["status"] == "error"), c]
                          for c in ("case", "method")]))
    both_methods = a.methods(suite) & b.methods(suite) | {""}
    definitions = suite_definitions(a, b, suite)
    groups_a = {k: g for k, g in rows_a.groupby(["case", "method", "metric"], sort=False)}
    groups_b = {k: g for k, g in rows_b.groupby(["case", "method", "metric"], sort=False)}
    verdicts: list[dict] = []
    estimates: list[tuple[dict, Estimate, Estimate, Metric]] = []
    for key in sorted(set(groups_a) | set(groups_b)):
        case, method, name = key
        metric = declarations.metric(name)
        if metric is None or metric.kind == "info" or not name or case not in definitions:
            continue  # undeclared, never compared, or a case one side lacks (reported once)
        if method not in both_methods and case != SUMMARY:
            continue  # a method one side lacks (reported once)
        old, new = groups_a.get(key), groups_b.get(key)
        ident = dict(suite=suite, case=case, method=method, metric=name, kind="comparison")
        if new is None:
            if (case, method) not in errored_b:
                verdicts.append(_row(suite, case, method, ALL_SEEDS, name, "metrics", "missing",
                                     reference=_mean(old), detail="A has this metric; B has not"))
            continue
        if old is None:
            verdicts.append(_row(suite, case, method, ALL_SEEDS, name, "metrics", "new", value=_mean(new),
                                 detail="B has this metric; A has not"))
            continue
        found, estimate = _compare_metric(ident, metric, definitions[case], old, new, a, b, declarations)
        verdicts += found
        if estimate is not None:
            estimates.append(estimate)
    return verdicts, estimates


def _compare_metric(ident: dict, metric: Metric, how: Definition, old: pd.DataFrame, new: pd.DataFrame,
                    a: Side, b: Side, declarations: Declarations):
    """The verdicts of one (case, method, metric), or the estimates to judge together."""
    common = sorted(set(old["seed"]) & set(new["seed"]))
    same = how.state in ("same", "unknown")
    unknown = "; settings not recorded in one run (an older lipbench): compared as if the same" \
        if how.state == "unknown" else ""
    if metric.kind in ("exact", "float32", "identity") or (metric.kind == "monte_carlo" and same and common):
        if not same:
            return [_not_comparable(ident, how, old, new)], None
        if not common:
            return [verdict_row(**ident, seed=ALL_SEEDS, check="tolerance", verdict="n/a", value=_mean(new),
                                reference=_mean(old), detail="no seed in common: nothing to compare")], None
        return [_tolerance(ident, metric, old, new, seed, unknown) for seed in common], None
    if metric.kind == "monte_carlo":
        if how.state == "differ":
            return [_not_comparable(ident, how, old, new)], None
        pair = [_estimate(side, g, ident, declarations) for side, g in ((b, new), (a, old))]
        if any(isinstance(p, str) for p in pair):
            why = "; ".join(f"{side}: {p}" for side, p in zip("BA", pair) if isinstance(p, str))
            return [verdict_row(**ident, seed=ALL_SEEDS, check="monte_carlo", verdict="n/a", value=_mean(new),
                                reference=_mean(old), detail=f"not comparable ({why})")], None
        return [], ({**ident, "seed": ALL_SEEDS, "check": "monte_carlo"}, pair[0], pair[1], metric)
    if not same and not (metric.kind == "timing" and how.state == "sampling"):
        return [_not_comparable(ident, how, old, new)], None
    values_new, values_old = judged_values(new, metric), judged_values(old, metric)
    seed = ALL_SEEDS if new["seed"].nunique() > 1 else int(new["seed"].iloc[0])
    if not values_new or not values_old:
        statuses = f"B: {', '.join(sorted(set(new['status'])))}, A: {', '.join(sorted(set(old['status'])))}"
        same_status = set(new["status"]) == set(old["status"])
        return [verdict_row(**ident, seed=seed, check=metric.kind, verdict="pass" if same_status else "regression",
                            detail=f"no ok value to compare ({statuses})")], None
    if metric.kind == "timing":
        j = compare_timing(values_new, values_old, better=metric.better or "lower")
        reference = float(np.mean(values_old))
    else:
        j = compare_outcomes(values_new, values_old, better=metric.better, resolution=metric.resolution,
                             baseline_note=f", A's {len(values_old)} seed value(s)")
        reference = float(np.median(values_old))
    return [verdict_row(**ident, seed=seed, check=metric.kind, value=float(np.mean(values_new)), reference=reference,
                        verdict=j.verdict, effect=j.effect, threshold=j.threshold,
                        detail=f"{j.test}: {j.detail}{unknown}")], None


def _not_comparable(ident: dict, how: Definition, old: pd.DataFrame, new: pd.DataFrame) -> dict:
    return verdict_row(**ident, seed=ALL_SEEDS, check="settings", verdict="n/a", value=_mean(new),
                       reference=_mean(old), detail=f"not comparable (settings differ: {how.why})")


def _tolerance(ident: dict, metric: Metric, old: pd.DataFrame, new: pd.DataFrame, seed: int, note: str) -> dict:
    mine, ref = new[new["seed"] == seed], old[old["seed"] == seed]
    value, reference = float(mine["value"].iloc[0]), float(ref["value"].iloc[0])
    status, ref_status = str(mine["status"].iloc[0]), str(ref["status"].iloc[0])
    base = dict(**ident, seed=int(seed), check="tolerance", value=value, reference=reference)
    if status != "ok" or ref_status != "ok":
        return verdict_row(**base, verdict="pass" if status == ref_status else "regression",
                           detail=f"status {status} vs A's {ref_status}: {mine['message'].iloc[0]}")
    rtol, atol, source = tolerance_of(metric)
    j = compare_tolerance(value, reference, rtol=rtol, atol=atol, better=metric.better, source=source,
                          against="A")
    return verdict_row(**base, verdict=j.verdict, effect=j.effect, threshold=j.threshold,
                       detail=f"{j.test}: {j.detail}{note}")


def _estimate(side: Side, group: pd.DataFrame, ident: dict, declarations: Declarations) -> Estimate | str:
    """One side's estimate over its seeds, with its standard error: combined from the standard errors
    the runner reports (``sqrt(sum se_i²)/k`` for the mean of ``k`` independent seeds), else the seeds'
    spread (``sd/sqrt(k)``, ``k - 1`` degrees of freedom); a reason when there is neither."""
    ok = group[group["status"] == "ok"]
    values = ok["value"].astype(float).to_numpy()
    if values.size == 0:
        return "no ok value"
    k = values.size
    se_name = declarations.standard_error_of(ident["metric"])
    if se_name is not None:
        rows = side.rows
        reported = rows[(rows["suite"] == ident["suite"]) & (rows["case"] == ident["case"])
                        & (rows["method"] == ident["method"]) & (rows["metric"] == se_name)
                        & (rows["status"] == "ok")]
        errors = {int(r.seed): float(r.value) for r in reported.itertuples(index=False)}
        ses = [errors.get(int(s), math.nan) for s in ok["seed"]]
        if all(math.isfinite(x) for x in ses):
            return Estimate(float(values.mean()), math.sqrt(sum(x * x for x in ses)) / k, math.inf,
                            f" ({k} seed(s), reported s.e.)")
    if k >= 2:
        return Estimate(float(values.mean()), float(values.std(ddof=1)) / math.sqrt(k), k - 1,
                        f" ({k} seeds, s.e. from the seeds)")
    return "one value and no standard error reported: run two or more seeds"


def _mean(group: pd.DataFrame | None) -> float:
    if group is None:
        return math.nan
    ok = group[group["status"] == "ok"]["value"].astype(float)
    return float(ok.mean()) if len(ok) else math.nan
