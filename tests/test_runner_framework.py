"""The executor: failing cases become error rows, the run goes on, interrupted runs resume."""
import json
import time

import pandas as pd
import pytest

from harness.baselines import IncompleteRunError, load_baseline, update_baselines
from harness.results import Measurement, ResultsDir
from harness.runners import Runner, register, run_suites
from harness.suite import Suite

CALLS = []


@register
class FakeRunner(Runner):
    kind = "fake_for_tests"
    uses_methods = False

    def run(self, case, ctx):
        CALLS.append(case.case)
        mode = case.params["mode"]
        if mode == "raise":
            raise RuntimeError("deliberate failure")
        if mode == "hang":
            while True:
                time.sleep(0.01)
        if mode == "interrupt":
            raise KeyboardInterrupt
        import torch
        value = float("nan") if mode == "nan" else float(torch.rand(()).item())
        ctx.trace("loss", 0, 1.0)
        return [Measurement("x", value)]


def make_suite(modes, timeout=5):
    return Suite.from_dict({
        "name": "fake", "description": "d", "kind": "fake_for_tests", "seeds": [0, 1],
        "matrix": {"mode": modes}, "timeout": timeout, "metrics": {"x": {"unit": "1"}},
        "presets": {"ci": {}, "full": {}},
    })


def test_errors_nan_and_hangs_do_not_stop_the_run(tmp_path):
    out = ResultsDir(tmp_path / "r")
    rows = run_suites([make_suite(["ok", "raise", "nan", "hang"], timeout=0.5)], "ci", out, progress=False)
    status = rows.groupby("case")["status"].agg(set).to_dict()
    assert status == {"mode=ok": {"ok"}, "mode=raise": {"error"}, "mode=nan": {"error"}, "mode=hang": {"error"}}
    messages = " ".join(rows["message"])
    assert "deliberate failure" in messages and "timeout" in messages and "not finite" in messages
    assert (tmp_path / "r" / "results.csv").exists() and (tmp_path / "r" / "manifest.json").exists()
    assert len(out.traces()) == 4  # the ok and nan cases traced, two seeds each


def test_same_seed_same_values(tmp_path):
    a = run_suites([make_suite(["ok"])], "ci", ResultsDir(tmp_path / "a"), progress=False)
    b = run_suites([make_suite(["ok"])], "ci", ResultsDir(tmp_path / "b"), progress=False)
    assert a["value"].tolist() == b["value"].tolist()
    assert a["value"].iloc[0] != a["value"].iloc[1]  # different seeds differ


def test_interrupt_keeps_finished_cases_and_resume_skips_them(tmp_path):
    out = ResultsDir(tmp_path / "r")
    CALLS.clear()
    with pytest.raises(KeyboardInterrupt):
        run_suites([make_suite(["ok", "interrupt"])], "ci", out, progress=False)
    assert out.completed_keys() == {("fake", "mode=ok", "", 0), ("fake", "mode=ok", "", 1)}
    with pytest.raises(FileExistsError):
        run_suites([make_suite(["ok"])], "ci", out, progress=False)
    CALLS.clear()
    rows = run_suites([make_suite(["ok", "raise"])], "ci", out, resume=True, progress=False)
    assert CALLS == ["mode=raise", "mode=raise"]
    assert len(rows) == 4


def test_baselines_only_from_a_complete_run(tmp_path):
    bad = ResultsDir(tmp_path / "bad")
    run_suites([make_suite(["ok", "raise"])], "ci", bad, progress=False)
    with pytest.raises(IncompleteRunError, match="error row"):
        update_baselines(bad, tmp_path / "baselines")
    good = ResultsDir(tmp_path / "good")
    run_suites([make_suite(["ok"])], "ci", good, progress=False)
    written = update_baselines(good, tmp_path / "baselines")
    assert [p.name for p in written] == ["fake.ci.json"]
    data = json.loads(written[0].read_text())
    assert data["provenance"]["git_commit"] and len(data["rows"]) == 2
    base = load_baseline(tmp_path / "baselines", "cpu", "fake", "ci")
    assert isinstance(base, pd.DataFrame) and set(base["metric"]) == {"x"}


def test_torn_last_line_is_ignored(tmp_path):
    out = ResultsDir(tmp_path / "r")
    run_suites([make_suite(["ok"])], "ci", out, progress=False)
    with open(out.path / "rows.jsonl", "a") as handle:
        handle.write('{"suite": "fake", "case": ')
    assert len(out.rows()) == 2


def test_grouped_cases_resume_and_count_as_complete(tmp_path):
    """A case whose rows carry other method labels (interleaved timing) is still 'done'."""
    @register
    class Grouped(Runner):
        kind = "grouped_for_tests"
        groups_methods = True

        def run(self, case, ctx):
            CALLS.append(case.case)
            return [Measurement("t", 1.0, method=label) for label in ctx.methods]

    suite = Suite.from_dict({"name": "g", "description": "d", "kind": "grouped_for_tests", "seeds": [0],
                             "methods": ["none", "sn_w"], "matrix": {"b": [1]}, "metrics": {"t": {"unit": "ms"}},
                             "presets": {"ci": {}, "full": {}}})
    out = ResultsDir(tmp_path / "r")
    rows = run_suites([suite], "ci", out, progress=False)
    assert sorted(rows["method"]) == ["none", "sn_w"]
    assert out.completed_keys() == {("g", "b=1", "", 0)}
    CALLS.clear()
    run_suites([suite], "ci", out, resume=True, progress=False)
    assert CALLS == []
    update_baselines(out, tmp_path / "baselines")  # complete: no IncompleteRunError


def test_a_case_rerun_after_a_crash_keeps_its_last_rows(tmp_path):
    out = ResultsDir(tmp_path / "r")
    run_suites([make_suite(["ok"])], "ci", out, progress=False)
    first = out.rows()
    out.append_case([dict(first.iloc[0]) | {"value": 42.0}])  # the same case's rows, appended again
    again = out.rows()
    assert len(again) == len(first) and 42.0 in again["value"].tolist()
