"""A results folder: one crash-safe record per finished case, a manifest, and nothing else.

Layout of ``DIR``::

    .lipbench-results  marker: this folder was created by lipbench (nothing else is ever removed)
    lock               while a run writes here: the PID of that run
    cases.jsonl        one JSON line per finished case: its key, rows, traces, artifact
                       records, seconds and the node that ran it; appended and fsynced in
                       one write (the source of truth)
    attempts.jsonl     one line per case started, so a case that kills the harness itself
                       is recorded as an error instead of being retried forever
    summaries.json     suite-level rows (fits, constants), rewritten atomically
    results.csv/.json  the tidy rows, written atomically at the end of a run
    traces.csv         the traces
    manifest.json      provenance (git commit, versions, device, seeds, command, times)
    plan.json          the cases the run planned, so a missing result can be told apart
    verdicts.csv       written by verify / check / report
    artifacts/         images returned by cases (sample grids)

A crash can only tear the last line of ``cases.jsonl`` (every earlier line was fsynced
whole): that fragment is a case that did not finish; :meth:`ResultsDir.repair` cuts it
off on ``--resume`` and the case runs again. A damaged line anywhere else is not a
crash artefact: reading raises :class:`~harness.errors.ResultsFolderError` naming the
file and line, and nothing built on the folder (reports, baselines) goes on silently.
"""
from __future__ import annotations

import contextlib
import json
import os
from collections import Counter
from pathlib import Path
from typing import Any, Iterable, Iterator, Sequence

import pandas as pd

from harness.errors import ResultsFolderError

from .atomic import append_line_durably, atomic_write_text
from .rows import COLUMNS, TRACE_COLUMNS, to_frame

MARKER = ".lipbench-results"
#: Everything lipbench writes into a results folder; ``--overwrite`` removes these only.
OWN_FILES = ("cases.jsonl", "attempts.jsonl", "summaries.json", "results.csv", "results.json",
             "traces.csv", "manifest.json", "plan.json", "verdicts.csv")
ARTIFACTS = "artifacts"

Key = tuple[str, str, str, int]


