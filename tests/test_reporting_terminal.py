"""overall_passed / terminal_summary, and a mutation check showing the tests have teeth."""
from __future__ import annotations

import xml.etree.ElementTree as ET

import pandas as pd
import pytest

import harness.reporting.verdicts as verdicts_mod
from harness.reporting import overall_passed, render_html, terminal_summary, write_junit

FAILING = ["violation", "regression", "changed", "missing", "error"]
PASSING = ["pass", "improvement", "new", "n/a"]


def _frame(*verdicts):
    return pd.DataFrame([{"suite": "s", "case": f"c{i}", "method": "sn_w", "seed": i, "metric": "ratio",
                          "check": "alpha_upper", "kind": "check", "verdict": v, "value": 1.0,
                          "reference": 1.0, "detail": f"detail of {v}"} for i, v in enumerate(verdicts)])


def assert_reporters_fail(df: pd.DataFrame, path) -> None:
    """Every reporter must call the run failed."""
    assert overall_passed(df) is False
    assert terminal_summary(df).startswith("lipbench: FAIL")
    assert 'data-overall="FAIL"' in render_html(None, df, [], None)
    root = ET.parse(write_junit(path, df)).getroot()
    assert int(root.get("failures")) + int(root.get("errors")) >= 1


@pytest.mark.parametrize("bad", FAILING)
def test_one_failing_verdict_fails_everything(bad, tmp_path):
    df = _frame(*PASSING, bad, "pass")
    assert_reporters_fail(df, tmp_path / "j.xml")
    text = terminal_summary(df)
    assert f"{bad.upper()}" in text and f"detail of {bad}" in text


@pytest.mark.parametrize("good", PASSING)
def test_non_failing_verdicts_pass(good):
    assert overall_passed(_frame("pass", good)) is True
    assert terminal_summary(_frame(good)).startswith("lipbench: PASS")


@pytest.mark.parametrize("odd", ["fail", "", None, float("nan"), "PASSED"])
def test_unknown_verdicts_fail_closed(odd):
    assert overall_passed(_frame("pass", odd)) is False


def test_case_and_whitespace_are_normalised():
    assert overall_passed(_frame(" Pass ", "N/A")) is True
    assert overall_passed(_frame("pass", "Missing ")) is False


def test_empty_and_none_pass_vacuously():
    assert overall_passed(None) is True
    assert overall_passed(pd.DataFrame()) is True
    assert terminal_summary(None) == "lipbench: PASS — no verdicts"


def test_summary_counts_and_one_line_per_failure():
    tb = "Traceback (most recent call last):\n  File \"a.py\", line 3\nRuntimeError: boom"
    df = _frame("pass", "pass", "violation", "error", "n/a")
    df.loc[3, "detail"] = tb
    lines = terminal_summary(df).splitlines()
    assert lines[0] == "lipbench: FAIL — 5 verdicts: 1 error, 1 violation, 2 pass, 1 n/a"
    assert lines[1] == "2 failing:"
    assert lines[2].split()[0] == "ERROR" and lines[2].endswith("RuntimeError: boom")
    assert lines[3].split()[0] == "VIOLATION" and "s/c2 sn_w seed=2 ratio [alpha_upper]" in lines[3]
    assert len(lines) == 4


def test_mutation_counting_missing_as_pass_is_caught(monkeypatch, tmp_path):
    """Deliberately break the reporter (treat 'missing' as passing): the check above notices."""
    df = _frame("pass", "missing")
    assert_reporters_fail(df, tmp_path / "ok.xml")            # the real reporter
    monkeypatch.setattr(verdicts_mod, "NON_FAILING", verdicts_mod.NON_FAILING | {"missing"})
    assert overall_passed(df) is True                          # the broken reporter says PASS ...
    with pytest.raises(AssertionError):                        # ... and the check catches it
        assert_reporters_fail(df, tmp_path / "broken.xml")
