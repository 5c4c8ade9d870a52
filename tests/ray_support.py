"""Shared by the Ray tests: a runner that sleeps and leaves a marker, suites of it, row tidying.

Importable on Ray workers too (the tests put this folder on their ``PYTHONPATH``), so the
runner's class travels to them by reference like any registered runner.
"""
import json
import os
import time
from pathlib import Path

import pytest

from harness.results import Measurement
from harness.runners import Runner, register
from harness.runners.spec import Declarations, Metric, Setting
from harness.suite import Suite


def ray_or_skip():
    """``ray``; these tests skip where the optional extra is not installed, but fail where
    ``LIPBENCH_REQUIRE_RAY`` is set (CI's ``tox -e py`` installs the extra and sets it)."""
    if os.environ.get("LIPBENCH_REQUIRE_RAY"):
        import ray
        return ray
    return pytest.importorskip("ray", reason='the ray extra is not installed (pip install "lipbench[ray]")')


@register
class SleepyRunner(Runner):
    """Writes ``<marker_dir>/<case>-<seed>.json`` (pid, device, visible GPUs, start and end time)
    around a sleep of ``seconds``; mode ``exit`` ends its own process instead."""

    kind = "sleepy_for_tests"
    uses_methods = False
    declarations = Declarations(
        params={"mode": Setting(str, "ok", "ok or exit"), "seconds": Setting(float, 0.0, "sleep")},
        settings={"marker_dir": Setting(str, description="where markers go")},
        metrics={"slept": Metric("info", "seconds slept", "s")})

    def run(self, case, ctx):
        marker = Path(case.settings["marker_dir"], f"{case.suite}-{case.case}-{case.seed}.json")
        info = {"pid": os.getpid(), "device": case.device, "start": time.time(),
                "cuda_visible": os.environ.get("CUDA_VISIBLE_DEVICES")}
        write_marker(marker, info)
        if case.params["mode"] == "exit":
            os._exit(9)
        time.sleep(float(case.params["seconds"]))
        write_marker(marker, {**info, "end": time.time()})
        return [Measurement("slept", float(case.params["seconds"]))]


def write_marker(marker: Path, info: dict) -> None:
    """Replace ``marker`` in one step: a test polling the folder never reads a half-written file."""
    partial = marker.with_name(f".{marker.name}.{os.getpid()}.partial")
    partial.write_text(json.dumps(info))
    os.replace(partial, marker)


def sleepy_suite(markers: Path, name="sleepy", modes=("ok",), seconds=(1,), seeds=(0, 1), resources=None):
    markers.mkdir(exist_ok=True)
    data = {"name": name, "description": "d", "kind": "sleepy_for_tests", "seeds": list(seeds),
            "matrix": {"mode": list(modes), "seconds": list(seconds)}, "settings": {"marker_dir": str(markers)},
            "timeout": 60, "presets": {"ci": {}, "full": {}}}
    if resources:
        data["resources"] = resources
    return Suite.from_dict(data)


def markers_of(folder: Path) -> dict[str, dict]:
    """The markers written so far (one being written, still empty or half, is left out)."""
    found = {}
    for path in folder.glob("*.json"):
        try:
            found[path.stem] = json.loads(path.read_text())
        except json.JSONDecodeError:
            continue
    return found


def tidy(rows):
    keys = ["suite", "case", "method", "seed", "metric"]
    return rows.sort_values(keys).reset_index(drop=True)


def cases_lines(folder: Path) -> list[dict]:
    """Every line of cases.jsonl (a case computed twice would appear twice)."""
    return [json.loads(line) for line in (folder / "cases.jsonl").read_text().splitlines()]
