"""A test runner whose one metric is a training outcome (kind ``outcome``): a normal value per
seed, and optionally one seed far out, to exercise the robust outlier screen of baselines."""
from __future__ import annotations

import numpy as np

from harness.results import Measurement
from harness.runners import Runner, register
from harness.runners.spec import Declarations, Metric
from harness.suite import Suite

#: The seed whose outcome is 1e6 (``None``: every seed is ordinary); set by a test, read in-process.
OUTLIER_SEED: int | None = None


@register
class OutcomeRunner(Runner):
    kind = "outcome_for_tests"
    uses_methods = False
    declarations = Declarations(metrics={"score": Metric("outcome", "a training outcome", better="lower")})

    def run(self, case, ctx):
        value = 1e6 if case.seed == OUTLIER_SEED else 1.0 + 0.1 * float(np.random.default_rng(case.seed).normal())
        return [Measurement("score", value)]


def outcome_suite() -> Suite:
    return Suite.from_dict({"name": "outcomes", "description": "d", "kind": OutcomeRunner.kind,
                            "seeds": list(range(6)), "presets": {"ci": {}, "full": {}}})
