"""Plot specs rendered one by one; the safe expression evaluator."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from harness.reporting.data import case_params, normalize_results, normalize_traces
from harness.reporting.plots import NO_DATA, method_colors, render_plot


def _results():
    rows = []
    for method in ("none", "sn_w", "$weird$ {m}"):
        for n in (4, 16, 64):
            for seed in (0, 1, 2):
                p = {"n": n, "m": 8, "distribution": "gaussian"}
                for metric, v in (("ratio", 1 + n / 100 + seed / 10), ("alpha", 2.0 + (n > 8))):
                    rows.append({"suite": "s", "case": f"n={n}", "method": method, "seed": seed,
                                 "metric": metric, "value": v, "unit": "1", "device": "cpu",
                                 "status": "ok", "message": "", "params": json.dumps(p), "samples": ""})
    rows.append({**rows[0], "metric": "ratio", "value": float("nan"), "status": "error", "message": "boom"})
    return normalize_results(pd.DataFrame(rows))


@pytest.fixture(scope="module")
def ctx():
    res = _results()
    trc = normalize_traces(pd.DataFrame([
        {"suite": "s", "case": "n=4", "method": m, "seed": sd, "series": f"grad_norm/{layer}", "step": st,
         "value": (1 + st) * (2 if m == "none" else 1) + sd}
        for m in ("none", "sn_w") for sd in (0, 1) for layer in ("a", "b") for st in range(5)]))
    return dict(results=res, traces=trc, artifacts=[], params=case_params(res),
                colors=method_colors(res["method"].unique()))


def _render(spec, ctx, suite="s"):
    return render_plot(spec, suite, ctx["results"], ctx["traces"], ctx["artifacts"], ctx["params"], ctx["colors"])


@pytest.mark.parametrize("spec", [
    {"type": "line", "x": "n", "y": "ratio", "group": "method", "logx": True,
     "reference": [{"label": "1/x", "expr": "1/x"}, {"label": "bai-yin", "expr": "x/(sqrt(x)+1)**2"}]},
    {"type": "line", "x": "n", "y": "ratio", "group": "method", "facet": "distribution", "where": {"m": [8, 9]}},
    {"type": "line", "x": "metric:alpha", "y": "ratio"},
    {"type": "scatter", "x": "metric:alpha", "y": "ratio",
     "reference": [{"label": "lower bound", "expr": "1"}, {"label": "alpha", "expr": "x"}]},
    {"type": "bars", "y": ["ratio", "alpha"], "group": "method", "logy": True},
    {"type": "bars", "y": "ratio", "facet": "case"},
    {"type": "trace", "series": "grad_norm/*", "group": "method", "logy": True},
    {"type": "trace", "series": "grad_norm/a", "facet": "n"},
    {"type": "line", "x": "distribution", "y": "ratio"},            # categorical x
])
def test_each_plot_type_renders_svg(spec, ctx):
    out = _render(spec, ctx)
    assert out.ok and not out.note, out.note
    assert out.svg.startswith("<svg") and out.svg.rstrip().endswith("</svg>")
    assert "<metadata" not in out.svg and "<?xml" not in out.svg
    assert "$weird$ {m}" in out.svg or spec["type"] == "trace"       # '$' did not start mathtext


@pytest.mark.parametrize("spec", [
    {"type": "line", "x": "n", "y": "nope"},
    {"type": "line", "x": "n", "y": "ratio", "where": {"m": 99}},
    {"type": "scatter", "x": "metric:nope", "y": "ratio"},
    {"type": "bars", "y": ["nope"]},
    {"type": "trace", "series": "loss_g"},
    {"type": "images"},
])
def test_missing_data_is_a_note(spec, ctx):
    out = _render(spec, ctx)
    assert out.note == NO_DATA and out.ok and not out.svg


def test_missing_data_for_other_suite(ctx):
    assert _render({"type": "line", "x": "n", "y": "ratio"}, ctx, suite="other").note == NO_DATA


@pytest.mark.parametrize("spec, needle", [
    ({"type": "pie", "y": "ratio"}, "unknown plot type"),
    ({"type": "line", "y": "ratio"}, "needs 'x'"),
    ({"type": "line", "x": "n", "y": "ratio", "where": "m=8"}, "'where' must be a mapping"),
    ({"type": "line", "x": "n", "y": "ratio", "reference": [{"label": "x", "expr": "os.system('x')"}]}, "may be called"),
])
def test_bad_specs_fail_softly(spec, needle, ctx):
    out = _render(spec, ctx)
    assert not out.ok and out.note.startswith("plot failed") and needle in out.note
