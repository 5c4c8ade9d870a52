"""The HTML report of ``lipbench compare A B``: what differs first, then per suite A and B side by
side (plots and a table with both values on every row), then both manifests side by side.

Self-contained like the run report (:mod:`.htmlreport`: its stylesheet and script, inline SVG,
autoescaped templates)."""
from __future__ import annotations

import datetime as _dt
import json
import os
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd

from harness.baselines.verdict import VERDICTS, passed
from harness.results.atomic import write_output
from harness.runners import runner_for

from .compare_plots import side_by_side
from .data import fmt_number
from .htmlreport import _asset, _counts_list, _env, _slug, _split_detail
from .plots import method_colors
from .verdicts import is_failing, sort_verdicts

if TYPE_CHECKING:
    from harness.compare import Comparison

#: Table rows shown per suite (the worst first); the rest are counted.
MAX_ROWS = 2000
#: Side-by-side plots per suite (about 0.7 s each): the first compared metrics'; the table has all.
MAX_PLOTS = 30


def render_comparison(comparison: "Comparison", title: str) -> str:
    a, b, verdicts = comparison.a, comparison.b, comparison.verdicts
    colors = method_colors(list(dict.fromkeys(list(a.rows["method"]) + list(b.rows["method"]))))
    used: set[str] = set()
    sections = []
    for suite in dict.fromkeys(list(verdicts["suite"])):
        mine = verdicts[verdicts["suite"] == suite]
        sections.append(_section(suite, _slug(suite, used), mine, comparison, colors))
    counts = verdicts["verdict"].value_counts()
    ctx = {
        "title": title, "passed": passed(verdicts), "overall": "PASS" if passed(verdicts) else "FAIL",
        "generated": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "a": a.path, "b": b.path, "n_verdicts": len(verdicts),
        "counts": _counts_list({v: int(counts.get(v, 0)) for v in VERDICTS}),
        "differences": [{"topic": d.topic, "a": d.a, "b": d.b} for d in comparison.differences],
        "sections": sections, "provenance": _provenance(a.manifest, b.manifest),
        "css": _asset("report.css"),
    }
    return _env().get_template("compare.html.j2").render(**ctx)


def write_comparison(path: str | os.PathLike, comparison: "Comparison", title: str) -> Path:
    """Write the comparison's report to ``path`` (atomically); returns the path."""
    return write_output(path, render_comparison(comparison, title), "--report")


def _section(suite: str, anchor: str, verdicts: pd.DataFrame, comparison: "Comparison", colors: dict) -> dict:
    a, b = comparison.a, comparison.b
    rows_a, rows_b = (s.rows[s.rows["suite"] == suite] for s in (a, b))
    kind = b.kinds.get(suite) or a.kinds.get(suite)
    declarations = runner_for(kind).declarations if kind else None
    plots = []
    metrics = list(dict.fromkeys(verdicts.loc[verdicts["metric"] != "", "metric"]))
    for metric in metrics[:MAX_PLOTS]:
        se_name = declarations.standard_error_of(metric) if declarations is not None else None
        errors = tuple(r[r["metric"] == se_name] for r in (rows_a, rows_b)) if se_name else None
        plots.append(side_by_side(metric, rows_a[rows_a["metric"] == metric], rows_b[rows_b["metric"] == metric],
                                  colors, errors if errors and any(len(e) for e in errors) else None))
    ordered = sort_verdicts(verdicts)
    counts = verdicts["verdict"].value_counts()
    return {"name": suite, "anchor": anchor, "plots": plots, "unplotted": metrics[MAX_PLOTS:],
            "counts": [c for c in _counts_list({v: int(counts.get(v, 0)) for v in VERDICTS}) if c["n"]],
            "rows": [_row(r) for r in ordered.head(MAX_ROWS).to_dict("records")],
            "truncated": max(0, len(ordered) - MAX_ROWS)}


def _row(r: dict) -> dict:
    short, full = _split_detail(str(r["detail"]))
    return {"verdict": r["verdict"], "failing": is_failing(r["verdict"]), "case": r["case"], "method": r["method"],
            "seed": "all" if int(r["seed"]) < 0 else int(r["seed"]), "metric": r["metric"], "check": r["check"],
            "a": fmt_number(r["reference"]), "b": fmt_number(r["value"]),
            "a_raw": "" if pd.isna(r["reference"]) else repr(float(r["reference"])),
            "b_raw": "" if pd.isna(r["value"]) else repr(float(r["value"])),
            "detail": short, "detail_full": full}


def _provenance(a: dict, b: dict) -> list[dict]:
    out = []
    for key in sorted(set(a) | set(b)):
        left, right = (json.dumps(m.get(key), default=str, sort_keys=True) if key in m else "(none)"
                       for m in (a, b))
        out.append({"key": key, "a": left, "b": right, "differs": left != right})
    return out
