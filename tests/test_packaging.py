"""The wheel is the product: built here, installed into a fresh virtual environment, and used
from an empty folder (suites, baselines and the build commit come with it as package data).

Dependencies (torch, ...) are not reinstalled: the fresh environment sees this one's
site-packages through a ``.pth`` file placed *after* its own, so ``harness`` is imported
from the wheel (asserted) and nothing is downloaded.
"""
from __future__ import annotations

import csv
import json
import os
import site
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

from test_user_model import MODELS

ROOT = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.slow

VARIANT = '''
"""A researcher's variant written from scratch: W / sigma(W-hat) by an exact SVD on every forward."""
import torch
from torch import nn
from torch.nn.utils import parametrize

from harness.layers import weight_layers
from harness.methods import Claim, Method, MethodTags


class ExactSigma(nn.Module):
    def __init__(self, out_dim):
        super().__init__()
        self.out_dim = out_dim  # ConvTranspose2d keeps its output channels in dim 1

    def forward(self, weight):
        flat = weight.movedim(self.out_dim, 0).reshape(weight.shape[self.out_dim], -1)
        return weight / torch.linalg.matrix_norm(flat, ord=2)


class ExactSN(Method):
    name = "exact_sn_from_a_wheel"
    claim = Claim("reshape_spectral", 1.0)
    tags = MethodTags(reparametrizes=True)

    def apply(self, model):
        for _, layer in weight_layers(model):
            out_dim = 1 if isinstance(layer, nn.ConvTranspose2d) else 0
            parametrize.register_parametrization(layer, "weight", ExactSigma(out_dim))
        return model
'''


def _run(argv: list[str], cwd: Path, env: dict[str, str], timeout: float = 900) -> subprocess.CompletedProcess:
    return subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    built = _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--quiet",
                  "-w", str(out), str(ROOT)], cwd=out, env=os.environ.copy())
    assert built.returncode == 0, built.stderr
    (path,) = out.glob("lipbench-*.whl")
    return path


@pytest.fixture(scope="module")
def fresh_venv(tmp_path_factory, wheel) -> Path:
    venv = tmp_path_factory.mktemp("venv") / "fresh"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
    purelib = Path(_run([str(venv / "bin" / "python"), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                        cwd=venv, env={}).stdout.strip())
    ours = {sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"], *site.getsitepackages()}
    (purelib / "zz_dependencies.pth").write_text("\n".join(sorted(p for p in ours if Path(p).is_dir())) + "\n")
    installed = _run([str(venv / "bin" / "python"), "-m", "pip", "install", "--no-deps", "--no-index", "--quiet",
                      "--ignore-installed",  # lipbench may be installed where the dependencies are (tox)
                      str(wheel)], cwd=venv, env=_clean_env())
    assert installed.returncode == 0, installed.stderr
    return venv


def _clean_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "LIPBENCH_", "VIRTUAL_ENV"))}
    env["OMP_NUM_THREADS"] = "1"
    return env


def test_the_wheel_carries_suites_baselines_and_its_build_commit(wheel):
    names = zipfile.ZipFile(wheel).namelist()
    for suite in (ROOT / "suites").glob("*.yaml"):
        assert f"harness/_shipped/suites/{suite.name}" in names
    for baseline in (ROOT / "baselines").rglob("*.json"):
        assert f"harness/_shipped/baselines/{baseline.relative_to(ROOT / 'baselines')}" in names
    build = json.loads(zipfile.ZipFile(wheel).read("harness/_shipped/build.json"))
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    if head:  # a source tree without git records "unknown"
        assert build["commit"].startswith(head)


def test_from_an_empty_folder_list_and_verify(tmp_path, fresh_venv):
    work = tmp_path / "empty"
    work.mkdir()
    env = _clean_env()
    lipbench = str(fresh_venv / "bin" / "lipbench")

    where = _run([str(fresh_venv / "bin" / "python"), "-c", "import harness; print(harness.__file__)"], work, env)
    assert where.stdout.strip().startswith(str(fresh_venv)), where.stdout

    version = _run([lipbench, "--version"], work, env)
    assert version.returncode == 0 and version.stdout.startswith("lipbench "), version.stderr
    assert "unknown" not in version.stdout or not (ROOT / ".git").exists()

    listed = _run([lipbench, "list"], work, env)
    assert listed.returncode == 0, listed.stderr
    shipped = sorted(p.stem for p in (ROOT / "suites").glob("*.yaml"))
    assert all(f"  {name} " in listed.stdout for name in shipped), listed.stdout
    assert str(fresh_venv) in listed.stdout  # the suites folder shown is the installed one

    verified = _run([lipbench, "verify", "contract", "--preset", "ci", "--out", "results/contract",
                     "--report", "contract.html", "--junit", "contract.xml"], work, env)
    assert verified.returncode == 0, verified.stdout + verified.stderr
    manifest = json.loads((work / "results" / "contract" / "manifest.json").read_text())
    assert manifest["lipbench_version"] == version.stdout.split()[1]
    assert manifest["git_commit"] == version.stdout.split("(build ")[1].rstrip(")\n")
    assert manifest["workdir_commit"] is None  # the empty folder is no repository

    assert sorted(p.name for p in work.iterdir()) == ["contract.html", "contract.xml", "results"]


