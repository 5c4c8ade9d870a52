"""Suite plots, rendered with matplotlib (Agg-only ``Figure``, no pyplot) to inline SVG.

One function per plot ``type`` of a suite file (``line``, ``scatter``, ``bars``,
``trace``, ``images``); :func:`render_plot` dispatches and never raises: a plot whose data
are missing becomes a "no data for this plot" note, a broken spec or a plotting error a
"plot failed" note, so one bad plot can never take the report down.

Field names used by ``x``, ``group``, ``facet`` and the keys of ``where`` are case
parameters (from the ``params`` JSON) or one of the row fields ``method``, ``case``,
``seed`` (and ``series`` for traces); ``x``/``y`` may also be ``metric:<name>``, the value
of another metric of the same case, method and seed.
"""
from __future__ import annotations

import base64
import fnmatch
import io
import itertools
import math
import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import matplotlib
import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from .data import fmt_number
from harness.expressions import compile_curve

__all__ = ["PlotOutput", "render_plot", "render_distributions", "method_colors", "NO_DATA"]

NO_DATA = "no data for this plot"
MAX_FACETS = 12
MAX_IMAGES = 48
MAX_IMAGE_BYTES = 8 * 1024 * 1024
_ROW_FIELDS = ("method", "case", "seed")
_RC = {
    "svg.fonttype": "none",          # text stays text: small, searchable SVG
    "svg.hashsalt": "lipbench",      # deterministic ids
    "font.size": 9,
    "axes.titlesize": 10,
    "axes.labelsize": 9,
    "legend.fontsize": 8,
    "xtick.labelsize": 8,
    "ytick.labelsize": 8,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": True,
    "grid.alpha": 0.3,
    "grid.linewidth": 0.6,
}
_PALETTE = [matplotlib.colors.to_hex(c) for c in
            list(matplotlib.colormaps["tab10"].colors) + list(matplotlib.colormaps["Dark2"].colors)]
_REF_STYLES = ["--", ":", "-.", (0, (5, 2, 1, 2))]
_counter = itertools.count()


@dataclass
class PlotOutput:
    """What the template shows for one plot spec."""

    title: str
    type: str
    svg: str = ""                 # inline <svg> markup (trusted: produced by matplotlib)
    note: str = ""                # "no data for this plot" or an error note
    images: list[dict] = field(default_factory=list)   # images plots: groups of images
    caption: str = ""             # what was plotted, in words
    ok: bool = True               # False when the plot failed (not for "no data")
    wide: bool = False            # several panels: give it the full width


class _NoData(Exception):
    pass


def method_colors(methods) -> dict[str, str]:
    """A stable colour per method label (same colour in every plot of a report)."""
    out: dict[str, str] = {}
    for m in methods:
        if m not in out:
            out[m] = _PALETTE[len(out) % len(_PALETTE)]
    return out


# --------------------------------------------------------------------------- helpers

def _tex_safe(s: str) -> str:
    """Literal text for matplotlib: a '$' in a method name must not start mathtext."""
    return str(s).replace("$", r"\$")


def _label(v: Any) -> str:
    if isinstance(v, float):
        return fmt_number(v)
    return "" if v is None else str(v)


def _sort_key(v: Any):
    """Numbers numerically, then strings alphabetically."""
    try:
        f = float(v)
        if not math.isnan(f):
            return (0, f, "")
    except (TypeError, ValueError):
        pass
    return (1, 0.0, str(v))


def _field_series(df: pd.DataFrame, name: str) -> pd.Series:
    """A row field (method/case/seed/series) or a case parameter, per row (None if absent)."""
    if name in _ROW_FIELDS or (name == "series" and "series" in df.columns):
        return df[name].astype(object)
    return df["_params"].map(lambda p: p.get(name) if isinstance(p, dict) else None).astype(object)


def _matches(v: Any, want: Any) -> bool:
    wants = want if isinstance(want, (list, tuple, set)) else [want]
    for w in wants:
        if v == w or (v is not None and str(v) == str(w)):
            return True
        try:
            if float(v) == float(w):
                return True
        except (TypeError, ValueError):
            pass
    return False


def _apply_where(df: pd.DataFrame, where: Any) -> pd.DataFrame:
    if not where:
        return df
    if not isinstance(where, dict):
        raise ValueError("'where' must be a mapping of field -> value or list of values")
    mask = pd.Series(True, index=df.index)
    for key, want in where.items():
        col = _field_series(df, str(key))
        mask &= col.map(lambda v, w=want: _matches(v, w)).astype(bool).reindex(df.index, fill_value=False)
    return df[mask]


