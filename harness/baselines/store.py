"""Stored baselines: ``baselines/<device class>/<suite>.<preset>.json``, one row per line.

A baseline holds the suite's rows from one or more *sources*: complete runs on different
machines or CPU kernel settings (``ATEN_CPU_CAPABILITY``, thread counts), each with its
provenance. Every row names its source, so a training outcome's baseline is its values
over seeds *and* machines, and a diff shows what moved, where and why.

``update_baselines`` merges: a run replaces only its own source's rows of the
(case, method, seed) it produced; ``prune`` also removes every row whose case the runs did
not plan. It reports what was added, what changed beyond the metric's tolerance and what
was removed. Files are checked on load (format, suite, preset, device class matching the
folder, numeric values, known sources), every problem named ``file:line``.
"""
from __future__ import annotations

import hashlib
import json
import math
import platform
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence

import pandas as pd

from harness.errors import UserError
from harness.results import ResultsDir, atomic_write_text
from harness.results.manifest import now

FORMAT = 2
BASELINE_COLUMNS = ["case", "method", "seed", "metric", "source", "value", "unit", "status", "samples"]
_ROW_TYPES = {"case": str, "method": str, "seed": int, "metric": str, "source": str, "unit": str,
              "status": str, "samples": str}
_KEY = ["case", "method", "seed"]


class IncompleteRunError(UserError):
    """Baselines are only written from a run that finished every planned case without error."""


class BaselineFileError(UserError):
    """A baseline file that is not what lipbench writes; the message names file and line."""


def baseline_path(root: str | Path, device_class: str, suite: str, preset: str) -> Path:
    return Path(root) / device_class / f"{suite}.{preset}.json"


def source_id(manifest: dict[str, Any]) -> str:
    """A stable name for the machine and CPU settings a run came from."""
    env = manifest.get("env") or {}
    host = hashlib.sha256(str(manifest.get("host", platform.node())).encode()).hexdigest()[:6]
    kernel = str(manifest.get("cpu_capability") or env.get("ATEN_CPU_CAPABILITY") or "cpu").lower()
    libraries = "".join(f"-{env[k].lower()}" for k in ("ONEDNN_MAX_CPU_ISA", "MKL_ENABLE_INSTRUCTIONS", "MKL_CBWR")
                        if k in env)
    threads = manifest.get("case_threads") or manifest.get("torch_threads", "?")
    return f"{host}-{kernel}{libraries}-t{threads}"


@dataclass
class Baseline:
    """One baseline file: provenance per source and the rows."""

    suite: str
    preset: str
    device_class: str
    sources: dict[str, dict[str, Any]] = field(default_factory=dict)
    rows: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=BASELINE_COLUMNS))

    def render(self) -> str:
        """The file text: a header, then one compact JSON row per line (human-diffable)."""
        records = self.rows[BASELINE_COLUMNS].sort_values(["case", "method", "seed", "metric", "source"])
        body = ",\n".join("  " + json.dumps(_plain_row(r), sort_keys=True) for r in records.to_dict("records"))
        head = json.dumps({"format": FORMAT, "suite": self.suite, "preset": self.preset,
                           "device_class": self.device_class, "sources": self.sources},
                          indent=1, sort_keys=True)
        return head[:-2] + ',\n "rows": [\n' + body + ("\n" if body else "") + " ]\n}\n"


def _plain_row(row: dict[str, Any]) -> dict[str, Any]:
    out = dict(row)
    out["seed"] = int(out["seed"])
    value = float(out["value"])
    out["value"] = value if math.isfinite(value) else None
    return out


def load_baseline(root: str | Path, device_class: str, suite: str, preset: str) -> pd.DataFrame | None:
    """The baseline rows of a suite (``None`` when no baseline exists)."""
    found = read_baseline(baseline_path(root, device_class, suite, preset))
    return None if found is None else found.rows


