"""Bound checks and comparison rules produce the verdicts they promise, and fail when they must."""
import json
import math

import pandas as pd
import pytest

from harness.baselines import compare_directional, compare_exact, compare_noisy, compare_suite, evaluate_checks, passed
from harness.baselines.verdict import to_frame
from harness.results import Measurement, make_row, to_frame as rows_frame
from harness.suite import Suite

SUITE = Suite.from_dict({
    "name": "s", "description": "d", "kind": "k", "seeds": [0], "presets": {"ci": {}, "full": {}},
    "metrics": {"norm": {"unit": "1"}, "alpha": {"unit": "1"}, "ratio": {"unit": "1"}, "t": {"unit": "ms"}},
    "checks": [
        {"name": "unit_norm", "metric": "norm", "assert": "abs(value - 1) <= 1e-6", "cite": "Miyato 2018 §2.1"},
        {"name": "alpha_band", "metric": "ratio", "when": "precondition", "assert": "1 <= value <= alpha",
         "cite": "Lin 2021 §4"},
        {"name": "only_big", "metric": "norm", "where": "size >= 8", "assert": "value < 2", "cite": "x"},
    ],
    "compare": [{"metric": "norm", "rule": "exact", "rtol": 1e-6},
                {"metric": "t", "rule": "noisy", "better": "lower", "alpha": 0.01, "min_effect": 0.05}],
})


def rows(norm=1.0, ratio=1.5, precondition=1, size=8, case="c1", t_samples=None):
    params = json.dumps({"size": size})
    ms = [Measurement("norm", norm), Measurement("ratio", ratio), Measurement("alpha", 2.0),
          Measurement("precondition", precondition)]
    if t_samples is not None:
        ms.append(Measurement("t", float(pd.Series(t_samples).median()), "ms", samples=t_samples))
    return rows_frame([make_row("s", case, "sn_w", 0, "cpu", params, m) for m in ms])


def by_check(verdicts):
    return {(v["check"], v["case"]): v["verdict"] for v in verdicts}


def test_checks_pass_on_a_correct_method():
    got = by_check(evaluate_checks(SUITE, rows()))
    assert got == {("unit_norm", "c1"): "pass", ("alpha_band", "c1"): "pass", ("only_big", "c1"): "pass"}


def test_checks_fail_on_a_broken_method():
    """sn_w scaled by 1.3 violates the unit-norm claim; a ratio above alpha violates the band."""
    got = by_check(evaluate_checks(SUITE, rows(norm=1.3, ratio=2.5)))
    assert got[("unit_norm", "c1")] == "violation"
    assert got[("alpha_band", "c1")] == "violation"


def test_false_precondition_is_reported_not_passed():
    verdicts = evaluate_checks(SUITE, rows(ratio=0.5, precondition=0))
    band = [v for v in verdicts if v["check"] == "alpha_band"][0]
    assert band["verdict"] == "n/a" and "precondition" in band["detail"]


def test_where_scope_skips_rows_outside_it():
    assert ("only_big", "c1") not in by_check(evaluate_checks(SUITE, rows(size=4)))


def test_violation_detail_shows_the_bound():
    verdict = [v for v in evaluate_checks(SUITE, rows(norm=1.3)) if v["check"] == "unit_norm"][0]
    assert "is violated" in verdict["detail"] and "Miyato" in verdict["detail"]


def test_exact_rule():
    assert compare_exact(1.0, 1.0 + 1e-9, rtol=1e-6)[0] == "pass"
    assert compare_exact(1.0, 1.01, rtol=1e-6)[0] == "regression"


def test_directional_rule():
    assert compare_directional(1.2, 1.0, "lower", threshold=0.1)[0] == "regression"
    assert compare_directional(0.8, 1.0, "lower", threshold=0.1)[0] == "improvement"
    assert compare_directional(1.05, 1.0, "lower", threshold=0.1)[0] == "pass"
    assert compare_directional(0.8, 1.0, "higher", threshold=0.1)[0] == "regression"


def test_noisy_rule_needs_significance_and_effect():
    base = [100, 101, 99, 100, 102, 98, 100, 101]
    slower = [x * 1.2 for x in base]
    tiny = [x * 1.01 for x in base]
    assert compare_noisy(slower, base, "lower")[0] == "regression"
    assert compare_noisy([x / 1.2 for x in base], base, "lower")[0] == "improvement"
    assert compare_noisy(tiny, base, "lower")[0] == "pass"  # significant but below min effect
    noisy = [100, 140, 70, 120, 90, 130, 80, 110]
    assert compare_noisy(noisy, base, "lower")[0] == "pass"  # no significant shift


def test_comparison_verdicts_against_a_baseline():
    base = rows(t_samples=[10.0, 10.1, 9.9, 10.0, 10.2, 9.8])
    same = compare_suite(SUITE, rows(t_samples=[10.0, 10.1, 9.9, 10.0, 10.1, 9.9]), base, [("s", "c1", "sn_w", 0)])
    assert {v["verdict"] for v in same} == {"pass"}
    worse = compare_suite(SUITE, rows(norm=1.3, t_samples=[13.0, 13.1, 12.9, 13.0, 13.2, 12.8]), base,
                          [("s", "c1", "sn_w", 0)])
    assert {v["metric"]: v["verdict"] for v in worse} == {"norm": "regression", "t": "regression"}


def test_new_and_missing():
    base = rows(case="c1")
    current = rows(case="c2")
    planned = [("s", "c1", "sn_w", 0), ("s", "c2", "sn_w", 0)]
    verdicts = compare_suite(SUITE, current, base, planned)
    got = {(v["case"], v["verdict"]) for v in verdicts if v["metric"] == "norm"}
    assert got == {("c2", "new"), ("c1", "missing")}
    assert not passed(to_frame(verdicts))


def test_non_finite_value_becomes_an_error_row():
    row = make_row("s", "c", "m", 0, "cpu", "{}", Measurement("norm", math.nan))
    assert row["status"] == "error" and "not finite" in row["message"]


@pytest.mark.parametrize("verdict, ok", [("pass", True), ("improvement", True), ("new", True), ("n/a", True),
                                         ("violation", False), ("regression", False), ("missing", False),
                                         ("error", False)])
def test_passed(verdict, ok):
    frame = to_frame([{"suite": "s", "case": "c", "method": "m", "seed": 0, "metric": "x", "check": "c",
                       "kind": "check", "verdict": verdict, "value": 1.0, "reference": 1.0, "detail": ""}])
    assert passed(frame) is ok
