"""Tidy result rows: one per suite, case, method, seed and metric (see docs/architecture.md, "Result rows")."""
from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any, Sequence

import pandas as pd

COLUMNS = ["suite", "case", "method", "seed", "metric", "value", "unit", "device",
           "status", "message", "params", "samples"]
TRACE_COLUMNS = ["suite", "case", "method", "seed", "series", "step", "value"]
STATUSES = ("ok", "error", "diverged", "n/a")
#: Seeds are stored as int64 (pandas, numpy): a seed outside this range is damaged input.
SEED_MIN, SEED_MAX = -2**63, 2**63 - 1
_TEXT_COLUMNS = ("suite", "case", "method", "metric", "unit", "device", "status", "message", "params", "samples")


@dataclass(frozen=True)
class Measurement:
    """What a runner reports: a metric's value, unit and optional repeated samples.

    ``case`` and ``method`` override the case's own only for suite-level summaries.
    ``status`` is ``diverged`` when a training run ended early by design (not a crash), and
    ``n/a`` when the suite cannot observe this method (the message says why).
    """

    metric: str
    value: float
    unit: str = "1"
    samples: Sequence[float] | None = None
    status: str = "ok"
    message: str = ""
    case: str | None = None
    method: str | None = None


def make_row(suite: str, case: str, method: str, seed: int, device: str, params_json: str,
             m: Measurement) -> dict[str, Any]:
    """A result row; a non-finite value of an ``ok`` measurement becomes an ``error`` row."""
    value = float(m.value)
    status, message = m.status, m.message
    if status == "ok" and not math.isfinite(value):
        status, message = "error", f"metric {m.metric} is not finite ({value})"
    return {"suite": suite, "case": m.case or case, "method": method if m.method is None else m.method,
            "seed": int(seed), "metric": m.metric, "value": value, "unit": m.unit, "device": device,
            "status": status, "message": message, "params": params_json,
            "samples": json.dumps([float(s) for s in m.samples]) if m.samples is not None else ""}


def error_row(suite: str, case: str, method: str, seed: int, device: str, params_json: str,
              message: str) -> dict[str, Any]:
    """The single row recording that a case raised, timed out or could not start."""
    return {"suite": suite, "case": case, "method": method, "seed": int(seed), "metric": "",
            "value": float("nan"), "unit": "", "device": device, "status": "error",
            "message": message, "params": params_json, "samples": ""}


def is_seed(value: Any) -> bool:
    """An integer (not a bool) that fits the int64 column of the results."""
    return isinstance(value, int) and not isinstance(value, bool) and SEED_MIN <= value <= SEED_MAX


def row_problem(row: Any) -> str | None:
    """What is wrong with a stored result row (as lipbench writes them), or ``None``."""
    if not isinstance(row, dict):
        return "a row is not a mapping"
    missing = [c for c in COLUMNS if c not in row]
    if missing:
        return f"a row lacks {', '.join(missing)}"
    for column in _TEXT_COLUMNS:
        if not isinstance(row[column], str):
            return f"{column}: expected text, got {str(row[column])[:40]!r}"
    if not is_seed(row["seed"]):
        return f"seed: expected an integer within int64, got {str(row['seed'])[:40]!r}"
    value = row["value"]
    if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))):
        return f"value: expected a number, got {str(value)[:40]!r}"
    if row["status"] not in STATUSES:
        return f"status: expected one of {', '.join(STATUSES)}, got {row['status'][:40]!r}"
    if row["status"] == "ok" and (value is None or not math.isfinite(value)):
        return f"value: {value} is not finite in an ok row"
    if row["samples"] and not _number_list(row["samples"]):
        return f"samples: expected a JSON list of numbers, got {row['samples'][:40]!r}"
    if row["params"] and not _mapping(row["params"]):
        return f"params: expected a JSON object, got {row['params'][:40]!r}"
    return None


def _mapping(text: str) -> bool:
    try:
        return isinstance(json.loads(text), dict)
    except ValueError:
        return False


def _number_list(text: str) -> bool:
    try:
        data = json.loads(text)
    except ValueError:
        return False
    return isinstance(data, list) and all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in data)


def to_frame(rows: Sequence[dict[str, Any]]) -> pd.DataFrame:
    """Rows as a DataFrame with the canonical columns and dtypes."""
    frame = pd.DataFrame(list(rows), columns=COLUMNS)
    frame["seed"] = frame["seed"].astype("int64")
    frame["value"] = frame["value"].astype("float64")
    for col in ("case", "method", "metric", "unit", "device", "status", "message", "params", "samples"):
        frame[col] = frame[col].fillna("").astype(str)
    return frame


def samples_of(row: Any) -> list[float]:
    """The repeated measurements of a row, or ``[value]`` when it has none."""
    text = row["samples"]
    return json.loads(text) if text else [float(row["value"])]