class ResultsDir:
    """Read and write one results folder."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._records: tuple[Any, list[dict[str, Any]]] | None = None  # (file stamp, records)

    # --- opening a folder for a run --------------------------------------------------
    @property
    def artifacts(self) -> Path:
        return self.path / ARTIFACTS

    def is_results_folder(self) -> bool:
        return (self.path / MARKER).is_file()

    def has_results(self) -> bool:
        return (self.path / "cases.jsonl").exists() or (self.path / "results.csv").exists()

    def prepare(self, *, resume: bool = False, overwrite: bool = False) -> None:
        """Make the folder ready for a run, refusing anything that is not lipbench's to change.

        ``--out`` may be a new path, an empty folder, or a lipbench results folder; one that
        holds results needs ``resume`` (continue) or ``overwrite`` (remove lipbench's own
        files first, nothing else).
        """
        if self.path.exists() and not self.path.is_dir():
            raise ResultsFolderError(f"--out {self.path}: exists and is not a folder")
        if self.path.is_dir() and any(self.path.iterdir()) and not self.is_results_folder():
            raise ResultsFolderError(f"--out {self.path}: the folder is not empty and was not created "
                                     "by lipbench; choose a new or empty folder")
        if self.has_results() and not (resume or overwrite):
            raise ResultsFolderError(f"--out {self.path}: already holds results; use --resume to "
                                     "continue them or --overwrite to replace them")
        if overwrite and self.is_results_folder():
            self._remove_own_files()
        self.path.mkdir(parents=True, exist_ok=True)
        if not self.is_results_folder():
            atomic_write_text(self.path / MARKER, json.dumps({"created_by": "lipbench"}) + "\n")

    def _remove_own_files(self) -> None:
        known = {a.get("path") for r in self._read_records(strict=False) for a in r.get("artifacts", [])}
        for name in OWN_FILES:
            (self.path / name).unlink(missing_ok=True)
        for rel in filter(None, known):
            target = (self.path / rel).resolve()
            if self.artifacts.resolve() in target.parents:
                target.unlink(missing_ok=True)
        _remove_empty_dirs(self.artifacts)

    @contextlib.contextmanager
    def lock(self) -> Iterator[None]:
        """Hold the folder for one run; a second run exits naming the first one's PID."""
        path = self.path / "lock"
        for _ in range(2):
            try:
                fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
                break
            except FileExistsError:
                pid = _read_pid(path)
                if pid is not None and _alive(pid):
                    raise ResultsFolderError(f"--out {self.path}: another lipbench run (PID {pid}) is "
                                             "writing to this folder") from None
                path.unlink(missing_ok=True)  # stale: its run has gone
        else:
            raise ResultsFolderError(f"--out {self.path}: cannot take the lock {path}")
        with os.fdopen(fd, "w") as handle:
            handle.write(f"{os.getpid()}\n")
        try:
            yield
        finally:
            path.unlink(missing_ok=True)

    # --- writing ----------------------------------------------------------------------
    def append_case(self, key: Sequence[Any], rows: Sequence[dict[str, Any]],
                    traces: Sequence[dict[str, Any]] = (),
                    artifacts: Sequence[tuple[str, bytes]] = (), seconds: float | None = None,
                    node: str | None = None) -> None:
        """Record one finished case in one durable line (artifacts written first); ``node``: the
        machine that computed it (executors other than local run cases elsewhere)."""
        records = []
        for name, data in artifacts:
            rel = f"{ARTIFACTS}/{_safe(key[0])}/{_safe('-'.join(map(str, key[1:])))}-{_safe(name)}"
            target = self.path / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            _write_bytes(target, data)
            records.append({"kind": "image", "name": name, "path": rel})
        line = {"key": list(key), "rows": list(rows), "traces": list(traces), "artifacts": records,
                "seconds": seconds}
        if node:
            line["node"] = node
        append_line_durably(self.path / "cases.jsonl", _dumps(line) + "\n")

    def record_attempt(self, key: Sequence[Any], outcome: str = "started") -> None:
        append_line_durably(self.path / "attempts.jsonl", _dumps({"key": list(key), "outcome": outcome}) + "\n")

    def write_summaries(self, suite: str, rows: Sequence[dict[str, Any]]) -> None:
        current = self.read_json("summaries.json", {})
        current[suite] = list(rows)
        self.write_json("summaries.json", current)

    def write_json(self, name: str, data: Any) -> None:
        atomic_write_text(self.path / name, json.dumps(data, indent=2, sort_keys=True, default=str) + "\n")

    def read_json(self, name: str, default: Any = None) -> Any:
        target = self.path / name
        if not target.exists():
            return default
        try:
            return json.loads(target.read_text(encoding="utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ResultsFolderError(f"{target}: damaged ({exc})") from None

    # --- reading ----------------------------------------------------------------------
    def repair(self) -> bool:
        """Cut a torn last line off ``cases.jsonl`` (a case a crash interrupted); True if cut."""
        source = self.path / "cases.jsonl"
        if not source.exists():
            return False
        data = source.read_bytes()
        end = _complete_prefix(data)
        if end == len(data):
            return False
        with open(source, "r+b") as handle:
            handle.truncate(end)
            handle.flush()
            os.fsync(handle.fileno())
        return True

    def torn(self) -> bool:
        """Whether the last line of ``cases.jsonl`` is a fragment a crash left behind."""
        source = self.path / "cases.jsonl"
        return source.exists() and _complete_prefix(source.read_bytes()) != source.stat().st_size

    def case_records(self) -> list[dict[str, Any]]:
        """The last record of every finished case, in the order they finished."""
        source = self.path / "cases.jsonl"
        stamp = (source.stat().st_size, source.stat().st_mtime_ns) if source.exists() else None
        if self._records is None or self._records[0] != stamp:
            latest: dict[tuple, dict[str, Any]] = {}
            for record in self._read_records(strict=True):
                key = _key(record["key"])
                latest.pop(key, None)
                latest[key] = record
            self._records = (stamp, list(latest.values()))
        return self._records[1]

    def _read_records(self, strict: bool) -> list[dict[str, Any]]:
        source = self.path / "cases.jsonl"
        if not source.exists():
            return []
        data = source.read_bytes()
        complete = data[:_complete_prefix(data)]
        records = []
        for number, line in enumerate(complete.split(b"\n")[:-1], start=1):
            try:
                record = json.loads(line.decode("utf-8"))
                if not isinstance(record, dict) or not isinstance(record.get("rows"), list):
                    raise ValueError("not a case record")
                _key(record["key"])
            except (ValueError, KeyError, TypeError) as exc:
                if strict:
                    raise ResultsFolderError(f"{source}:{number}: damaged case record ({exc}); "
                                             "results after a crash are only ever torn at the end, "
                                             "so this file was changed by something else") from None
                continue
            records.append(record)
        return records

    def completed_keys(self) -> set[Key]:
        """(suite, case, method, seed) of every case that finished (ok or error)."""
        return {_key(r["key"]) for r in self.case_records()}

    def errored_keys(self) -> set[Key]:
        return {_key(r["key"]) for r in self.case_records()
                if any(row.get("status") == "error" for row in r["rows"])}

    def unfinished_attempts(self) -> Counter:
        """How often each case was started without finishing (it was running when the harness died)."""
        source = self.path / "attempts.jsonl"
        if not source.exists():
            return Counter()
        counts: Counter = Counter()
        data = source.read_bytes()
        for line in data[:_complete_prefix(data)].split(b"\n")[:-1]:
            try:
                record = json.loads(line)
                key = _key(record["key"])
            except (ValueError, KeyError, TypeError):
                continue  # a bookkeeping line only: losing one costs at most one retry
            if record.get("outcome") == "started":
                counts[key] += 1
            else:
                counts.pop(key, None)
        return counts

    def rows(self) -> pd.DataFrame:
        """Every row: the cases' rows, then the suites' summary rows."""
        if (self.path / "cases.jsonl").exists():
            rows = [row for r in self.case_records() for row in r["rows"]]
            summaries = self.read_json("summaries.json", {})
            rows += [row for suite_rows in summaries.values() for row in suite_rows]
            return to_frame(rows)
        csv = self.path / "results.csv"
        if csv.exists():
            return to_frame(pd.read_csv(csv, keep_default_na=False,
                                        dtype={"samples": str, "message": str}).to_dict("records"))
        raise ResultsFolderError(f"{self.path}: holds no lipbench results (no cases.jsonl or results.csv)")

    def traces(self) -> pd.DataFrame:
        records = [t for r in self.case_records() for t in r.get("traces", [])]
        return pd.DataFrame(records, columns=TRACE_COLUMNS)

    def artifact_list(self) -> list[dict[str, Any]]:
        out = []
        for r in self.case_records():
            suite, case, method, seed = _key(r["key"])
            for a in r.get("artifacts", []):
                out.append({"suite": suite, "case": case, "method": method, "seed": seed,
                            "kind": a.get("kind", "image"), "name": a.get("name", ""),
                            "path": str(self.path / a["path"])})
        return out

    def planned_keys(self) -> set[Key]:
        return {_key(k) for k in self.read_json("plan.json", [])}

    def finalize(self) -> pd.DataFrame:
        """Write results.csv / results.json / traces.csv atomically from the case records."""
        frame = self.rows()
        atomic_write_text(self.path / "results.csv", frame[COLUMNS].to_csv(index=False))
        atomic_write_text(self.path / "results.json", frame[COLUMNS].to_json(orient="records", indent=1))
        traces = self.traces()
        if len(traces):
            atomic_write_text(self.path / "traces.csv", traces.to_csv(index=False))
        return frame


def _key(raw: Iterable[Any]) -> Key:
    suite, case, method, seed = raw
    return (str(suite), str(case), str(method), int(seed))


def _complete_prefix(data: bytes) -> int:
    """Length of ``data`` up to and including its last newline (a torn tail excluded)."""
    return data.rfind(b"\n") + 1


def _dumps(record: dict[str, Any]) -> str:
    return json.dumps(record, sort_keys=True, default=_plain, allow_nan=True)


def _plain(value: Any) -> Any:
    if hasattr(value, "item"):
        return value.item()
    return str(value)


def _safe(text: str) -> str:
    return "".join(c if c.isalnum() or c in "-_.=" else "_" for c in str(text))[:150]


def _write_bytes(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def _remove_empty_dirs(root: Path) -> None:
    if not root.is_dir():
        return
    for folder in sorted((p for p in root.rglob("*") if p.is_dir()), key=lambda p: -len(p.parts)):
        with contextlib.suppress(OSError):
            folder.rmdir()
    with contextlib.suppress(OSError):
        root.rmdir()


def _read_pid(path: Path) -> int | None:
    try:
        return int(path.read_text().strip())
    except (OSError, ValueError):
        return None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


__all__ = ["ResultsDir", "MARKER", "OWN_FILES"]
