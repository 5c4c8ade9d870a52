"""``lipbench check VARIANT --as NAME`` reads as what it is (issue 16, item 8): rows, title and
JUnit names say ``VARIANT as NAME``; the variant is judged by NAME's claim and compared with
NAME's baselines, where quantities correct implementations differ in by design are reported,
not failed; a metric without a better direction is never called worse.

Before, the rows said ``sn_w`` (the variant's name only in the provenance), and a correct
from-scratch SN checked ``--as sn_w`` got 40 "regressions": norms at initialisation compared at
float32 tolerance, and ``stable_rank`` (no better direction) called worse.
"""
from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path

import pandas as pd
import pytest
import yaml

from harness.baselines import compare_suite
from harness.baselines.identity import baseline_label, judged_as, other_implementation
from harness.cli.main import main
from harness.results import Measurement, make_row, to_frame
from harness.runners import runner_for
from harness.suite import Suite

REPO = Path(__file__).resolve().parents[1]
VARIANT = "from_scratch:MiyatoSN as sn_w"
PROFILES = {VARIANT: {"name": "from_scratch:MiyatoSN", "params": {}, "judged_as": "sn_w"},
            "sn_w": {"name": "sn_w", "params": {}, "judged_as": ""},
            "sn_w as sn_w": {"name": "sn_w", "params": {}, "judged_as": "sn_w"}}


def _suite(kind: str) -> Suite:
    return Suite.from_dict({"name": kind, "description": "d", "kind": kind, "seeds": [0, 1, 2],
                            "presets": {"ci": {}, "full": {}}})


def _rows(kind: str, method: str, values: dict[str, list[float]], source: str | None = None) -> pd.DataFrame:
    frame = to_frame([make_row(kind, "c", method, seed, "cpu", "{}", Measurement(metric, value))
                      for metric, per_seed in values.items() for seed, value in enumerate(per_seed)])
    return frame.assign(source=source) if source else frame


def _verdicts(kind: str, label: str, run: dict, base: dict) -> dict[str, dict]:
    suite = _suite(kind)
    planned = [(kind, "c", label, seed) for seed in range(3)]
    found = compare_suite(suite, _rows(kind, label, run), _rows(kind, "sn_w", base, "m1"), planned,
                          profiles=PROFILES)
    return {(v["metric"], v["seed"]): v for v in found}


GB_BASE = {"max_weight_norm_init": [1.0] * 3, "bound_ratio_init": [0.40] * 3, "max_weight_norm_trained": [1.0] * 3}
GB_RUN = {"max_weight_norm_init": [1.3] * 3, "bound_ratio_init": [0.52] * 3, "max_weight_norm_trained": [1.6] * 3}


def test_as_name_reports_what_differs_by_design_and_judges_the_rest():
    v = _verdicts("gradient_bounds", VARIANT, GB_RUN, GB_BASE)
    for seed in range(3):
        norm, ratio = v[("max_weight_norm_init", seed)], v[("bound_ratio_init", seed)]
        assert norm["verdict"] == ratio["verdict"] == "n/a"  # exact norms at initialisation: the implementation's own
        assert norm["detail"].startswith(f"reported, not judged: {VARIANT} is another implementation of sn_w's claim")
        assert norm["value"] == pytest.approx(1.3) and norm["reference"] == pytest.approx(1.0)
        assert norm["method"] == VARIANT
    assert v[("max_weight_norm_trained", -1)]["verdict"] == "regression"  # judged: not different by design


@pytest.mark.parametrize("label", ["sn_w", "sn_w as sn_w"])
def test_the_same_implementation_is_judged_on_everything(label):
    v = _verdicts("gradient_bounds", label, GB_RUN, GB_BASE)
    assert {v[("max_weight_norm_init", s)]["verdict"] for s in range(3)} == {"regression"}
    assert {v[("bound_ratio_init", s)]["verdict"] for s in range(3)} == {"changed"}  # no better direction


def test_stable_rank_is_never_called_worse():
    assert runner_for("sample_quality").declarations.metric("stable_rank").better is None
    base, run = {"stable_rank": [3.0, 3.1, 2.9]}, {"stable_rank": [9.0, 9.2, 8.8]}
    mine = _verdicts("sample_quality", "sn_w", run, base)[("stable_rank", -1)]
    assert mine["verdict"] == "changed" and "worse" not in mine["detail"]
    other = _verdicts("sample_quality", VARIANT, run, base)[("stable_rank", -1)]
    assert other["verdict"] == "n/a" and "has no better direction" in other["detail"]


def test_an_improvement_stays_an_improvement():
    v = _verdicts("gradient_bounds", VARIANT, {"max_weight_norm_init": [0.7] * 3}, {"max_weight_norm_init": [1.0] * 3})
    assert {v[("max_weight_norm_init", s)]["verdict"] for s in range(3)} == {"improvement"}