def _ok_metric(results: pd.DataFrame, suite: str, metric: str) -> pd.DataFrame:
    df = results[(results["suite"] == suite) & (results["metric"] == metric)
                 & (results["status"] == "ok")]
    return df[np.isfinite(df["value"].astype(float))]


def _metric_name(spec_value: str) -> tuple[bool, str]:
    if spec_value.startswith("metric:"):
        return True, spec_value[len("metric:"):]
    return False, spec_value


def _with_x(df: pd.DataFrame, results: pd.DataFrame, suite: str, x: str) -> pd.DataFrame:
    """Add an ``_x`` column: a case parameter / row field, or another metric's value."""
    is_metric, name = _metric_name(x)
    if is_metric:
        xs = _ok_metric(results, suite, name)[["case", "method", "seed", "value"]]
        xs = xs.drop_duplicates(["case", "method", "seed"]).rename(columns={"value": "_x"})
        df = df.merge(xs, on=["case", "method", "seed"], how="inner")
    else:
        df = df.assign(_x=_field_series(df, name))
    if df.empty:
        raise _NoData
    keep = df["_x"].map(lambda v: v is not None and not (isinstance(v, float) and math.isnan(v)))
    return df[keep.astype(bool)]


def _numeric_or_codes(values: pd.Series) -> tuple[pd.Series, list[str] | None]:
    """Numeric x as floats; categorical x as codes 0..k-1 plus tick labels."""
    num = pd.to_numeric(values, errors="coerce")
    if num.notna().all():
        return num.astype(float), None
    cats = sorted({str(v) for v in values}, key=_sort_key)
    index = {c: i for i, c in enumerate(cats)}
    return values.map(lambda v: float(index[str(v)])), cats


def _ordered(values) -> list:
    return sorted(set(values), key=_sort_key)


def _facets(df: pd.DataFrame, facet: str | None) -> tuple[list, list[str]]:
    if not facet:
        return [None], []
    vals = _ordered(df["_facet"])
    notes = []
    if len(vals) > MAX_FACETS:
        notes.append(f"showing the first {MAX_FACETS} of {len(vals)} values of {facet!r}")
        vals = vals[:MAX_FACETS]
    return vals, notes


def _figure(n: int, width: float = 4.4, height: float = 3.2) -> tuple[Figure, list]:
    ncols = min(n, 3)
    nrows = math.ceil(n / ncols)
    if n == 1:
        width, height = 6.4, 3.9
    fig = Figure(figsize=(width * ncols + 1.6, height * nrows), layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False).ravel().tolist()
    for ax in axes[n:]:
        ax.set_visible(False)
    return fig, axes[:n]


def _color_for(group_field: str | None, value: Any, colors: dict[str, str], order: list) -> str:
    if group_field == "method" and str(value) in colors:
        return colors[str(value)]
    try:
        i = order.index(value)
    except ValueError:
        i = 0
    return _PALETTE[i % len(_PALETTE)]


def _facet_rows(df: pd.DataFrame, facet: str | None, value: Any) -> pd.DataFrame:
    """The rows of one facet panel (all rows without a facet)."""
    return df if facet is None else df[df["_facet"].map(lambda v: v == value)]


def _group_rows(df: pd.DataFrame, group: Any) -> pd.DataFrame:
    """The rows of one group (groups may be tuples, so compare value by value)."""
    return df[df["_group"].map(lambda v: v == group)]


def _group_label(group_field: str | None, value: Any) -> str:
    if group_field in (None, "method"):
        return _label(value) or "(no method)"
    return f"{group_field}={_label(value)}"


def _finish(fig: Figure, axes: list, spec: dict, xlabel: str, ylabel: str,
            facet: str | None, facet_vals: list, legend: bool = True) -> None:
    for ax, fv in zip(axes, facet_vals):
        if facet:
            ax.set_title(_tex_safe(f"{facet} = {_label(fv)}"), fontsize=9)
        ax.set_xlabel(_tex_safe(spec.get("xlabel") or xlabel))
        ax.set_ylabel(_tex_safe(spec.get("ylabel") or ylabel))
    if not legend:
        return
    handles, labels, seen = [], [], set()
    for ax in axes:
        for h, lab in zip(*ax.get_legend_handles_labels()):
            if lab not in seen and not lab.startswith("_"):
                seen.add(lab)
                handles.append(h)
                labels.append(lab)
    labels = [_tex_safe(lab) for lab in labels]
    if handles:
        if len(axes) == 1:
            axes[0].legend(handles, labels, loc="best", frameon=False)
        else:
            fig.legend(handles, labels, loc="outside right upper", frameon=False)


