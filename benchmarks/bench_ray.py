"""The Ray executor, measured: scheduling overhead per case, speedup of verify, identical rows, projection.

Four parts, each printing a table (medians and min-max over ``--repeats``):

1. **Overhead per case**: trivial cases (one 2x2 matrix of ``thm2_variance``) run one at a
   time through each executor after a warm-up; the overhead is the driver's wall time per
   case minus the case's own seconds on its worker (both executors fork the case from a
   server process; Ray adds its task dispatch and the result's transfer).
2. **Speedup of verify**: ``lipbench verify <theory suites> --preset ci`` with the local
   executor (torch's default threads, and one thread per case) and with ``--executor ray
   --workers 2`` (a fresh local Ray cluster each time, its start-up included), as separate
   processes, in alternating order, wall time each. Ray gives a 1-CPU task one thread
   (``OMP_NUM_THREADS=1``), so "local 1-thread" isolates what the two workers add.
3. **Identical rows**: the two runs' rows matched by (suite, case, method, seed, metric):
   how many values are bit-identical, and the largest relative difference of the others.
4. **Projection**: Miyato et al.'s Table 2 at the ``full`` preset (420 cases) from the cost of
   training iterations measured here, per case (:class:`harness.runners.costs.TrainingCosts`),
   scheduled like the executor on 1, 8 and 64 workers (one GPU each).

Run as a script (it uses both cores; nothing else should run)::

    python benchmarks/bench_ray.py [--repeats 3] [--parts overhead,verify,projection] [--configs ...]
"""
from __future__ import annotations

import argparse
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from harness.cli.locate import resolve_suites, suites_dir
from harness.results import ResultsDir
from harness.runners import plan
from harness.runners.costs import TrainingCosts
from harness.runners.execute import case_needs
from harness.runners.executors import CaseNeeds, Finished, LocalExecutor, make_executor
from harness.runners.executors.placement import Node, makespan
from harness.suite import Suite

THEORY = ["thm2_variance", "thm3_bsn_variance", "snw_vs_snconv", "spectral_accuracy", "contract"]
TARGET_SPEEDUP = 1.5
TRIVIAL = {"name": "trivial", "description": "one 2x2 matrix", "kind": "thm2_variance",
           "matrix": {"m": [2], "n": [2], "distribution": ["gaussian"]}, "seeds": list(range(20)),
           "settings": {"matrices": 1}, "presets": {"ci": {}, "full": {}}}


def spread(values: list[float], unit: str = "", digits: int = 3) -> str:
    return (f"{statistics.median(values):.{digits}g}{unit} "
            f"({min(values):.{digits}g}-{max(values):.{digits}g})")


# --- 1. overhead -------------------------------------------------------------------------------
def per_case_times(executor, cases) -> list[tuple[float, float]]:
    """(driver wall time, wall time minus the case's own seconds on its worker) of each case, one at a time."""
    needs = lambda case: CaseNeeds(60.0)  # noqa: E731 - the default resources: 1 CPU
    out = []
    for case in cases:
        start = time.perf_counter()
        finished = [e for e in executor.run([case], needs) if isinstance(e, Finished)][0]
        wall = time.perf_counter() - start
        out.append((wall, wall - finished.seconds))
    return out


def overhead(repeats: int) -> None:
    cases = plan([Suite.from_dict(TRIVIAL)], "ci", "cpu")
    print("\n1. a trivial case (one 2x2 matrix) run one at a time, ms: the driver's wall time per case, "
          "and what is left of it beyond the case's own time on its worker (fork included there)")
    print(f"{'executor':10s} {'wall per case':>28s} {'beyond the worker':>28s}   ({repeats * len(cases)} cases)")
    local = LocalExecutor()
    ray = make_executor("ray", workers=1)
    for name, executor in (("local", local), ("ray", ray)):
        with executor:
            per_case_times(executor, cases[:2])  # warm-up: fork server (and Ray worker) started
            values = [v for _ in range(repeats) for v in per_case_times(executor, cases)]
        print(f"{name:10s} {spread([w * 1e3 for w, _ in values], ' ms'):>28s} "
              f"{spread([o * 1e3 for _, o in values], ' ms'):>28s}")


# --- 2. and 3. verify ----------------------------------------------------------------------------
def timed_verify(out: Path, executor: list[str], env: dict[str, str]) -> float:
    command = [sys.executable, "-m", "harness.cli.main", "verify", *THEORY, "--preset", "ci", "--overwrite",
               "--out", str(out), "--report", str(out.with_suffix(".html")), "--junit", str(out.with_suffix(".xml")),
               *executor]
    start = time.perf_counter()
    subprocess.run(command, check=False, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                   env={**os.environ, **env})
    return time.perf_counter() - start


