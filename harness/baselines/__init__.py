"""Baselines, bound checks, comparison rules and verdicts."""
from .checks import evaluate_checks
from .compare import compare_suite, judge, results_as_baseline, rule_of, run_errors, stored_baselines
from .rules import Judgement, compare_outcomes, compare_timing, compare_tolerance
from .store import (Acceptance, Baseline, BaselineFileError, Changes, IncompleteRunError, RefusedRunError,
                    baseline_path, load_baseline, read_baseline, source_id, update_baselines)
from .verdict import FAILING, NON_FAILING, VERDICT_COLUMNS, VERDICTS, passed, verdict_row

__all__ = ["Acceptance", "Baseline", "BaselineFileError", "Changes", "FAILING", "IncompleteRunError", "Judgement",
           "NON_FAILING", "VERDICTS", "VERDICT_COLUMNS", "baseline_path", "compare_outcomes", "compare_suite",
           "compare_timing", "compare_tolerance", "evaluate_checks", "judge", "load_baseline", "passed",
           "read_baseline", "RefusedRunError", "results_as_baseline", "rule_of", "run_errors", "source_id", "stored_baselines",
           "update_baselines", "verdict_row"]
