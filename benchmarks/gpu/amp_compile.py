"""Which built-in methods work under bf16 autocast and ``torch.compile``, and what each costs.

One discriminator update as in benchmarks/bench_methods.py (its ``Step``: Miyato's standard
CNN discriminator at 32×32, hinge loss on a real and a fake batch, the method's penalty,
backward, Adam, ``after_step``), in three modes per method:

* ``fp32``: plain float32;
* ``bf16``: the forward passes, penalty and loss under ``torch.autocast(device, bfloat16)``
  (backward and the optimiser outside it, as torch's AMP recipe has them);
* ``compile``: the discriminator replaced by ``torch.compile(D)`` after one eager update;
  ``compile_s`` is the wall time of the first compiled update (tracing and code generation),
  ``graphs`` and ``graph_breaks`` what dynamo compiled and broke on meanwhile. dynamo's
  recompile limit per function is raised to ``--recompile-limit`` (torch's default 8 is below
  one recompile per layer, which the methods' shared power-iteration code may need, and
  would silently run it eagerly); code shared with a method compiled earlier in the same
  process is reused, so a later method's ``graphs`` counts only what is new.

A mode works for a method when its update raises nothing and gives a finite loss and finite
gradients; otherwise the row says why in one line. Every working (method, mode) is then timed
round-robin in one process (harness.metrics.timing.interleaved: CUDA events on a GPU),
and each round's time is divided by ``none``'s in the same mode and round (``x_none``) and
by the same method's fp32 time in that round (``x_fp32``): medians with [min, max] over rounds.

    python benchmarks/gpu/amp_compile.py --device cuda --out results/amp_compile
    python benchmarks/gpu/amp_compile.py --device cpu --methods none,sn_w --rounds 2 --batch 4 --no-compile

Writes ``amp_compile.csv`` and ``amp_compile.md`` (the table it prints) under ``--out``.
"""
from __future__ import annotations

import argparse
import csv
import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from benchmarks.bench_methods import Step, methods  # noqa: E402
from harness.metrics.timing import interleaved, summarize  # noqa: E402

MODES = ("fp32", "bf16", "compile")
COLUMNS = ("method", "mode", "works", "error", "compile_s", "graphs", "graph_breaks",
           "median_ms", "min_ms", "max_ms",
           "x_none", "x_none_min", "x_none_max", "x_fp32", "x_fp32_min", "x_fp32_max")


@dataclass
class Trial:
    """One method in one mode: its update closure (when it works) and what was found."""

    method: str
    mode: str
    step: Step | None = None
    error: str = ""
    compile_s: float = math.nan
    graphs: float = math.nan
    graph_breaks: float = math.nan


def one_line(exc: BaseException) -> str:
    """The exception's type and the first line of its message."""
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0][:200] if text else ''}"


def finite_update(step: Step) -> str:
    """One update; '' when its loss and every gradient are finite, else what was not."""
    loss = step()
    if not torch.isfinite(loss).all():
        return f"non-finite loss {loss.item()}"
    bad = [n for n, p in step.D.named_parameters() if p.grad is not None and not torch.isfinite(p.grad).all()]
    return f"non-finite gradient of {bad[0]}" if bad else ""


def compiled_graphs() -> tuple[int, int]:
    """Graphs dynamo has compiled and graph breaks it has met so far in this process: a method
    whose forward recompiles per layer or breaks the graph shows it in the difference."""
    counters = torch._dynamo.utils.counters
    return counters["stats"]["unique_graphs"], sum(counters["graph_break"].values())


def prepare(method: str, mode: str, device: str, batch: int) -> Trial:
    """Build the method's step in ``mode``, run it once (compiling it for ``compile``) and check it."""
    trial = Trial(method, mode)
    try:
        step = Step(method, device=device, batch=batch)
        if mode == "bf16":
            step.autocast = lambda: torch.autocast(torch.device(device).type, dtype=torch.bfloat16)
        if mode == "compile":
            graphs, breaks = compiled_graphs()
            step.D = torch.compile(step.D)
            t0 = time.perf_counter()
            step()
            if device.startswith("cuda"):
                torch.cuda.synchronize(device)
            trial.compile_s = time.perf_counter() - t0
        trial.error = finite_update(step)
        if mode == "compile":
            now = compiled_graphs()
            trial.graphs, trial.graph_breaks = now[0] - graphs, now[1] - breaks
        trial.step = None if trial.error else step
    except Exception as exc:  # the table reports what fails; it does not stop the others
        trial.error = one_line(exc)
    return trial


