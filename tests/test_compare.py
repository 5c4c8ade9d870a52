"""``lipbench compare A B``: differences first, each metric by its kind, at most 30 terminal lines.

Two real small thm2_variance runs that differ only in their Monte Carlo sample size give no
failing verdict; the same runs with one case's variance doubled fail on that case only.
Synthetic results folders (written with the ResultsDir API) cover training outcomes, missing
methods, settings that differ and the terminal's line budget.
"""
from __future__ import annotations

import json
import math
from pathlib import Path

import pandas as pd
import pytest
import yaml

from harness.baselines.rules import Estimate, compare_estimates
from harness.cli.main import main
from harness.compare import MAX_LINES, compare_runs, read_side
from harness.results import Measurement, ResultsDir, make_row
from harness.runners import runner_for
from harness.runners.spec import Declarations, Metric

FAILING = {"regression", "changed", "missing", "error"}


# --- real runs ----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Runs of a small thm2_variance suite: 60 and 90 matrices per shape with seeds 0 and 1, and
    60 with seeds 2 and 3."""
    root = tmp_path_factory.mktemp("compare")
    suites = root / "suites"
    suites.mkdir()
    data = {"name": "mc", "description": "small thm2_variance", "kind": "thm2_variance",
            "matrix": {"m": [4, 16], "n": [4, 32], "distribution": ["gaussian", "uniform"]},
            "seeds": [0], "settings": {"matrices": 200}, "presets": {"ci": {}, "full": {}},
            "checks": [{"name": "thm2_upper_bound", "metric": "variance_ci_low", "assert": "value <= 1 / max(m, n)",
                        "cite": "Lin et al. 2021, Thm 2"}]}
    (suites / "mc.yaml").write_text(yaml.safe_dump(data, sort_keys=False))
    out = {}
    for name, count, seeds in (("a", 60, "0-1"), ("b", 90, "0-1"), ("other_seeds", 60, "2-3")):
        out[name] = root / name
        assert main(["run", "mc", "--suites-dir", str(suites), "--no-isolation", "--out", str(out[name]),
                     "--set", f"mc.matrices={count}", "--seeds", seeds]) == 0
    return root, suites, out


def _compare(capsys, a: Path, b: Path, suites: Path, report: Path, *extra) -> tuple[int, list[str], pd.DataFrame]:
    capsys.readouterr()
    code = main(["compare", str(a), str(b), "--suites-dir", str(suites), "--report", str(report), *map(str, extra)])
    lines = capsys.readouterr().out.splitlines()
    side = [read_side(ResultsDir(p), x, lambda r, n: {}) for p, x in ((a, "A"), (b, "B"))]
    return code, lines, compare_runs(*side).verdicts


def test_a_monte_carlo_sample_size_change_gives_no_failing_verdict(runs, capsys, tmp_path):
    root, suites, out = runs
    report = tmp_path / "r.html"
    code, lines, verdicts = _compare(capsys, out["a"], out["b"], suites, report)
    assert code == 0, "\n".join(lines)
    assert not verdicts["verdict"].isin(FAILING).any()
    # the settings that differ come first, right after the counts
    assert lines[0].startswith(f"lipbench compare {out['a']} -> {out['b']}: PASS")
    assert lines[1].startswith("differences") and "setting matrices (sampling)" in lines[2] and "60 → 90" in lines[2]
    assert len(lines) <= MAX_LINES
    # Monte Carlo estimates are compared by intervals; exact ones are not comparable
    variance = verdicts[verdicts["metric"] == "variance"]
    assert len(variance) == 8 and set(variance["verdict"]) == {"pass"}
    assert variance["detail"].str.contains("confidence interval").all()
    assert variance["detail"].str.contains("reported s.e.").all()
    bound = verdicts[verdicts["metric"] == "variance_ci_low"]
    assert set(bound["verdict"]) == {"n/a"}
    assert bound["detail"].str.startswith("not comparable (settings differ: matrices 60→90)").all()
    # the summary's slopes carry their regression standard errors
    slopes = verdicts[verdicts["metric"].str.startswith("loglog_slope_")]
    assert set(slopes["verdict"]) == {"pass"} and slopes["detail"].str.contains("confidence interval").all()


def test_other_seeds_give_no_failing_verdict(runs, capsys, tmp_path):
    root, suites, out = runs
    code, lines, verdicts = _compare(capsys, out["a"], out["other_seeds"], suites, tmp_path / "r.html")
    assert code == 0, "\n".join(lines)
    assert lines[2] == "  mc seeds: [0, 1] → [2, 3]"
    # estimates from other seeds are other samples: compared by intervals, the summary's fits too
    for metric in ("variance", "loglog_slope_gaussian"):
        mine = verdicts[verdicts["metric"] == metric]
        assert len(mine) and set(mine["verdict"]) == {"pass"} and set(mine["check"]) == {"monte_carlo"}
    exact = verdicts[verdicts["metric"] == "variance_ci_low"]
    assert set(exact["verdict"]) == {"n/a"} and set(exact["detail"]) == {"no seed in common: nothing to compare"}


def test_a_doubled_variance_is_caught_and_named(runs, capsys, tmp_path):
    root, suites, out = runs
    broken = tmp_path / "broken"
    _copy(out["b"], broken)
    _edit(broken, lambda row, key: row["value"] * 2 if key[1] == "m=16,n=32,distribution=uniform"
          and row["metric"] == "variance" else row["value"])
    code, lines, verdicts = _compare(capsys, out["a"], broken, suites, tmp_path / "r.html")
    assert code == 1
    failing = verdicts[verdicts["verdict"].isin(FAILING)]
    assert list(zip(failing["case"], failing["metric"], failing["verdict"])) == [
        ("m=16,n=32,distribution=uniform", "variance", "changed")]
    assert any(line.startswith("worst differences (1 failing)") for line in lines)
    assert any("CHANGED" in line and "m=16,n=32,distribution=uniform variance" in line for line in lines)


def test_a_check_that_held_in_a_and_is_violated_in_b_is_a_regression(runs, capsys, tmp_path):
    root, suites, out = runs
    broken = tmp_path / "broken"
    _copy(out["b"], broken)
    _edit(broken, lambda row, key: 1.0 if key[1] == "m=4,n=4,distribution=gaussian" and key[3] == 0
          and row["metric"] == "variance_ci_low" else row["value"])
    code, lines, _ = _compare(capsys, out["a"], broken, suites, tmp_path / "r.html")
    assert code == 1
    assert any(x.startswith("  REGRESSION  mc/m=4,n=4,distribution=gaussian variance_ci_low seed=0: A ")
               and "→ B 1; held in A (pass), violation in B" in x for x in lines), lines


def test_identical_settings_compare_exact_metrics_per_seed(runs, capsys, tmp_path):
    root, suites, out = runs
    code, lines, verdicts = _compare(capsys, out["a"], out["a"], suites, tmp_path / "r.html")
    assert code == 0 and lines[1].startswith("differences (A → B): none")
    exact = verdicts[verdicts["metric"] == "variance_ci_low"]
    assert len(exact) == 16 and set(exact["verdict"]) == {"pass"} and set(exact["check"]) == {"tolerance"}
    # fixed seeds and settings: the Monte Carlo estimate too is compared at tolerance, seed by seed
    assert set(verdicts.loc[verdicts["metric"] == "variance", "check"]) == {"tolerance"}
    changed = tmp_path / "changed"
    _copy(out["a"], changed)
    _edit(changed, lambda row, key: row["value"] * (1 + 1e-6) if row["metric"] == "variance_ci_low" and key[3] == 1
          else row["value"])
    code, _, verdicts = _compare(capsys, out["a"], changed, suites, tmp_path / "r2.html")
    assert code == 1
    bad = verdicts[verdicts["verdict"] == "changed"]
    assert set(bad["metric"]) == {"variance_ci_low"} and set(bad["seed"]) == {1} and len(bad) == 8


def test_the_report_shows_a_and_b_side_by_side(runs, capsys, tmp_path):
    root, suites, out = runs
    report = tmp_path / "r.html"
    _compare(capsys, out["a"], out["b"], suites, report)
    html = report.read_text()
    assert html.index('id="differences"') < html.index('class="suite"')
    assert "<th class=\"num\">A</th><th class=\"num\">B</th>" in html
    for metric in ("variance", "scaled_variance", "variance_ci_low"):
        assert f"{metric}: A (left) and B (right)" in html
    assert html.count("<svg") >= 8
    assert str(out["a"]) in html and str(out["b"]) in html


# --- synthetic results folders ----------------------------------------------------------------
def _folder(path: Path, kind: str, suite: str, values: dict, settings: dict, preset: str = "ci") -> Path:
    """A results folder: ``values[(case, method, seed)] = {metric: value}``."""
    results = ResultsDir(path)
    results.prepare()
    methods = sorted({m for (_, m, _) in values})
    for (case, method, seed), metrics in values.items():
        rows = [make_row(suite, case, method, seed, "cpu", "{}", Measurement(k, v)) for k, v in metrics.items()]
        results.append_case([suite, case, method, seed], rows,
                            fingerprint={"kind": kind, "settings": settings, "preset": preset})
    results.write_json("manifest.json", {"preset": preset, "suites": [suite],
                                         "seeds": {suite: sorted({s for (_, _, s) in values})},
                                         "methods": {m: {"name": m} for m in methods}})
    return path


def _outcomes(methods, shift=0.0, seeds=range(4)):
    return {("d=3", m, s): {"max_weight_norm_trained": 1.0 + 0.01 * s + shift, "max_weight_norm_init": 1.0}
            for m in methods for s in seeds}


SETTINGS = {"lr": 0.001, "train_steps": 50, "probe_samples": 8, "batch": 16, "slope": 0.2, "settle_budget": 3000}


def _cli(capsys, a, b, tmp_path) -> tuple[int, list[str]]:
    capsys.readouterr()
    code = main(["compare", str(a), str(b), "--report", str(tmp_path / "c.html"), "--junit", str(tmp_path / "c.xml"),
                 "--summary-md", str(tmp_path / "c.md")])
    return code, capsys.readouterr().out.splitlines()


def test_training_outcomes_by_the_outcome_rule_with_a_as_the_baseline(tmp_path, capsys):
    a = _folder(tmp_path / "a", "gradient_bounds", "gb", _outcomes(["sn_w"]), SETTINGS)
    same = _folder(tmp_path / "same", "gradient_bounds", "gb", _outcomes(["sn_w"], shift=0.002), SETTINGS)
    worse = _folder(tmp_path / "worse", "gradient_bounds", "gb", _outcomes(["sn_w"], shift=0.5), SETTINGS)
    assert _cli(capsys, a, same, tmp_path)[0] == 0
    code, lines = _cli(capsys, a, worse, tmp_path)
    assert code == 1 and any("REGRESSION" in x and "max_weight_norm_trained" in x and "outcome" in x for x in lines)
    assert "testcase" in (tmp_path / "c.xml").read_text()
    summary = (tmp_path / "c.md").read_text()
    assert summary.startswith("### lipbench compare ") and "❌ FAIL" in summary and "max\\_weight\\_norm\\_trained" in summary


def test_methods_on_one_side_are_listed_and_missing_ones_fail(tmp_path, capsys):
    a = _folder(tmp_path / "a", "gradient_bounds", "gb", _outcomes(["sn_w", "none", "bsn"]), SETTINGS)
    b = _folder(tmp_path / "b", "gradient_bounds", "gb", _outcomes(["sn_w", "ssn"]), SETTINGS)
    code, lines = _cli(capsys, a, b, tmp_path)
    assert code == 1
    listed = [x for x in lines if "methods only on one side" in x]
    assert listed == ["  gb methods only on one side: bsn, none → ssn"]
    side = [read_side(ResultsDir(p), x, lambda r, n: {}) for p, x in ((a, "A"), (b, "B"))]
    verdicts = compare_runs(*side).verdicts
    methods = verdicts[verdicts["check"] == "methods"]
    assert sorted(zip(methods["method"], methods["verdict"])) == [("bsn", "missing"), ("none", "missing"),
                                                                  ("ssn", "new")]
    assert set(verdicts.loc[verdicts["check"] == "outcome", "method"]) == {"sn_w"}


def test_outcomes_and_exact_metrics_are_not_compared_across_other_settings(tmp_path, capsys):
    a = _folder(tmp_path / "a", "gradient_bounds", "gb", _outcomes(["sn_w"]), SETTINGS)
    b = _folder(tmp_path / "b", "gradient_bounds", "gb", _outcomes(["sn_w"], shift=0.5),
                {**SETTINGS, "train_steps": 500}, preset="full")
    code, lines = _cli(capsys, a, b, tmp_path)
    assert code == 0
    assert lines[2] == "  preset: ci → full" and "gb setting train_steps in 1 of 1 cases: 50 → 500" in lines[3]
    side = [read_side(ResultsDir(p), x, lambda r, n: {}) for p, x in ((a, "A"), (b, "B"))]
    verdicts = compare_runs(*side).verdicts
    compared = verdicts[verdicts["metric"] != ""]
    assert set(compared["verdict"]) == {"n/a"}
    assert compared["detail"].str.startswith("not comparable (settings differ: train_steps 50→500)").all()


def test_timings_are_compared_across_the_number_of_timed_rounds_only(tmp_path, capsys):
    def folder(name, n, factor=1.0, **settings):
        results = ResultsDir(tmp_path / name)
        results.prepare()
        ratios = [factor * (1.0 + 0.02 * ((i * 7) % 5 - 2)) for i in range(n)]
        row = make_row("tt", "b=16", "sn_w", 0, "cpu", "{}", Measurement("iteration_ratio", sorted(ratios)[n // 2],
                                                                         samples=ratios))
        results.append_case(["tt", "b=16", "sn_w", 0], [row], fingerprint={
            "kind": "training_time", "settings": {"repeats": n, "batch": 16, **settings}})
        results.write_json("manifest.json", {"preset": "ci", "suites": ["tt"]})
        return results.path

    a = folder("a", 5)
    assert _cli(capsys, a, folder("more", 25), tmp_path)[0] == 0
    code, lines = _cli(capsys, a, folder("slower", 25, factor=1.5), tmp_path)
    assert code == 1 and any("REGRESSION" in x and "iteration_ratio" in x for x in lines)
    code, lines = _cli(capsys, a, folder("other", 25, factor=1.5, batch=64), tmp_path)
    assert code == 0 and any("not comparable: 1" in x for x in lines)


def test_cases_b_planned_and_never_finished_are_missing_once(tmp_path, capsys):
    both = {("d=3", "sn_w", 0): {"max_weight_norm_init": 1.0}, ("d=5", "sn_w", 0): {"max_weight_norm_init": 1.0}}
    a = _folder(tmp_path / "a", "gradient_bounds", "gb", both, SETTINGS)
    b = _folder(tmp_path / "b", "gradient_bounds", "gb", {("d=3", "sn_w", 0): {"max_weight_norm_init": 1.0}}, SETTINGS)
    ResultsDir(b).write_json("plan.json", [["gb", "d=3", "sn_w", 0], ["gb", "d=5", "sn_w", 0]])
    code, lines = _cli(capsys, a, b, tmp_path)
    side = [read_side(ResultsDir(p), x, lambda r, n: {}) for p, x in ((a, "A"), (b, "B"))]
    failing = compare_runs(*side).verdicts.query("verdict == 'missing'")
    assert code == 1 and list(failing["case"]) == ["d=5"] and "planned but never ran" in failing["detail"].iloc[0]


def test_the_terminal_shows_at_most_30_lines_however_much_differs(tmp_path, capsys):
    many = [f"m={i}" for i in range(60)]
    values_a = {(case, "", s): {"variance_ci_low": 1.0 + i} for i, case in enumerate(many) for s in (0, 1)}
    values_b = {(case, "", s): {"variance_ci_low": 2.0 + i} for i, case in enumerate(many) for s in (0, 1, 2)}
    a = _folder(tmp_path / "a", "thm2_variance", "t2", values_a, {"matrices": 10, "confidence": 0.99})
    b = _folder(tmp_path / "b", "thm2_variance", "t2", values_b, {"matrices": 10, "confidence": 0.99}, "full")
    code, lines = _cli(capsys, a, b, tmp_path)
    assert code == 1 and len(lines) <= MAX_LINES
    assert lines[0].startswith(f"lipbench compare {a} -> {b}: FAIL — 120 verdicts: 120 changed")
    assert any(x.startswith("  ... 110 more in the report") for x in lines)
    assert lines[-1] == f"junit: {tmp_path / 'c.xml'}"


def test_the_default_report_is_named_by_both_runs_and_never_overwritten(tmp_path, capsys, monkeypatch):
    a = _folder(tmp_path / "a", "gradient_bounds", "gb", _outcomes(["sn_w"]), SETTINGS)
    monkeypatch.chdir(tmp_path)
    for _ in range(2):
        assert main(["compare", str(a), str(a)]) == 0
    reports = sorted((tmp_path / "reports").glob("compare-a-a-*.html"))
    assert len(reports) == 2
    assert f"report: reports/{reports[-1].name}" in capsys.readouterr().out.splitlines()


def test_a_missing_or_damaged_folder_is_exit_2(tmp_path, capsys):
    a = _folder(tmp_path / "a", "gradient_bounds", "gb", _outcomes(["sn_w"]), SETTINGS)
    assert main(["compare", str(a), str(tmp_path / "nowhere"), "--report", str(tmp_path / "x.html")]) == 2
    assert "nowhere: no such results folder" in capsys.readouterr().err
    assert not (tmp_path / "x.html").exists()


# --- the rule and the declarations ---------------------------------------------------------
def test_the_interval_rule_is_bonferroni_adjusted_and_directional():
    old = Estimate(1.0, 0.01, math.inf)
    # 3.5 standard errors of the difference (z = 2.58 at 99%, 4.42 at 1 - 0.01/1000): a change
    # alone, not among a thousand comparisons; 2.1 standard errors: none
    assert compare_estimates(Estimate(1.05, 0.01, math.inf), old, better=None).verdict == "changed"
    assert compare_estimates(Estimate(1.05, 0.01, math.inf), old, better=None, comparisons=1000).verdict == "pass"
    assert compare_estimates(Estimate(1.03, 0.01, math.inf), old, better=None).verdict == "pass"
    assert compare_estimates(Estimate(1.2, 0.01, math.inf), old, better="lower").verdict == "regression"
    assert compare_estimates(Estimate(0.8, 0.01, math.inf), old, better="lower").verdict == "improvement"
    # standard errors from two seeds each (one degree of freedom; Welch-Satterthwaite: 2 for the
    # difference, t = 9.9 at 99%): a wide interval
    wide = compare_estimates(Estimate(1.1, 0.01, 1), Estimate(1.0, 0.01, 1), better=None)
    assert wide.verdict == "pass" and 0.13 < wide.threshold < 0.15
    j = compare_estimates(Estimate(2.0, 0.01, math.inf), old, better=None, comparisons=10)
    assert "A 1 ± " in j.detail and "B 2 ± " in j.detail and "Bonferroni over 10" in j.detail


def test_declarations_name_the_standard_error_and_the_sampling_settings():
    declared = runner_for("thm2_variance").declarations
    assert declared.metric("loglog_slope_stderr_uniform").kind == "info"  # the longer pattern wins
    assert declared.standard_error_of("loglog_slope_uniform") == "loglog_slope_stderr_uniform"
    assert declared.standard_error_of("variance") == "variance_se"
    assert declared.standard_error_of("lower_constant") is None
    assert declared.sampling_settings() == {"matrices", "confidence"}
    assert runner_for("thm3_bsn_variance").declarations.standard_error_of("bsn_over_xavier") == "bsn_over_xavier_se"
    assert runner_for("gradient_bounds").declarations.sampling_settings() == set()
    with pytest.raises(ValueError, match="only a monte_carlo metric"):
        Metric("exact", "x", standard_error="x_se")
    assert Declarations(metrics={"a_*": Metric("info", ""), "a_b_*": Metric("exact", "")}).metric("a_b_c").kind == "exact"


# --- helpers ----------------------------------------------------------------------------------
def _copy(src: Path, dst: Path) -> None:
    dst.mkdir()
    for item in src.iterdir():
        if item.is_file():
            (dst / item.name).write_bytes(item.read_bytes())


def _edit(folder: Path, change) -> None:
    path = folder / "cases.jsonl"
    records = [json.loads(line) for line in path.read_text().splitlines()]
    for record in records:
        for row in record["rows"]:
            row["value"] = change(row, record["key"])
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
