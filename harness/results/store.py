"""A results folder: one crash-safe record per finished case, a manifest, and nothing else.

Layout of ``DIR``::

    .lipbench-results  marker: this folder was created by lipbench (nothing else is ever removed)
    cases.jsonl        one JSON line per finished case: its key, fingerprint (what defines it,
                       :mod:`.fingerprint`), rows, traces, artifact records, seconds and the node
                       that ran it; appended and fsynced in one write (the source of truth)
    attempts.jsonl     one line per case started, so a case that kills the harness itself
                       is recorded as an error instead of being retried forever
    summaries.json     suite-level rows (fits, constants), rewritten atomically
    results.csv/.json  the tidy rows, written atomically at the end of a run
    traces.csv         the traces
    manifest.json      provenance (git commit, versions, device, seeds, command, times)
    plan.json          the cases the run planned, so a missing result can be told apart
    verdicts.csv       written by verify and check (never by report or compare)
    artifacts/         images returned by cases (sample grids)

One writer per folder: a run holds an OS lock on the folder (:mod:`.lock`) from before it
reads or deletes anything until its last write; readers hold a shared lock, so ``--overwrite``
never deletes what a report or ``baseline update`` is reading. Every file is written and
read through the folder's descriptor, never through a link (:mod:`.atomic`).

A crash can only tear the last line of ``cases.jsonl`` (every earlier line was fsynced
whole): that fragment is a case that did not finish; :meth:`ResultsDir.repair` cuts it
off on ``--resume`` and the case runs again. A damaged line anywhere else, a row of the
wrong type, a manifest that is not a mapping, is not a crash artefact: reading raises
:class:`~harness.errors.ResultsFolderError` naming the file and line, and nothing built on
the folder (reports, baselines) goes on silently.
"""
from __future__ import annotations

import contextlib
import io
import json
import os
import re
from collections import Counter
from pathlib import Path
from typing import Any, Iterator, Sequence

import pandas as pd

from harness.errors import ResultsFolderError, UserError

from .atomic import (MARKER, UnsafePathError, append_file, check_own, check_replaceable, oserror, open_folder,
                     open_subfolder, read_file, remove_file, results_folder_of, write_file)
from .lock import folder_lock
from .records import ARTIFACT_PATH, Key, complete_prefix, csv_rows, dumps, key_of, record_problem, safe_name
from .rows import COLUMNS, TRACE_COLUMNS, row_problem, to_frame

#: Everything lipbench writes into a results folder; ``--overwrite`` removes these only
#: (``lock``: the lock file of earlier versions).
OWN_FILES = ("cases.jsonl", "attempts.jsonl", "summaries.json", "results.csv", "results.json",
             "traces.csv", "manifest.json", "plan.json", "verdicts.csv", "lock")
ARTIFACTS = "artifacts"
#: A temporary file lipbench left behind when it died mid-write (``atomic.write_file``).
_OWN_TEMPORARY = re.compile(r"^\.(" + "|".join(map(re.escape, OWN_FILES)) + r")\.[0-9a-f]{12}\.tmp$")
#: JSON files of the folder and the shape each must have.
_JSON_SHAPES = {"manifest.json": dict, "plan.json": list, "summaries.json": dict}

