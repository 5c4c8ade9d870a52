"""``lipbench check`` from the outside: mutation score and wall times, a table, not a test.

For every broken variant of the mutant zoo (``tests/mutants.py``) it runs
``lipbench check mutants:NAME --fail-fast`` and records the exit code, the violated checks
and the time; for every broken or adversarial variant written from scratch
(``tests/corpus.py``, ``BROKEN``) the contract and the claims suite (some are caught only
during training); for every correct re-implementation (``tests/mutants.py`` and
``tests/corpus.py``, ``CORRECT``), and for ``examples.my_norm:MyNorm``, the whole check
(contract and every suite that applies, ci preset). A broken variant is caught when the
check exits 1 with a violation; a correct method must exit 0.

    python benchmarks/bench_check.py [--only NAME ...] [--baselines DIR] [--workers N]

Targets (docs/methods.md, "Adding a variant and checking it"): the contract <= 20 s; the whole check <= 3 minutes
on the 2-core CPU.
"""
from __future__ import annotations

import argparse
import csv
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

import corpus  # noqa: E402
import mutants  # noqa: E402

CORRECT = ["mutants:SNw3", "mutants:ExactSigmaSN", "mutants:SwappedOperatorSN",
           "examples.third_party:TorchSpectralNorm", "examples.my_norm:MyNorm"] + [
    f"corpus:{name}" for name in corpus.CORRECT]
#: Broken variants written from scratch, checked by the contract and the claims suite.
FROM_SCRATCH = [f"corpus:{name}" for name in corpus.BROKEN] + ["corpus:LazySN?by_weight=true"]
#: Suites a target is checked with when not every suite. SwappedOperatorSN computes an exact
#: dense SVD of each layer's operator on every forward: the training suites take over five
#: minutes with it, and neither spectral_accuracy (no power iteration) nor gradient_bounds
#: (no nn.Linear left) applies to it, so its check is the contract.
ONLY = {"mutants:SwappedOperatorSN": ["contract"]}


def check(target: str, work: Path, baselines: Path, fail_fast: bool, workers: int) -> dict:
    name, _, param = target.partition("?")
    out = work / target.replace(":", "_").replace("?", "_").replace("=", "_")
    args = [sys.executable, "-m", "harness.cli.main", "check", name, "--out", str(out), "--overwrite",
            "--baselines", str(baselines), "--report", str(out) + ".html", "--junit", str(out) + ".xml",
            "--workers", str(workers)]
    if param:
        args += ["--param", param]
    if fail_fast:
        args.append("--fail-fast")
    if target in ONLY:
        args += ["--suites", *ONLY[target]]
    elif target in FROM_SCRATCH:
        args += ["--suites", "contract", "claims"]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "tests")])}
    started = time.perf_counter()
    done = subprocess.run(args, cwd=ROOT, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - started
    violated = []
    verdicts = out / "verdicts.csv"
    if verdicts.exists():
        with open(verdicts) as handle:
            violated = sorted({f"{r['suite']}/{r['check']}" + (f" {r['metric']}" if r["suite"] == "contract" else "")
                               for r in csv.DictReader(handle) if r["verdict"] in ("violation", "error")})
    return {"method": target, "exit": done.returncode, "seconds": round(seconds, 1),
            "violated": "; ".join(violated)[:160] or (done.stderr.strip().splitlines() or [""])[-1][:160]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--only", nargs="*")
    parser.add_argument("--baselines", type=Path, default=ROOT / "baselines")
    parser.add_argument("--workers", type=int, default=2, help="cases at once (default 2: the 2-core CPU's cores)")
    args = parser.parse_args()
    broken = [f"mutants:{cls.__name__}" for cls in mutants.MUTANTS] + FROM_SCRATCH
    targets = [t for t in broken + CORRECT if not args.only or t in args.only]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for target in targets:
            row = check(target, Path(tmp), args.baselines, fail_fast=target in broken and target not in FROM_SCRATCH,
                        workers=args.workers)
            row["expected"] = "fail" if target in broken else "pass"
            row["ok"] = (row["exit"] == 1) if target in broken else (row["exit"] == 0)
            rows.append(row)
            print(f"{row['method']:42s} exit {row['exit']}  {row['seconds']:7.1f} s  {row['violated']}", flush=True)
    caught = sum(r["ok"] for r in rows if r["expected"] == "fail")
    passing = sum(r["ok"] for r in rows if r["expected"] == "pass")
    print(f"\nmutation score: {caught}/{sum(r['expected'] == 'fail' for r in rows)} broken variants caught; "
          f"{passing}/{sum(r['expected'] == 'pass' for r in rows)} correct methods pass")


if __name__ == "__main__":
    main()
