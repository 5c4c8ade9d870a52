"""A results folder: incremental, crash-safe rows, traces, artifacts and a manifest.

Layout of ``DIR``::

    rows.jsonl      appended once per finished case (crash-safe; the source of truth)
    done.jsonl      the key of each finished case, written after its rows (for resume)
    traces.jsonl    training traces, appended per case
    results.csv     the tidy rows, rewritten atomically at the end of a run
    results.json    the same rows as JSON records
    traces.csv      the traces as CSV
    manifest.json   provenance (git commit, versions, device, seeds, command, times)
    plan.json       the cases the run planned, so a missing result can be told apart
    artifacts/      images written by runners (sample grids)
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterable, Sequence

import pandas as pd

from .atomic import append_line_durably, atomic_write_text
from .rows import COLUMNS, TRACE_COLUMNS, to_frame


class ResultsDir:
    """Read and write one results folder."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    @property
    def artifacts(self) -> Path:
        return self.path / "artifacts"

    def exists(self) -> bool:
        return (self.path / "rows.jsonl").exists() or (self.path / "results.csv").exists()

    def create(self) -> "ResultsDir":
        self.path.mkdir(parents=True, exist_ok=True)
        return self

    def append_case(self, rows: Sequence[dict[str, Any]], traces: Sequence[dict[str, Any]] = (),
                    key: Sequence[Any] | None = None) -> None:
        """Record one finished case: its traces, its rows, then its key (``done.jsonl``).

        The key is written last, so a case counts as done only once all its rows are on
        disk; a crash in between re-runs it on ``--resume`` (its duplicate rows are dropped).
        """
        if traces:
            append_line_durably(self.path / "traces.jsonl", _jsonl(traces))
        append_line_durably(self.path / "rows.jsonl", _jsonl(rows))
        if key is not None:
            append_line_durably(self.path / "done.jsonl", _jsonl([{"key": list(key)}]))

    def rows(self) -> pd.DataFrame:
        """All rows recorded so far (a torn last line from a crash is ignored; a case re-run
        after a crash keeps its last rows)."""
        source = self.path / "rows.jsonl"
        if source.exists():
            frame = to_frame(_read_jsonl(source))
            keep = ~frame.duplicated(["suite", "case", "method", "seed", "metric"], keep="last")
            return frame[keep].reset_index(drop=True)
        csv = self.path / "results.csv"
        if csv.exists():
            return to_frame(pd.read_csv(csv, keep_default_na=False,
                                        dtype={"samples": str, "message": str}).to_dict("records"))
        raise FileNotFoundError(f"{self.path} holds no results (no rows.jsonl or results.csv)")

    def traces(self) -> pd.DataFrame:
        source = self.path / "traces.jsonl"
        records = _read_jsonl(source) if source.exists() else []
        frame = pd.DataFrame(records, columns=TRACE_COLUMNS)
        return frame.drop_duplicates(["suite", "case", "method", "seed", "series", "step"], keep="last")

    def artifact_list(self) -> list[dict[str, Any]]:
        index = self.path / "artifacts.jsonl"
        return _read_jsonl(index) if index.exists() else []

    def add_artifact(self, record: dict[str, Any]) -> None:
        append_line_durably(self.path / "artifacts.jsonl", _jsonl([record]))

    def completed_keys(self) -> set[tuple[str, str, str, int]]:
        """(suite, case, method, seed) of every case that finished (ok or error)."""
        source = self.path / "done.jsonl"
        if not source.exists():
            return set()
        return {(s, c, m, int(seed)) for s, c, m, seed in (r["key"] for r in _read_jsonl(source))}

    def drop_summaries(self, suite: str) -> None:
        """Remove a suite's summary rows before they are recomputed (on resume)."""
        source = self.path / "rows.jsonl"
        if not source.exists():
            return
        kept = [r for r in _read_jsonl(source) if not (r["suite"] == suite and r["case"] == "summary")]
        atomic_write_text(source, _jsonl(kept))

    def write_json(self, name: str, data: Any) -> None:
        atomic_write_text(self.path / name, json.dumps(data, indent=2, sort_keys=True, default=str) + "\n")

    def read_json(self, name: str, default: Any = None) -> Any:
        target = self.path / name
        return json.loads(target.read_text()) if target.exists() else default

    def finalize(self) -> pd.DataFrame:
        """Write results.csv / results.json / traces.csv atomically from the appended rows."""
        frame = self.rows()
        atomic_write_text(self.path / "results.csv", frame[COLUMNS].to_csv(index=False))
        atomic_write_text(self.path / "results.json", frame[COLUMNS].to_json(orient="records", indent=1))
        traces = self.traces()
        if len(traces):
            atomic_write_text(self.path / "traces.csv", traces.to_csv(index=False))
        return frame


def _jsonl(records: Iterable[dict[str, Any]]) -> str:
    return "".join(json.dumps(r, sort_keys=True, default=_plain) + "\n" for r in records)


def _plain(value: Any) -> Any:
    if hasattr(value, "item"):
        return value.item()
    return str(value)


def _read_jsonl(path: Path) -> list[dict[str, Any]]:
    records = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            continue  # a line torn by a crash mid-write
    return records
