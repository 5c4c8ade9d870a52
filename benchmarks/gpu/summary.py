"""The README's training-time table from a ``training_time`` results folder.

One line per model and method: ms per iteration, its ratio to ``none`` measured in the same
run (median over rounds), the D update's ratio, the peak memory of one iteration, and the
device the rows were recorded on (``cuda:<GPU model>`` on a GPU)::

    python benchmarks/gpu/summary.py RESULTS
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from harness.errors import UserError  # noqa: E402
from harness.results import ResultsDir  # noqa: E402

METRICS = ("iteration_ms", "iteration_ratio", "d_step_ratio", "peak_mib")


def table(results: str | Path) -> str:
    try:
        rows = ResultsDir(results).rows()
    except UserError as exc:  # a part that failed before writing results: say so, in one line
        return f"no training_time table: {exc}"
    rows = rows[(rows["suite"] == "training_time") & (rows["status"] == "ok") & rows["metric"].isin(METRICS)]
    if rows.empty:
        return f"{results}: no training_time rows"
    rows = rows.assign(model=[f"{p.get('model', '?')} b{p.get('batch', '?')}"
                              for p in map(json.loads, rows["params"])])
    wide = rows.pivot_table(index=["model", "method", "device"], columns="metric", values="value",
                            aggfunc="first", sort=False)
    lines = ["| model | method | ms / iteration | × none | D update × none | peak MiB | device |",
             "| --- | --- | --- | --- | --- | --- | --- |"]
    for (model, method, device), r in wide.iterrows():
        cells = [f"{r.get(m, float('nan')):.{2 if m == 'iteration_ms' else 3 if 'ratio' in m else 0}f}"
                 for m in METRICS]
        lines.append(f"| {model} | {method} | {' | '.join(cells)} | {device} |")
    return "\n".join(lines)


if __name__ == "__main__":
    for folder in sys.argv[1:]:
        print(table(folder))