def _draw_references(ax, spec: dict, xs: np.ndarray, logx: bool, categorical: bool) -> None:
    refs = spec.get("reference") or []
    if not refs or categorical or xs.size == 0:
        return
    lo, hi = float(np.nanmin(xs)), float(np.nanmax(xs))
    if logx and lo > 0:
        grid = np.geomspace(lo, hi, 200) if hi > lo else np.array([lo])
    else:
        pad = 0.0 if hi > lo else max(abs(lo) * 0.1, 0.5)
        grid = np.linspace(lo - pad, hi + pad, 200)
    for i, ref in enumerate(refs):
        y = compile_curve(str(ref.get("expr", ""))).curve(grid)
        ax.plot(grid, y, linestyle=_REF_STYLES[i % len(_REF_STYLES)], color="0.25",
                linewidth=1.1, label=f"{ref.get('label', ref.get('expr'))}")


def _set_scales(ax, spec: dict, categorical_x: bool) -> None:
    if spec.get("logx") and not categorical_x:
        ax.set_xscale("log")
    if spec.get("logy"):
        ax.set_yscale("log")


def _svg(fig: Figure) -> str:
    buf = io.StringIO()
    fig.savefig(buf, format="svg", metadata={"Date": None})
    s = buf.getvalue()
    s = s[s.find("<svg"):]
    s = re.sub(r"<metadata>.*?</metadata>\s*", "", s, flags=re.S)
    # make ids unique across the many SVGs inlined in one HTML document
    pfx = f"p{next(_counter)}-"
    s = re.sub(r'\bid="([^"]+)"', lambda m: f'id="{pfx}{m.group(1)}"', s)
    s = re.sub(r'href="#([^"]+)"', lambda m: f'href="#{pfx}{m.group(1)}"', s)
    s = re.sub(r"url\(#([^)]+)\)", lambda m: f"url(#{pfx}{m.group(1)})", s)
    return s.strip()


def _prepare(df: pd.DataFrame, spec: dict, default_group: str | None = "method") -> tuple[pd.DataFrame, str | None, str | None]:
    group = spec.get("group", default_group) or None
    facet = spec.get("facet") or None
    df = _apply_where(df, spec.get("where"))
    df = df.assign(_group=_field_series(df, group) if group else "",
                   _facet=_field_series(df, facet) if facet else "")
    if facet and not df.empty:
        df = df[df["_facet"].map(lambda v: v is not None).astype(bool)]
    return df, group, facet


# --------------------------------------------------------------------------- plot types

def _xy_frame(spec: dict, suite: str, results: pd.DataFrame) -> pd.DataFrame:
    y = spec.get("y")
    if not isinstance(y, str) or not spec.get("x"):
        raise ValueError(f"a {spec.get('type')} plot needs 'x' and a single metric 'y'")
    _, yname = _metric_name(y)
    df = _ok_metric(results, suite, yname)
    if df.empty:
        raise _NoData
    return _with_x(df, results, suite, str(spec["x"]))


def _plot_line(spec: dict, suite: str, results: pd.DataFrame, colors: dict, scatter: bool = False):
    df = _xy_frame(spec, suite, results)
    df, group, facet = _prepare(df, spec)
    if df.empty:
        raise _NoData
    xnum, cats = _numeric_or_codes(df["_x"])
    df = df.assign(_xn=xnum.values)
    facet_vals, notes = _facets(df, facet)
    fig, axes = _figure(len(facet_vals))
    groups = _ordered(df["_group"])
    x_is_metric = str(spec["x"]).startswith("metric:")
    for ax, fv in zip(axes, facet_vals):
        sub = _facet_rows(df, facet, fv)
        for g in groups:
            gd = _group_rows(sub, g)
            if gd.empty:
                continue
            color = _color_for(group, g, colors, groups)
            label = _group_label(group, g)
            if scatter:
                ax.scatter(gd["_xn"], gd["value"], s=18, alpha=0.8, color=color, label=label,
                           edgecolors="none")
                continue
            # aggregate over seeds: by x value (parameter x) or by case (metric x)
            key = "case" if x_is_metric else "_xn"
            agg = gd.groupby(key, sort=False).agg(x=("_xn", "median"), med=("value", "median"),
                                                  lo=("value", "min"), hi=("value", "max"))
            agg = agg.sort_values("x")
            ax.plot(agg["x"], agg["med"], marker="o", markersize=3.5, linewidth=1.5,
                    color=color, label=label)
            if (agg["hi"] > agg["lo"]).any():
                ax.fill_between(agg["x"], agg["lo"], agg["hi"], color=color, alpha=0.18,
                                linewidth=0)
        _draw_references(ax, spec, sub["_xn"].to_numpy(float), bool(spec.get("logx")), cats is not None)
        _set_scales(ax, spec, cats is not None)
        if cats is not None:
            ax.set_xticks(range(len(cats)), [_tex_safe(c) for c in cats], rotation=30 if len(cats) > 4 else 0, ha="right" if len(cats) > 4 else "center")
    _finish(fig, axes, spec, _axis_name(spec["x"]), _axis_name(spec["y"]), facet, facet_vals)
    n_seeds = df["seed"].nunique()
    cap = ("points: one per case, method and seed" if scatter else
           f"median over {n_seeds} seed(s), shaded min–max" if n_seeds > 1 else "one seed")
    return fig, "; ".join([cap] + notes)


