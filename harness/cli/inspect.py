"""``lipbench inspect``: the per-node Lipschitz bound of a user's model, as a table or a page.

One row per input-dependent node of the model's computation graph: its factor
(weight layers: the certified operator norm; activations, pooling, BatchNorm, additions,
concatenations: their exact constants or combination rule), the running bound
``L(node)`` (a certified Lipschitz bound of input → node), and for weight layers the
reshaped norm ``‖Ŵ‖``, the operator-norm bracket, α and the ratio ``‖W̃‖/‖Ŵ‖``
(:func:`harness.exact.lipschitz_upper_bound`). Progress goes to stderr, one line per
weight layer. Conditional models (``--classes``, ``--wrt``, ``--label-arg``): the bound with
respect to one forward argument for each class label held constant, and their maximum
(:mod:`harness.exact.inputs`). ``--html`` adds a plot of the running bound through the
network and a bar chart of the factors. Every bad input is a
:class:`~harness.cli.commands.UsageError` (exit 2).
"""
from __future__ import annotations

import argparse
import html
import json
import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from harness.exact import NetworkBound, lipschitz_lower_bound, lipschitz_upper_bound
from harness.exact.graph import InputShapeError, capture
from harness.exact.inputs import class_label, max_over, parse_classes, rebind, required_others, with_constants
from harness.exact.network import eval_mode
from harness.imports import ReferenceLoadError, resolve
from harness.layers import UnsupportedLayerError
from harness.results.atomic import write_output


class InspectError(ValueError):
    """A target, checkpoint or shape that cannot be inspected; the message says which and why."""


def parse_shape(text: str) -> tuple[int, ...]:
    try:
        shape = tuple(int(p) for p in text.replace("x", ",").split(",") if p.strip())
    except ValueError:
        raise InspectError(f"--input-shape {text!r}: expected integers such as 3,32,32") from None
    if not shape or any(s <= 0 for s in shape):
        raise InspectError(f"--input-shape {text!r}: sizes must be positive")
    return shape


def _call_factory(reference: str) -> nn.Module:
    factory = resolve(reference)
    if not callable(factory):
        raise InspectError(f"{reference!r} is {type(factory).__name__}, not a callable returning a module")
    model = factory()
    if isinstance(model, tuple):  # harness.training.build-style factories return (G, D)
        model = model[-1]
    if not isinstance(model, nn.Module):
        raise InspectError(f"{reference!r} returned {type(model).__name__}, not an nn.Module")
    return model


def _load_checkpoint(path: Path) -> object:
    """Tensors and containers only (``weights_only``: a pickle cannot run code); a damaged or
    hostile file is one line naming it."""
    if not path.is_file():
        raise InspectError(f"{path}: not a regular file")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unpickling failure is the file's, not lipbench's
        reason = " ".join(str(exc).split())[:200]
        raise InspectError(f"{path}: not a checkpoint lipbench can load with weights_only=True "
                           f"({type(exc).__name__}: {reason})") from None


def load_target(target: str, factory: str | None) -> nn.Module:
    """A module from ``package.module:factory``, or a checkpoint file (module or state dict)."""
    path = Path(target)
    if not path.exists():
        if ":" not in target:
            raise InspectError(f"{target}: no such file, and not of the form package.module:factory")
        return _call_factory(target)
    if factory is None:
        raise InspectError(f"{target}: a checkpoint needs --factory package.module:factory to build the module")
    model = _call_factory(factory)
    state = _load_checkpoint(path)
    if isinstance(state, dict) and "state_dict" in state:
        state = state["state_dict"]
    try:
        model.load_state_dict(state)
    except (RuntimeError, TypeError) as exc:
        raise InspectError(f"{target}: does not load into {factory}: {exc}") from None
    return model


def apply_method(model: nn.Module, shape: tuple[int, ...], method: str, params: dict) -> nn.Module:
    """``model`` with the method applied, and one training-mode forward (records input sizes,
    settles power iterations); the input shape is checked first so a mismatch names the layer."""
    from harness.methods import get
    was_training = model.training
    with torch.no_grad():
        model.eval()
        capture(model, shape)  # InputShapeError naming the first rejecting node
        model.train(was_training)
        model = get(method, **params).apply(model)
        model.train()
        model(torch.zeros((1, *shape), dtype=next(model.parameters()).dtype))
    return model.train(was_training)


