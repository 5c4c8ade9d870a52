"""How long the method contract takes (``harness.methods.contract``), per method and per invariant.

Target (issue 8): the whole contract in at most 20 s per method on the project's 2-core
CPU. Each method's contract is run ``repeats`` times (after one warm-up run that pays
for imports and first-call kernel setup); the table gives the median and the spread
(min–max) of the wall time per method, then the median per invariant over all methods.
The mutant zoo (tests/mutants.py) can be timed too; :func:`tests.mutants.mutation_score`
gives the lead's benchmark the score itself.

Run as a script::

    python benchmarks/bench_contract.py [repeats] [threads] [--mutants]

``threads`` sets torch's intra-op threads (default 1: the contract's tensors are tiny and
threads only add contention on a shared machine).
"""
from __future__ import annotations

import statistics
import sys
import time
from collections import defaultdict
from pathlib import Path

import torch

from harness.methods import run_contract
from harness.methods.registry import _BUILTIN

TARGET_S = 20.0


def factories(with_mutants: bool) -> dict[str, object]:
    """Built-in methods by name, plus the mutant zoo's classes when asked."""
    found: dict[str, object] = dict(sorted(_BUILTIN.items()))
    if with_mutants:
        root = Path(__file__).resolve().parents[1]
        sys.path[:0] = [str(root / "tests"), str(root)]
        import mutants
        found.update({cls.__name__: cls for cls in mutants.MUTANTS})
    return found


def measure(factory, repeats: int) -> tuple[list[float], dict[str, list[float]]]:
    """Wall times of ``repeats`` whole contracts and of each invariant in them."""
    run_contract(factory)  # warm-up
    totals, per_invariant = [], defaultdict(list)
    for _ in range(repeats):
        start = time.perf_counter()
        for result in run_contract(factory):
            per_invariant[result.invariant].append(result.seconds)
        totals.append(time.perf_counter() - start)
    return totals, per_invariant


def main(repeats: int = 5, threads: int = 1, with_mutants: bool = False) -> None:
    torch.set_num_threads(threads)
    print(f"contract wall time, {repeats} repeats after 1 warm-up, torch threads {threads}, "
          f"torch {torch.__version__}")
    print(f"{'method':32s} {'median s':>9s} {'min s':>8s} {'max s':>8s}  within {TARGET_S:g} s")
    by_invariant: dict[str, list[float]] = defaultdict(list)
    worst = 0.0
    for name, factory in factories(with_mutants).items():
        totals, per_invariant = measure(factory, repeats)
        med = statistics.median(totals)
        worst = max(worst, med)
        print(f"{name:32s} {med:9.3f} {min(totals):8.3f} {max(totals):8.3f}  "
              f"{'yes' if max(totals) <= TARGET_S else 'NO'}")
        for invariant, times in per_invariant.items():
            by_invariant[invariant].append(statistics.median(times))
    print(f"\n{'invariant':32s} {'median s':>9s} {'max s':>8s}   (over methods' medians)")
    for invariant, times in by_invariant.items():
        print(f"{invariant:32s} {statistics.median(times):9.4f} {max(times):8.4f}")
    print(f"\nslowest method: {worst:.3f} s (target {TARGET_S:g} s)")


if __name__ == "__main__":
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    main(int(args[0]) if args else 5, int(args[1]) if len(args) > 1 else 1, "--mutants" in sys.argv)
