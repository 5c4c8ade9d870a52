"""Bound checks and comparison rules produce the verdicts they promise, and fail when they must."""
import json
import math

import numpy as np
import pandas as pd
import pytest

from harness.baselines import compare_outcomes, compare_suite, compare_timing, compare_tolerance, evaluate_checks, passed
from harness.runners.spec import Declarations, Metric
from harness.baselines.verdict import to_frame
from harness.results import Measurement, make_row, to_frame as rows_frame
from harness.suite import Suite

SUITE = Suite.from_dict({
    "name": "s", "description": "d", "kind": "k", "seeds": [0], "presets": {"ci": {}, "full": {}},
    "checks": [
        {"name": "unit_norm", "metric": "norm", "assert": "abs(value - 1) <= 1e-6", "cite": "Miyato 2018 §2.1"},
        {"name": "alpha_band", "metric": "ratio", "when": "precondition", "assert": "1 <= value <= alpha",
         "cite": "Lin 2021 §4"},
        {"name": "only_big", "metric": "norm", "where": "size >= 8", "assert": "value < 2", "cite": "x"},
    ],
})
DECLARED = Declarations(metrics={
    "norm": Metric("exact", "a norm"), "alpha": Metric("exact", "alpha"), "ratio": Metric("info", "ratio"),
    "precondition": Metric("info", "flag"), "t": Metric("timing", "a time", "ms", better="lower"),
    "quality": Metric("outcome", "a training outcome", better="higher", resolution=0.01)})


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


def test_tolerance_rule():
    assert compare_tolerance(1.0, 1.0 + 1e-9, rtol=1e-6).verdict == "pass"
    assert compare_tolerance(1.0, 1.01, rtol=1e-6).verdict == "changed"  # no better direction: any change
    assert compare_tolerance(1.01, 1.0, rtol=1e-6).verdict == "changed"  # ... and never called worse
    assert compare_tolerance(0.5, 1.0, rtol=1e-6, better="lower").verdict == "improvement"
    assert compare_tolerance(1.5, 1.0, rtol=1e-6, better="lower").verdict == "regression"
    assert compare_tolerance(2e-8, 7e-8, rtol=2e-5, atol=2e-5, better="lower").verdict == "pass"  # float32 noise


def test_outcome_rule_uses_the_baselines_spread():
    rng = np.random.default_rng(0)
    base = list(1 + 0.1 * rng.standard_normal(15))  # 5 machines x 3 seeds
    same = list(1 + 0.1 * rng.standard_normal(3))
    assert compare_outcomes(same, base, better="higher").verdict == "pass"
    assert compare_outcomes([v - 0.5 for v in same], base, better="higher").verdict == "regression"
    assert compare_outcomes([v + 0.5 for v in same], base, better="higher").verdict == "improvement"
    assert compare_outcomes([v - 0.1 for v in same], base, better="higher").verdict == "pass"  # one sd: noise
    j = compare_outcomes([v - 0.5 for v in same], base, better="higher")
    assert "s.e." in j.detail and "15 value(s)" in j.detail and j.effect > 0


def test_outcome_rule_one_outlying_seed_is_not_a_regression_but_a_shift_is():
    rng = np.random.default_rng(1)
    base = list(1.8 + 0.3 * rng.standard_normal(12))
    one_off = [1.6, 8.4, 1.9]  # one seed diverged (measured on a simulated machine, rules.py)
    assert compare_outcomes(one_off, base, better="lower").verdict == "pass"
    assert np.mean(one_off) - np.mean(base) > 4 * 0.3  # the mean alone would have called it
    shifted = [v + 1.5 for v in (1.6, 1.8, 1.9)]
    assert compare_outcomes(shifted, base, better="lower").verdict == "regression"
    assert "median" in compare_outcomes(shifted, base, better="lower").detail


def test_outcome_rule_resolution_when_the_baseline_does_not_vary():
    base = [8.0] * 12
    assert compare_outcomes([7, 8, 8], base, better="higher", resolution=1).verdict == "pass"
    assert compare_outcomes([6, 6, 7], base, better="higher", resolution=1).verdict == "regression"


def test_timing_rule_needs_significance_and_effect():
    base = [100, 101, 99, 100, 102, 98, 100, 101]
    slower = [x * 1.2 for x in base]
    tiny = [x * 1.01 for x in base]
    assert compare_timing(slower, base).verdict == "regression"
    assert compare_timing([x / 1.2 for x in base], base).verdict == "improvement"
    assert compare_timing(tiny, base).verdict == "pass"  # significant but below min effect
    noisy = [100, 140, 70, 120, 90, 130, 80, 110]
    assert compare_timing(noisy, base).verdict == "pass"  # no significant shift


def with_source(frame):
    return frame.assign(source="m1")


