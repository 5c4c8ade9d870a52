"""The prepared GPU session (benchmarks/gpu, docs/gpu.md) on the CPU: run.sh parses, and the
bf16/compile table measures what it says for a small set of methods."""
from __future__ import annotations

import csv
import json
import math
import shutil
import subprocess
from pathlib import Path

import pytest
import torch

from benchmarks.bench_methods import Step
from benchmarks.gpu import amp_compile, summary
from harness.results import ResultsDir

ROOT = Path(__file__).resolve().parents[1]
GPU = ROOT / "benchmarks" / "gpu"


@pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")
@pytest.mark.parametrize("script", ["run.sh", "fetch_wheels.sh"])
def test_scripts_parse(script):
    done = subprocess.run(["bash", "-n", str(GPU / script)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


def test_run_sh_refuses_unknown_argument():
    done = subprocess.run(["bash", str(GPU / "run.sh"), "--gpu"], capture_output=True, text=True, timeout=30)
    assert done.returncode == 2 and "unknown argument --gpu" in done.stdout


def test_amp_compile_table_on_cpu(tmp_path, capsys):
    out = tmp_path / "ac"
    assert amp_compile.main(["--device", "cpu", "--methods", "sn_w", "--rounds", "2", "--warmup", "0",
                             "--batch", "2", "--no-compile", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    with open(out / "amp_compile.csv") as f:
        rows = {(r["method"], r["mode"]): r for r in csv.DictReader(f)}
    assert set(rows) == {("none", "fp32"), ("sn_w", "fp32"), ("none", "bf16"), ("sn_w", "bf16")}  # none added
    for (method, mode), r in rows.items():
        assert r["works"] == "True" and r["error"] == ""
        assert 0 < float(r["min_ms"]) <= float(r["median_ms"]) <= float(r["max_ms"])
        assert math.isfinite(float(r["x_none"])) and float(r["x_none"]) > 0
        assert math.isnan(float(r["compile_s"]))  # --no-compile: nothing compiled
    for mode in ("fp32", "bf16"):  # a per-round ratio of none to itself is exactly one
        assert float(rows[("none", mode)]["x_none"]) == 1.0
    assert float(rows[("sn_w", "fp32")]["x_fp32"]) == 1.0
    table = (out / "amp_compile.md").read_text()
    assert "| sn_w | bf16 | yes |" in table and "| none | fp32 | yes |" in table
    assert table in printed


def test_amp_compile_reports_failures_as_rows():
    """A method that cannot be built, or an update with a non-finite loss, is a row saying why."""
    trial = amp_compile.prepare("no_such_method", "fp32", "cpu", 2)
    assert trial.step is None and trial.error.startswith("MethodLoadError: unknown method 'no_such_method'")
    r = amp_compile.row(trial, None)
    assert r["works"] is False and math.isnan(r["median_ms"])
    step = Step("none", batch=2)
    assert amp_compile.finite_update(step) == ""
    step.real = torch.full_like(step.real, float("nan"))
    assert amp_compile.finite_update(step).startswith("non-finite loss")


def test_amp_compile_keeps_what_it_found_when_timing_fails(monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("device lost\nmore")

    monkeypatch.setattr(amp_compile, "interleaved", broken)
    rows = amp_compile.measure(["none"], ["fp32"], "cpu", batch=2, rounds=1, warmup=0, compile_budget=0,
                               log=lambda line: None)
    assert len(rows) == 1 and rows[0]["works"] is True
    assert rows[0]["error"] == "timing failed: RuntimeError: device lost" and math.isnan(rows[0]["median_ms"])


def test_summary_table_from_training_time_rows(tmp_path):
    """summary.py pivots a training_time run into the README's table, one line per model and method."""
    params = json.dumps({"model": "standard_cnn", "size": 32, "batch": 64})
    values = {"none": (10.0, 1.0, 1.0, 50.0), "sn_w": (10.4, 1.04, 1.1, 52.4)}
    rows = [{"suite": "training_time", "case": "model=standard_cnn,size=32,batch=64", "method": method, "seed": 0,
             "metric": metric, "value": v, "unit": "", "device": "cuda:NVIDIA H200", "status": "ok", "message": "",
             "params": params, "samples": ""}
            for method, vals in values.items() for metric, v in zip(summary.METRICS, vals)]
    ResultsDir(tmp_path / "tt").append_case(["training_time", "model=standard_cnn,size=32,batch=64", "", 0], rows)
    lines = summary.table(tmp_path / "tt").splitlines()
    assert lines[2:] == ["| standard_cnn b64 | none | 10.00 | 1.000 | 1.000 | 50 | cuda:NVIDIA H200 |",
                         "| standard_cnn b64 | sn_w | 10.40 | 1.040 | 1.100 | 52 | cuda:NVIDIA H200 |"]


def test_summary_of_a_part_that_wrote_nothing_is_one_line(tmp_path):
    missing = tmp_path / "missing"
    assert summary.table(missing) == f"no training_time table: {missing}: no such results folder"
