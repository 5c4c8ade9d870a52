"""JUnit XML: parsed back with xml.etree, counts and failure/error/skipped elements."""
from __future__ import annotations

import xml.etree.ElementTree as ET

import pandas as pd
import pytest

from harness.reporting import write_junit

TB = "Traceback (most recent call last):\n  File \"x.py\", line 1\nValueError: bad \x1b[31mcolour\x00"


def _v(verdict, suite="s", case="c", method="m", seed=0, metric="ratio", check="bound",
       kind="check", detail=""):
    return {"suite": suite, "case": case, "method": method, "seed": seed, "metric": metric,
            "check": check, "kind": kind, "verdict": verdict, "value": 1.5, "reference": 1.0,
            "detail": detail or f"{verdict} detail"}


@pytest.fixture
def verdicts():
    return pd.DataFrame([
        _v("pass", seed=0), _v("pass", seed=1), _v("violation", seed=2, detail="value 1.5 > bound 1.0"),
        _v("n/a", seed=3, detail="input smaller than the kernel"),
        _v("regression", suite="t", case="k=3", method="sn_w", seed=float("nan"), metric="step_ms",
           check="noisy", kind="comparison", detail="Mann-Whitney p=0.003, median ratio 1.12 > 1.05"),
        _v("missing", suite="t", case="k=3", method="none", metric="step_ms", check="baseline",
           kind="comparison"),
        _v("improvement", suite="t", case="k=4", method="", metric="fid", check="directional",
           kind="comparison"),
        _v("new", suite="t", case="k=5", method="sn_w", metric="fid", check="directional", kind="comparison"),
        _v("error", suite="t", case="k=6", method="sn_conv", metric="fid", check="run", kind="run", detail=TB),
    ])


def _parse(path):
    root = ET.parse(path).getroot()
    assert root.tag == "testsuites"
    return root


def test_counts_and_elements(tmp_path, verdicts):
    root = _parse(write_junit(tmp_path / "j.xml", verdicts))
    assert (root.get("tests"), root.get("failures"), root.get("errors"), root.get("skipped")) == ("9", "3", "1", "1")
    suites = {ts.get("name"): ts for ts in root.findall("testsuite")}
    assert set(suites) == {"lipbench.s", "lipbench.t"}
    s, t = suites["lipbench.s"], suites["lipbench.t"]
    assert (s.get("tests"), s.get("failures"), s.get("errors"), s.get("skipped")) == ("4", "1", "0", "1")
    assert (t.get("tests"), t.get("failures"), t.get("errors"), t.get("skipped")) == ("5", "2", "1", "0")
    for ts in (s, t):   # the attributes agree with the children
        cases = ts.findall("testcase")
        assert int(ts.get("tests")) == len(cases)
        assert int(ts.get("failures")) == sum(tc.find("failure") is not None for tc in cases)
        assert int(ts.get("errors")) == sum(tc.find("error") is not None for tc in cases)
        assert int(ts.get("skipped")) == sum(tc.find("skipped") is not None for tc in cases)


def test_names_and_messages(tmp_path, verdicts):
    root = _parse(write_junit(tmp_path / "j.xml", verdicts, suite_name="lipbench"))
    by_name = {(tc.get("classname"), tc.get("name")): tc for tc in root.iter("testcase")}
    v = by_name[("lipbench.s.c", "m:ratio:bound[seed=2]")]
    f = v.find("failure")
    assert f.get("type") == "violation" and "value 1.5 > bound 1.0" in f.get("message")
    r = by_name[("lipbench.t.k=3", "sn_w:step_ms:noisy")]          # seed NaN: no [seed=]
    assert r.find("failure").get("type") == "regression"
    assert by_name[("lipbench.t.k=3", "none:step_ms:baseline[seed=0]")].find("failure").get("type") == "missing"
    e = by_name[("lipbench.t.k=6", "sn_conv:fid:run[seed=0]")].find("error")
    assert "ValueError: bad" in e.get("message") and "Traceback" in e.text
    assert "\x00" not in e.text and "\x1b" not in e.text           # stripped: not XML 1.0
    sk = by_name[("lipbench.s.c", "m:ratio:bound[seed=3]")].find("skipped")
    assert sk.get("message") == "input smaller than the kernel"
    for ok in (("lipbench.t.k=4", ":fid:directional[seed=0]"), ("lipbench.s.c", "m:ratio:bound[seed=0]")):
        tc = by_name[ok]
        assert tc.find("failure") is None and tc.find("error") is None and tc.find("skipped") is None


def test_unknown_verdict_is_an_error_and_empty_is_valid(tmp_path):
    root = _parse(write_junit(tmp_path / "u.xml", pd.DataFrame([_v("fail")])))
    assert root.get("errors") == "1"
    empty = _parse(write_junit(tmp_path / "e.xml", pd.DataFrame()))
    assert empty.get("tests") == "0" and not empty.findall("testsuite")
