"""Plain-text summary for the terminal / CI log."""
from __future__ import annotations

import pandas as pd

from .verdicts import (VERDICTS, failing_verdicts, normalize_verdicts, overall_passed, summary_line,
                       verdict_counts)

__all__ = ["terminal_summary", "overall_passed", "verdict_line"]

_MAX_DETAIL = 200


def verdict_line(row) -> str:
    """One verdict on one line: ``VERDICT suite/case method seed=N metric [check] value V, bound B: detail``."""
    where = f"{row['suite']}/{row['case']}"
    parts = [f"{(row['verdict'] or '(blank)').upper():<10}", where]
    if row["method"]:
        parts.append(row["method"])
    if row["seed"] != "":
        parts.append(f"seed={row['seed']}")
    parts.append(row["metric"])
    return " ".join(p for p in parts if p) + " " + summary_line(row, _MAX_DETAIL)


def terminal_summary(verdicts: pd.DataFrame | None) -> str:
    """Counts per verdict, then every failing verdict on its own line.

    >>> print(terminal_summary(df))            # doctest: +SKIP
    lipbench: FAIL — 5 verdicts: 3 pass, 1 violation, 1 error
      ERROR      sn/m=8 sn_w seed=0 ratio [alpha_upper]: Traceback ... ValueError: boom
      VIOLATION  sn/m=8 none seed=0 ratio [alpha_upper]: value 1.31 > bound 1.0
    """
    df = normalize_verdicts(verdicts)
    counts = verdict_counts(df)
    status = "PASS" if overall_passed(df) else "FAIL"
    if df.empty:
        return f"lipbench: {status} — no verdicts"
    order = list(VERDICTS) + [k for k in counts if k not in VERDICTS]
    shown = ", ".join(f"{counts[k]} {k}" for k in order if counts.get(k))
    lines = [f"lipbench: {status} — {len(df)} verdicts: {shown}"]
    failing = failing_verdicts(df)
    if not failing.empty:
        lines.append(f"{len(failing)} failing:")
        lines.extend("  " + verdict_line(r) for _, r in failing.iterrows())
    return "\n".join(lines)