def _progress(done: int, total: int, record) -> None:
    if record is None:
        print(f"graph validated: {total} weight layer(s) to bound", file=sys.stderr, flush=True)
        return
    op = record.operator_norm
    shape = "x".join(map(str, record.input_shape))
    print(f"[{done}/{total}] {record.name} {record.op} {shape}: {record.seconds:.2f} s "
          f"({op.method}, bracket width {op.rel_width:.1e})", file=sys.stderr, flush=True)


@dataclass
class Inspection:
    """What ``inspect`` found: the network bound (for a conditional model, that of the class whose
    bound is largest), an empirical lower bound, and per class ``(class, upper bound)``."""

    bound: NetworkBound
    lower: float
    wrt: str | None = None
    label_arg: str | None = None
    per_class: tuple[tuple[int, float], ...] = ()

    @property
    def worst_class(self) -> int | None:
        return max_over(self.per_class)[0] if self.per_class else None


def _inputs(model: nn.Module, wrt: str | None, classes: tuple[int, ...] | None,
            label_arg: str | None) -> tuple[str | None, str | None]:
    """``(x's argument, the class-label argument)``; both ``None`` for a plain single-input model."""
    x, others = required_others(model, wrt)
    if classes is None:
        if label_arg is not None:
            raise InspectError("--label-arg needs --classes")
        if others:
            raise InspectError(f"{type(model).__name__}.forward takes {', '.join(map(repr, [x, *others]))}: "
                               "give the class set with --classes (e.g. 0-9) and, if needed, --wrt and --label-arg")
        return (x if wrt is not None else None), None
    if label_arg is None:
        if len(others) != 1:
            raise InspectError(f"--classes: {type(model).__name__}.forward has "
                               f"{len(others) or 'no'} argument(s) besides {x!r} without a default "
                               f"({', '.join(map(repr, others))}); name the label argument with --label-arg")
        label_arg = others[0]
    elif label_arg == x:
        raise InspectError(f"--label-arg {label_arg!r} is the input the bound is about (--wrt)")
    return x, label_arg


def inspect_model(model: nn.Module, shape: tuple[int, ...], method: str | None = None,
                  params: dict | None = None, seed: int = 0, tol: float = 1e-4,
                  max_rel_width: float = 0.01, progress=None, wrt: str | None = None,
                  classes: tuple[int, ...] | None = None, label_arg: str | None = None) -> Inspection:
    """The network bound (per-node records) and an empirical lower bound of the model.

    With ``classes``, the bound with respect to ``wrt`` (default: the first forward argument)
    for each class label passed as ``label_arg`` (:mod:`harness.exact.inputs`), and their
    maximum, the bound of the whole conditional family. The model is left in its own mode:
    the bound is always for the eval-mode map, and modules found in training mode are listed
    in the result (never silently switched).
    """
    x, label = _inputs(model, wrt, classes, label_arg)
    device = next((p.device for p in model.parameters()), None)
    first = classes[0] if label else None
    variants = [(None, model)] if x is None else \
        [(first, with_constants(model, x, {label: class_label(first, device)} if label else {}))]
    if method:
        variants = [(variants[0][0], apply_method(variants[0][1], shape, method, params or {}))]
    elif params:
        raise InspectError("--param needs --method")
    if label is not None:
        variants += [(k, rebind(variants[0][1], {label: class_label(k, device)})) for k in classes[1:]]
    for k, variant in variants if label else ():  # every class runs before any operator norm
        try:
            with torch.no_grad(), eval_mode(variant):
                capture(variant, shape, seed=seed, defer_check=True)
        except InputShapeError as exc:
            raise InspectError(f"class {k} passed as {label!r}: {exc}") from None
    cache: dict = {}
    bounds = []
    for i, (k, variant) in enumerate(variants):
        bound = lipschitz_upper_bound(variant, shape, tol, max_rel_width=max_rel_width, seed=seed,
                                      progress=progress if i == 0 else None, norm_cache=cache)
        if k is not None:
            print(f"class {k}: certified upper bound {bound.upper:.6g}", file=sys.stderr, flush=True)
        bounds.append(bound)
    worst = max(range(len(bounds)), key=lambda i: bounds[i].upper)
    generator = torch.Generator().manual_seed(seed)
    lower = lipschitz_lower_bound(variants[worst][1], torch.randn((2, *shape), generator=generator),
                                  n_random=1, steps=8, seed=seed)
    per_class = tuple((k, b.upper) for (k, _), b in zip(variants, bounds) if k is not None)
    return Inspection(bounds[worst], lower.value, x, label, per_class)


def _rows(bound: NetworkBound) -> list[dict[str, Any]]:
    frame = bound.to_frame()
    return [{k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in row.items()}
            for row in frame.to_dict("records")]


