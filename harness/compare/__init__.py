"""``lipbench compare A B``: two results folders compared case by case, by each metric's rule.

:func:`compare_runs` reads both folders (:mod:`.sides`), lists what differs between them
first (:mod:`.differences`), then judges B against A (:mod:`.judge`) and compares the suites' checks on both
(:mod:`.checks`); the terminal gets at most
30 lines (:mod:`.summary`), the report everything, A and B side by side
(:mod:`harness.reporting.compare_html`).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import pandas as pd

from harness.baselines.verdict import to_frame
from harness.suite import Suite

from .checks import compare_checks
from .differences import Difference, differences
from .judge import compare_sides
from .sides import Side, read_side
from .summary import MAX_LINES, summary_lines


@dataclass
class Comparison:
    """Both runs, what differs between them and the verdicts of B against A."""

    a: Side
    b: Side
    differences: list[Difference]
    verdicts: pd.DataFrame


def compare_runs(a: Side, b: Side, suites: Sequence[Suite] = ()) -> Comparison:
    """B against A; ``suites`` (the files B was run from): their checks compared too."""
    checks = to_frame(compare_checks(suites, a, b))
    verdicts = compare_sides(a, b)
    return Comparison(a, b, differences(a, b), pd.concat([verdicts, checks], ignore_index=True)
                      if len(checks) else verdicts)


__all__ = ["Comparison", "Difference", "MAX_LINES", "Side", "compare_runs", "read_side", "summary_lines"]
