"""The bound_zoo runner: rows per layer and estimator, claims judged against the certified bracket."""
from __future__ import annotations

import copy
import json
import math
from pathlib import Path

import pandas as pd
import pytest
import torch

from harness.baselines import evaluate_checks
from harness.estimators import ESTIMATORS
from harness.estimators.power_iteration import PowerIteration
from harness.results import ResultsDir
from harness.runners import run_suites, runner_for
from harness.runners.bound_zoo import summary_measurements
from harness.suite import Suite, load_suite

REPO = Path(__file__).resolve().parents[1]
SHIPPED = load_suite(REPO / "suites" / "bound_zoo.yaml", declarations_for=lambda kind: runner_for(kind).declarations)


def tiny(**settings) -> Suite:
    """The shipped suite, ci preset: the DCGAN discriminator's first layer (1 -> 64, k4, s2, 28x28)."""
    data = copy.deepcopy(SHIPPED.raw)
    ci = data["presets"]["ci"]
    ci["matrix"] = {"model": ["dcgan28"], "stage": ["init"], "padding": ["zeros", "circular"]}
    ci["include"] = []
    ci["settings"] = {**ci["settings"], "layers": {"dcgan28": ["features.0"]}, "timing_repeats": 1, **settings}
    return Suite.from_dict(data, source=SHIPPED.source)


def run(tmp_path: Path, suite: Suite) -> pd.DataFrame:
    return run_suites([suite], "ci", ResultsDir(tmp_path / "r"), progress=False, isolation=False)


@pytest.fixture(scope="module")
def rows(tmp_path_factory, one_thread) -> pd.DataFrame:
    return run(tmp_path_factory.mktemp("zoo"), tiny())


def wide(rows: pd.DataFrame) -> pd.DataFrame:
    ok = rows[(rows["status"] == "ok") & (rows["case"] != "summary")]
    return ok.pivot_table(index=["case", "method"], columns="metric", values="value", aggfunc="first")


def test_every_estimator_on_every_layer_with_its_claim(rows):
    assert (rows["status"] == "ok").all(), rows[rows["status"] != "ok"]["message"].tolist()
    table = wide(rows)
    layers = [c for c in table.index.get_level_values("case").unique()]
    assert sorted(layers) == ["model=dcgan28,stage=init,padding=circular,layer=features.0 (1>64 k4 s2 28x28)",
                              "model=dcgan28,stage=init,padding=zeros,layer=features.0 (1>64 k4 s2 28x28)"]
    for layer in layers:
        assert set(table.loc[layer].index) == set(ESTIMATORS) | {""}
        bracket = table.loc[(layer, "")]
        assert bracket["norm_lower"] <= bracket["norm"] <= bracket["norm_upper"]
        for name in ESTIMATORS:
            est = table.loc[(layer, name)]
            estimate = est["ratio"] * bracket["norm"]
            if not math.isnan(est.get("below_lower", math.nan)):  # the margin to the certified lower end
                assert est["below_lower"] == pytest.approx((bracket["norm_lower"] - estimate)
                                                           / bracket["norm_lower"], rel=1e-9, abs=1e-12)
            if not math.isnan(est.get("above_upper", math.nan)):
                assert est["above_upper"] == pytest.approx((estimate - bracket["norm_upper"])
                                                           / bracket["norm_upper"], rel=1e-9, abs=1e-12)
            claimed = not math.isnan(est.get("tolerance", math.nan))
            assert claimed == (not (math.isnan(est.get("below_lower", math.nan))
                                    and math.isnan(est.get("above_upper", math.nan))))


def test_claims_are_judged_and_the_known_miss_confirmed(rows):
    verdicts = pd.DataFrame(evaluate_checks(SHIPPED, rows))
    assert set(verdicts["verdict"]) <= {"pass"}, verdicts[verdicts["verdict"] != "pass"]["detail"].tolist()
    known = verdicts[verdicts["check"] == "known_misses_reproduce"]
    assert set(known["method"]) == {"lip4conv_power_iteration"} and len(known) == 2  # strided: both paddings
    circular = verdicts[verdicts["case"].str.contains("circular")]
    assert "sedghi2019" not in set(circular["method"])  # stride 2: Sedghi et al.'s theorem claims nothing
    assert {"senderovich2022", "gram_iteration", "power_iteration"} <= set(circular["method"])


def test_summary_rows_count_claims_per_estimator(rows):
    summary = rows[rows["case"] == "summary"].pivot_table(index="method", columns="metric", values="value")
    assert set(summary.index) == set(ESTIMATORS)
    assert summary.loc["power_iteration", "claims"] == 2
    assert summary.loc["sedghi2019", "claims"] == 0
    assert summary.loc["lip4conv_power_iteration", "violations"] == 2
    message = rows[(rows["case"] == "summary") & (rows["method"] == "lip4conv_power_iteration")]["message"].iloc[0]
    assert "layer=features.0" in message