def measure(names: list[str], modes: list[str], device: str, batch: int, rounds: int, warmup: int,
            compile_budget: float, log: Callable[[str], None] = print) -> list[dict]:
    """Rows of :data:`COLUMNS` for every method and mode (see the module doc)."""
    trials: list[Trial] = []
    compiling = 0.0
    for mode in modes:
        for name in names:
            if mode == "compile" and compiling > compile_budget:
                trials.append(Trial(name, mode, error=f"not tried: compile budget {compile_budget:g} s spent"))
                continue
            t0 = time.perf_counter()
            trial = prepare(name, mode, device, batch)
            if mode == "compile":
                compiling += time.perf_counter() - t0
            log(f"  {name:16s} {mode:8s} {'ok' if not trial.error else trial.error} "
                f"({time.perf_counter() - t0:.1f} s)")
            trials.append(trial)
    working = {(t.method, t.mode): t.step for t in trials if t.step is not None}
    calls = {f"{m}/{mode}": step for (m, mode), step in working.items()}
    try:
        timing = interleaved(calls, warmup=warmup, repeats=rounds, device=device) if calls else None
    except Exception as exc:  # keep what was found about each mode; say why there are no times
        log(f"timing failed: {one_line(exc)}")
        timing = None
        for t in trials:
            t.error = t.error or f"timing failed: {one_line(exc)}"
    return [row(t, timing) for t in trials]


def row(trial: Trial, timing) -> dict:
    """The trial's line of :data:`COLUMNS`; times and per-round ratios when it was timed."""
    out = {c: math.nan for c in COLUMNS}
    out.update(method=trial.method, mode=trial.mode, works=trial.step is not None, error=trial.error,
               compile_s=trial.compile_s, graphs=trial.graphs, graph_breaks=trial.graph_breaks)
    key = f"{trial.method}/{trial.mode}"
    if trial.step is None or timing is None:
        return out
    s = timing.summary()[key]
    out.update(median_ms=s["median"], min_ms=s["min"], max_ms=s["max"])
    for column, reference in (("x_none", f"none/{trial.mode}"), ("x_fp32", f"{trial.method}/fp32")):
        if reference in timing.samples:
            r = summarize([a / b for a, b in zip(timing.samples[key], timing.samples[reference])])
            out.update({column: r["median"], f"{column}_min": r["min"], f"{column}_max": r["max"]})
    return out


def table(rows: list[dict]) -> str:
    """Markdown: one line per method and mode."""
    def ratio(r: dict, c: str) -> str:
        return "" if math.isnan(r[c]) else f"{r[c]:.3f} [{r[c + '_min']:.2f}, {r[c + '_max']:.2f}]"

    lines = ["| method | mode | works | ms / step (median [min, max]) | × none, same mode | × own fp32 "
             "| compile s | graphs, breaks | error |", "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in rows:
        ms = "" if math.isnan(r["median_ms"]) else f"{r['median_ms']:.2f} [{r['min_ms']:.2f}, {r['max_ms']:.2f}]"
        comp = "" if math.isnan(r["compile_s"]) else f"{r['compile_s']:.1f}"
        graphs = "" if math.isnan(r["graphs"]) else f"{r['graphs']:.0f}, {r['graph_breaks']:.0f}"
        error = r["error"][:100].replace("|", "/")
        lines.append(f"| {r['method']} | {r['mode']} | {'yes' if r['works'] else 'no'} | {ms} | "
                     f"{ratio(r, 'x_none')} | {ratio(r, 'x_fp32')} | {comp} | {graphs} | {error} |")
    return "\n".join(lines)


def parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--methods", default="all", help="comma-separated, or all built-ins (none is always added)")
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--rounds", type=int, default=20, help="timed rounds")
    p.add_argument("--warmup", type=int, default=3, help="untimed rounds before them")
    p.add_argument("--no-amp", action="store_true", help="leave out the bf16 mode")
    p.add_argument("--no-compile", action="store_true", help="leave out the torch.compile mode")
    p.add_argument("--compile-budget", type=float, default=180.0,
                   help="seconds of compiling after which the remaining methods are not compiled")
    p.add_argument("--recompile-limit", type=int, default=64,
                   help="dynamo's recompiles per function before it runs the function eagerly")
    p.add_argument("--out", default="amp_compile", help="folder for amp_compile.csv and amp_compile.md")
    args = p.parse_args(argv)
    args.names = methods() if args.methods == "all" else [m for m in args.methods.split(",") if m]
    if "none" in args.names:
        args.names.remove("none")
    args.names.insert(0, "none")
    args.modes = [m for m in MODES if not (m == "bf16" and args.no_amp or m == "compile" and args.no_compile)]
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    for name in ("recompile_limit", "cache_size_limit"):  # the older name, an alias since torch 2.6
        if hasattr(torch._dynamo.config, name):
            setattr(torch._dynamo.config, name, args.recompile_limit)
    name = torch.cuda.get_device_name(args.device) if args.device.startswith("cuda") else "cpu"
    print(f"torch {torch.__version__}, device {args.device} ({name}), batch {args.batch}, "
          f"{args.warmup} warm-up + {args.rounds} timed rounds, modes {','.join(args.modes)}", flush=True)
    rows = measure(args.names, args.modes, args.device, args.batch, args.rounds, args.warmup,
                   args.compile_budget)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "amp_compile.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    text = f"torch {torch.__version__}, {name}, batch {args.batch}, {args.rounds} rounds\n\n{table(rows)}\n"
    (out / "amp_compile.md").write_text(text)
    print(text, end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
