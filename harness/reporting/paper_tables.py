"""A study suite's paper table beside its own numbers, and the ranking of its methods with intervals.

A suite file opts in with ``paper_table``::

    paper_table:
      anchor: miyato2018_table2        # a table of anchors.yaml (docs/anchors.md)
      rows: {sn: sn_w, ssn: "ssn(*)"}  # paper row id -> method label or glob pattern
      best_over: [setting]             # case parameters the paper picked the best value of
      rank: [fid_digits_cnn, inception_score]   # metrics ranked, per data set

For each method group (a paper row's pattern, or a method label no row claims) and each
data set and metric, the group's *best case* is the (method, case parameters) whose mean
over seeds is best in the metric's direction, over the matching labels and the
``best_over`` parameters: Miyato's optimal setting, Lin's best scale per metric. Its seeds
give the mean, the standard error and a 95% Student-t interval. Ranks come as ranges from
the intervals: a method's best possible rank is 1 + the methods whose interval lies wholly
on its better side; its worst, the number of methods minus those wholly on its worse side.
"""
from __future__ import annotations

import fnmatch
import functools
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import yaml
from scipy import stats

from .data import fmt_number

ANCHORS = Path(__file__).with_name("anchors.yaml")
CONFIDENCE = 0.95


@functools.lru_cache(maxsize=1)
def anchors() -> dict[str, Any]:
    """The papers' tables (``anchors.yaml``)."""
    return yaml.safe_load(ANCHORS.read_text(encoding="utf-8"))


@dataclass(frozen=True)
class Estimate:
    """A group's best case on one metric: which case, and its seeds' mean and interval."""

    mean: float
    low: float
    high: float
    n: int
    chosen: str  # "sn_w, setting=B"

    def text(self) -> str:
        if self.n < 2:
            return f"{fmt_number(self.mean)} (n=1)"
        return f"{fmt_number(self.mean)} [{fmt_number(self.low)}, {fmt_number(self.high)}]"


def mean_interval(values: list[float]) -> tuple[float, float, float]:
    """Mean and its two-sided 95% Student-t interval (``±inf`` for one value)."""
    n = len(values)
    mean = sum(values) / n
    if n < 2:
        return mean, -math.inf, math.inf
    sd = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1))
    half = stats.t.ppf(0.5 + CONFIDENCE / 2, n - 1) * sd / math.sqrt(n)
    return mean, mean - half, mean + half


def rank_ranges(estimates: dict[str, Estimate], better: str) -> dict[str, tuple[int, int]]:
    """Per group: (best, worst) rank possible given the intervals (see the module doc)."""
    def beats(a: Estimate, b: Estimate) -> bool:  # a's interval wholly better than b's
        return a.low > b.high if better == "higher" else a.high < b.low
    out = {}
    for name, mine in estimates.items():
        above = sum(beats(other, mine) for key, other in estimates.items() if key != name)
        below = sum(beats(mine, other) for key, other in estimates.items() if key != name)
        out[name] = (1 + above, len(estimates) - below)
    return out


def paper_section(suite: dict[str, Any], results: pd.DataFrame) -> dict[str, Any] | None:
    """The report's paper table and rankings for ``suite`` (``None``: it has no ``paper_table``)."""
    config = suite.get("paper_table")
    if not config:
        return None
    if config["anchor"] not in anchors():
        return {"title": f"paper_table: no anchor table {config['anchor']!r} (known: {', '.join(anchors())})",
                "cite": "", "spread": "", "columns": [], "rows": [], "rankings": []}
    table = anchors()[config["anchor"]]
    rows = results[(results["status"] == "ok") & (results["case"] != "summary")]
    groups = _groups(config.get("rows", {}), list(dict.fromkeys(rows["method"])), table)
    best_over = set(config.get("best_over", []))
    directions = {c["metric"]: c["better"] for c in table["columns"]}
    directions.update({m: (suite.get("metrics", {}).get(m) or {}).get("better") for m in config.get("rank", [])})
    paper = {}
    for column in table["columns"]:
        ours = _best_per_group(rows, groups, column["data"], column["metric"], column["better"], best_over)
        paper[column["id"]] = ours
    return {
        "title": table["title"], "cite": table["cite"], "spread": table["spread"],
        "columns": [c["label"] for c in table["columns"]],
        "rows": [_paper_row(row, table, paper) for row in table["rows"]],
        "rankings": _rankings(rows, groups, table, config.get("rank", []), directions, best_over),
    }


