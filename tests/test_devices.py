"""``--device``: a bad name, a CUDA device the machine lacks, and a suite that computes on the
CPU whatever --device says are each exit 2 and one line, before anything is written."""
from __future__ import annotations

import argparse

import pytest
import torch

from harness.cli.main import main
from harness.runners.base import kinds, runner_for
from harness.runners.devices import device_name

from cli_support import lipbench, one_line_error, write_suite

ON_DEVICE = {"claims", "lipschitz_certificate", "sample_quality", "training_time"}


@pytest.mark.parametrize("text, normalised", [("cpu", "cpu"), ("cuda", "cuda"), ("cuda:1", "cuda:1")])
def test_device_names_cpu_cuda_and_cuda_n(text, normalised):
    assert device_name(text) == normalised


@pytest.mark.parametrize("text", ["cudaa", "cpu:0", "meta", "mps", "cuda:x", ""])
def test_other_device_names_are_refused(text):
    with pytest.raises(argparse.ArgumentTypeError, match="expected cpu, cuda or cuda:N"):
        device_name(text)


def test_the_runners_that_compute_on_the_device_declare_it():
    declared = {kind for kind in kinds() if runner_for(kind).declarations.on_device}
    assert declared == ON_DEVICE


@pytest.mark.parametrize("command", ["run", "verify", "plan", "check"])
def test_a_bad_device_name_is_one_line(tmp_path, capsys, command):
    args = ["sn_w"] if command == "check" else [write_suite(tmp_path / "s")]
    code, err = lipbench(capsys, command, *args, "--device", "gpu")
    one_line_error(code, err, "--device", "'gpu'")


def test_a_cpu_suite_on_another_device_is_refused_before_anything_is_written(tmp_path, capsys):
    out = tmp_path / "r"
    code, err = lipbench(capsys, "run", write_suite(tmp_path / "s"), "--device", "cuda", "--out", out)
    one_line_error(code, err, "--device cuda: tiny computes on the CPU whatever --device says")
    assert not out.exists()


@pytest.mark.skipif(torch.cuda.is_available(), reason="a machine without CUDA (as CI)")
@pytest.mark.parametrize("device", ["cuda", "cuda:3"])
def test_a_cuda_device_this_machine_lacks_is_refused_before_anything_is_written(tmp_path, capsys, device):
    out = tmp_path / "r"
    code, err = lipbench(capsys, "run", "claims", "--device", device, "--out", out)
    one_line_error(code, err, f"--device {device}: torch finds no CUDA device on this machine")
    assert not out.exists()


def test_check_on_another_device_runs_only_the_suites_that_compute_there(capsys):
    code, err = lipbench(capsys, "check", "sn_w", "--suites", "contract", "spectral_accuracy", "--device", "cuda")
    one_line_error(code, err, "--device cuda: no suite that applies to 'sn_w' computes there",
                   "contract, spectral_accuracy: compute on the CPU")


def test_list_says_which_suites_compute_on_the_device(capsys):
    assert main(["list"]) == 0
    lines = {line.split()[0]: line for line in capsys.readouterr().out.splitlines() if "kind=" in line}
    assert "on=--device" in lines["training_time"] and "on=cpu" in lines["thm2_variance"]


@pytest.mark.parametrize("command", ["run", "check"])
def test_a_refused_device_leaves_no_results_folder_behind(tmp_path, capsys, monkeypatch, command):
    """Without --out a run makes its own dated folder under results/; refused before anything is
    written, it takes that folder (and a results/ it made) away again."""
    monkeypatch.chdir(tmp_path)
    args = ["sn_w", "--suites", "claims"] if command == "check" else ["claims"]
    code, err = lipbench(capsys, command, *args, "--device", "cuda:7")
    one_line_error(code, err, "--device cuda:7")
    assert not (tmp_path / "results").exists()
    (tmp_path / "results" / "mine").mkdir(parents=True)  # a results/ of the user's: kept as it is
    code, err = lipbench(capsys, command, *args, "--device", "cuda:7")
    one_line_error(code, err, "--device cuda:7")
    assert [p.name for p in (tmp_path / "results").iterdir()] == ["mine"]
