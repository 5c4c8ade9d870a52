"""Side-by-side plots of a comparison: per compared metric, A's values (left) and B's (right) on
one shared y axis, one column per case, one colour per method; every seed is a dot, and a Monte
Carlo estimate with a reported standard error carries its 95% interval (± 1.96 s.e.). Positive
values spanning more than two decades are drawn on a log axis."""
from __future__ import annotations

import matplotlib
import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from .plots import _RC, NO_DATA, PlotOutput, _svg, _tex_safe

#: Case columns beyond which the x axis is labelled by index only.
MAX_CASE_LABELS = 24


def side_by_side(metric: str, a: pd.DataFrame, b: pd.DataFrame, colors: dict[str, str],
                 errors: tuple[pd.DataFrame, pd.DataFrame] | None = None, note: str = "") -> PlotOutput:
    """``a`` and ``b``: the two runs' rows of one suite's ``metric``; ``errors``: their rows of its
    standard error, when the runner reports one."""
    title = f"{metric}: A (left) and B (right)"
    try:
        a, b = (x[x["status"] == "ok"] for x in (a, b))
        cases = list(dict.fromkeys(list(a["case"]) + list(b["case"])))
        if not cases:
            return PlotOutput(title, "compare", note=NO_DATA)
        where = {c: i for i, c in enumerate(cases)}
        with matplotlib.rc_context(_RC):
            fig = Figure(figsize=(min(14.0, max(7.0, 0.22 * len(cases) * 2 + 3)), 3.6), layout="constrained")
            axes = fig.subplots(1, 2, sharey=True)
            for ax, rows, se_rows, side in zip(axes, (a, b), errors or (None, None), "AB"):
                _draw(ax, rows, se_rows, where, colors)
                ax.set_title(f"{side}: {len(rows)} value(s)", fontsize=9)
                _cases_axis(ax, cases)
            axes[0].set_ylabel(_tex_safe(metric))
            values = pd.concat([a["value"], b["value"]]).astype(float)
            if (values > 0).all() and values.max() > 100 * values.min():
                axes[0].set_yscale("log")  # shared: both panels; values spanning decades
            handles = {h.get_label(): h for ax in axes for h in ax.get_legend_handles_labels()[0]}
            if len(handles) > 1:
                fig.legend(list(handles.values()), [_tex_safe(k) for k in handles], loc="outside right upper",
                           frameon=False)
            svg = _svg(fig)
        caption = "one column per case, one dot per seed" + (", bars: 95% intervals from the reported "
                                                             "standard errors" if errors else "") + note
        return PlotOutput(title, "compare", svg=svg, caption=caption, wide=True)
    except Exception as exc:  # noqa: BLE001 - one plot must never take the report down
        return PlotOutput(title, "compare", note=f"plot failed: {type(exc).__name__}: {exc}", ok=False)


def _draw(ax, rows: pd.DataFrame, se_rows: pd.DataFrame | None, where: dict[str, int], colors: dict[str, str]):
    se = {} if se_rows is None else {(r.case, r.method, r.seed): float(r.value)
                                     for r in se_rows[se_rows["status"] == "ok"].itertuples(index=False)}
    for method, group in rows.groupby("method", sort=False):
        x = group["case"].map(where).to_numpy(float)
        y = group["value"].astype(float).to_numpy()
        half = np.array([1.96 * se.get((r.case, r.method, r.seed), np.nan) for r in group.itertuples(index=False)])
        color = colors.get(method, "0.3")
        label = method or "value"
        if np.isfinite(half).any():
            ax.errorbar(x, y, yerr=np.nan_to_num(half), fmt="o", ms=3.5, color=color, elinewidth=0.8,
                        capsize=2, label=label)
        else:
            ax.scatter(x, y, s=14, color=color, label=label, zorder=3)


def _cases_axis(ax, cases: list[str]) -> None:
    if len(cases) <= MAX_CASE_LABELS:
        ax.set_xticks(range(len(cases)), [_tex_safe(c) for c in cases], rotation=60, ha="right", fontsize=6)
    else:
        ax.set_xlabel(f"case (index of {len(cases)}; names in the table)")