def compare_rows(a: ResultsDir, b: ResultsDir) -> tuple[int, int, float]:
    """(bit-identical values, values compared, largest relative difference)."""
    keys = ["suite", "case", "method", "seed", "metric"]
    left, right = a.rows().set_index(keys)["value"], b.rows().set_index(keys)["value"]
    both = left.to_frame("a").join(right.to_frame("b"), how="inner")
    x, y = both["a"].to_numpy(float), both["b"].to_numpy(float)
    same = (x == y) | (np.isnan(x) & np.isnan(y))
    rel = np.abs(x - y) / np.maximum(np.abs(x), 1e-300)
    worst = float(np.nanmax(np.where(same, 0.0, rel))) if len(x) else 0.0
    return int(same.sum()), len(x), worst


#: name -> (flags, environment): torch's default threads (all cores) per case, one thread per
#: case (what Ray gives a 1-CPU task: OMP_NUM_THREADS=1), and Ray with two 1-CPU workers.
CONFIGS = {
    "local": ([], {}),
    "local 1-thread": ([], {"OMP_NUM_THREADS": "1"}),
    "ray --workers 2": (["--executor", "ray", "--workers", "2"], {}),
}


def verify(repeats: int, configs: list[str]) -> None:
    work = Path(tempfile.mkdtemp(prefix="bench-ray-"))
    times: dict[str, list[float]] = {name: [] for name in configs}
    for i in range(repeats):
        for name in (configs if i % 2 == 0 else list(reversed(configs))):
            flags, env = CONFIGS[name]
            times[name].append(timed_verify(work / name.replace(" ", "_"), flags, env))
            print(f"  verify {name} run {i + 1}: {times[name][-1]:.1f} s", file=sys.stderr, flush=True)
    print(f"\n2. wall time of `lipbench verify {' '.join(THEORY)} --preset ci`, s")
    for name, values in times.items():
        print(f"{name:28s} {spread(values, ' s')}")
    bases = [name for name in configs if name.startswith("local")]
    for base in bases:
        ratios = [b / r for b, r in zip(times[base], times["ray --workers 2"])]
        print(f"{'speedup ' + base + ' / ray':28s} {spread(ratios, 'x')}  target >= {TARGET_SPEEDUP}x: "
              f"{'met' if statistics.median(ratios) >= TARGET_SPEEDUP else 'NOT met'}")
    print("\n3. rows of the last runs, matched by suite, case, method, seed, metric")
    ray = ResultsDir(work / "ray_--workers_2")
    for base in bases:
        same, total, worst = compare_rows(ResultsDir(work / base.replace(" ", "_")), ray)
        print(f"  {base} vs ray: {same} of {total} values bit-identical; "
              f"largest relative difference of the others: {worst:.3g}")


# --- 4. projection --------------------------------------------------------------------------------
def projection() -> None:
    suite = resolve_suites(["miyato_table2"], suites_dir(None))[0]
    cases = plan([suite], "full", "cpu")
    needs = case_needs([suite], "full")
    costs = TrainingCosts("cpu", repeats=2, on_measure=lambda text: print(f"  {text}", file=sys.stderr, flush=True))
    seconds = [costs.cost(c).seconds for c in cases]
    total = sum(seconds)
    print(f"\n4. projection of miyato_table2 --preset full ({len(cases)} cases, 100k generator updates each), "
          f"training only, per-iteration costs measured on this CPU (torch threads {os.environ.get('OMP_NUM_THREADS', 'default')})")
    print(f"  per case: median {statistics.median(seconds) / 3600:.3g} h, min {min(seconds) / 3600:.3g} h, "
          f"max {max(seconds) / 3600:.3g} h; all cases {total / 3600:.4g} h")
    print(f"  {'workers (1 GPU each)':22s} {'wall time':>12s} {'rounds':>7s} {'GPU-hours':>10s}")
    for workers in (1, 8, 64):
        node = [Node("projection", "projection", float(workers), float(workers))]
        wall = makespan([(s, needs(c).resources) for s, c in zip(seconds, cases)], node)
        print(f"  {workers:22d} {wall / 3600:10.4g} h {math.ceil(len(cases) / workers):7d} {total / 3600:10.4g}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--parts", default="overhead,verify,projection")
    parser.add_argument("--configs", default=",".join(CONFIGS),
                        help=f"verify: which of {', '.join(CONFIGS)} (comma-separated; ray is always run)")
    args = parser.parse_args()
    parts = args.parts.split(",")
    print(f"bench_ray: {os.cpu_count()} CPUs, repeats {args.repeats}")
    if "overhead" in parts:
        overhead(args.repeats)
    if "verify" in parts:
        verify(args.repeats, list(dict.fromkeys(args.configs.split(",") + ["ray --workers 2"])))
    if "projection" in parts:
        projection()


if __name__ == "__main__":
    main()
