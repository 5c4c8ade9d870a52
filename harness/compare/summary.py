"""The terminal summary of a comparison: at most :data:`MAX_LINES` lines (the rest is in the report)."""
from __future__ import annotations

import math

import pandas as pd

from harness.baselines.verdict import FAILING, VERDICTS, passed

from .differences import Difference

#: The most lines ``lipbench compare`` prints.
MAX_LINES = 30
#: Differences and worst verdicts shown (each block says how many more the report has).
SHOWN_DIFFERENCES = 9
SHOWN_WORST = 10
_WIDTH = 160


def worst(verdicts: pd.DataFrame) -> pd.DataFrame:
    """Failing verdicts, worst first: by verdict (errors first), then by relative effect."""
    bad = verdicts[verdicts["verdict"].isin(FAILING)]
    rank = bad["verdict"].map(VERDICTS.index)
    size = bad["effect"].abs().fillna(-1.0)
    return bad.assign(_rank=rank, _size=size).sort_values(["_rank", "_size"], ascending=[True, False])


def summary_lines(verdicts: pd.DataFrame, differences: list[Difference], a: str, b: str,
                  files: list[tuple[str, str]]) -> list[str]:
    """The lines ``lipbench compare`` prints: counts, differences first, the worst verdicts, file paths."""
    counts = verdicts["verdict"].value_counts()
    shown = ", ".join(f"{counts[v]} {v}" for v in VERDICTS if counts.get(v))
    status = "PASS" if passed(verdicts) else "FAIL"
    lines = [f"lipbench compare {a} -> {b}: {status} — {len(verdicts)} verdicts: {shown or 'none'}"]
    if differences:
        lines.append(f"differences (A → B), {len(differences)}:")
        lines += [_clip("  " + d.line()) for d in differences[:SHOWN_DIFFERENCES]]
        if len(differences) > SHOWN_DIFFERENCES:
            lines.append(f"  ... {len(differences) - SHOWN_DIFFERENCES} more in the report")
    else:
        lines.append("differences (A → B): none in presets, settings, seeds, methods or provenance")
    unjudged = verdicts[(verdicts["verdict"] == "n/a") & verdicts["detail"].str.startswith("not comparable")]
    if len(unjudged):
        lines.append(f"not comparable: {len(unjudged)} (settings differ, or no standard error; see the report)")
    bad = worst(verdicts)
    if len(bad):
        lines.append(f"worst differences ({len(bad)} failing):")
        lines += [_clip("  " + _verdict_line(r)) for r in bad.head(SHOWN_WORST).to_dict("records")]
        if len(bad) > SHOWN_WORST:
            lines.append(f"  ... {len(bad) - SHOWN_WORST} more in the report")
    lines += [f"{label}: {path}" for label, path in files]
    return lines[:MAX_LINES]


def _verdict_line(r: dict) -> str:
    where = "/".join(x for x in (r["suite"], r["case"]) if x)
    seed = f" seed={r['seed']}" if r["seed"] >= 0 else ""
    what = " ".join(x for x in (where, r["method"], r["metric"]) if x)
    values = f" A {r['reference']:.4g} → B {r['value']:.4g};" if not (math.isnan(r["value"]) or
                                                                  math.isnan(r["reference"])) else ""
    return f"{r['verdict'].upper():<11} {what}{seed}:{values} {r['detail']}"


def _clip(text: str) -> str:
    return text if len(text) <= _WIDTH else text[: _WIDTH - 3] + "..."
