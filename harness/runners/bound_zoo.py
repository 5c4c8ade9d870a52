"""``bound_zoo``: published spectral-norm estimators against certified brackets on real layers.

A case is a model (``model``), a stage (``init`` or ``trained``: after a short GAN run)
and a padding mode (``padding``: the layers as built, ``zeros``, or the same weights with
``circular`` padding). For every ``Conv2d`` of the model at the input size it sees,
lipbench computes the certified float64 bracket ``lower ≤ ‖W̃‖ ≤ upper``
(:func:`harness.exact.conv_operator_norm`) and runs every estimator of
``settings.estimators`` (:mod:`harness.estimators`), recording per layer and estimator:

* ``ratio``: the estimate over the bracket's value;
* ``below_lower``: ``(lower − estimate)/lower`` where the estimate claims to bound the
  norm from above (an upper bound, or the exact value): positive means the claim fails
  on that layer, whatever the true norm inside the bracket;
* ``above_upper``: ``(estimate − upper)/upper`` where it claims to bound it from below;
* ``tolerance``: the rounding of the estimator's own arithmetic, up to which its claim is
  judged (float32 or float64, :attr:`harness.estimators.Estimator.tolerance`);
* ``known_miss``: 1 where the estimator documents that its claim fails on this layer
  (it computes another map there), and ``time_ms``, its time (median over repeats).

Rows of one layer have the case id ``<case>,layer=<name> (<c_in>><c_out> k<k> s<s> <h>x<w>)``
and the estimator's name in the ``method`` column (the layer's own rows, the bracket and
its time, have none). A failing layer or estimator becomes ``error`` rows of its own; the
others are kept. Suite-level rows (case ``summary``) count each estimator's claims,
violations (named in the message), misses beyond its tolerance and undecided bounds
(estimate inside the bracket).
"""
from __future__ import annotations

import inspect
import math
import statistics
import time
from typing import Any, Iterable

import pandas as pd

from harness.estimators import ESTIMATORS, ConvLayer, Estimator, make_estimator
from harness.exact import conv_operator_norm
from harness.results import Measurement
from harness.suite import Case

from .base import RunContext, Runner, register
from .case import short_traceback
from .spec import Declarations, Metric, Setting
from .zoo_layers import MODELS, conv_layers, model_at_stage, select

LAYER_METRICS = ("norm", "norm_lower", "norm_upper", "bracket_width", "reference_ms")


def build_estimators(specs: list[Any], seed: int) -> list[Estimator]:
    """``settings.estimators``: names, or ``{name, params}`` mappings; random starts get the case seed."""
    out = []
    for spec in specs:
        name, params = (spec, {}) if isinstance(spec, str) else (spec["name"], dict(spec.get("params") or {}))
        if name in ESTIMATORS and "seed" in inspect.signature(ESTIMATORS[name]).parameters:
            params.setdefault("seed", seed)
        out.append(make_estimator(name, **params))
    return out


def timed(fn, repeats: int, budget_s: float = 0.2) -> tuple[float, list[float]]:
    """``fn()``'s value and its times in ms: repeated up to ``repeats`` times while under ``budget_s``."""
    value, times = None, []
    while len(times) < max(repeats, 1):
        start = time.perf_counter()
        value = fn()
        times.append((time.perf_counter() - start) * 1e3)
        if sum(times) > budget_s * 1e3:
            break
    return value, times


def layer_label(layer: ConvLayer) -> str:
    """``features.2 (64>64 k4 s2 32x32)``: the layer's name and geometry, for case ids and tables."""
    (h, w), (kh, kw), (sh, sw) = layer.in_hw, layer.kernel, layer.stride
    k = f"k{kh}" if kh == kw else f"k{kh}x{kw}"
    s = f"s{sh}" if sh == sw else f"s{sh}x{sw}"
    return f"{layer.name} ({layer.input_shape[0]}>{layer.weight.shape[0]} {k} {s} {h}x{w})"