def _axis_name(v: Any) -> str:
    s = str(v)
    return s[len("metric:"):] if s.startswith("metric:") else s


def _plot_bars(spec: dict, suite: str, results: pd.DataFrame, colors: dict):
    ys = spec.get("y")
    ys = [ys] if isinstance(ys, str) else list(ys or [])
    if not ys:
        raise ValueError("a bars plot needs 'y' (a metric or a list of metrics)")
    frames = [_ok_metric(results, suite, m) for m in ys]
    df = pd.concat(frames)
    if df.empty:
        raise _NoData
    df, group, facet = _prepare(df, spec)
    if df.empty:
        raise _NoData
    facet_vals, notes = _facets(df, facet)
    fig, axes = _figure(len(facet_vals))
    groups = _ordered(df["_group"]) if group != "method" else list(dict.fromkeys(
        [m for m in colors if m in set(df["_group"])] + _ordered(df["_group"])))
    present = [m for m in ys if m in set(df["metric"])]
    width = 0.8 / max(len(present), 1)
    metric_colors = {m: _PALETTE[i % len(_PALETTE)] for i, m in enumerate(present)}
    for ax, fv in zip(axes, facet_vals):
        sub = _facet_rows(df, facet, fv)
        for j, m in enumerate(present):
            xs, med, lo, hi = [], [], [], []
            for i, g in enumerate(groups):
                vals = _group_rows(sub[sub["metric"] == m], g)["value"]
                if vals.empty:
                    continue
                xs.append(i + (j - (len(present) - 1) / 2) * width)
                med.append(float(vals.median()))
                lo.append(float(vals.median() - vals.min()))
                hi.append(float(vals.max() - vals.median()))
            if xs:
                ax.bar(xs, med, width=width * 0.92, color=metric_colors[m], label=m,
                       yerr=[lo, hi] if any(lo) or any(hi) else None,
                       error_kw={"elinewidth": 0.9, "capsize": 2.5, "ecolor": "0.2"})
        labels = [_label(g) or "(no method)" for g in groups]
        rot = 30 if len(groups) > 4 or max((len(s) for s in labels), default=0) > 10 else 0
        ax.set_xticks(range(len(groups)), [_tex_safe(t) for t in labels], rotation=rot, ha="right" if rot else "center")
        ax.grid(axis="x", visible=False)
        if spec.get("logy"):
            ax.set_yscale("log")
    _finish(fig, axes, spec, "" if group == "method" else (group or ""), ", ".join(present), facet, facet_vals)
    return fig, "; ".join(["median over cases and seeds, error bars min–max"] + notes)


