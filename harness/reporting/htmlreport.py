"""The self-contained HTML report (Jinja2 templates + inline matplotlib SVG).

:func:`render_html` builds a plain-data context from the inputs (everything formatted to
strings here, so the templates stay presentational) and renders
``templates/report.html.j2`` with autoescaping on for every template: suite names,
cases, methods, details and tracebacks are always escaped.  The only markup inserted
unescaped is the report's own stylesheet and script and the SVG produced by matplotlib
(whose text is XML-escaped by matplotlib itself).

The file makes no network fetches: CSS and JS are inline, plots are inline SVG, images
are ``data:`` URIs, and fonts are the reader's system fonts.
"""
from __future__ import annotations

import datetime as _dt
import json
import os
import re
from collections import Counter
from pathlib import Path

import jinja2
import numpy as np
import pandas as pd
from markupsafe import Markup

from harness.baselines.rules import detectable_effects
from harness.results.atomic import write_output

from .data import (case_params, fmt_number, normalize_artifacts, normalize_results,
                   normalize_suite, normalize_traces, text)
from .paper_tables import paper_section
from .plots import NO_DATA, PlotOutput, method_colors, render_distributions, render_plot
from .verdicts import (FAILING, VERDICTS, is_failing, normalize_verdicts, overall_passed,
                       sort_verdicts, verdict_counts)

__all__ = ["render_html", "write_html"]

TEMPLATES = Path(__file__).with_name("templates")
MAX_PIVOT_ROWS = 1500
PIVOT_OPEN_ROWS = 60
_HEADER_KEYS = ("lipbench_version", "git_commit", "workdir_commit", "commit", "preset", "device", "device_name", "torch",
                "torch_version", "start_time", "end_time", "started", "finished")


def _env() -> jinja2.Environment:
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(str(TEMPLATES)),
                             autoescape=True,  # every template, whatever its file name
                             undefined=jinja2.StrictUndefined,
                             trim_blocks=True, lstrip_blocks=True)
    env.filters["num"] = fmt_number
    return env


def _asset(name: str) -> Markup:
    # Our own package data, not user input: safe to inline as-is.
    return Markup((TEMPLATES / name).read_text(encoding="utf-8"))


def _slug(name: str, used: set[str]) -> str:
    base = "suite-" + (re.sub(r"[^A-Za-z0-9_-]+", "-", name).strip("-") or "x")
    slug, i = base, 2
    while slug in used:
        slug, i = f"{base}-{i}", i + 1
    used.add(slug)
    return slug


def _split_detail(detail: str) -> tuple[str, str]:
    """(one-line summary, full text or '' when the summary says it all)."""
    lines = [ln for ln in detail.strip().splitlines() if ln.strip()]
    if len(lines) <= 1:
        return (lines[0] if lines else ""), ""
    return lines[-1].strip(), detail.strip()


def _verdict_rows(df: pd.DataFrame, anchors: dict[str, str]) -> list[dict]:
    rows = []
    for r in sort_verdicts(df).to_dict("records"):
        short, full = _split_detail(r["detail"])
        rows.append({
            "verdict": r["verdict"] or "(blank)", "failing": is_failing(r["verdict"]),
            "suite": r["suite"], "anchor": anchors.get(r["suite"], ""), "case": r["case"],
            "method": r["method"], "seed": r["seed"], "metric": r["metric"], "check": r["check"],
            "kind": r["kind"], "value": fmt_number(r["value"]), "reference": fmt_number(r["reference"]),
            "value_raw": "" if pd.isna(r["value"]) else repr(float(r["value"])),
            "reference_raw": "" if pd.isna(r["reference"]) else repr(float(r["reference"])),
            "detail": short, "detail_full": full,
        })
    return rows


def _counts_list(counts: dict[str, int]) -> list[dict]:
    return [{"verdict": k, "n": n, "failing": is_failing(k) if k != "(blank)" else True}
            for k, n in counts.items()]


