"""A suite's checks on both runs, compared: a check that held in A and is violated in B is a
regression; violated in A and holding in B an improvement; violated in both ``n/a`` (not a
difference between the runs: ``lipbench report B`` judges B's checks on their own)."""
from __future__ import annotations

from typing import Any, Sequence

from harness.baselines.checks import evaluate_checks
from harness.baselines.verdict import verdict_row
from harness.suite import Suite

from .sides import Side

_HELD = {"pass", "n/a"}


def compare_checks(suites: Sequence[Suite], a: Side, b: Side) -> list[dict[str, Any]]:
    """One verdict per check row B has (the suites' files: those B was run from)."""
    out = []
    for suite in suites:
        if suite.name not in set(a.rows["suite"]):
            continue
        before = {_key(v): v for v in evaluate_checks(suite, a.rows, a.manifest.get("methods"))}
        for v in evaluate_checks(suite, b.rows, b.manifest.get("methods")):
            old = before.get(_key(v))
            verdict, why = _compared(v["verdict"], old["verdict"] if old else None)
            out.append(verdict_row(**{k: v[k] for k in ("suite", "case", "method", "seed", "metric", "check")},
                                   kind="check", verdict=verdict, value=v["value"],
                                   reference=old["value"] if old else float("nan"),
                                   detail=f"{why}; B: {v['detail']}"))
    return out


def _key(v: dict) -> tuple:
    return (v["case"], v["method"], v["seed"], v["metric"], v["check"])


def _compared(new: str, old: str | None) -> tuple[str, str]:
    if old is None:
        return ("new" if new in _HELD else new), "no such check row in A"
    if new in _HELD and old in _HELD:
        return "pass", f"{new} in A and B"
    if new in _HELD:
        return "improvement", f"{old} in A, {new} in B"
    if old in _HELD:
        return ("regression" if new == "violation" else new), f"held in A ({old}), {new} in B"
    return "n/a", f"{old} in A and {new} in B (not a difference between the runs)"
