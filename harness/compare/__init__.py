"""``lipbench compare A B``: two results folders compared case by case, by each metric's rule.

:func:`compare_runs` reads both folders (:mod:`.sides`), lists what differs between them
first (:mod:`.differences`), then judges B against A (:mod:`.judge`); the terminal gets at most
30 lines (:mod:`.summary`), the report everything, A and B side by side
(:mod:`harness.reporting.compare_html`).
"""
from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

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


def compare_runs(a: Side, b: Side) -> Comparison:
    return Comparison(a, b, differences(a, b), compare_sides(a, b))


__all__ = ["Comparison", "Difference", "MAX_LINES", "Side", "compare_runs", "read_side", "summary_lines"]