def layer_measurements(layer: ConvLayer, settings: dict, case: str) -> tuple[list[Measurement], Any]:
    """The certified bracket of ``‖W̃‖`` and its time (rows without a method)."""
    g = layer.geometry
    op, times = timed(lambda: conv_operator_norm(
        layer.weight, layer.in_hw, stride=g.stride, padding=g.padding, padding_mode=g.padding_mode,
        tol=settings["tol"], max_rel_width=settings["max_rel_width"]), 1)
    values = {"norm": op.value, "norm_lower": op.lower, "norm_upper": op.upper,
              "bracket_width": op.rel_width, "reference_ms": times[0]}
    units = {"reference_ms": "ms"}
    return [Measurement(m, float(values[m]), unit=units.get(m, "1"), case=case, message=op.detail)
            for m in LAYER_METRICS], op


def estimator_measurements(est: Estimator, layer: ConvLayer, op, repeats: int, case: str) -> list[Measurement]:
    """One estimator on one layer: ratio, time and, where it claims a bound, the margin to the bracket."""
    claim = est.claim(layer)
    value, times = timed(lambda: est.estimate(layer), repeats)
    note = f"{claim.kind}: {claim.scope}" + (f"; known miss: {claim.known_miss}" if claim.known_miss else "")

    def row(metric: str, v: float, unit: str = "1", samples=None) -> Measurement:
        return Measurement(metric, v, unit=unit, case=case, method=est.name, message=note, samples=samples)

    out = [row("ratio", value / op.value if op.value > 0 else math.nan),
           row("time_ms", statistics.median(times), "ms", times)]
    if claim.kind != "none":
        out += [row("tolerance", est.tolerance), row("known_miss", float(bool(claim.known_miss)))]
    if claim.bounds_above:
        out.append(row("below_lower", (op.lower - value) / op.lower if op.lower > 0 else -value))
    if claim.bounds_below:
        out.append(row("above_upper", (value - op.upper) / op.upper if op.upper > 0 else value))
    return out


def failed(metric: str, case: str, method: str | None, exc: BaseException) -> Measurement:
    return Measurement(metric, math.nan, status="error", case=case, method=method, message=short_traceback(exc))


@register
class BoundZooRunner(Runner):
    kind = "bound_zoo"
    uses_methods = False
    declarations = Declarations(
        params={"model": Setting(str, description=f"one of {', '.join(MODELS)}"),
                "stage": Setting(str, "init", "init (default initialisation) or trained (after a short GAN run)"),
                "padding": Setting(str, "zeros", "zeros (the layers as built) or circular (same weights)")},
        settings={
            "estimators": Setting(list, description="estimator names or {name, params} (harness.estimators)"),
            "input_size": Setting(dict, description="input height and width per model"),
            "layers": Setting(dict, {}, "Conv2d names per model (default: every Conv2d)"),
            "tol": Setting(float, 1e-6, "relative accuracy of the certified norm's value"),
            "max_rel_width": Setting(float, 0.01, "bracket width above which the reference certifies further"),
            "timing_repeats": Setting(int, 5, "most runs of an estimator timed per layer (within 0.2 s)"),
            "adam": Setting(str, "C", "Adam setting of the short training run (Miyato et al. 2018, Table 1)"),
            "train_iterations": Setting(int, 50, "generator updates of the short training run"),
            "train_batch": Setting(int, 32, "batch size of the short training run")},
        metrics={
            "norm": Metric("float32", "certified ||W~||: value inside the bracket (float64 of the float32 weight)"),
            "norm_lower": Metric("float32", "certified lower end of ||W~|| (||W~v||/||v|| of an actual vector)"),
            "norm_upper": Metric("float32", "certified upper end of ||W~||"),
            "bracket_width": Metric("info", "(upper - lower) / lower"),
            "reference_ms": Metric("info", "time of the certified bracket", unit="ms"),
            "ratio": Metric("float32", "estimate / certified ||W~||"),
            "time_ms": Metric("info", "the estimator's time on this layer (median over repeats)", unit="ms"),
            "tolerance": Metric("exact", "relative rounding of the estimator's arithmetic (float32 or float64), "
                                         "up to which its claim is judged"),
            "known_miss": Metric("exact", "1 where the estimator documents that its claim fails on this layer"),
            "below_lower": Metric("float32", "(lower end - estimate) / lower end where the estimate claims to be "
                                             "at least ||W~||: > 0 means the claim fails on this layer"),
            "above_upper": Metric("float32", "(estimate - upper end) / upper end where the estimate claims to be "
                                             "at most ||W~||: > 0 means the claim fails on this layer"),
            "claims": Metric("info", "layers on which the estimator claims something (summary)"),
            "violations": Metric("info", "layers on which its claim misses the certified bracket, by any amount "
                                         "for a bound, beyond its tolerance for an exact value (summary)"),
            "beyond_rounding": Metric("info", "layers on which it misses by more than its tolerance (summary)"),
            "undecided": Metric("info", "layers on which its claimed bound lies inside the bracket (summary)"),
            "median_ratio": Metric("info", "median estimate / certified norm over the layers (summary)"),
            "median_time_ms": Metric("info", "median time over the layers (summary)", unit="ms"),
        })

    def run(self, case: Case, ctx: RunContext) -> Iterable[Measurement]:
        p, s = case.params, case.settings
        model, stage, padding = p["model"], self.param(case, "stage"), self.param(case, "padding")
        if padding not in ("zeros", "circular"):
            raise ValueError(f"case {case.case}: padding must be zeros or circular, got {padding!r}")
        if model not in s["input_size"]:
            raise ValueError(f"settings.input_size has no size for model {model!r}")
        net, shape = model_at_stage(model, int(s["input_size"][model]), stage, case.seed, s)
        estimators = build_estimators(s["estimators"], case.seed)
        out: list[Measurement] = []
        for layer in select(conv_layers(net, shape), s["layers"].get(model), model):
            layer = layer.with_padding_mode(padding)
            sub = f"{case.case},layer={layer_label(layer)}"
            try:
                rows, op = layer_measurements(layer, s, sub)
            except Exception as exc:  # noqa: BLE001 - the other layers keep their rows
                out.append(failed("norm", sub, None, exc))
                continue
            out += rows
            for est in estimators:
                try:
                    out += estimator_measurements(est, layer, op, s["timing_repeats"], sub)
                except Exception as exc:  # noqa: BLE001 - the other estimators keep their rows
                    out.append(failed("ratio", sub, est.name, exc))
        return out

    def summarize(self, rows: pd.DataFrame, config: dict[str, Any]) -> list[Measurement]:
        """Per estimator over all layers: claims, violations, undecided bounds, median ratio and time."""
        return summary_measurements(rows)