def _short_counts(df: pd.DataFrame) -> list[dict]:
    c = verdict_counts(df)
    return [x for x in _counts_list(c) if x["n"]]


def _last_line(msg: str) -> str:
    lines = [ln.strip() for ln in msg.strip().splitlines() if ln.strip()]
    return lines[-1] if lines else ""


def _pivot(res: pd.DataFrame, ver: pd.DataFrame, metrics_order: list[str]) -> dict:
    """Rows = case x metric, columns = method, cells = median over seeds of ok values."""
    methods = list(dict.fromkeys(res["method"]))
    worst: dict[tuple[str, str, str], list[str]] = {}
    for r in ver.to_dict("records"):
        worst.setdefault((r["case"], r["method"], r["metric"]), []).append(r["verdict"])
    cases = list(dict.fromkeys(res["case"]))
    cases = sorted(cases, key=lambda c: (c != "summary", cases.index(c)))
    order = {m: i for i, m in enumerate(metrics_order)}
    groups = {k: g for k, g in res.groupby(["case", "metric"], sort=False)}
    keys = sorted(groups, key=lambda k: (cases.index(k[0]), order.get(k[1], len(order)), k[1]))
    truncated = max(0, len(keys) - MAX_PIVOT_ROWS)
    rows = []
    for case, metric in keys[:MAX_PIVOT_ROWS]:
        g = groups[(case, metric)]
        units = [u for u in dict.fromkeys(g["unit"]) if u]
        cells = []
        for m in methods:
            gm = g[g["method"] == m]
            vs = [(case, m, metric)]
            vlist = worst.get(vs[0], [])
            failing = any(is_failing(v) for v in vlist)
            improved = not failing and "improvement" in vlist
            if gm.empty:
                cells.append({"text": "", "title": "", "cls": "empty"})
                continue
            ok = gm[(gm["status"] == "ok") & np.isfinite(gm["value"].astype(float))]["value"].astype(float)
            bad = Counter(s for s in gm["status"] if s != "ok")
            if ok.empty:
                status = bad.most_common(1)[0][0] if bad else "no value"
                cells.append({"text": status, "cls": "cell-fail" if failing else "cell-status",
                              "title": f"{len(gm)} row(s), none ok" + (f"; verdicts: {', '.join(vlist)}" if vlist else "")})
                continue
            title = f"median of {len(ok)} seed(s)"
            if len(ok) > 1:
                title += f", min {fmt_number(ok.min())}, max {fmt_number(ok.max())}"
            if bad:
                title += "; " + ", ".join(f"{n} {s}" for s, n in bad.items())
            if vlist:
                title += "; verdicts: " + ", ".join(sorted(set(vlist)))
            text_ = fmt_number(float(ok.median()))
            if bad:
                text_ += " *"
            cells.append({"text": text_, "title": title,
                          "cls": "cell-fail" if failing else ("cell-improve" if improved else "")})
        rows.append({"case": case, "metric": metric, "unit": ", ".join(units), "cells": cells,
                     "failing": any(c["cls"] == "cell-fail" for c in cells)})
    return {"methods": [m or "value" for m in methods], "rows": rows, "truncated": truncated}


def _errors(res: pd.DataFrame) -> list[dict]:
    """Rows with status error/diverged, one entry per (case, method, status, message)."""
    bad = res[res["status"] != "ok"]
    out = []
    for (case, method, status, message), g in bad.groupby(
            ["case", "method", "status", "message"], sort=False):
        seeds = [x for x in dict.fromkeys(g["seed"]) if x != ""]
        out.append({"case": case, "method": method, "status": status,
                    "seeds": ("seed " if len(seeds) == 1 else "seeds ") + ", ".join(seeds) if seeds else "",
                    "metrics": ", ".join(dict.fromkeys(g["metric"])),
                    "summary": _last_line(message) or "(no message)", "message": message.strip()})
    return out


