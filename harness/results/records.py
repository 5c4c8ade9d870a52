"""The records of a results folder as lipbench writes them, and what makes one damaged.

A case record is one line of ``cases.jsonl``: its key ``[suite, case, method, seed]``, its
rows (:func:`harness.results.rows.row_problem`), traces, artifact records and fingerprint.
:func:`record_problem` says what is wrong with one that is not what lipbench writes, so a
folder changed by something else is named ``file:line`` and never read on silently.
"""
from __future__ import annotations

import json
import re
from typing import Any, Iterable, Iterator

from .rows import is_seed, row_problem

Key = tuple[str, str, str, int]
#: What an artifact record's path may be: ``artifacts/<folder>/<file>``, neither name starting with
#: a dot (so never ``.`` or ``..``) nor holding a slash.
ARTIFACT_PATH = re.compile(r"^artifacts/([^/\x00.][^/\x00]*)/([^/\x00.][^/\x00]*)$")


def key_of(raw: Iterable[Any]) -> Key:
    """``(suite, case, method, seed)`` of a stored key; ``ValueError`` when it is not one."""
    if not isinstance(raw, (list, tuple)) or len(raw) != 4:
        raise ValueError("a key is [suite, case, method, seed]")
    suite, case, method, seed = raw
    if not all(isinstance(x, str) for x in (suite, case, method)) or not is_seed(seed):
        raise ValueError(f"key {str(list(raw))[:80]} is not [text, text, text, integer]")
    return (suite, case, method, seed)


def record_problem(record: Any) -> str | None:
    """What is wrong with a case record as lipbench writes them, or ``None``."""
    if not isinstance(record, dict) or not isinstance(record.get("rows"), list):
        return "not a case record"
    try:
        key = key_of(record.get("key"))
    except ValueError as exc:
        return str(exc)
    for row in record["rows"]:
        problem = row_problem(row)
        if problem:
            return problem
        if row["suite"] != key[0]:
            return f"a row of suite {row['suite'][:40]!r} in a case of {key[0]!r}"
    if not isinstance(record.get("traces", []), list) or not all(isinstance(t, dict) for t in record.get("traces", [])):
        return "traces: not a list of mappings"
    artifacts = record.get("artifacts", [])
    if not isinstance(artifacts, list) or not all(isinstance(a, dict) and isinstance(a.get("path"), str)
                                                  and ARTIFACT_PATH.match(a["path"]) for a in artifacts):
        return "artifacts: not a list of lipbench's artifact records"
    if not isinstance(record.get("fingerprint", {}), dict):
        return "fingerprint: not a mapping"
    return None


def csv_rows(records: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    """results.csv rows as stored rows (CSV reads seeds as int, values as float, text as text)."""
    for r in records:
        row = dict(r)
        for column in ("case", "method", "metric", "unit", "device", "status", "message", "params", "samples"):
            row[column] = "" if row.get(column) is None else str(row.get(column))
        if isinstance(row.get("seed"), (int, float)) and float(row["seed"]).is_integer():
            row["seed"] = int(row["seed"])
        value = row.get("value")
        row["value"] = float(value) if isinstance(value, (int, float)) else (
            float("nan") if value in ("", "nan", "NaN") else value)
        yield row


def complete_prefix(data: bytes) -> int:
    """Length of ``data`` up to and including its last newline (a torn tail excluded)."""
    return data.rfind(b"\n") + 1


def dumps(record: dict[str, Any]) -> str:
    """One record as the one line ``cases.jsonl`` stores (numpy scalars as plain numbers)."""
    return json.dumps(record, sort_keys=True, default=_plain, allow_nan=True)


def _plain(value: Any) -> Any:
    if hasattr(value, "item"):
        return value.item()
    return str(value)


def safe_name(text: str) -> str:
    """A file name from ``text``: letters, digits and ``-_.=``, never starting with a dot."""
    name = "".join(c if c.isalnum() and c.isascii() or c in "-_.=" else "_" for c in str(text))[:150]
    return ("_" + name[1:] if name.startswith(".") else name) or "_"


__all__ = ["ARTIFACT_PATH", "Key", "complete_prefix", "csv_rows", "dumps", "key_of", "record_problem", "safe_name"]