def _plot_trace(spec: dict, suite: str, traces: pd.DataFrame, params: dict, colors: dict):
    pattern = str(spec.get("series") or spec.get("y") or "*")
    df = traces[(traces["suite"] == suite)]
    if not df.empty:
        df = df[df["series"].map(lambda s: fnmatch.fnmatchcase(s, pattern)).astype(bool)]
        df = df[np.isfinite(df["value"].astype(float)) & np.isfinite(df["step"].astype(float))]
    if df.empty:
        raise _NoData
    df = df.assign(_params=df["case"].map(lambda c: params.get((suite, c), {})))
    spec = dict(spec)
    if not spec.get("facet") and df["series"].nunique() > 1:
        spec["facet"] = "series"
    df, group, facet = _prepare(df, spec)
    if df.empty:
        raise _NoData
    if facet != "series" and df["series"].nunique() > 1:   # several series per axes
        df = df.assign(_group=[(g, s) for g, s in zip(df["_group"], df["series"])])
    facet_vals, notes = _facets(df, facet)
    fig, axes = _figure(len(facet_vals))
    groups = _ordered(df["_group"])
    for ax, fv in zip(axes, facet_vals):
        sub = _facet_rows(df, facet, fv)
        for g in groups:
            gd = _group_rows(sub, g)
            if gd.empty:
                continue
            gm = g[0] if isinstance(g, tuple) else g
            label = _group_label(group, gm) + (f" · {g[1]}" if isinstance(g, tuple) else "")
            color = _color_for(group, gm, colors, groups) if not isinstance(g, tuple) else \
                _PALETTE[groups.index(g) % len(_PALETTE)]
            agg = gd.groupby("step").agg(med=("value", "median"), lo=("value", "min"),
                                         hi=("value", "max")).sort_index()
            ax.plot(agg.index, agg["med"], linewidth=1.3, color=color, label=label)
            if (agg["hi"] > agg["lo"]).any():
                ax.fill_between(agg.index, agg["lo"], agg["hi"], color=color, alpha=0.18, linewidth=0)
        _draw_references(ax, spec, sub["step"].to_numpy(float), bool(spec.get("logx")), False)
        _set_scales(ax, spec, False)
    _finish(fig, axes, spec, "step", pattern if facet != "series" else "value", facet, facet_vals)
    n_seeds = df["seed"].nunique()
    cap = f"series {pattern}; " + (f"median over {n_seeds} seeds, shaded min–max" if n_seeds > 1 else "one seed")
    return fig, "; ".join([cap] + notes)


_MAGIC = ((b"\x89PNG\r\n\x1a\n", "image/png"), (b"\xff\xd8\xff", "image/jpeg"),
          (b"GIF87a", "image/gif"), (b"GIF89a", "image/gif"))


def image_data_uri(path: str) -> tuple[str, str]:
    """(data URI, '') for a PNG/JPEG/GIF/WebP file, or ('', reason) when it cannot be shown."""
    p = Path(path)
    try:
        size = p.stat().st_size
    except OSError:
        return "", f"missing file {path}"
    if size > MAX_IMAGE_BYTES:
        return "", f"{path}: {size / 2**20:.1f} MiB is too large to embed"
    data = p.read_bytes()
    mime = next((m for magic, m in _MAGIC if data.startswith(magic)), None)
    if mime is None and data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        mime = "image/webp"
    if mime is None:
        return "", f"{path}: not a PNG/JPEG/GIF/WebP image"
    return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}", ""


def _plot_images(spec: dict, suite: str, artifacts: list[dict], params: dict) -> PlotOutput:
    title = spec.get("title") or "Samples"
    arts = [a for a in artifacts if a["suite"] == suite and a["kind"] == "image"]
    if arts and spec.get("where"):
        frame = pd.DataFrame(arts)
        frame["_params"] = frame["case"].map(lambda c: params.get((suite, c), {}))
        keep = set(_apply_where(frame, spec.get("where")).index)
        arts = [a for i, a in enumerate(arts) if i in keep]
    if not arts:
        return PlotOutput(title=title, type="images", note=NO_DATA)
    group = spec.get("group") or "method"
    notes = []
    if len(arts) > MAX_IMAGES:
        notes.append(f"showing the first {MAX_IMAGES} of {len(arts)} images")
        arts = arts[:MAX_IMAGES]
    groups: dict[str, list[dict]] = {}
    for a in arts:
        gv = a.get(group) if group in ("method", "case", "seed") else params.get((suite, a["case"]), {}).get(group)
        src, why = image_data_uri(a["path"])
        if why:
            notes.append(why)
            continue
        caption = " · ".join(x for x in (a["case"], f"seed {a['seed']}" if a["seed"] else "") if x)
        groups.setdefault(_group_label(group, gv), []).append({"src": src, "caption": caption})
    images = [{"group": g, "entries": items} for g, items in groups.items()]
    if not images:
        return PlotOutput(title=title, type="images", note=NO_DATA + ("; " + "; ".join(notes) if notes else ""))
    return PlotOutput(title=title, type="images", images=images, caption="; ".join(notes), wide=True)


# --------------------------------------------------------------------------- entry point