def _check_rows(checks: list[dict], ver: pd.DataFrame) -> list[dict]:
    out = []
    cv = ver[ver["kind"] == "check"]
    for c in checks:
        name = text(c.get("name"))
        mine = cv[cv["check"] == name]
        out.append({"name": name, "metric": text(c.get("metric")), "assert": text(c.get("assert")),
                    "when": text(c.get("when")), "cite": text(c.get("cite")),
                    "description": text(c.get("description")), "counts": _short_counts(mine),
                    "failing": bool(mine["verdict"].map(is_failing).any())})
    known = {text(c.get("name")) for c in checks}
    for name in dict.fromkeys(cv["check"]):   # verdicts for checks the suite file lacks
        if name not in known:
            mine = cv[cv["check"] == name]
            out.append({"name": name, "metric": ", ".join(dict.fromkeys(mine["metric"])), "assert": "",
                        "when": "", "cite": "", "description": "(not in the suite file)",
                        "counts": _short_counts(mine), "failing": bool(mine["verdict"].map(is_failing).any())})
    return out


def _suite_section(suite: dict, anchor: str, res: pd.DataFrame, ver: pd.DataFrame,
                   traces: pd.DataFrame, artifacts: list[dict], params: dict,
                   colors: dict, all_results: pd.DataFrame, baseline: pd.DataFrame) -> dict:
    name = suite["name"]
    plots: list[PlotOutput] = [render_plot(p, name, all_results, traces, artifacts, params, colors)
                               for p in suite["plots"]]
    judged = ver[ver["check"].str.startswith("outcome")]["metric"]
    plots += [render_distributions(m, res[res["metric"] == m], baseline[baseline["metric"] == m]
                                   if len(baseline) else baseline, colors)
              for m in dict.fromkeys(judged)]
    if not any(isinstance(p, dict) and p.get("type") == "images" for p in suite["plots"]) and \
            any(a["suite"] == name and a["kind"] == "image" for a in artifacts):
        plots.append(render_plot({"type": "images", "title": "Samples"}, name, all_results,
                                 traces, artifacts, params, colors))
    failing = sort_verdicts(ver[ver["verdict"].map(is_failing)])
    comparisons = ver[ver["kind"] == "comparison"]
    effects = detectable_effects(comparisons)
    metrics_order = list(suite["metrics"])
    return {
        "name": name, "anchor": anchor, "description": suite["description"], "kind": suite["kind"],
        "known": suite.get("_known", True),
        "passed": overall_passed(ver), "has_verdicts": not ver.empty,
        "counts": _short_counts(ver),
        "metrics": [{"name": k, "unit": text((v or {}).get("unit")) if isinstance(v, dict) else "",
                     "description": text((v or {}).get("description")) if isinstance(v, dict) else ""}
                    for k, v in suite["metrics"].items()],
        "checks": _check_rows(suite["checks"], ver),
        "compare": [{"metric": text(c.get("metric")), "rule": text(c.get("rule")),
                     "options": ", ".join(f"{k}={v}" for k, v in c.items() if k not in ("metric", "rule")),
                     "detectable": effects.get((name, text(c.get("metric"))), "")}
                    for c in suite["compare"]],
        "failing": _verdict_rows(failing, {}),
        "comparisons": _verdict_rows(comparisons, {}),
        "plots": plots,
        "pivot": _pivot(res, ver, metrics_order) if not res.empty else None,
        "paper": paper_section(suite, res),
        "n_results": len(res),
        "errors": _errors(res),
    }


def _manifest_rows(manifest: dict | None) -> list[dict]:
    rows = []
    for k, v in (manifest or {}).items():
        if isinstance(v, (dict, list, tuple)):
            flat = json.dumps(v, default=str, sort_keys=True)
            if len(flat) <= 100 and not any(isinstance(x, (dict, list)) for x in
                                            (v.values() if isinstance(v, dict) else v)):
                rows.append({"key": str(k), "value": flat, "block": False})
            else:
                rows.append({"key": str(k), "value": json.dumps(v, indent=2, default=str, sort_keys=True),
                             "block": True})
        else:
            rows.append({"key": str(k), "value": text(v), "block": "\n" in text(v)})
    return rows


