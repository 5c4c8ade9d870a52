"""Calibration of the claims suite's training-time tolerances: a table, not a test.

Runs ``suites/claims.yaml`` at a preset for the built-in methods, correct
re-implementations and broken variants (``tests/mutants.py``) and prints, per method, the
range over seeds of every claim metric. The tolerances of the suite's checks cite it: a
correct method must stay inside, a broken one outside.

    python benchmarks/bench_claims.py [PRESET]      # default ci; about 5 minutes on 2 cores
"""
from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))  # mutants:Name

from harness.cli.locate import resolve_suites  # noqa: E402
from harness.results import ResultsDir  # noqa: E402
from harness.runners import run_suites  # noqa: E402
from harness.suite import MethodSpec  # noqa: E402

BUILT_IN = ["none", "sn_w", "ssn", "bsn", "bssn", "sn_conv", "torch_sn", "weight_clip", "grad_penalty",
            "weight_norm", "frobenius_norm", "orthonormal_reg"]
CORRECT = ["mutants:SNw3", "mutants:ExactSigmaSN"]
BROKEN = ["mutants:SNwFrozenU", "mutants:SNwStaleU", "mutants:SNwZeroIterations", "mutants:SNwUndeclaredScale",
          "mutants:GPZeroLambda", "mutants:GPAtRealPoints", "mutants:GPFixedEps", "mutants:ClipHalfBelow"]


def main(preset: str = "ci") -> None:
    suite = resolve_suites(["claims"], ROOT / "suites")[0]
    specs = [MethodSpec.parse(name) for name in BUILT_IN + CORRECT + BROKEN]
    with tempfile.TemporaryDirectory() as tmp:
        rows = run_suites([suite], preset, ResultsDir(Path(tmp) / "r"), methods=specs)
    rows = rows[(rows["case"] != "summary") & (rows["status"] == "ok")]
    table = rows.pivot_table(index="method", columns="metric", values="value", aggfunc=["min", "max"])
    table.columns = [f"{metric} {agg}" for agg, metric in table.columns]
    table = table[sorted(table.columns)]
    order = {name: i for i, name in enumerate(BUILT_IN + CORRECT + BROKEN)}
    with pd.option_context("display.width", 250, "display.max_columns", 30, "display.float_format", "{:.3g}".format):
        print(table.sort_index(key=lambda idx: idx.map(order)).to_string())


if __name__ == "__main__":
    main(*sys.argv[1:])
