"""Stored baselines: ``baselines/<device class>/<suite>.<preset>.json``, one row per line.

Each file holds the suite's rows from one complete run (values, units, statuses and
repeated samples) and the provenance of that run, so a diff shows what moved and why.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd

from harness.results import ResultsDir, atomic_write_text
from harness.results.manifest import now

BASELINE_COLUMNS = ["case", "method", "seed", "metric", "value", "unit", "status", "samples"]


class IncompleteRunError(RuntimeError):
    """Baselines are only written from a run that finished every planned case without error."""


def baseline_path(root: str | Path, device_class: str, suite: str, preset: str) -> Path:
    return Path(root) / device_class / f"{suite}.{preset}.json"


def load_baseline(root: str | Path, device_class: str, suite: str, preset: str) -> pd.DataFrame | None:
    """The baseline rows of a suite (``None`` when no baseline exists)."""
    path = baseline_path(root, device_class, suite, preset)
    if not path.exists():
        return None
    try:
        data = json.loads(path.read_text())
        return pd.DataFrame(data["rows"], columns=BASELINE_COLUMNS).fillna({"samples": ""})
    except (json.JSONDecodeError, KeyError) as exc:
        raise ValueError(f"{path}: not a lipbench baseline file ({exc})") from None


def render_baseline(suite: str, preset: str, device_class: str, provenance: dict[str, Any],
                    rows: pd.DataFrame) -> str:
    """The file text: a header and one compact JSON row per line (human-diffable)."""
    records = rows[BASELINE_COLUMNS].sort_values(["case", "method", "seed", "metric"]).to_dict("records")
    body = ",\n".join("  " + json.dumps(r, sort_keys=True) for r in records)
    head = json.dumps({"suite": suite, "preset": preset, "device_class": device_class,
                       "provenance": provenance}, indent=1, sort_keys=True)
    return head[:-2] + ',\n "rows": [\n' + body + "\n ]\n}\n"


def update_baselines(results: ResultsDir, root: str | Path) -> list[Path]:
    """Write baselines for every suite of a complete run; returns the files written."""
    manifest = results.read_json("manifest.json")
    if not manifest or not manifest.get("finished"):
        raise IncompleteRunError(f"{results.path}: the run did not finish; baselines need a complete run")
    rows = results.rows()
    errors = rows[rows["status"] == "error"]
    if len(errors):
        first = errors.iloc[0]
        raise IncompleteRunError(f"{results.path}: {len(errors)} error row(s), e.g. {first['suite']} "
                                 f"{first['case']} {first['method']}; fix them before updating baselines")
    planned = {tuple(k) for k in results.read_json("plan.json", [])}
    done = results.completed_keys()
    if planned - done:
        raise IncompleteRunError(f"{results.path}: {len(planned - done)} planned case(s) have no result")
    provenance = {k: manifest.get(k) for k in ("git_commit", "packages", "device", "torch", "command",
                                               "started", "finished")}
    provenance["written"] = now()
    written = []
    for suite, frame in rows.groupby("suite"):
        path = baseline_path(root, manifest["device_class"], suite, manifest["preset"])
        atomic_write_text(path, render_baseline(suite, manifest["preset"], manifest["device_class"],
                                                provenance, frame))
        written.append(path)
    return written