def render_html(results: pd.DataFrame | None, verdicts: pd.DataFrame | None, suites: list,
                manifest: dict | None, traces: pd.DataFrame | None = None,
                artifacts: list[dict] | None = None, title: str = "lipbench report",
                notes: list[str] | None = None, baselines: pd.DataFrame | None = None) -> str:
    """The report as one HTML string (see :func:`write_html`)."""
    base = normalize_results(baselines)
    res = normalize_results(results)
    ver = normalize_verdicts(verdicts)
    trc = normalize_traces(traces)
    arts = normalize_artifacts(artifacts)
    suite_dicts = [normalize_suite(s) for s in (suites or [])]
    known = {s["name"] for s in suite_dicts}
    extra = [n for n in dict.fromkeys(list(res["suite"]) + list(ver["suite"]) + [a["suite"] for a in arts])
             if n not in known]
    for n in extra:   # data for a suite we were not given the file of: still shown
        suite_dicts.append({"name": n, "description": "", "kind": "", "plots": [], "checks": [],
                            "compare": [], "metrics": {}, "_known": False})
    used: set[str] = set()
    anchors = {s["name"]: _slug(s["name"], used) for s in suite_dicts}
    colors = method_colors([m for m in dict.fromkeys(res["method"])] + list(dict.fromkeys(trc["method"])))
    params = case_params(res)
    sections = [_suite_section(s, anchors[s["name"]], res[res["suite"] == s["name"]],
                               ver[ver["suite"] == s["name"]], trc, arts, params, colors, res,
                               base[base["suite"] == s["name"]])
                for s in suite_dicts]
    counts = verdict_counts(ver)
    passed = overall_passed(ver)
    man = dict(manifest or {})
    header = [(k, text(man[k])) for k in _HEADER_KEYS if k in man and not isinstance(man[k], (dict, list))]
    ctx = {
        "title": title,
        "generated": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "overall": "PASS" if passed else "FAIL",
        "passed": passed,
        "counts": _counts_list(counts),
        "n_verdicts": len(ver),
        "n_failing": int(ver["verdict"].map(is_failing).sum()),
        "n_results": len(res),
        "n_result_problems": int((res["status"] != "ok").sum()),
        "header": header,
        "notes": list(notes or []),
        "verdicts": _verdict_rows(ver, anchors),
        "sections": sections,
        "manifest": _manifest_rows(man),
        "css": _asset("report.css"),
        "no_data": NO_DATA,
        "failing_names": sorted(FAILING),
        "verdict_names": list(VERDICTS),
    }
    return _env().get_template("report.html.j2").render(**ctx)


def write_html(path: str | os.PathLike, results: pd.DataFrame | None, verdicts: pd.DataFrame | None,
               suites: list, manifest: dict | None, traces: pd.DataFrame | None = None,
               artifacts: list[dict] | None = None, title: str = "lipbench report",
               notes: list[str] | None = None, baselines: pd.DataFrame | None = None) -> Path:
    """Write the self-contained HTML report to ``path`` (atomically); returns the path.

    ``results``/``verdicts``/``traces`` are the long-format DataFrames of the result and
    verdict contracts, ``suites`` the validated suite dicts (or ``harness.suite.Suite``
    objects), ``manifest`` the run's provenance, ``artifacts`` dicts
    ``{suite, case, method, seed, kind: 'image', path}`` embedded as data URIs, ``notes``
    plain sentences shown under the header (e.g. that no GPU baseline exists), ``baselines``
    the baseline rows the run was judged against (with a ``suite`` column), shown beside the
    run's seeds for every training outcome that was judged.
    """
    html = render_html(results, verdicts, suites, manifest, traces=traces, artifacts=artifacts,
                       title=title, notes=notes, baselines=baselines)
    return write_output(path, html, "report")