def test_the_github_actions_example_runs_its_steps_locally(tmp_path, wheel, fresh_venv):
    """A variant defined in a folder of its own, checked by examples/ci/lipbench-check.yml, step by step: ``uses:`` steps are GitHub's (checkout: the
    folder; setup-python: the fresh venv; upload-artifact: its paths must exist), ``run:`` steps
    run in bash with the job's env, installing lipbench from the wheel built here."""
    import yaml

    workflow = yaml.safe_load((ROOT / "examples" / "ci" / "lipbench-check.yml").read_text())
    (job,) = workflow["jobs"].values()
    work = tmp_path / "repo"
    work.mkdir()
    (work / "my_variant.py").write_text(VARIANT)
    summary = tmp_path / "step_summary.md"
    env = {**_clean_env(), **job["env"], "LIPBENCH": str(wheel), "LIPBENCH_ARGS": "--suites contract",
           "GITHUB_STEP_SUMMARY": str(summary), "PATH": f"{fresh_venv / 'bin'}:{os.environ['PATH']}"}
    uploaded = []
    for step in job["steps"]:
        if "run" in step:
            done = _run(["bash", "-e", "-c", step["run"]], work, env)
            assert done.returncode == 0, (step.get("name"), done.stdout[-2000:], done.stderr[-2000:])
        elif step["uses"].startswith("actions/upload-artifact"):
            uploaded += step["with"]["path"].split()
    assert uploaded and all((work / p).exists() for p in uploaded), uploaded
    text = summary.read_text()
    assert text.startswith("### lipbench check") and "PASS" in text and "| contract |" in text



#: The cheapest claims run that still trains (the suite's ci preset is 200 updates).
CHEAP_CLAIMS = ["--seeds", "0", "--set", "iterations=12", "--set", "warmup=2", "--set", "trace_points=2",
                "--set", "random_points=2", "--set", "settle_budget=400"]


def test_a_researcher_checks_a_variant_on_their_discriminator_and_data_then_compares_runs(tmp_path, fresh_venv):
    """Issue 19's whole path from the wheel, in an empty folder: their variant, on their own
    discriminator and .npy data, judged beside sn_w and none on that model; then two runs that
    differ only in a Monte Carlo sample size compare without a false regression."""
    import numpy as np

    work = tmp_path / "mine"
    work.mkdir()
    (work / "my_variant.py").write_text(VARIANT)
    (work / "usermodels.py").write_text(MODELS)  # test_user_model's discriminators, written from scratch
    grid = np.linspace(0, 255, 16 * 16).reshape(16, 16)
    images = np.stack([np.roll(grid, k, axis=k % 2) for k in range(64)]).astype(np.uint8)  # 64 x 16 x 16
    np.save(work / "x.npy", images)
    env = _clean_env()
    lipbench = str(fresh_venv / "bin" / "lipbench")

    checked = _run([lipbench, "check", "my_variant:ExactSN", "--model", "usermodels:TinyD", "--input-shape", "1,16,16",
                    "--data", "npy:x.npy", "--suites", "claims", *CHEAP_CLAIMS, "--out", "results/mine",
                    "--report", "mine.html", "--junit", "mine.xml"], work, env)
    assert checked.returncode == 0, checked.stdout[-3000:] + checked.stderr[-3000:]
    with open(work / "results" / "mine" / "results.csv", newline="") as handle:
        methods = {row["method"] for row in csv.DictReader(handle)}
    assert methods == {"my_variant:ExactSN", "sn_w", "none"}  # --against defaults to sn_w and none
    html = (work / "mine.html").read_text()
    assert "my_variant:ExactSN" in html and "sn_w" in html

    for name, matrices in (("a", 40), ("b", 60)):
        ran = _run([lipbench, "run", "thm2_variance", "--preset", "ci", "--seeds", "0-1",
                    "--set", f"thm2_variance.matrices={matrices}", "--out", f"results/{name}"], work, env)
        assert ran.returncode == 0, ran.stderr[-3000:]
    compared = _run([lipbench, "compare", "results/a", "results/b", "--report", "ab.html"], work, env)
    assert compared.returncode == 0, compared.stdout[-3000:]
    assert len(compared.stdout.splitlines()) <= 30
    assert "matrices" in compared.stdout  # the setting that differs is named first
