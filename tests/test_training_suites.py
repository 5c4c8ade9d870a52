"""The ``training_time`` and ``sample_quality`` runners and suites on tiny settings.

Every test builds small suites (``Suite.from_dict``) or shrinks the shipped ones, so the
module runs in well under a minute on a 2-core CPU.
"""
from __future__ import annotations

import copy
import json
import time
from pathlib import Path

import pandas as pd
import pytest
import torch
import yaml

from harness.baselines import judge
from harness.baselines.compare import results_as_baseline
from harness.cli.locate import resolve_suites
from harness.cli.main import main
from harness.methods import Method
from harness.results import ResultsDir
from harness.runners import plan, run_suites
from harness.runners.base import RunContext, runner_for
from harness.suite import MethodSpec, Suite

SUITES = Path(__file__).resolve().parents[1] / "suites"
ALL_METHODS = ["none", "weight_clip", "grad_penalty", "sn_w", "sn_conv", "bsn", "ssn", "bssn",
               "torch_sn", "weight_norm", "frobenius_norm", "orthonormal_reg"]
TIMING_METRICS = {"d_step_ms", "g_step_ms", "iteration_ms", "d_step_ratio", "g_step_ratio",
                  "iteration_ratio", "peak_mib"}


class SlowAfterStep(Method):
    """A deliberately broken method: 50 ms of sleep after every D update."""

    name = "slow_after_step"

    def after_step(self, D):
        time.sleep(0.05)


class NaNPenalty(Method):
    """A deliberately broken method: its penalty is NaN, so the D loss is NaN at once."""

    name = "nan_penalty"

    def penalty(self, D, real, fake):
        return real.new_tensor(float("nan"))


def timing_suite(methods, repeats=3, **settings):
    return Suite.from_dict({
        "name": "tt_tiny", "description": "tiny timing", "kind": "training_time",
        "methods": methods, "matrix": {"model": ["dcgan_digits"], "size": [8], "batch": [4]},
        "seeds": [0],
        "settings": {"adam": "C", "warmup": 1, "repeats": repeats, "threads": 1,
                     "model_args": {"dcgan_digits": {"channels": 1, "ch": 8}},
                     **settings},
        "checks": [{"name": "overhead", "metric": "iteration_ratio", "assert": "value <= 1.5",
                    "cite": "test"}],
        "presets": {"ci": {}, "full": {}},
    })


def quality_suite(methods, data=("ring8", "digits"), seeds=(0,), **settings):
    return Suite.from_dict({
        "name": "sq_tiny", "description": "tiny quality", "kind": "sample_quality",
        "methods": methods, "matrix": {"data": list(data)}, "seeds": list(seeds),
        "settings": {"adam": "fast", "adam_settings": {"fast": {"lr": 0.002, "beta1": 0.0,
                                                                    "beta2": 0.9, "n_dis": 1}},
                     "models": {"ring8": {"name": "mlp2d", "hidden": 16, "depth": 2},
                                "digits": {"name": "dcgan_digits", "size": 8, "ch": 8}},
                     "data_args": {"digits": {"size": 8}}, "iterations": 8, "batch": 16,
                     "trace_points": 4, "n_fake": 200, "n_real": 300, "threads": 1,
                     "inception": "never", **settings},
        "presets": {"ci": {}, "full": {}},
    })


def by_method(rows: pd.DataFrame, metric: str) -> dict[str, pd.Series]:
    return {r["method"]: r for _, r in rows[rows["metric"] == metric].iterrows()}