def read_baseline(path: Path) -> Baseline | None:
    """The baseline in ``path`` (``None`` when absent), validated; :class:`BaselineFileError` otherwise."""
    if not path.exists():
        return None
    try:
        text = path.read_text(encoding="utf-8")
        data = json.loads(text)
    except UnicodeDecodeError:
        raise BaselineFileError(f"{path}:1: not UTF-8") from None
    except json.JSONDecodeError as exc:
        raise BaselineFileError(f"{path}:{exc.lineno}: not JSON ({exc.msg})") from None
    expected = {"device_class": path.parent.name}
    stem, _, preset = path.name[: -len(".json")].rpartition(".")
    expected.update(suite=stem, preset=preset)
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise BaselineFileError(f"{path}:1: format: not a lipbench baseline of format {FORMAT} (rewrite it "
                                "with `lipbench baseline update`)")
    for key, want in expected.items():
        if data.get(key) != want:
            raise BaselineFileError(f"{path}:{_line_of(text, key)}: {key}: {data.get(key)!r} does not match "
                                    f"the file's place ({want!r})")
    sources = data.get("sources")
    if not isinstance(sources, dict) or not all(isinstance(v, dict) for v in sources.values()):
        raise BaselineFileError(f"{path}:{_line_of(text, 'sources')}: sources: expected a mapping of provenances")
    rows = data.get("rows")
    if not isinstance(rows, list):
        raise BaselineFileError(f"{path}:{_line_of(text, 'rows')}: rows: expected a list")
    first = _line_of(text, "rows") + 1
    for i, row in enumerate(rows):
        problem = _row_problem(row, sources)
        if problem:
            raise BaselineFileError(f"{path}:{first + i}: rows[{i}]: {problem}")
    frame = pd.DataFrame(rows, columns=BASELINE_COLUMNS)
    frame["value"] = pd.to_numeric(frame["value"]).astype(float)
    frame["seed"] = frame["seed"].astype("int64")
    return Baseline(data["suite"], data["preset"], data["device_class"], sources, frame)


def _line_of(text: str, key: str) -> int:
    for number, line in enumerate(text.splitlines(), start=1):
        if line.lstrip().startswith(f'"{key}"'):
            return number
    return 1


def _row_problem(row: Any, sources: dict) -> str | None:
    if not isinstance(row, dict):
        return "expected a mapping"
    missing = [c for c in BASELINE_COLUMNS if c not in row]
    if missing:
        return f"missing {', '.join(missing)}"
    for key, kind in _ROW_TYPES.items():
        if not isinstance(row[key], kind) or (kind is int and isinstance(row[key], bool)):
            return f"{key}: expected {kind.__name__}, got {row[key]!r}"
    value = row["value"]
    if value is None:
        if row["status"] == "ok":
            return "value: null in an ok row"
    elif isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return f"value: expected a finite number, got {value!r}"
    if row["source"] not in sources:
        return f"source: {row['source']!r} has no provenance in sources"
    return None


@dataclass
class Changes:
    """What an update did to one baseline file."""

    path: Path
    added: int = 0
    removed: int = 0
    changed: list[str] = field(default_factory=list)

    def lines(self) -> list[str]:
        out = [f"{self.path}: {self.added} row(s) added, {len(self.changed)} changed beyond tolerance, "
               f"{self.removed} removed"]
        out += [f"  changed: {c}" for c in self.changed[:20]]
        if len(self.changed) > 20:
            out.append(f"  ... and {len(self.changed) - 20} more")
        return out


def check_complete(results: ResultsDir) -> dict[str, Any]:
    """The manifest of a run that finished every planned case without error rows."""
    manifest = results.read_json("manifest.json")
    if not manifest or not manifest.get("finished"):
        raise IncompleteRunError(f"{results.path}: the run did not finish; baselines need a complete run")
    rows = results.rows()
    errors = rows[rows["status"] == "error"]
    if len(errors):
        first = errors.iloc[0]
        raise IncompleteRunError(f"{results.path}: {len(errors)} error row(s), e.g. {first['suite']} "
                                 f"{first['case']} {first['method']}; fix them before updating baselines")
    missing = results.planned_keys() - results.completed_keys()
    if missing:
        raise IncompleteRunError(f"{results.path}: {len(missing)} planned case(s) have no result")
    return manifest


