"""What lipbench measures on a GPU, checked where one is (benchmarks/gpu/run.sh runs this file
on the lent GPU machine, docs/gpu.md); every test skips without CUDA, as on CI."""
from __future__ import annotations

import math

import pandas as pd
import pytest
import torch

from benchmarks.gpu import amp_compile
from harness.cli.main import main
from harness.metrics import timing as T
from harness.results.manifest import device_class, device_label

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")


def test_timer_uses_cuda_events_and_waits_for_queued_work():
    a = torch.randn(2048, 2048, device="cuda")
    with T.Timer(device="cuda") as t:
        for _ in range(20):
            a = a @ a / 64
    assert t.cuda and t.ms > 0
    assert T.time_call(lambda: torch.cuda._sleep(10_000_000), device="cuda") > 1  # 10M cycles > 1 ms


def test_peak_memory_counts_an_allocation():
    out = T.cuda_peak_memory_mib(lambda: torch.empty(64 * 2**20, dtype=torch.uint8, device="cuda"))
    assert out["delta_mib"] >= 64


def test_device_label_names_the_gpu_and_its_baseline_folder():
    label = device_label("cuda")
    assert label == f"cuda:{torch.cuda.get_device_name(0)}"
    assert device_class(label).startswith("cuda-") and " " not in device_class(label)


def test_training_time_runs_on_cuda(tmp_path):
    out = tmp_path / "tt"
    assert main(["run", "training_time", "--preset", "ci", "--device", "cuda", "--methods", "none,sn_w",
                 "--set", "repeats=2", "--set", "warmup=1", "--out", str(out)]) == 0
    rows = pd.read_csv(out / "results.csv", keep_default_na=False)
    assert (rows["status"] == "ok").all() and set(rows["method"]) == {"none", "sn_w"}
    assert set(rows["device"]) == {device_label("cuda")}
    ratio = rows[(rows["method"] == "sn_w") & (rows["metric"] == "iteration_ratio")]["value"]
    assert len(ratio) == 1 and math.isfinite(ratio.iloc[0]) and ratio.iloc[0] > 0


def test_amp_compile_measures_on_cuda(tmp_path):
    rows = amp_compile.measure(["none", "sn_w"], ["fp32", "bf16"], "cuda", batch=8, rounds=2, warmup=1,
                               compile_budget=0, log=lambda line: None)
    assert [(r["method"], r["mode"]) for r in rows] == [("none", "fp32"), ("sn_w", "fp32"),
                                                       ("none", "bf16"), ("sn_w", "bf16")]
    fp32 = [r for r in rows if r["mode"] == "fp32"]
    assert all(r["works"] and r["median_ms"] > 0 for r in fp32)
