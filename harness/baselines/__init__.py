"""Baselines, bound checks, comparison rules and verdicts."""
from .checks import evaluate_checks
from .compare import compare_suite, judge, results_as_baseline, run_errors, stored_baselines
from .rules import compare_directional, compare_exact, compare_noisy
from .store import IncompleteRunError, baseline_path, load_baseline, update_baselines
from .verdict import FAILING, NON_FAILING, VERDICT_COLUMNS, VERDICTS, passed, verdict_row

__all__ = ["FAILING", "NON_FAILING", "VERDICTS", "IncompleteRunError", "VERDICT_COLUMNS", "baseline_path", "compare_directional",
           "compare_exact", "compare_noisy", "compare_suite", "evaluate_checks", "judge",
           "load_baseline", "passed", "results_as_baseline", "stored_baselines", "run_errors", "update_baselines", "verdict_row"]
