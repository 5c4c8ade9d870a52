"""The Ray executor on a local Ray cluster: the rows of the local executor, one writer, resume
across executors, exclusive cases alone. (Faults on a cluster of several nodes:
``test_executors_cluster.py``.)

Ray is an optional extra; CI installs it (``tox -e py`` has ``extras = dev, ray``). Clusters
have 2 CPUs (the CI box has two cores) and are always shut down; after the first test the
others share one cluster so its workers start once.
"""
import json
import os
from pathlib import Path

import pytest

from ray_support import cases_lines, markers_of, ray_or_skip, sleepy_suite, tidy

ray = ray_or_skip()

from harness.cli.main import main  # noqa: E402
from harness.results import ResultsDir  # noqa: E402
from harness.runners import run_suites  # noqa: E402

TESTS = Path(__file__).resolve().parent
TINY = {"name": "tiny", "description": "d", "kind": "thm2_variance", "seeds": [0, 1],
        "matrix": {"m": [2, 4, 8], "n": [3], "distribution": ["gaussian", "rademacher"]},
        "settings": {"matrices": 30}, "presets": {"ci": {}, "full": {}}}


def test_the_cli_on_ray_gives_the_local_rows_and_records_each_cases_node(tmp_path, capsys):
    """Deterministic cases, and a case that kills its own worker process, through both executors."""
    (tmp_path / "tiny.json").write_text(json.dumps(TINY))
    sleepy = sleepy_suite(tmp_path / "markers", modes=["exit", "ok"], seconds=[0], seeds=[0])
    (tmp_path / "sleepy.json").write_text(json.dumps(sleepy.raw))
    suites = [str(tmp_path / "tiny.json"), str(tmp_path / "sleepy.json")]
    # exit 1: the sleepy case that kills its worker is an error row (docs/cli.md, exit codes)
    assert main(["run", *suites, "--out", str(tmp_path / "local")]) == 1
    assert main(["run", *suites, "--out", str(tmp_path / "ray"), "--executor", "ray", "--workers", "2"]) == 1
    err = capsys.readouterr().err
    local, remote = ResultsDir(tmp_path / "local"), ResultsDir(tmp_path / "ray")
    assert tidy(local.rows()).equals(tidy(remote.rows()))  # values, statuses and messages alike
    killed = remote.rows()[remote.rows()["status"] == "error"]
    assert list(killed["case"]) == ["mode=exit,seconds=0"] and "exited with code 9" in killed["message"].iloc[0]
    executor = remote.read_json("manifest.json")["executor"]
    assert executor["name"] == "ray" and sum(executor["cases_per_node"].values()) == 14
    assert all(record.get("node") for record in remote.case_records())
    assert "ray: 1 node, 2 CPU" in err and "running" in err and "queued" in err
    assert not ray.is_initialized()  # the local cluster it started is gone


@pytest.fixture(scope="module")
def local_ray():
    """One 2-CPU local cluster for the rest of this module (workers see this folder's modules)."""
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(TESTS), os.environ.get("PYTHONPATH")]))
    ray.init(num_cpus=2, include_dashboard=False, object_store_memory=100 * 2**20, logging_level="WARNING")
    yield
    ray.shutdown()


def test_a_run_resumes_with_the_other_executor(tmp_path, local_ray):
    """local (seed 0) -> ray resumes (seeds 0-1) -> local resumes (seeds 0-2): each case computed once."""
    out = ResultsDir(tmp_path / "r")
    markers = tmp_path / "markers"
    for seeds, executor in (([0], "local"), ([0, 1], "ray"), ([0, 1, 2], "local")):
        run_suites([sleepy_suite(markers, seconds=[0, 1], seeds=seeds)], "ci", out, resume=True,
                   progress=False, executor=executor)
    lines = cases_lines(out.path)
    assert sorted(tuple(line["key"]) for line in lines) == sorted(
        ("sleepy", f"mode=ok,seconds={s}", "", seed) for s in (0, 1) for seed in (0, 1, 2))
    assert not out.unfinished_attempts()
    assert len(out.rows()) == 6 and set(out.rows()["status"]) == {"ok"}


def test_exclusive_cases_share_their_node_with_nothing(tmp_path, local_ray):
    """Shared cases run two at a time on the 2-CPU node; an exclusive one runs with nothing beside it."""
    markers = tmp_path / "markers"
    suites = [sleepy_suite(markers, name="before", seconds=[1], seeds=[0, 1, 2]),
              sleepy_suite(markers, name="alone", seconds=[1], seeds=[0, 1], resources={"exclusive": True}),
              sleepy_suite(markers, name="after", seconds=[1], seeds=[0, 1, 2])]
    rows = run_suites(suites, "ci", ResultsDir(tmp_path / "r"), progress=False, executor="ray")
    assert set(rows["status"]) == {"ok"}
    spans = {name: (m["start"], m["end"]) for name, m in markers_of(markers).items()}

    def beside(name):
        start, end = spans[name]
        return [other for other, (s, e) in spans.items() if other != name and s < end and start < e]
    assert any(beside(name) for name in spans if not name.startswith("alone")), "nothing ran in parallel"
    for name in spans:
        if name.startswith("alone"):
            assert not beside(name), f"{name} ran beside {beside(name)}"
