"""Suite runners: one per suite kind, and the executor that runs cases safely."""
from .base import RunContext, Runner, kinds, register, runner_for
from .case import CaseOutcome, run_case
from .execute import RunOptions, plan, run_suites

__all__ = ["CaseOutcome", "RunContext", "RunOptions", "Runner", "kinds", "plan", "register", "run_case",
           "run_suites", "runner_for"]