def test_comparison_verdicts_against_a_baseline():
    base = with_source(rows(t_samples=[10.0, 10.1, 9.9, 10.0, 10.2, 9.8]))
    planned = [("s", "c1", "sn_w", 0)]
    same = compare_suite(SUITE, rows(t_samples=[10.0, 10.1, 9.9, 10.0, 10.1, 9.9]), base, planned, DECLARED)
    assert {v["verdict"] for v in same} == {"pass"}
    worse = compare_suite(SUITE, rows(norm=1.3, t_samples=[13.0, 13.1, 12.9, 13.0, 13.2, 12.8]), base,
                          planned, DECLARED)
    assert {v["metric"]: v["verdict"] for v in worse} == {"norm": "changed", "t": "regression", "alpha": "pass"}


def test_outcomes_are_judged_over_seeds_not_seed_by_seed():
    def quality(values, source=None):
        frame = rows_frame([make_row("s", "c1", "sn_w", seed, "cpu", "{}", Measurement("quality", v))
                            for seed, v in enumerate(values)])
        return frame.assign(source=source) if source else frame
    base = pd.concat([quality([0.50, 0.62, 0.55], "m1"), quality([0.60, 0.52, 0.58], "m2")])
    shuffled = compare_suite(SUITE, quality([0.58, 0.51, 0.61]), base, [], DECLARED)  # seeds land elsewhere
    assert [v["verdict"] for v in shuffled] == ["pass"] and shuffled[0]["seed"] == -1
    broken = compare_suite(SUITE, quality([0.10, 0.12, 0.08]), base, [], DECLARED)
    assert [v["verdict"] for v in broken] == ["regression"]


def test_new_and_missing():
    base = with_source(rows(case="c1"))
    current = rows(case="c2")
    planned = [("s", "c1", "sn_w", 0), ("s", "c2", "sn_w", 0)]
    verdicts = compare_suite(SUITE, current, base, planned, DECLARED)
    got = {(v["case"], v["verdict"]) for v in verdicts if v["metric"] == "norm"}
    assert got == {("c2", "new"), ("c1", "missing")}
    assert not passed(to_frame(verdicts))


def test_non_finite_value_becomes_an_error_row():
    row = make_row("s", "c", "m", 0, "cpu", "{}", Measurement("norm", math.nan))
    assert row["status"] == "error" and "not finite" in row["message"]


@pytest.mark.parametrize("verdict, ok", [("pass", True), ("improvement", True), ("new", True), ("n/a", True),
                                         ("violation", False), ("regression", False), ("changed", False),
                                         ("missing", False),
                                         ("error", False)])
def test_passed(verdict, ok):
    frame = to_frame([{"suite": "s", "case": "c", "method": "m", "seed": 0, "metric": "x", "check": "c",
                       "kind": "check", "verdict": verdict, "value": 1.0, "reference": 1.0, "detail": ""}])
    assert passed(frame) is ok


def test_one_outlying_baseline_value_cannot_widen_the_outcome_threshold():
    rng = np.random.default_rng(2)
    base = list(1 + 0.1 * rng.standard_normal(11))  # 11 seed x machine values
    regressed = [1.6, 1.65, 1.7]
    clean = compare_outcomes(regressed, base, better="lower")
    polluted = compare_outcomes(regressed, base + [1e6], better="lower")  # one machine's seed far out
    assert clean.verdict == polluted.verdict == "regression"
    assert polluted.threshold <= 1.5 * clean.threshold
    naive = 4 * np.std(base + [1e6], ddof=1) * np.sqrt(1 / 3 + 1 / 12)  # what a mean and sd gave: 7.5e5
    assert naive > 1e5 > polluted.threshold


def test_a_value_far_out_counts_as_the_largest_ordinary_value_in_the_robust_spread():
    from harness.baselines.rules import robust_location_spread
    rng = np.random.default_rng(3)
    base = list(rng.standard_normal(12))
    for i in range(len(base)):
        for far, ordinary in ((1e6, max(base)), (-1e6, min(base))):
            moved = base[:i] + [far] + base[i + 1:]
            plain = base[:i] + [ordinary] + base[i + 1:]
            assert robust_location_spread(moved) == robust_location_spread(plain)
    assert robust_location_spread([1.0, 5.0, 9.0])[1:] == (0.0, 0)  # too few values for a spread


def test_the_minimum_detectable_effect_of_each_compared_metric():
    from harness.baselines.rules import detectable_effects
    verdicts = to_frame([
        dict(suite="s", case="c", method="m", seed=0, metric="fid", check="outcome", kind="comparison",
             verdict="pass", value=1.0, reference=2.0, effect=0.0, threshold=0.2, detail=""),
        dict(suite="s", case="d", method="m", seed=0, metric="fid", check="outcome", kind="comparison",
             verdict="pass", value=1.0, reference=1.0, effect=0.0, threshold=0.3, detail=""),
        dict(suite="s", case="c", method="m", seed=0, metric="ratio", check="timing", kind="comparison",
             verdict="pass", value=1.0, reference=1.0, effect=0.0, threshold=0.15, detail=""),
    ])
    effects = detectable_effects(verdicts)
    assert effects[("s", "fid")] == "minimum detectable effect 20% of the baseline (median over 2 comparison(s), 10%-30%)"
    assert effects[("s", "ratio")] == "minimum detectable effect 15% of the baseline (median over 1 comparison(s))"