def summary_measurements(rows: pd.DataFrame, listed: int = 12) -> list[Measurement]:
    """Per estimator: layers with a claim; violations (a bound on the wrong side of the bracket
    by any amount, an exact value off by more than its tolerance), named in the message; misses
    beyond the tolerance; undecided bounds (an upper bound in ``[lower, upper)`` or a lower bound
    in ``(lower, upper]`` of the bracket); the median ratio and the median time."""
    ok = rows[(rows["status"] == "ok") & (rows["case"] != "summary")]
    wide = ok.pivot_table(index=["case", "seed", "method"], columns="metric", values="value", aggfunc="first")
    if "bracket_width" not in wide or "ratio" not in wide:
        return []
    width = wide["bracket_width"].xs("", level="method")
    out = []
    for method, g in wide.drop(index="", level="method", errors="ignore").groupby(level="method"):
        g = g.droplevel("method")
        col = {m: g[m] if m in g else pd.Series(math.nan, index=g.index)
               for m in ("tolerance", "below_lower", "above_upper")}
        miss = col["below_lower"].fillna(-math.inf).combine(col["above_upper"].fillna(-math.inf), max)
        exact = col["below_lower"].notna() & col["above_upper"].notna()
        violated = (miss > 0) & ~(exact & (miss <= col["tolerance"]))
        w = width.reindex(g.index)
        undecided = ~exact & (((col["below_lower"] <= 0) & (col["below_lower"] > -w))
                              | ((col["above_upper"] <= 0) & (col["above_upper"] > -w / (1 + w))))
        names = [c for c, _ in g.index[violated]]
        message = ("violated on " + "; ".join(names[:listed]) + (f"; and {len(names) - listed} more"
                   if len(names) > listed else "")) if names else ""
        values = {"claims": col["tolerance"].notna().sum(), "violations": violated.sum(),
                  "beyond_rounding": (miss > col["tolerance"]).sum(), "undecided": undecided.sum(),
                  "median_ratio": g["ratio"].median(), "median_time_ms": g["time_ms"].median()}
        out += [Measurement(m, float(v), unit="ms" if m.endswith("_ms") else "1", case="summary",
                            method=str(method), message=message) for m, v in values.items()]
    return out
