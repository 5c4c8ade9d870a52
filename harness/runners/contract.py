"""``contract``: the method contract (:func:`harness.methods.run_contract`) as a suite.

One case per method: every invariant that applies to its claim is a metric
``invariant[<name>]`` (1 holds, 0 violated; the row's message says what failed, with the
numbers). ``lipbench check`` runs it first, in seconds, so a broken method is named before
any training starts.
"""
from __future__ import annotations

from harness.methods import run_contract
from harness.methods.registry import factory
from harness.results import Measurement
from harness.suite import Case

from .base import RunContext, Runner, register
from .spec import Declarations, Metric


@register
class ContractRunner(Runner):
    kind = "contract"
    declarations = Declarations(metrics={
        "invariant[*]": Metric("exact", "1 when the invariant holds on the method, 0 when it is violated",
                               better="higher")})

    def run(self, case: Case, ctx: RunContext) -> list[Measurement]:
        results = run_contract(factory(case.method.name), dict(case.method.params), seed=case.seed)
        return [Measurement(f"invariant[{r.invariant}]", 1.0 if r.verdict == "pass" else 0.0,
                            message=f"{r.detail} ({r.seconds:.2f} s)") for r in results if r.verdict != "n/a"]
