"""Normalisation of the reporters' inputs (results, traces, artifacts, suites).

Everything the reporters receive is built concurrently by other parts of the harness (or
read back from CSV, where empty strings become NaN), so each input is normalised once
here: contract columns present, text columns as ``str``, numbers numeric, ``params``
parsed.
"""
from __future__ import annotations

import json
import math
from typing import Any

import numpy as np
import pandas as pd

RESULT_COLUMNS = ("suite", "case", "method", "seed", "metric", "value", "unit", "device",
                  "status", "message", "params", "samples")
TRACE_COLUMNS = ("suite", "case", "method", "seed", "series", "step", "value")
_RESULT_TEXT = ("suite", "case", "method", "metric", "unit", "device", "status", "message")


def text(v: Any) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return ""
    return str(v)


def seed_str(v: Any) -> str:
    if v is None or v == "" or (isinstance(v, float) and math.isnan(v)):
        return ""
    try:
        f = float(v)
    except (TypeError, ValueError):
        return str(v)
    return str(int(f)) if f.is_integer() else str(v)


def parse_params(v: Any) -> dict:
    """The ``params`` JSON as a dict; ``{}`` when empty or unparsable."""
    if isinstance(v, dict):
        return v
    s = text(v).strip()
    if not s:
        return {}
    try:
        out = json.loads(s)
    except (TypeError, ValueError):
        return {}
    return out if isinstance(out, dict) else {}


def normalize_results(results: pd.DataFrame | None) -> pd.DataFrame:
    """Copy with contract columns, ``value`` numeric, ``seed`` as display string, ``status``
    lower-cased, and an extra ``_params`` column of dicts."""
    df = pd.DataFrame(columns=list(RESULT_COLUMNS)) if results is None else results.copy()
    for col in RESULT_COLUMNS:
        if col not in df.columns:
            df[col] = np.nan if col in ("seed", "value") else ""
    for col in _RESULT_TEXT:
        df[col] = df[col].map(text).astype(object)
    df["status"] = df["status"].map(lambda s: s.strip().lower() or "ok").astype(object)
    df["value"] = pd.to_numeric(df["value"], errors="coerce")
    df["seed"] = df["seed"].map(seed_str).astype(object)
    df["_params"] = df["params"].map(parse_params).astype(object)
    return df.reset_index(drop=True)


def normalize_traces(traces: pd.DataFrame | None) -> pd.DataFrame:
    df = pd.DataFrame(columns=list(TRACE_COLUMNS)) if traces is None else traces.copy()
    for col in TRACE_COLUMNS:
        if col not in df.columns:
            df[col] = np.nan if col in ("seed", "step", "value") else ""
    for col in ("suite", "case", "method", "series"):
        df[col] = df[col].map(text).astype(object)
    df["seed"] = df["seed"].map(seed_str).astype(object)
    df["step"] = pd.to_numeric(df["step"], errors="coerce")
    df["value"] = pd.to_numeric(df["value"], errors="coerce")
    return df.reset_index(drop=True)


def normalize_artifacts(artifacts: list[dict] | None) -> list[dict]:
    out = []
    for a in artifacts or []:
        if not isinstance(a, dict):
            continue
        out.append({"suite": text(a.get("suite")), "case": text(a.get("case")),
                    "method": text(a.get("method")), "seed": seed_str(a.get("seed")),
                    "kind": text(a.get("kind")) or "image", "path": text(a.get("path"))})
    return out


def normalize_suite(suite: Any) -> dict:
    """A suite as a plain dict (accepts the validated dict or a ``harness.suite.Suite``)."""
    raw = getattr(suite, "raw", None)
    if isinstance(raw, dict):
        d = dict(raw)
        for key in ("name", "description", "kind"):
            if hasattr(suite, key):
                d[key] = getattr(suite, key)
    elif isinstance(suite, dict):
        d = dict(suite)
    else:
        raise TypeError(f"a suite must be a dict or a Suite, not {type(suite).__name__}")
    return {
        "name": text(d.get("name")),
        "description": text(d.get("description")),
        "kind": text(d.get("kind")),
        "plots": list(d.get("plots") or []),   # non-mappings become "plot failed" notes
        "checks": [c for c in (d.get("checks") or []) if isinstance(c, dict)],
        "compare": [c for c in (d.get("compare") or []) if isinstance(c, dict)],
        "metrics": d.get("metrics") if isinstance(d.get("metrics"), dict) else {},
        "paper_table": d.get("paper_table") if isinstance(d.get("paper_table"), dict) else None,
    }


def case_params(results: pd.DataFrame) -> dict[tuple[str, str], dict]:
    """(suite, case) -> params, from the (normalised) results."""
    out: dict[tuple[str, str], dict] = {}
    for s, c, p in zip(results["suite"], results["case"], results["_params"]):
        if p and (s, c) not in out:
            out[(s, c)] = p
    return out


def fmt_number(v: Any, digits: int = 4) -> str:
    """Compact display of a number: 4 significant digits, ``''`` for NaN/None."""
    if v is None:
        return ""
    try:
        f = float(v)
    except (TypeError, ValueError):
        return str(v)
    if math.isnan(f):
        return ""
    if math.isinf(f):
        return "∞" if f > 0 else "−∞"
    if f.is_integer() and abs(f) < 1e6:
        return str(int(f))
    return f"{f:.{digits}g}"
