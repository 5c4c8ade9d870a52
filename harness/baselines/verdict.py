"""Verdict rows: one per check or comparison (see docs/results.md)."""
from __future__ import annotations

import math
from typing import Any

import pandas as pd

VERDICT_COLUMNS = ("suite", "case", "method", "seed", "metric", "check", "kind", "verdict",
                   "value", "reference", "effect", "threshold", "detail")
#: Every verdict, in display order (worst first). ``changed``: a metric without a better
#: direction moved beyond its threshold (never called worse, nor better).
VERDICTS = ("error", "violation", "regression", "changed", "missing", "improvement", "new", "pass", "n/a")
#: Verdicts that make a run fail.
FAILING = frozenset({"violation", "regression", "changed", "missing", "error"})
#: Verdicts that do not; anything outside this set fails (fail closed).
NON_FAILING = frozenset({"pass", "improvement", "new", "n/a"})


def verdict_row(*, suite: str, case: str, method: str, seed: int, metric: str, check: str,
                kind: str, verdict: str, value: float = math.nan, reference: float = math.nan,
                effect: float = math.nan, threshold: float = math.nan, detail: str = "") -> dict[str, Any]:
    if verdict not in VERDICTS:
        raise ValueError(f"unknown verdict {verdict!r}")
    return dict(suite=suite, case=case, method=method, seed=int(seed), metric=metric, check=check,
                kind=kind, verdict=verdict, value=float(value), reference=float(reference),
                effect=float(effect), threshold=float(threshold), detail=detail)


def to_frame(rows: list[dict[str, Any]]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=list(VERDICT_COLUMNS))


def passed(verdicts: pd.DataFrame) -> bool:
    """True when every verdict is a known non-failing one (an unknown verdict fails)."""
    return bool(verdicts["verdict"].isin(NON_FAILING).all())
