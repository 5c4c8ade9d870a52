"""Suite runners: one per suite kind, and the executor that runs cases safely."""
from .base import RunContext, Runner, kinds, register, runner_for
from .execute import run_suites

__all__ = ["RunContext", "Runner", "kinds", "register", "run_suites", "runner_for"]