def _zoo_frame(entries: list[dict]) -> pd.DataFrame:
    rows = []
    for e in entries:
        case = e.pop("case")
        method = e.pop("method", "")
        rows += [{"case": case, "method": method, "seed": 0, "metric": k, "value": v, "status": "ok"}
                 for k, v in e.items()]
    return pd.DataFrame(rows)


def test_summary_rules_for_violations_and_undecided_bounds():
    """A bound misses by any amount; an exact value only beyond its tolerance; inside the bracket
    a bound is undecided."""
    frame = _zoo_frame([
        {"case": "a", "bracket_width": 0.01},
        {"case": "a", "method": "up", "ratio": 1.0, "time_ms": 1, "tolerance": 2e-5, "below_lower": 1e-8},
        {"case": "a", "method": "ex", "ratio": 1.0, "time_ms": 1, "tolerance": 1e-9, "below_lower": 1e-12,
         "above_upper": -1e-12},
        {"case": "a", "method": "lo", "ratio": 1.0, "time_ms": 1, "tolerance": 2e-5, "above_upper": -0.005},
        {"case": "a", "method": "none", "ratio": 2.0, "time_ms": 1},
    ])
    got = {(m.method, m.metric): m.value for m in summary_measurements(frame)}
    assert got[("up", "violations")] == 1 and got[("up", "beyond_rounding")] == 0
    assert got[("ex", "violations")] == 0
    assert got[("lo", "undecided")] == 1 and got[("lo", "violations")] == 0
    assert got[("none", "claims")] == 0 and got[("none", "median_ratio")] == 2.0


def test_a_failing_estimator_keeps_the_other_rows(tmp_path, monkeypatch, one_thread):
    def broken(self, layer):
        raise RuntimeError("estimator exploded")
    monkeypatch.setattr(PowerIteration, "estimate", broken)
    rows = run(tmp_path, tiny(estimators=["power_iteration", "miyato_reshape"]))
    bad = rows[rows["status"] == "error"]
    assert set(bad["method"]) == {"power_iteration"} and "estimator exploded" in bad["message"].iloc[0]
    assert (rows[(rows["method"] == "miyato_reshape") & (rows["case"] != "summary")]["status"] == "ok").all()


def test_bad_settings_name_the_problem(tmp_path, one_thread):
    rows = run(tmp_path, tiny(layers={"dcgan28": ["features.9"]}))
    assert "no Conv2d called features.9" in rows["message"].iloc[0]
    data = copy.deepcopy(SHIPPED.raw)
    data["presets"]["ci"]["include"] = [{"model": "resnet18", "stage": "trained", "padding": "zeros"}]
    data["presets"]["ci"]["matrix"] = {"model": ["dcgan28"], "stage": ["init"], "padding": ["zeros"]}
    data["presets"]["ci"]["settings"]["layers"] = {"dcgan28": ["features.0"]}
    rows = run(tmp_path / "b", Suite.from_dict(data, source=SHIPPED.source))
    errors = rows[rows["status"] == "error"]["message"].tolist()
    assert any("stage 'trained' is for the GAN discriminators" in m for m in errors)


def test_rows_are_json_params_of_the_parent_case(rows):
    params = {json.loads(p)["padding"] for p in rows[rows["case"] != "summary"]["params"]}
    assert params == {"zeros", "circular"}


def test_models_are_built_in_float64_and_judged_in_float32(one_thread):
    from harness.runners.zoo_layers import conv_layers, model_at_stage, select
    settings = {"adam": "C", "train_iterations": 2, "train_batch": 8}
    init, shape = model_at_stage("dcgan28", 28, "init", 0, settings)
    trained, _ = model_at_stage("dcgan28", 28, "trained", 0, settings)
    layers = conv_layers(init, shape)
    assert [(layer.name, layer.input_shape) for layer in layers] == [("features.0", (1, 28, 28)),
                                                                     ("features.2", (64, 14, 14))]
    assert all(layer.weight.dtype == torch.float32 for layer in layers)
    assert not torch.equal(layers[1].weight, conv_layers(trained, shape)[1].weight)
    again, _ = model_at_stage("dcgan28", 28, "init", 0, settings)
    assert torch.equal(conv_layers(again, shape)[1].weight, layers[1].weight)  # seeded
    with pytest.raises(ValueError, match="dcgan28 has features.0, features.2"):
        select(layers, ["features.1"], "dcgan28")
    with pytest.raises(ValueError, match="not resnet18"):
        model_at_stage("resnet18", 224, "trained", 0, settings)