def test_a_missing_metric_is_named_by_the_variant():
    v = _verdicts("gradient_bounds", VARIANT, {"max_weight_norm_init": [1.0] * 3}, GB_BASE)
    missing = [x for x in v.values() if x["verdict"] == "missing"]
    assert {(x["metric"], x["method"]) for x in missing} == {("bound_ratio_init", VARIANT),
                                                             ("max_weight_norm_trained", VARIANT)}


def test_compare_of_two_runs_of_one_check_matches_the_variant_with_itself():
    """``lipbench compare A B`` of two ``--as`` checks: A's rows of the variant are its baseline, and the
    same implementation is judged on everything."""
    suite = _suite("gradient_bounds")
    base = _rows("gradient_bounds", VARIANT, GB_BASE, "A")
    found = compare_suite(suite, _rows("gradient_bounds", VARIANT, GB_RUN), base, profiles=PROFILES)
    verdicts = {(v["metric"], v["seed"]): v["verdict"] for v in found}
    assert verdicts[("max_weight_norm_init", 0)] == "regression" and verdicts[("bound_ratio_init", 0)] == "changed"


def test_identity_of_a_profile():
    assert judged_as(PROFILES[VARIANT]) == "sn_w" and judged_as(PROFILES["sn_w"]) == "sn_w"
    assert judged_as({"name": "from_scratch:MiyatoSN", "params": {}, "judged_as": ""}) == ""
    assert judged_as({"name": "renamed:sn_w"}) == "" and judged_as(None) == ""
    assert other_implementation(PROFILES[VARIANT]) and not other_implementation(PROFILES["sn_w as sn_w"])
    assert not other_implementation(PROFILES["sn_w"])
    as_ssn = {"name": "x:Y", "judged_as": "ssn"}
    assert baseline_label("x:Y as ssn", {**as_ssn, "params": {"s": 1.5, "gain": 2}}) == "ssn(s=1.5)"
    assert baseline_label("x:Y as ssn", {**as_ssn, "params": {"s": 1.0}}) == "ssn"
    assert baseline_label("sn_w_hinge", {"name": "sn_w", "params": {}, "judged_as": ""}) == "sn_w_hinge"


@pytest.fixture
def gradient_suites(tmp_path):
    folder = tmp_path / "suites"
    folder.mkdir()
    data = yaml.safe_load((REPO / "suites" / "gradient_bounds.yaml").read_text())
    ci = data["presets"]["ci"]
    ci.update(matrix={**ci.get("matrix", {}), "depth": [3], "width": [64]}, seeds=[0],
              settings={**ci.get("settings", {}), "train_steps": 20})
    (folder / "gradient_bounds.yaml").write_text(yaml.safe_dump(data))
    return folder


def _by_design(metric: str) -> bool:
    declared = runner_for("gradient_bounds").declarations.metric(metric)
    return declared.implementation_specific or declared.better is None


def test_check_as_name_end_to_end(tmp_path, gradient_suites, capsys):
    """sn_w's run is the baseline; SN followed by Björck, written from scratch (every singular value
    1, so sn_w's claim holds), is checked --as sn_w: its norms and gradients at initialisation differ
    from sn_w's by design."""
    variant = "from_scratch:BjorckSN as sn_w"
    base = tmp_path / "baselines"
    common = ["--suites-dir", gradient_suites, "--no-isolation"]
    assert main([str(a) for a in ["run", "gradient_bounds", "--methods", "sn_w", "--out", tmp_path / "sn_w",
                                  *common]]) == 0
    assert main([str(a) for a in ["baseline", "update", tmp_path / "sn_w", "--baselines", base,
                                  "--suites-dir", gradient_suites]]) == 0
    capsys.readouterr()
    report, junit, out = tmp_path / "c.html", tmp_path / "c.xml", tmp_path / "check"
    main([str(a) for a in ["check", "from_scratch:BjorckSN", "--as", "sn_w", "--suites", "gradient_bounds",
                           "--baselines", base, "--out", out, "--report", report, "--junit", junit, *common]])
    assert f"checked {variant} in: gradient_bounds" in capsys.readouterr().out
    assert set(pd.read_csv(out / "results.csv")["method"]) == {variant}
    verdicts = pd.read_csv(out / "verdicts.csv", keep_default_na=False)
    compared = verdicts[verdicts["kind"] == "comparison"]
    assert len(compared) > 0 and set(compared["method"]) == {variant}
    by_design = compared[compared["metric"].map(_by_design)]
    assert not by_design["verdict"].isin(["regression", "changed", "missing"]).any()
    reported = by_design[by_design["verdict"] == "n/a"]
    assert len(reported) > 0 and reported["detail"].str.startswith("reported, not judged").all()
    judged = compared[~compared["metric"].map(_by_design)]
    assert len(judged) > 0 and not (judged["verdict"] == "n/a").any()  # the rest is judged
    names = [tc.get("name") for tc in ET.parse(junit).getroot().iter("testcase")]
    assert names and all(name.startswith(f"{variant}:") for name in names)
    assert f"lipbench check {variant}" in report.read_text()
    assert json.loads((out / "manifest.json").read_text())["methods"][variant]["judged_as"] == "sn_w"
