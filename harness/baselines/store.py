"""Stored baselines: ``baselines/<device class>/<suite>.<preset>.json``, one row per line.

A baseline holds the suite's rows from one or more *sources*: complete runs on different
machines or CPU kernel settings (``ATEN_CPU_CAPABILITY``, thread counts), each with its
provenance. Every row names its source, so a training outcome's baseline is its values
over seeds *and* machines, and a diff shows what moved, where and why. Every row also names
its *definition*: the digest of its case's fingerprint (suite content, settings, parameters,
methods and their source, preset, lipbench version; :mod:`harness.results.fingerprint`),
whose parts the file's header lists, so rows of two definitions of one case are never mixed.

``update_baselines`` admits only honest, complete runs (:mod:`.admission`) and merges them
under the baselines folder's lock (one writer; read, merge and write under it): a run
replaces only its own source's rows of the (case, method, seed) it produced; another
source's rows of such a case under another definition are refused (``replace_stale`` drops
them); training outcomes beyond :data:`OUTLIER_Z` robust standard deviations of the merged
values are refused unless accepted; ``prune`` also removes every row whose case the runs did
not plan. It reports what was added, what changed beyond the metric's tolerance and what
was removed. Files are checked on load (format, suite, preset, device class matching the
folder, numeric values, known sources and definitions), every problem named ``file:line``.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import platform
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Sequence

import pandas as pd

from harness.errors import UserError
from harness.results import ResultsDir
from harness.results.atomic import open_folder, open_subfolder, read_file, results_folder_of, write_file
from harness.results.lock import folder_lock
from harness.results.manifest import now
from harness.runners import runner_for
from harness.suite import Suite

from .admission import NAME, Acceptance, Admitted, IncompleteRunError, RefusedRunError, admit
from .rules import OUTCOME_MIN_EFFECT, robust_location_spread

FORMAT = 2
BASELINE_COLUMNS = ["case", "method", "seed", "metric", "source", "value", "unit", "status", "samples"]
#: Optional column: the digest of the row's case definition (absent in files written before fingerprints).
DEFINITION = "definition"
_ROW_TYPES = {"case": str, "method": str, "seed": int, "metric": str, "source": str, "unit": str,
              "status": str, "samples": str}
_KEY = ["case", "method", "seed"]
#: How long ``baseline update`` waits for another one to release the baselines folder (seconds):
#: an update takes seconds, so two CI jobs updating at once both succeed, one after the other.
LOCK_WAIT_S = 60.0
#: A merged training outcome further than this many robust standard deviations from the median
#: of its case's values (and beyond the metric's resolution and the outcome rule's minimum
#: effect) is an outlier: ``baseline update`` names it and refuses it unless accepted. For normal
#: values |z| > 6 happens once in 5e8; on the shipped baselines (4 machines) exactly one value
#: exceeds it, grad_penalty's ring8 energy distance of 8.4 (z = 19.9; docs/results.md, "Portability"),
#: the next largest is 5.4.
OUTLIER_Z = 6.0


class BaselineFileError(UserError):
    """A baseline file that is not what lipbench writes; the message names file and line."""


def baseline_path(root: str | Path, device_class: str, suite: str, preset: str) -> Path:
    """Where a baseline lives; each part must be a plain name (no ``/``, no ``..``)."""
    for what, value in (("device class", device_class), ("suite", suite), ("preset", preset)):
        if not isinstance(value, str) or not NAME.match(value):
            raise UserError(f"{what} {str(value)[:60]!r} is not a plain name (letters, digits, _ and -); "
                            "baselines are filed under it")
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
    rows: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=BASELINE_COLUMNS + [DEFINITION]))
    #: definition digest -> its parts (lipbench version, suite digest, kind, preset, digests of
    #: settings, parameters and methods), to name what differs between two definitions
    definitions: dict[str, dict[str, Any]] = field(default_factory=dict)

    def render(self) -> str:
        """The file text: a header, then one compact JSON row per line (human-diffable)."""
        rows = self.rows if DEFINITION in self.rows else self.rows.assign(**{DEFINITION: None})
        records = rows[BASELINE_COLUMNS + [DEFINITION]].sort_values(["case", "method", "seed", "metric", "source"])
        body = ",\n".join("  " + json.dumps(_plain_row(r), sort_keys=True) for r in records.to_dict("records"))
        header = {"format": FORMAT, "suite": self.suite, "preset": self.preset, "device_class": self.device_class,
                  "sources": self.sources}
        if self.definitions:
            header["definitions"] = self.definitions
        head = json.dumps(header, indent=1, sort_keys=True)
        return head[:-2] + ',\n "rows": [\n' + body + ("\n" if body else "") + " ]\n}\n"


def _plain_row(row: dict[str, Any]) -> dict[str, Any]:
    out = dict(row)
    out["seed"] = int(out["seed"])
    value = float(out["value"])
    out["value"] = value if math.isfinite(value) else None
    if not isinstance(out.get(DEFINITION), str):
        out.pop(DEFINITION, None)
    return out


def load_baseline(root: str | Path, device_class: str, suite: str, preset: str) -> pd.DataFrame | None:
    """The baseline rows of a suite (``None`` when no baseline exists)."""
    found = read_baseline(baseline_path(root, device_class, suite, preset))
    return None if found is None else found.rows


@contextlib.contextmanager
def _baselines_held(root: Path, *, shared: bool) -> Iterator[int | None]:
    """The baselines folder under its lock (shared to read, exclusive to update; ``None``: absent)."""
    if shared and not root.is_dir():
        yield None
        return
    if not shared:
        if root.exists() and not root.is_dir():
            raise UserError(f"--baselines {root}: exists and is not a folder")
        owner = results_folder_of(root)
        if owner is not None:
            raise UserError(f"--baselines {root}: inside the results folder {owner}; baselines live outside "
                            "results folders")
        with open_folder(root, create=True):
            pass
    with folder_lock(root, shared=shared, wait=LOCK_WAIT_S, busy="another baseline update") as fd:
        yield fd


def read_baseline(path: Path) -> Baseline | None:
    """The baseline in ``path`` (``None`` when absent), validated; :class:`BaselineFileError` otherwise.

    Read under a shared lock of the baselines folder (``path``'s grandparent), so never while
    an update writes it."""
    path = Path(path)
    with _baselines_held(path.parent.parent, shared=True):
        return _read(path)


def _read(path: Path) -> Baseline | None:
    if not path.parent.is_dir():
        return None
    with open_folder(path.parent) as fd:
        raw = read_file(fd, path.name, path, follow=True)
    if raw is None:
        return None
    try:
        text = raw.decode("utf-8")
        data = json.loads(text)
    except UnicodeDecodeError:
        raise BaselineFileError(f"{path}:1: not UTF-8") from None
    except json.JSONDecodeError as exc:
        raise BaselineFileError(f"{path}:{exc.lineno}: not JSON ({exc.msg})") from None
    except RecursionError:
        raise BaselineFileError(f"{path}:1: not a lipbench baseline (nested too deeply)") from None
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
    definitions = data.get("definitions", {})
    if not isinstance(definitions, dict) or not all(isinstance(v, dict) for v in definitions.values()):
        raise BaselineFileError(f"{path}:{_line_of(text, 'definitions')}: definitions: expected a mapping of "
                                "definition parts")
    rows = data.get("rows")
    if not isinstance(rows, list):
        raise BaselineFileError(f"{path}:{_line_of(text, 'rows')}: rows: expected a list")
    first = _line_of(text, "rows") + 1
    for i, row in enumerate(rows):
        problem = _row_problem(row, sources, definitions)
        if problem:
            raise BaselineFileError(f"{path}:{first + i}: rows[{i}]: {problem}")
    frame = pd.DataFrame(rows, columns=BASELINE_COLUMNS + [DEFINITION])
    frame["value"] = pd.to_numeric(frame["value"]).astype(float)
    frame["seed"] = frame["seed"].astype("int64")
    return Baseline(data["suite"], data["preset"], data["device_class"], sources, frame, definitions)


def _line_of(text: str, key: str) -> int:
    for number, line in enumerate(text.splitlines(), start=1):
        if line.lstrip().startswith(f'"{key}"'):
            return number
    return 1


def _row_problem(row: Any, sources: dict, definitions: dict) -> str | None:
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
    if row.get(DEFINITION) is not None and row[DEFINITION] not in definitions:
        return f"definition: {str(row[DEFINITION])[:40]!r} is not listed in definitions"
    return None


@dataclass
class Changes:
    """What an update did to one baseline file."""

    path: Path
    added: int = 0
    removed: int = 0
    changed: list[str] = field(default_factory=list)
    outliers: list[str] = field(default_factory=list)  # merged because --accept-outliers said so

    def lines(self) -> list[str]:
        out = [f"{self.path}: {self.added} row(s) added, {len(self.changed)} changed beyond tolerance, "
               f"{self.removed} removed"]
        for what, items in (("changed", self.changed), ("outlier accepted", self.outliers)):
            out += [f"  {what}: {c}" for c in items[:20]]
            if len(items) > 20:
                out.append(f"  ... and {len(items) - 20} more {what}")
        return out


def update_baselines(runs: ResultsDir | Sequence[ResultsDir], root: str | Path, *, prune: bool = False,
                     tolerance=None, suites: dict[str, Suite] | None = None,
                     accept: Acceptance = Acceptance()) -> list[Changes]:
    """Merge complete runs into the baselines under ``root``; returns what changed per file.

    Every run is admitted first (:func:`.admission.admit`, read under its folder's shared
    lock); then, holding the baselines folder's lock, every file is read, merged, checked
    (definitions, outliers) and only then written. ``tolerance(suite, metric, old, new) ->
    bool`` says whether a value moved within its metric's tolerance (default: exactly equal).
    """
    runs = [runs] if isinstance(runs, ResultsDir) else list(runs)
    root = Path(root)
    with contextlib.ExitStack() as stack:
        for results in runs:
            stack.enter_context(results.reading())
        admitted = [admit(results, suites, accept) for results in runs]
        with _baselines_held(root, shared=False) as root_fd:
            return _merge_all(admitted, root, root_fd, prune, tolerance, suites, accept)


def _merge_all(admitted: list[Admitted], root: Path, root_fd: int, prune: bool, tolerance,
               suites: dict[str, Suite] | None, accept: Acceptance) -> list[Changes]:
    planned_per_file: dict[Path, set[tuple]] = {}
    changes: dict[Path, Changes] = {}
    baselines: dict[Path, Baseline] = {}
    merged: dict[Path, set[str]] = {}
    stale: list[str] = []
    for run in admitted:
        manifest, source = run.manifest, source_id(run.manifest)
        planned = run.results.planned_keys()
        for suite, frame in run.rows.groupby("suite"):
            path = baseline_path(root, manifest["device_class"], suite, manifest["preset"])
            if path not in baselines:
                baselines[path] = _read(path) or Baseline(suite, manifest["preset"], manifest["device_class"])
            base, change = baselines[path], changes.setdefault(path, Changes(path))
            base.definitions.update({d: run.definitions[d] for d in set(frame[DEFINITION]) if d in run.definitions})
            stale += _drop_stale(base, frame, source, change, accept.stale)
            base.sources[source] = _provenance(manifest)
            _merge(base, frame.assign(source=source), source, change, tolerance)
            merged.setdefault(path, set()).add(source)
            planned_per_file.setdefault(path, set()).update((c, m, int(s)) for (su, c, m, s) in planned if su == suite)
            # and what the runner produced: summaries, per-layer cases, the methods of one timing case
            planned_per_file[path].update((c, m, int(s)) for c, m, s in frame[_KEY].itertuples(index=False))
    if stale:
        raise RefusedRunError(f"{len(stale)} case(s) of the baselines were stored from another definition, e.g. "
                              f"{stale[0]}; merging would mix runs of two definitions: run every source again, or "
                              "pass --replace-stale to remove the stale rows")
    for path, base in baselines.items():
        found = _outliers(base, merged[path], suites)
        if found and not accept.outliers:
            raise RefusedRunError(f"{len(found)} training outcome(s) beyond robust z {OUTLIER_Z:g} of their "
                                  f"baseline, e.g. {found[0]}; run again, or pass --accept-outliers to merge them")
        changes[path].outliers += found
    for path, base in baselines.items():
        if prune:
            keep = [(c, m, int(s)) in planned_per_file[path] for c, m, s in base.rows[_KEY].itertuples(index=False)]
            changes[path].removed += len(keep) - sum(keep)
            base.rows = base.rows[keep].reset_index(drop=True)
        used = set(base.rows["source"])
        base.sources = {k: v for k, v in base.sources.items() if k in used}
        defined = set(base.rows[DEFINITION].dropna()) if DEFINITION in base.rows else set()
        base.definitions = {k: v for k, v in base.definitions.items() if k in defined}
        device = open_subfolder(root_fd, base.device_class, path.parent, create=True)
        try:
            write_file(device, path.name, base.render(), path)
        finally:
            os.close(device)
    return list(changes.values())


def _drop_stale(base: Baseline, frame: pd.DataFrame, source: str, change: Changes, replace: bool) -> list[str]:
    """Other sources' rows of the run's cases under another definition: removed when ``replace``,
    else described (``case: source S differs in settings, methods``)."""
    incoming = {(c, m, int(s)): d for c, m, s, d in frame[_KEY + [DEFINITION]].itertuples(index=False)}
    old = base.rows
    if DEFINITION not in old or old.empty:
        return []
    keys = list(zip(old["case"], old["method"], old["seed"].astype(int)))
    stale = [(old["source"].iloc[i] != source and isinstance(old[DEFINITION].iloc[i], str)
              and k in incoming and old[DEFINITION].iloc[i] != incoming[k]) for i, k in enumerate(keys)]
    if not any(stale):
        return []
    if replace:
        change.removed += sum(stale)
        base.rows = old[[not x for x in stale]].reset_index(drop=True)
        return []
    i = stale.index(True)
    was, now_ = base.definitions.get(old[DEFINITION].iloc[i], {}), base.definitions.get(incoming[keys[i]], {})
    parts = [k for k in sorted(set(was) | set(now_)) if was.get(k) != now_.get(k)] or ["definition"]
    case, method, seed = keys[i]
    return [f"{base.suite} {case} {method} seed={seed}: source {old['source'].iloc[i]} differs in "
            f"{', '.join(parts)}" + "".join(f" ({k} {was.get(k)} -> {now_.get(k)})" for k in parts
                                             if k in ("lipbench", "preset", "kind"))]


def _outliers(base: Baseline, sources: set[str], suites: dict[str, Suite] | None) -> list[str]:
    """Training outcomes of ``sources`` beyond :data:`OUTLIER_Z` robust sd of their case's merged values."""
    suite = (suites or {}).get(base.suite)
    if suite is None or base.rows.empty:
        return []
    declarations = runner_for(suite.kind).declarations
    found = []
    ok = base.rows[base.rows["status"] == "ok"]
    for (case, method, metric), group in ok.groupby(["case", "method", "metric"], sort=True):
        declared = declarations.metric(metric)
        if declared is None or declared.kind != "outcome":
            continue
        median, spread, _ = robust_location_spread(group.drop_duplicates(["seed", "value"])["value"])
        if spread <= 0:
            continue
        floor = max(declared.resolution, OUTCOME_MIN_EFFECT * abs(median))
        for row in group[group["source"].isin(sources)].itertuples(index=False):
            deviation = abs(row.value - median)
            if deviation > floor and deviation > OUTLIER_Z * spread:
                found.append(f"{base.suite} {case} {method} seed={row.seed} {metric} = {row.value:.4g} "
                             f"({row.source}): robust z {deviation / spread:.1f} from the median {median:.4g} "
                             f"(robust sd {spread:.3g})")
    return found


def _merge(base: Baseline, frame: pd.DataFrame, source: str, change: Changes, tolerance) -> None:
    """Replace ``source``'s rows of every (case, method, seed) in ``frame`` by ``frame``'s rows."""
    produced = set(frame[_KEY].itertuples(index=False, name=None))
    old = base.rows
    mine = old["source"] == source
    replaced = mine & pd.Series([k in produced for k in old[_KEY].itertuples(index=False, name=None)],
                                index=old.index, dtype=bool)
    before = {(r.case, r.method, int(r.seed), r.metric): r.value for r in old[replaced].itertuples(index=False)}
    new = frame[BASELINE_COLUMNS + [DEFINITION]].copy() if DEFINITION in frame else frame[BASELINE_COLUMNS].copy()
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



__all__ = ["Acceptance", "Baseline", "BaselineFileError", "Changes", "IncompleteRunError", "RefusedRunError",
           "baseline_path", "load_baseline", "read_baseline", "source_id", "update_baselines"]