def _default_title(spec: dict) -> str:
    t = spec.get("type", "?")
    if t == "trace":
        return f"trace {spec.get('series', '')}".strip()
    if t == "images":
        return "Samples"
    y = spec.get("y")
    y = ", ".join(y) if isinstance(y, list) else _axis_name(y or "")
    return f"{y} vs {_axis_name(spec['x'])}" if spec.get("x") else y


def render_plot(spec: dict, suite: str, results: pd.DataFrame, traces: pd.DataFrame,
                artifacts: list[dict], params: dict, colors: dict[str, str]) -> PlotOutput:
    """Render one plot spec of ``suite``; never raises (see module docstring).

    ``results``/``traces``/``artifacts`` must be normalised (:mod:`harness.reporting.data`);
    ``params`` maps (suite, case) to the case parameters; ``colors`` maps methods to colours.
    """
    if not isinstance(spec, dict):
        return PlotOutput(title="plot", type="?", note=f"plot failed: spec is not a mapping", ok=False)
    ptype = str(spec.get("type", ""))
    try:
        title = str(spec.get("title") or _default_title(spec))
    except Exception:  # noqa: BLE001 - a title must never break the report
        title = f"{ptype} plot"
    try:
        with matplotlib.rc_context(_RC), warnings.catch_warnings(), np.errstate(all="ignore"):
            warnings.simplefilter("ignore")
            if ptype == "images":
                out = _plot_images(spec, suite, artifacts, params)
                out.title = title
                return out
            if ptype in ("line", "scatter"):
                fig, caption = _plot_line(spec, suite, results, colors, scatter=ptype == "scatter")
            elif ptype == "bars":
                fig, caption = _plot_bars(spec, suite, results, colors)
            elif ptype == "trace":
                fig, caption = _plot_trace(spec, suite, traces, params, colors)
            else:
                return PlotOutput(title=title, type=ptype, ok=False,
                                  note=f"plot failed: unknown plot type {ptype!r}")
            panels = sum(1 for ax in fig.axes if ax.get_visible())
            return PlotOutput(title=title, type=ptype, svg=_svg(fig), caption=caption,
                              wide=panels > 1)
    except _NoData:
        return PlotOutput(title=title, type=ptype, note=NO_DATA)
    except Exception as exc:  # noqa: BLE001 - one plot must never take the report down
        return PlotOutput(title=title, type=ptype, ok=False,
                          note=f"plot failed: {type(exc).__name__}: {exc}")


def render_distributions(metric: str, current: pd.DataFrame, baseline: pd.DataFrame,
                         colors: dict[str, str]) -> PlotOutput:
    """The run's seed values of a training outcome beside the baseline's (seeds x machines),
    one column per case and method: filled dots this run, open circles the baseline."""
    title = f"{metric}: this run's seeds (filled) against the baseline's seeds and machines (open)"
    try:
        cur = current[current["status"] == "ok"]
        base = baseline[baseline["status"] == "ok"] if len(baseline) else baseline
        keys = list(dict.fromkeys(zip(cur["case"], cur["method"])))
        if not keys:
            return PlotOutput(title, "distribution", note=NO_DATA)
        with matplotlib.rc_context(_RC):
            fig = Figure(figsize=(max(4.4, 0.55 * len(keys) + 2), 3.4), layout="constrained")
            ax = fig.subplots()
            for i, (case, method) in enumerate(keys):
                color = colors.get(method, "0.3")
                mine = cur[(cur["case"] == case) & (cur["method"] == method)]["value"].astype(float)
                ax.scatter(np.full(len(mine), i - 0.12), mine, color=color, s=22, zorder=3)
                if len(base):
                    ref = base[(base["case"] == case) & (base["method"] == method)]["value"].astype(float)
                    ax.scatter(np.full(len(ref), i + 0.12), ref, facecolors="none", edgecolors=color, s=22)
            ax.set_xticks(range(len(keys)), [_tex_safe(f"{m}\n{c}" if len({k[0] for k in keys}) > 1 else m)
                                             for c, m in keys], rotation=45, ha="right")
            ax.set_ylabel(_tex_safe(metric))
            svg = _svg(fig)
        return PlotOutput(title, "distribution", svg=svg, wide=len(keys) > 8,
                          caption="each column: this run's seeds (left, filled) and the baseline's values "
                                  "over seeds and machines (right, open)")
    except Exception as exc:  # noqa: BLE001 - one plot must never take the report down
        return PlotOutput(title, "distribution", note=f"plot failed: {type(exc).__name__}: {exc}", ok=False)