def update_baselines(runs: ResultsDir | Sequence[ResultsDir], root: str | Path, *, prune: bool = False,
                     tolerance=None) -> list[Changes]:
    """Merge complete runs into the baselines under ``root``; returns what changed per file.

    ``tolerance(suite, metric, old, new) -> bool`` says whether a value moved within its
    metric's tolerance (default: exactly equal).
    """
    runs = [runs] if isinstance(runs, ResultsDir) else list(runs)
    planned_per_file: dict[Path, set[tuple]] = {}
    changes: dict[Path, Changes] = {}
    baselines: dict[Path, Baseline] = {}
    for results in runs:
        manifest = check_complete(results)
        source = source_id(manifest)
        rows = results.rows()
        for suite, frame in rows.groupby("suite"):
            path = baseline_path(root, manifest["device_class"], suite, manifest["preset"])
            base = baselines.get(path) or read_baseline(path) or Baseline(suite, manifest["preset"],
                                                                           manifest["device_class"])
            baselines[path] = base
            change = changes.setdefault(path, Changes(path))
            base.sources[source] = _provenance(manifest)
            _merge(base, frame.assign(source=source), source, change, tolerance)
            planned_per_file.setdefault(path, set()).update(
                (c, m, int(s)) for (su, c, m, s) in results.planned_keys() if su == suite)
            # and what the runner produced: summaries, per-layer cases, the methods of one timing case
            planned_per_file[path].update((c, m, int(s)) for c, m, s in frame[_KEY].itertuples(index=False))
    for path, base in baselines.items():
        if prune:
            keep = [(c, m, int(s)) in planned_per_file[path] for c, m, s in base.rows[_KEY].itertuples(index=False)]
            changes[path].removed += len(keep) - sum(keep)
            base.rows = base.rows[keep].reset_index(drop=True)
        used = set(base.rows["source"])
        base.sources = {k: v for k, v in base.sources.items() if k in used}
        atomic_write_text(path, base.render())
    return list(changes.values())


def _merge(base: Baseline, frame: pd.DataFrame, source: str, change: Changes, tolerance) -> None:
    """Replace ``source``'s rows of every (case, method, seed) in ``frame`` by ``frame``'s rows."""
    produced = set(frame[_KEY].itertuples(index=False, name=None))
    old = base.rows
    mine = old["source"] == source
    replaced = mine & pd.Series([k in produced for k in old[_KEY].itertuples(index=False, name=None)],
                                index=old.index, dtype=bool)
    before = {(r.case, r.method, int(r.seed), r.metric): r.value for r in old[replaced].itertuples(index=False)}
    new = frame[BASELINE_COLUMNS].copy()
    for r in new.itertuples(index=False):
        key = (r.case, r.method, int(r.seed), r.metric)
        if key not in before:
            change.added += 1
        elif not _same(before[key], r.value, base.suite, r.metric, tolerance):
            change.changed.append(f"{base.suite} {r.case} {r.method} seed={r.seed} {r.metric}: "
                                  f"{before[key]:.6g} -> {r.value:.6g} ({source})")
    change.removed += len(set(before) - {(r.case, r.method, int(r.seed), r.metric) for r in new.itertuples()})
    base.rows = pd.concat([old[~replaced], new], ignore_index=True) if len(old[~replaced]) else new.reset_index(drop=True)


def _same(old: float, new: float, suite: str, metric: str, tolerance) -> bool:
    if math.isnan(old) and math.isnan(new):
        return True
    if tolerance is not None:
        return bool(tolerance(suite, metric, old, new))
    return old == new


def _provenance(manifest: dict[str, Any]) -> dict[str, Any]:
    keys = ("git_commit", "lipbench_version", "packages", "device", "processor", "platform", "host", "cpu_capability", "env",
            "torch", "torch_threads", "case_threads", "command", "started", "finished")
    out = {k: manifest.get(k) for k in keys}
    out["host"] = hashlib.sha256(str(manifest.get("host", "")).encode()).hexdigest()[:6]
    out["written"] = now()
    return out


def stored(root: str | Path, device_class: str, preset: str, suites: Iterable[str]) -> dict[str, Baseline | None]:
    """Every suite's baseline (validated), read once."""
    return {s: read_baseline(baseline_path(root, device_class, s, preset)) for s in suites}