def _fmt(v: Any, spec: str = ".4g") -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return ""
    return format(v, spec) if isinstance(v, float) else str(v)


COLUMNS = (("node", "node"), ("op", "op"), ("input", "input"), ("output", "output"),
           ("factor", "factor"), ("bound", "L(node)"), ("reshaped_norm", "‖Ŵ‖"),
           ("operator_lower", "‖W̃‖ lower"), ("operator_upper", "‖W̃‖ upper"),
           ("bracket_width", "width"), ("method", "method"), ("alpha", "α"), ("ratio", "ratio"))


def table_rows(rows: list[dict]) -> list[list[str]]:
    out = []
    for r in rows:
        cells = []
        for key, _ in COLUMNS:
            spec = ".1e" if key == "bracket_width" else (".6g" if key.startswith("operator") else ".4g")
            cells.append(_fmt(r.get(key), spec))
        if r.get("combine"):
            cells[1] += f" [{r['combine']}: {r['inputs']}]"
        out.append(cells)
    return out


def _classes_text(per_class) -> str:
    return ", ".join(f"{k}: {u:.6g}" for k, u in per_class)


def summary(found: Inspection) -> list[str]:
    bound = found.bound
    widths = [r.operator_norm.rel_width for r in bound.weight_layers()]
    lines = [f"input shape {bound.input_shape}; {bound.mode_note}"]
    if found.per_class:
        lines.append(f"bound with respect to {found.wrt!r} for each class passed as {found.label_arg!r}; "
                     f"the maximum over the {len(found.per_class)} class(es) is at class {found.worst_class}, "
                     f"whose nodes are listed (per class: {_classes_text(found.per_class)})")
    elif found.wrt is not None:
        lines.append(f"bound with respect to {found.wrt!r}")
    lines += [f"network Lipschitz constant: certified upper bound {bound.upper:.6g}, "
              f"empirical lower bound {found.lower:.6g}",
              f"{len(widths)} weight layer(s); widest operator-norm bracket {max(widths, default=0.0):.2e}"]
    return lines


def print_table(found: Inspection) -> None:
    header = [title for _, title in COLUMNS]
    body = table_rows(_rows(found.bound))
    widths = [max(len(header[i]), *(len(row[i]) for row in body)) for i in range(len(header))]
    print("  ".join(h.ljust(w) for h, w in zip(header, widths)).rstrip())
    for row in body:
        print("  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip())
    for line in summary(found):
        print(line)


def _bar_chart(rows: list[dict]) -> str:
    """Inline SVG: one bar per node, log10 of its factor around a baseline at 1."""
    height, left, width = 16, 260, 420
    logs = [math.log10(r["factor"]) if r["factor"] and r["factor"] > 0 else 0.0 for r in rows]
    span = max(1e-9, max((abs(v) for v in logs), default=1.0))
    mid = left + width / 2
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{left + width + 80}" '
             f'height="{height * len(rows) + 30}" font-family="sans-serif" font-size="11">',
             f'<line x1="{mid}" y1="0" x2="{mid}" y2="{height * len(rows)}" stroke="#444"/>']
    for i, (r, v) in enumerate(zip(rows, logs)):
        y = i * height
        length = abs(v) / span * width / 2
        x = mid if v >= 0 else mid - length
        colour = "#c0392b" if v > 0 else ("#2e86c1" if v < 0 else "#999")
        label = html.escape(f"{r['node']} ({r['op']})")
        parts.append(f'<text x="{left - 6}" y="{y + 12}" text-anchor="end">{label}</text>')
        parts.append(f'<rect x="{x:.1f}" y="{y + 3}" width="{max(length, 1):.1f}" height="{height - 6}" '
                     f'fill="{colour}"><title>{html.escape(_fmt(r["factor"]))}</title></rect>')
        parts.append(f'<text x="{left + width + 4}" y="{y + 12}">{html.escape(_fmt(r["factor"]))}</text>')
    parts.append(f'<text x="{mid}" y="{height * len(rows) + 20}" text-anchor="middle">'
                 f'factor (log scale, 1 at the axis; ±{span:.2g} decades)</text></svg>')
    return "\n".join(parts)