def _groups(mapping: dict[str, str], labels: list[str], table: dict) -> dict[str, dict[str, Any]]:
    """Group name -> {patterns, paper row id}: paper rows first, then labels no row claims."""
    names = {row["id"]: row["label"] for row in table["rows"]}
    groups = {names.get(row_id, row_id): {"pattern": pattern, "row": row_id} for row_id, pattern in mapping.items()}
    claimed = {label for g in groups.values() for label in labels if fnmatch.fnmatchcase(label, g["pattern"])}
    groups.update({label: {"pattern": label, "row": None} for label in labels if label not in claimed})
    return groups


def _best_per_group(rows: pd.DataFrame, groups: dict, data: str, metric: str, better: str | None,
                    best_over: set[str]) -> dict[str, Estimate]:
    mine = rows[(rows["metric"] == metric)
                & rows["_params"].map(lambda p: str(p.get("data")) == data).astype(bool)]
    out: dict[str, Estimate] = {}
    if mine.empty:
        return out
    for name, group in groups.items():
        candidates = mine[mine["method"].map(lambda m: fnmatch.fnmatchcase(m, group["pattern"])).astype(bool)]
        best = None
        for (method, case), seeds in candidates.groupby(["method", "case"], sort=False):
            values = seeds["value"].astype(float).tolist()
            mean, low, high = mean_interval(values)
            params = seeds["_params"].iloc[0]
            chosen = ", ".join([method] + [f"{k}={params[k]}" for k in sorted(best_over) if k in params])
            estimate = Estimate(mean, low, high, len(values), chosen)
            if best is None or (mean > best.mean if better == "higher" else mean < best.mean):
                best = estimate
        if best is not None:
            out[name] = best
    return out


def _paper_row(row: dict, table: dict, ours: dict[str, dict[str, Estimate]]) -> dict[str, Any]:
    cells = []
    for column in table["columns"]:
        value = row["values"].get(column["id"])
        mine = ours[column["id"]].get(row["label"])
        cells.append({"paper": _paper_text(value), "ours": mine.text() if mine else "",
                      "chosen": mine.chosen if mine else ""})
    return {"label": row["label"], "cells": cells}


def _paper_text(value: Any) -> str:
    if value is None:
        return "–"
    if isinstance(value, list):
        return f"{fmt_number(value[0])} ± {fmt_number(value[1])}"
    return fmt_number(value)


def _rankings(rows: pd.DataFrame, groups: dict, table: dict, metrics: list[str], directions: dict,
              best_over: set[str]) -> list[dict[str, Any]]:
    out = []
    datasets = list(dict.fromkeys(str(p.get("data")) for p in rows["_params"] if p.get("data") is not None))
    for data in datasets:
        for metric in metrics:
            better = directions.get(metric)
            estimates = _best_per_group(rows, groups, data, metric, better, best_over)
            if not estimates:
                continue
            ranges = rank_ranges(estimates, better) if better else {}
            order = sorted(estimates, key=lambda g: estimates[g].mean, reverse=better == "higher")
            paper_ranks, tau = _paper_order(table, data, metric, groups, estimates)
            out.append({
                "data": data, "metric": metric, "better": better or "not ranked (no direction declared)",
                "tau": "" if tau is None else f"{tau:.2f}",
                "entries": [{"group": g, "estimate": estimates[g].text(), "chosen": estimates[g].chosen,
                             "n": estimates[g].n, "rank": _range_text(ranges.get(g)),
                             "paper_rank": paper_ranks.get(g, "")} for g in order],
            })
    return out


def _range_text(pair: tuple[int, int] | None) -> str:
    if pair is None:
        return ""
    return str(pair[0]) if pair[0] == pair[1] else f"{pair[0]}–{pair[1]}"


def _paper_order(table: dict, data: str, metric: str, groups: dict,
                 estimates: dict[str, Estimate]) -> tuple[dict[str, int], float | None]:
    """The paper's ranks of the groups it has in this column, and Kendall's tau against ours."""
    column = next((c for c in table["columns"] if c["data"] == data and c["metric"] == metric), None)
    if column is None:
        return {}, None
    values = {}
    for name, group in groups.items():
        row = next((r for r in table["rows"] if r["id"] == group["row"]), None)
        value = row["values"].get(column["id"]) if row else None
        if value is not None and name in estimates:
            values[name] = value[0] if isinstance(value, list) else value
    order = sorted(values, key=values.get, reverse=column["better"] == "higher")
    ranks = {name: i + 1 for i, name in enumerate(order)}
    if len(values) < 2:
        return ranks, None
    names = list(values)
    tau = stats.kendalltau([values[n] for n in names], [estimates[n].mean for n in names]).statistic
    return ranks, None if math.isnan(tau) else float(tau)