# ----------------------------------------------------------------------------- timing
def test_training_time_every_method_documented_metrics_and_pairwise_ratios(tmp_path):
    rows = run_suites([timing_suite(ALL_METHODS[1:])], "ci", ResultsDir(tmp_path / "r"), progress=False)
    assert (rows["status"] == "ok").all(), rows[rows["status"] != "ok"]["message"].tolist()
    # none is added as the reference although the suite does not list it
    assert set(rows["method"]) == set(ALL_METHODS)
    for method, group in rows.groupby("method"):
        assert set(group["metric"]) == TIMING_METRICS, method
    iters = by_method(rows, "iteration_ms")
    ref = json.loads(iters["none"]["samples"])
    assert len(ref) == 3 and iters["none"]["unit"] == "ms"
    for method, row in by_method(rows, "iteration_ratio").items():
        samples = json.loads(row["samples"])
        mine = json.loads(iters[method]["samples"])
        assert samples == pytest.approx([a / b for a, b in zip(mine, ref)])  # per round, pairwise
        assert row["value"] == pytest.approx(sorted(samples)[1])  # the median of 3 rounds
    assert by_method(rows, "iteration_ratio")["none"]["value"] == 1.0
    # the D and G parts lie inside the iteration: n_dis = 1 D update + 1 G update
    d, g = by_method(rows, "d_step_ms"), by_method(rows, "g_step_ms")
    for method in ALL_METHODS:  # round by round (medians of parts need not add up)
        rounds = zip(*(json.loads(x[method]["samples"]) for x in (d, g, iters)))
        assert all(d_ms + g_ms <= it_ms * 1.0001 for d_ms, g_ms, it_ms in rounds), method


def test_slow_method_fails_the_timing_check_and_the_comparison():
    suite = timing_suite(["none"], repeats=8)
    case = plan([suite], "ci", "cpu")[0]
    spec = MethodSpec("none", (), "variant")
    case = type(case)(**{**case.__dict__, "methods": (MethodSpec("none", (), "none"), spec)})
    runner = runner_for("training_time")

    def run(variant):
        ctx = RunContext(device=torch.device("cpu"),
                         methods={"none": Method(), "variant": variant})
        from harness.results import make_row
        return pd.DataFrame([make_row(suite.name, case.case, "", case.seed, "cpu", case.params_json, m)
                             for m in runner.run(case, ctx)])

    fast, slow = run(Method()), run(SlowAfterStep())
    ratio = by_method(slow, "iteration_ratio")["variant"]
    assert ratio["value"] > 1.5
    verdicts = judge([suite], slow, results_as_baseline(fast))
    mine = verdicts[verdicts["method"] == "variant"]
    assert set(mine[mine["check"] == "overhead"]["verdict"]) == {"violation"}
    assert set(mine[(mine["check"] == "timing") & (mine["metric"] == "iteration_ratio")]["verdict"]) == {"regression"}
    # the unchanged reference passes both
    ref = verdicts[verdicts["method"] == "none"]
    assert set(ref["verdict"]) <= {"pass"}


# ---------------------------------------------------------------------------- quality
def test_sample_quality_every_method_documented_metrics(tmp_path):
    methods = ["none", "weight_clip", "grad_penalty", "sn_w", "sn_conv", "bsn"]
    out = ResultsDir(tmp_path / "r")
    rows = run_suites([quality_suite(methods)], "ci", out, progress=False)
    per_seed = rows[rows["case"] != "summary"]
    assert (per_seed["status"] == "ok").all(), per_seed[per_seed["status"] != "ok"]["message"].tolist()
    expected = {"data=ring8": {"diverged", "iterations_completed", "modes_covered", "hq_share",
                               "energy_distance"},
                "data=digits": {"diverged", "iterations_completed", "fid_digits_cnn", "kid_digits_cnn",
                                "modes_covered", "confident_share", "extractor_digits_cnn"}}
    for (case, method), group in per_seed.groupby(["case", "method"]):
        spectral = {"variance_over_claimed_bound"} if method == "sn_w" else set()  # reshape_spectral claim only
        assert set(group["metric"]) == expected[case] | {"stable_rank"} | spectral, (case, method)
    fid = per_seed[per_seed["metric"] == "fid_digits_cnn"]
    assert fid["unit"].str.match(r"^1 @ digits-cnn-v1-[0-9a-f]{10}$").all()
    assert fid["unit"].nunique() == 1
    # traces: losses, per-layer gradient and spectral norms, variance against Thm 2's bound
    traces = out.traces()
    series = set(traces["series"])
    for prefix in ("loss_d", "grad_norm/", "sigma_reshaped/", "variance_over_bound/", "variance_bound/"):
        assert any(s.startswith(prefix) for s in series), prefix
    assert set(traces["step"]) == {2, 4, 6, 8}
    assert len(out.path.joinpath("artifacts").rglob("*.png").__iter__().__next__().read_bytes()) > 100
    # summaries across seeds name their method and case
    summary = rows[rows["case"] == "summary"]
    assert "fid_digits_cnn_mean[data=digits]" in set(summary["metric"])
    assert set(summary[summary["metric"] == "energy_distance_mean[data=ring8]"]["method"]) == set(methods)


