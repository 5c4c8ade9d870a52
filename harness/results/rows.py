"""Tidy result rows: one per suite, case, method, seed and metric (see README, "Result rows")."""
from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any, Sequence

import pandas as pd

COLUMNS = ["suite", "case", "method", "seed", "metric", "value", "unit", "device",
           "status", "message", "params", "samples"]
TRACE_COLUMNS = ["suite", "case", "method", "seed", "series", "step", "value"]


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
