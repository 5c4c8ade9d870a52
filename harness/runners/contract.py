"""``contract``: the method contract (:mod:`harness.methods.contract`) as a suite.

One case per method: every invariant that applies to its claim is a metric
``invariant[<name>]`` (1 holds, 0 violated; the row's message says what failed, with the
numbers). The method is observed in the case's defendant process and judged here, as
:func:`harness.methods.run_contract` does. ``lipbench check`` runs it first, in seconds, so a
broken method is named before any training starts.
"""
from __future__ import annotations

from typing import Any

from harness.methods import contract
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

    def request(self, case: Case) -> dict[str, Any]:
        return contract.make_request(case.seed)

    def observe(self, case: Case, ctx: RunContext, request: dict[str, Any]) -> dict[str, Any]:
        return contract.observe(factory(case.method.name), dict(case.method.params), request)

    def judge(self, case: Case, ctx: RunContext, request: dict[str, Any], observed: dict[str, Any]) -> list[Measurement]:
        return [Measurement(f"invariant[{r.invariant}]", 1.0 if r.verdict == "pass" else 0.0,
                            message=f"{r.detail} ({r.seconds:.2f} s)")
                for r in contract.judge(observed, request) if r.verdict != "n/a"]