def test_nan_method_is_diverged_not_an_error(tmp_path):
    spec = {"name": f"{__name__}:NaNPenalty", "label": "nan"}
    rows = run_suites([quality_suite([spec, "sn_w"], data=("ring8", "digits"))], "ci",
                      ResultsDir(tmp_path / "r"), progress=False)
    assert not (rows["status"] == "error").any(), rows[rows["status"] == "error"]["message"].tolist()
    nan = rows[(rows["method"] == "nan") & (rows["case"] != "summary")]
    flags = nan[nan["metric"] == "diverged"]
    assert flags["value"].tolist() == [1.0, 1.0] and (flags["status"] == "ok").all()
    assert (nan[nan["metric"] == "iterations_completed"]["value"] == 0).all()
    quality = nan[~nan["metric"].isin(["diverged", "iterations_completed"])]
    assert set(quality["metric"]) == {"modes_covered", "hq_share", "energy_distance",
                                      "fid_digits_cnn", "kid_digits_cnn", "confident_share"}
    assert (quality["status"] == "diverged").all()
    assert (quality["message"] == "diverged at iteration 1").all()
    assert flags["message"].str.startswith("diverged at iteration 1 (non-finite").all()
    ok = rows[(rows["method"] == "sn_w") & (rows["metric"] == "diverged")]
    assert ok["value"].tolist() == [0.0, 0.0]


# ----------------------------------------------------------------------------- suites
def test_shipped_suites_load_and_plan():
    tt, sq = resolve_suites(["training_time", "sample_quality"], SUITES)
    assert set(m if isinstance(m, str) else m["name"] for m in tt.raw["methods"]) == set(ALL_METHODS)
    ci = tt.cases("ci", grouped=True)
    assert len(ci) == 1 and len(ci[0].methods) == 12 and ci[0].device == "cpu"
    assert {c.device for c in tt.cases("full", grouped=True)} == {"cuda"}
    assert {c.params["model"] for c in tt.cases("full", grouped=True)} == {"standard_cnn", "resnet32"}
    sq_ci = sq.cases("ci")
    assert len({c.seed for c in sq_ci}) >= 3 and {c.params["data"] for c in sq_ci} >= {"ring8", "digits"}
    assert {c.method.name for c in sq_ci} >= {"none", "weight_clip", "grad_penalty", "sn_w", "sn_conv", "bsn"}
    assert sq.resolved("ci")["settings"]["inception"] == "never"
    full = sq.cases("full")
    assert {c.params["setting"] for c in full} == set("ABCDEF") and {c.device for c in full} == {"cuda"}


def _shrunk(name: str, tmp_path: Path, **ci_settings) -> Path:
    data = yaml.safe_load((SUITES / f"{name}.yaml").read_text())
    data = copy.deepcopy(data)
    data["presets"]["ci"].setdefault("settings", {}).update(ci_settings)
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def test_cli_runs_the_shipped_suites_with_a_tiny_override(tmp_path):
    tt = _shrunk("training_time", tmp_path, repeats=2, warmup=1)
    sq = _shrunk("sample_quality", tmp_path, iterations_for={"ring8": 4, "digits": 3}, n_fake=100,
                 n_real=200, batch=8)
    data = yaml.safe_load(tt.read_text())
    data["presets"]["ci"]["matrix"] = {"batch": [2], "size": [8]}
    data["methods"] = ["sn_w", "grad_penalty"]
    tt.write_text(yaml.safe_dump(data, sort_keys=False))
    data = yaml.safe_load(sq.read_text())
    data["presets"]["ci"]["seeds"] = [0]
    data["methods"] = ["none", "sn_w"]
    sq.write_text(yaml.safe_dump(data, sort_keys=False))
    out = tmp_path / "out"
    assert main(["run", str(tt), str(sq), "--preset", "ci", "--out", str(out)]) == 0
    rows = pd.read_csv(out / "results.csv", keep_default_na=False)
    assert set(rows["suite"]) == {"training_time", "sample_quality"}
    assert (rows["status"] == "ok").all()
    assert set(rows[rows["suite"] == "training_time"]["method"]) == {"none", "sn_w", "grad_penalty"}