def running_bound_chart(rows: list[dict]) -> str:
    """Inline SVG: the running bound ``L(node)`` after each node, in execution order, on a log
    scale (one marker per node, joined by a line; the title of each marker names the node)."""
    left, top, width, height = 70, 10, 640, 220
    values = [r["bound"] if r["bound"] and r["bound"] > 0 else None for r in rows]
    logs = [math.log10(v) for v in values if v is not None]
    lo, hi = (min(logs), max(logs)) if logs else (0.0, 1.0)
    lo, hi = math.floor(lo), max(math.ceil(hi), math.floor(lo) + 1)
    step = width / max(len(rows) - 1, 1)
    y_of = lambda v: top + height - (math.log10(v) - lo) / (hi - lo) * height  # noqa: E731
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{left + width + 20}" height="{top + height + 50}" '
             'font-family="sans-serif" font-size="11">',
             f'<line x1="{left}" y1="{top}" x2="{left}" y2="{top + height}" stroke="#444"/>',
             f'<line x1="{left}" y1="{top + height}" x2="{left + width}" y2="{top + height}" stroke="#444"/>']
    for decade in range(lo, hi + 1):
        y = top + height - (decade - lo) / (hi - lo) * height
        parts.append(f'<text x="{left - 6}" y="{y + 4:.1f}" text-anchor="end">1e{decade}</text>')
        parts.append(f'<line x1="{left}" y1="{y:.1f}" x2="{left + width}" y2="{y:.1f}" stroke="#eee"/>')
    points = [(left + i * step, y_of(v)) for i, v in enumerate(values) if v is not None]
    if len(points) > 1:
        path = " ".join(f"{x:.1f},{y:.1f}" for x, y in points)
        parts.append(f'<polyline points="{path}" fill="none" stroke="#c0392b"/>')
    for i, (r, v) in enumerate(zip(rows, values)):
        if v is not None:
            tip = html.escape(f"{r['node']} ({r['op']}): L = {_fmt(v, '.6g')}")
            parts.append(f'<circle cx="{left + i * step:.1f}" cy="{y_of(v):.1f}" r="3" fill="#c0392b">'
                         f'<title>{tip}</title></circle>')
    parts.append(f'<text x="{left + width / 2}" y="{top + height + 30}" text-anchor="middle">'
                 'node, in execution order (hover for its name); L(node) on a log scale</text></svg>')
    return "\n".join(parts)


def write_html(path: Path, title: str, found: Inspection) -> None:
    rows = _rows(found.bound)
    head = "".join(f"<th>{html.escape(t)}</th>" for _, t in COLUMNS)
    body = "\n".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in cells) + "</tr>"
                     for cells in table_rows(rows))
    notes = "".join(f"<p>{html.escape(line)}</p>" for line in summary(found))
    page = f"""<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>body{{font-family:sans-serif;margin:1.5em}} table{{border-collapse:collapse;font-size:12px}}
td,th{{border:1px solid #ccc;padding:2px 6px;text-align:right}} td:first-child,td:nth-child(2){{text-align:left}}
</style></head><body>
<h1>{html.escape(title)}</h1>
{notes}
<h2>Running bound through the network</h2>
{running_bound_chart(rows)}
<h2>Per-node factors</h2>
{_bar_chart(rows)}
<h2>Nodes</h2>
<table><thead><tr>{head}</tr></thead><tbody>
{body}
</tbody></table></body></html>
"""
    write_output(path, page, "--html")


def inspect_target(args: argparse.Namespace) -> int:
    from .commands import UsageError, _parse_params
    params = _parse_params(args.param)
    start = time.perf_counter()
    try:
        shape = parse_shape(args.input_shape)
        classes = parse_classes(args.classes) if args.classes is not None else None
        model = load_target(args.target, args.factory)
        found = inspect_model(model, shape, args.method, params, tol=args.tol, max_rel_width=args.max_rel_width,
                              progress=_progress, wrt=args.wrt, classes=classes, label_arg=args.label_arg)
    except (InspectError, ReferenceLoadError, UnsupportedLayerError, ValueError) as exc:
        raise UsageError(str(exc)) from None
    print(f"done in {time.perf_counter() - start:.1f} s", file=sys.stderr)
    if args.html:
        write_html(Path(args.html), f"lipbench inspect {args.target}", found)
        print(f"wrote {args.html}", file=sys.stderr)
    if args.json:
        network = {"lipschitz_upper": found.bound.upper, "lipschitz_lower": found.lower}
        if found.wrt is not None:
            network["wrt"] = found.wrt
        if found.per_class:
            network.update(label_arg=found.label_arg, worst_class=found.worst_class,
                           per_class=[{"class": k, "lipschitz_upper": u} for k, u in found.per_class])
        print(json.dumps({"layers": _rows(found.bound), "mode": found.bound.mode_note, "network": network}, indent=1))
        return 0
    print_table(found)
    return 0