class ResultsDir:
    """Read and write one results folder."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._records: tuple[Any, list[dict[str, Any]]] | None = None  # (file stamp, records)
        self._fd: int | None = None  # the folder's descriptor while this object holds its lock
        self._depth = 0
        self._shared = False

    # --- holding the folder -----------------------------------------------------------
    @property
    def artifacts(self) -> Path:
        return self.path / ARTIFACTS

    def is_results_folder(self) -> bool:
        return (self.path / MARKER).is_file()

    def has_results(self) -> bool:
        return any(os.path.lexists(self.path / name) for name in ("cases.jsonl", "results.csv"))

    @contextlib.contextmanager
    def lock(self, *, shared: bool = False) -> Iterator[None]:
        """Hold the folder: exclusively to write (creating it), shared to read. Re-entrant.

        Another holder makes this raise at once, naming its PID; the lock dies with its
        holder, so there is nothing stale to take over.
        """
        if self._depth:
            if self._shared and not shared:
                raise RuntimeError(f"{self.path}: held for reading, cannot write")  # a bug in lipbench
            self._depth += 1
            try:
                yield
            finally:
                self._depth -= 1
            return
        if shared:
            if not self.path.is_dir():
                raise ResultsFolderError(f"{self.path}: no such results folder")
        else:
            self._make_folder()
        with folder_lock(self.path, shared=shared, busy="another lipbench run" if not shared
                         else "a lipbench run") as fd:
            self._fd, self._depth, self._shared = fd, 1, shared
            try:
                yield
            finally:
                self._fd, self._depth, self._shared = None, 0, False

    def reading(self) -> contextlib.AbstractContextManager[None]:
        """Hold the folder for reading (a shared lock: no run can write or delete meanwhile)."""
        return self.lock(shared=True)

    def _make_folder(self) -> None:
        if self.path.exists() and not self.path.is_dir():
            raise ResultsFolderError(f"--out {self.path}: exists and is not a folder")
        owner = results_folder_of(self.path.parent)
        if owner is not None:
            raise ResultsFolderError(f"--out {self.path}: inside the results folder {owner}; choose a "
                                     "folder outside it")
        try:
            self.path.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise oserror(f"--out {self.path}", exc, "create the folder") from None

    @contextlib.contextmanager
    def _folder(self) -> Iterator[int]:
        """The folder's descriptor: the held one, or one opened for this operation."""
        if self._fd is not None:
            yield self._fd
            return
        if not self.path.is_dir():
            raise ResultsFolderError(f"{self.path}: no such results folder")
        with open_folder(self.path) as fd:
            yield fd

    @contextlib.contextmanager
    def _writing(self) -> Iterator[int]:
        with self.lock():
            yield self._fd  # type: ignore[misc]

    def prepare(self, *, resume: bool = False, overwrite: bool = False) -> None:
        """Make the folder ready for a run, refusing anything that is not lipbench's to change.

        ``--out`` may be a new path, an empty folder, or a lipbench results folder; one that
        holds results needs ``resume`` (continue) or ``overwrite`` (remove lipbench's own
        files first, nothing else). Runs under the folder's lock (taken here if not held).
        """
        with self._writing() as fd:
            names = os.listdir(fd)
            marked = MARKER in names and check_replaceable(fd, MARKER, self.path / MARKER)
            if names and not marked:
                raise ResultsFolderError(f"--out {self.path}: the folder is not empty and was not created "
                                         "by lipbench; choose a new or empty folder")
            if self.has_results() and not (resume or overwrite):
                raise ResultsFolderError(f"--out {self.path}: already holds results; use --resume to "
                                         "continue them or --overwrite to replace them")
            self._check_own_files(fd, names)
            if overwrite and marked:
                self._remove_own_files(fd)
            if not marked:
                write_file(fd, MARKER, json.dumps({"created_by": "lipbench"}) + "\n", self.path / MARKER)

    def _check_own_files(self, fd: int, names: list[str]) -> None:
        """Refuse a folder where one of lipbench's files is a link, a folder or a device (planted
        by someone else: writing or deleting it would reach what lipbench did not write)."""
        for name in names:
            if name in OWN_FILES:
                check_replaceable(fd, name, self.path / name)
        if ARTIFACTS in names:
            sub = open_subfolder(fd, ARTIFACTS, self.artifacts, create=False)
            if sub is not None:
                os.close(sub)

    def _remove_own_files(self, fd: int) -> None:
        """Remove lipbench's own files; everything is checked first, so a link or a folder in
        place of one of them refuses the whole removal before anything is gone."""
        own = [n for n in os.listdir(fd) if n in OWN_FILES or _OWN_TEMPORARY.match(n)]
        for name in own:
            check_replaceable(fd, name, self.path / name)
        artifacts = self._recorded_artifacts()
        art_fd = open_subfolder(fd, ARTIFACTS, self.artifacts, create=False) if artifacts else None
        folders: dict[str, int] = {}
        try:
            for folder, name in artifacts:
                if folder not in folders:
                    sub = open_subfolder(art_fd, folder, self.artifacts / folder, create=False) \
                        if art_fd is not None else None
                    if sub is None:
                        continue
                    folders[folder] = sub
                check_replaceable(folders[folder], name, self.artifacts / folder / name)
            for name in own:
                remove_file(fd, name, self.path / name)
            for folder, name in artifacts:
                if folder in folders:
                    remove_file(folders[folder], name, self.artifacts / folder / name)
            for folder in folders:
                with contextlib.suppress(OSError):
                    os.rmdir(folder, dir_fd=art_fd)
            if art_fd is not None:
                with contextlib.suppress(OSError):
                    os.rmdir(ARTIFACTS, dir_fd=fd)
        finally:
            for sub in folders.values():
                os.close(sub)
            if art_fd is not None:
                os.close(art_fd)
        self._records = None

    def _recorded_artifacts(self) -> list[tuple[str, str]]:
        found = []
        for record in self._read_records(strict=False):
            for item in record.get("artifacts", []):
                match = ARTIFACT_PATH.match(item.get("path", ""))
                if match:
                    found.append((match.group(1), match.group(2)))
        return sorted(set(found))

    # --- writing ----------------------------------------------------------------------
    def append_case(self, key: Sequence[Any], rows: Sequence[dict[str, Any]],
                    traces: Sequence[dict[str, Any]] = (),
                    artifacts: Sequence[tuple[str, bytes]] = (), seconds: float | None = None,
                    node: str | None = None, fingerprint: dict[str, Any] | None = None) -> None:
        """Record one finished case in one durable line (artifacts written first); ``node``: the
        machine that computed it; ``fingerprint``: what defines it (:mod:`.fingerprint`)."""
        with self._writing() as fd:
            records = []
            if artifacts:
                folder = safe_name(key[0])
                art_fd = open_subfolder(fd, ARTIFACTS, self.artifacts, create=True)
                try:
                    sub = open_subfolder(art_fd, folder, self.artifacts / folder, create=True)
                    try:
                        for name, data in artifacts:
                            file = safe_name(f"{'-'.join(map(str, key[1:]))}")[:150] + "-" + safe_name(name)[:100]
                            write_file(sub, file, data, self.artifacts / folder / file)
                            records.append({"kind": "image", "name": name, "path": f"{ARTIFACTS}/{folder}/{file}"})
                    finally:
                        os.close(sub)
                finally:
                    os.close(art_fd)
            line = {"key": list(key), "rows": list(rows), "traces": list(traces), "artifacts": records,
                    "seconds": seconds}
            if node:
                line["node"] = node
            if fingerprint is not None:
                line["fingerprint"] = fingerprint
            append_file(fd, "cases.jsonl", dumps(line) + "\n", self.path / "cases.jsonl")

    def record_attempt(self, key: Sequence[Any], outcome: str = "started") -> None:
        with self._writing() as fd:
            append_file(fd, "attempts.jsonl", dumps({"key": list(key), "outcome": outcome}) + "\n",
                        self.path / "attempts.jsonl")

    def write_summaries(self, suite: str, rows: Sequence[dict[str, Any]]) -> None:
        with self._writing():
            current = self.read_json("summaries.json", {})
            current[suite] = list(rows)
            self.write_json("summaries.json", current)

    def write_json(self, name: str, data: Any) -> None:
        self.write_text(name, json.dumps(data, indent=2, sort_keys=True, default=str) + "\n")

    def write_text(self, name: str, text: str) -> None:
        """Replace one of lipbench's own files (``OWN_FILES``) atomically, under the folder's lock."""
        if name not in OWN_FILES:
            raise ValueError(f"{name!r} is not a file lipbench writes into a results folder")  # a bug
        with self._writing() as fd:
            write_file(fd, name, text, self.path / name)

    def read_json(self, name: str, default: Any = None) -> Any:
        with self._folder() as fd:
            data = read_file(fd, name, self.path / name)
        if data is None:
            return default
        try:
            value = json.loads(data.decode("utf-8"))
        except (ValueError, RecursionError) as exc:
            raise ResultsFolderError(f"{self.path / name}: damaged ({exc or 'nested too deeply'})") from None
        shape = _JSON_SHAPES.get(name)
        if shape is not None and not isinstance(value, shape):
            raise ResultsFolderError(f"{self.path / name}: damaged (expected a JSON "
                                     f"{'object' if shape is dict else 'list'}, found {type(value).__name__})")
        return value

    def manifest(self) -> dict[str, Any]:
        """The run's manifest (``{}`` when none was written), its fields' types checked."""
        manifest = self.read_json("manifest.json", {})
        for key, kind in (("preset", str), ("device_class", str), ("device", str), ("suites", list),
                          ("methods", dict), ("finished", (str, type(None)))):
            if key in manifest and not isinstance(manifest[key], kind):
                raise ResultsFolderError(f"{self.path / 'manifest.json'}: damaged ({key}: "
                                         f"{type(manifest[key]).__name__} is not what lipbench writes)")
        return manifest

    # --- reading ----------------------------------------------------------------------
    def repair(self) -> bool:
        """Cut a torn last line off ``cases.jsonl`` (a case a crash interrupted); True if cut."""
        with self._writing() as fd:
            data = read_file(fd, "cases.jsonl", self.path / "cases.jsonl")
            if data is None:
                return False
            end = complete_prefix(data)
            if end == len(data):
                return False
            handle = os.open("cases.jsonl", os.O_WRONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=fd)
            try:
                check_own(handle, self.path / "cases.jsonl")
                os.ftruncate(handle, end)
                os.fsync(handle)
            finally:
                os.close(handle)
            self._records = None
            return True

    def torn(self) -> bool:
        """Whether the last line of ``cases.jsonl`` is a fragment a crash left behind."""
        with self._folder() as fd:
            data = read_file(fd, "cases.jsonl", self.path / "cases.jsonl")
        return data is not None and complete_prefix(data) != len(data)

    def case_records(self) -> list[dict[str, Any]]:
        """The last record of every finished case, in the order they finished."""
        with self._folder() as fd:
            try:
                info = os.stat("cases.jsonl", dir_fd=fd, follow_symlinks=False)
                stamp: Any = (info.st_ino, info.st_size, info.st_mtime_ns)
            except FileNotFoundError:
                stamp = None
        if self._records is None or self._records[0] != stamp:
            latest: dict[tuple, dict[str, Any]] = {}
            for record in self._read_records(strict=True):
                key = key_of(record["key"])
                latest.pop(key, None)
                latest[key] = record
            self._records = (stamp, list(latest.values()))
        return self._records[1]

    def _read_records(self, strict: bool) -> list[dict[str, Any]]:
        source = self.path / "cases.jsonl"
        with self._folder() as fd:
            data = read_file(fd, "cases.jsonl", source)
        if data is None:
            return []
        complete = data[:complete_prefix(data)]
        records = []
        for number, line in enumerate(complete.split(b"\n")[:-1], start=1):
            try:
                record = json.loads(line.decode("utf-8"))
                problem = record_problem(record)
            except (ValueError, RecursionError) as exc:
                problem = str(exc) or "nested too deeply"
            if problem:
                if strict:
                    raise ResultsFolderError(f"{source}:{number}: damaged case record ({problem}); "
                                             "results after a crash are only ever torn at the end, "
                                             "so this file was changed by something else")
                continue
            records.append(record)
        return records

    def completed_keys(self) -> set[Key]:
        """(suite, case, method, seed) of every case that finished (ok or error)."""
        return {key_of(r["key"]) for r in self.case_records()}

    def errored_keys(self) -> set[Key]:
        return {key_of(r["key"]) for r in self.case_records()
                if any(row.get("status") == "error" for row in r["rows"])}

    def fingerprints(self) -> dict[Key, dict[str, Any] | None]:
        """The fingerprint each finished case was recorded with (``None``: an earlier lipbench)."""
        return {key_of(r["key"]): r.get("fingerprint") for r in self.case_records()}

    def unfinished_attempts(self) -> Counter:
        """How often each case was started without finishing (it was running when the harness died)."""
        with self._folder() as fd:
            data = read_file(fd, "attempts.jsonl", self.path / "attempts.jsonl")
        counts: Counter = Counter()
        if data is None:
            return counts
        for line in data[:complete_prefix(data)].split(b"\n")[:-1]:
            try:
                record = json.loads(line)
                key = key_of(record["key"])
            except (ValueError, KeyError, TypeError, RecursionError):
                continue  # a bookkeeping line only: losing one costs at most one retry
            if record.get("outcome") == "started":
                counts[key] += 1
            else:
                counts.pop(key, None)
        return counts

    def rows(self) -> pd.DataFrame:
        """Every row: the cases' rows, then the suites' summary rows."""
        with self._folder() as fd:
            has_cases = os.path.lexists(self.path / "cases.jsonl")
            if has_cases:
                rows = [row for r in self.case_records() for row in r["rows"]]
                return to_frame(rows + self.summary_rows())
            data = read_file(fd, "results.csv", self.path / "results.csv")
        if data is None:
            raise ResultsFolderError(f"{self.path}: holds no lipbench results (no cases.jsonl or results.csv)")
        try:
            frame = pd.read_csv(io.BytesIO(data), keep_default_na=False, dtype={"samples": str, "message": str})
            records = frame.to_dict("records")
            problems = [p for p in map(row_problem, csv_rows(records)) if p]
            if problems or list(frame.columns[:len(COLUMNS)]) != COLUMNS:
                raise ValueError(problems[0] if problems else f"columns are not {', '.join(COLUMNS)}")
            return to_frame(records)
        except (ValueError, TypeError, OverflowError, pd.errors.ParserError) as exc:
            raise ResultsFolderError(f"{self.path / 'results.csv'}: damaged ({exc})") from None

    def summary_rows(self) -> list[dict[str, Any]]:
        """The suites' summary rows (``summaries.json``), each checked."""
        rows = []
        for suite, suite_rows in self.read_json("summaries.json", {}).items():
            if not isinstance(suite_rows, list):
                raise ResultsFolderError(f"{self.path / 'summaries.json'}: damaged ({suite}: not a list of rows)")
            for row in suite_rows:
                problem = row_problem(row) or (None if row["suite"] == suite else f"a row of suite {row['suite']!r}")
                if problem:
                    raise ResultsFolderError(f"{self.path / 'summaries.json'}: damaged ({suite}: {problem})")
                rows.append(row)
        return rows

    def traces(self) -> pd.DataFrame:
        records = [t for r in self.case_records() for t in r.get("traces", [])]
        return pd.DataFrame(records, columns=TRACE_COLUMNS)

    def artifact_list(self) -> list[dict[str, Any]]:
        """The artifacts of finished cases that are regular files inside ``artifacts/`` (a link or
        anything planted in their place is left out: a report embeds only what lipbench wrote)."""
        out = []
        with self._folder() as fd:
            art_fd = open_subfolder(fd, ARTIFACTS, self.artifacts, create=False)
            if art_fd is None:
                return out
            try:
                for r in self.case_records():
                    suite, case, method, seed = key_of(r["key"])
                    for a in r.get("artifacts", []):
                        match = ARTIFACT_PATH.match(a.get("path", ""))
                        if match and _regular_inside(art_fd, match.group(1), match.group(2)):
                            out.append({"suite": suite, "case": case, "method": method, "seed": seed,
                                        "kind": a.get("kind", "image"), "name": a.get("name", ""),
                                        "path": str(self.path / a["path"])})
            finally:
                os.close(art_fd)
        return out

    def planned_keys(self) -> set[Key]:
        planned = set()
        for number, item in enumerate(self.read_json("plan.json", []), start=1):
            try:
                planned.add(key_of(item))
            except (ValueError, TypeError) as exc:
                raise ResultsFolderError(f"{self.path / 'plan.json'}: damaged (entry {number}: {exc})") from None
        return planned

    def write_verdicts(self, verdicts: pd.DataFrame) -> None:
        """``verdicts.csv`` of the run (verify and check; a report never writes into the folder)."""
        self.write_text("verdicts.csv", verdicts.to_csv(index=False))

    def finalize(self) -> pd.DataFrame:
        """Write results.csv / results.json / traces.csv atomically from the case records."""
        with self._writing():
            frame = self.rows()
            self.write_text("results.csv", frame[COLUMNS].to_csv(index=False))
            self.write_text("results.json", frame[COLUMNS].to_json(orient="records", indent=1))
            traces = self.traces()
            if len(traces):
                self.write_text("traces.csv", traces.to_csv(index=False))
            return frame


def _regular_inside(art_fd: int, folder: str, name: str) -> bool:
    try:
        sub = open_subfolder(art_fd, folder, folder, create=False)
    except UserError:
        return False
    if sub is None:
        return False
    try:
        return check_replaceable(sub, name, name)
    except UnsafePathError:
        return False
    finally:
        os.close(sub)


__all__ = ["ResultsDir", "MARKER", "OWN_FILES"]
