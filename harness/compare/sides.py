"""The two results folders of ``lipbench compare A B``, read once, and how their cases' definitions differ.

A case's definition is what its record's fingerprint says it resolved
(:mod:`harness.results.fingerprint`): the runner kind and its settings, the suite's defaults
included. Two runs' cases are compared as *same* (identical settings), *sampling* (they
differ only in settings the runner declares as sampling a Monte Carlo estimate:
:attr:`harness.runners.spec.Setting.sampling`), *differ* (any other setting), or *unknown*
(a folder written before cases carried fingerprints: compared as if the same, and said so).
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Callable

import pandas as pd

from harness.results import ResultsDir
from harness.runners import runner_for

#: The pseudo-case of a suite's summary rows (fits and constants over all its cases).
SUMMARY = "summary"


@dataclass
class Side:
    """One results folder as the comparison reads it."""

    label: str  # "A" or "B"
    path: str
    rows: pd.DataFrame
    manifest: dict[str, Any]
    settings: dict[tuple[str, str], dict[str, Any]]  # (suite, case) -> resolved settings, where recorded
    kinds: dict[str, str]  # suite -> runner kind
    seeds: dict[str, list[int]] = field(default_factory=dict)  # suite -> seeds of its cases
    #: cases the run planned that never finished (an interrupted run)
    unfinished: list[tuple[str, str, str, int]] = field(default_factory=list)

    def methods(self, suite: str) -> set[str]:
        """Method labels with rows in ``suite`` (``""``: a suite without methods)."""
        mine = self.rows[self.rows["suite"] == suite]
        return set(mine.loc[mine["case"] != SUMMARY, "method"])

    def cases(self, suite: str) -> set[str]:
        mine = self.rows[self.rows["suite"] == suite]
        return set(mine["case"])


def read_side(results: ResultsDir, label: str, kinds_of: Callable[[ResultsDir, set[str]], dict[str, str]]) -> Side:
    """Read ``results`` (the caller holds its lock); ``kinds_of(results, suites)`` names the runner
    kind of suites no fingerprint names (their suite files)."""
    rows = results.rows()
    settings: dict[tuple[str, str], dict[str, Any]] = {}
    kinds: dict[str, str] = {}
    for (suite, case, _method, _seed), fp in results.fingerprints().items():
        if isinstance(fp, dict) and isinstance(fp.get("settings"), dict):
            settings.setdefault((suite, case), fp["settings"])
            if isinstance(fp.get("kind"), str):
                kinds.setdefault(suite, fp["kind"])
    unnamed = set(rows["suite"]) - set(kinds)
    if unnamed:
        kinds.update(kinds_of(results, unnamed))
    manifest = results.manifest()
    recorded = manifest.get("seeds") if isinstance(manifest.get("seeds"), dict) else {}
    seeds = {s: sorted(int(x) for x in recorded[s]) if isinstance(recorded.get(s), list) else
             sorted(set(int(x) for x in rows.loc[(rows["suite"] == s) & (rows["case"] != SUMMARY), "seed"]))
             for s in set(rows["suite"])}
    planned = results.planned_keys()
    unfinished = sorted(planned - results.completed_keys()) if (results.path / "cases.jsonl").exists() else []
    return Side(label, str(results.path), rows, manifest, settings, kinds, seeds, unfinished)


@dataclass(frozen=True)
class Definition:
    """How a case's definition differs between the two runs."""

    state: str  # "same", "sampling", "differ" or "unknown"
    changes: tuple[str, ...] = ()  # "KEY A→B", the settings that differ

    @property
    def why(self) -> str:
        return ", ".join(self.changes[:3]) + (f" and {len(self.changes) - 3} more" if len(self.changes) > 3 else "")


def show(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, default=str, sort_keys=True)
    return text if len(text) <= 40 else text[:37] + "..."


def definition(a: dict[str, Any] | None, b: dict[str, Any] | None, sampling: set[str]) -> Definition:
    """How settings ``a`` and ``b`` (``None``: not recorded) of one case differ."""
    if a is None or b is None:
        return Definition("unknown")
    keys = sorted(k for k in set(a) | set(b) if a.get(k, "(unset)") != b.get(k, "(unset)"))
    changes = tuple(f"{k} {show(a.get(k, '(unset)'))}→{show(b.get(k, '(unset)'))}" for k in keys)
    if not keys:
        return Definition("same")
    return Definition("sampling" if set(keys) <= sampling else "differ", changes)


def suite_definitions(a: Side, b: Side, suite: str) -> dict[str, Definition]:
    """Per case of ``suite`` run on both sides, how its definition differs; the summary's is the
    worst of its cases' (a fit over cases whose settings differ differs too), and a summary over
    other seeds is another sample (``sampling``: its Monte Carlo estimates are compared by intervals)."""
    kind = a.kinds.get(suite) or b.kinds.get(suite)
    sampling = runner_for(kind).declarations.sampling_settings() if kind else set()
    out = {case: definition(a.settings.get((suite, case)), b.settings.get((suite, case)), sampling)
           for case in (a.cases(suite) & b.cases(suite)) - {SUMMARY}}
    order = ("same", "unknown", "sampling", "differ")
    worst = max(out.values(), key=lambda d: order.index(d.state), default=Definition("same"))
    changes = tuple(dict.fromkeys(c for d in out.values() for c in d.changes))
    state = worst.state
    if a.seeds.get(suite) != b.seeds.get(suite):
        changes += (f"seeds {show(a.seeds.get(suite))}→{show(b.seeds.get(suite))}",)
        state = "differ" if state == "differ" else "sampling"
    out[SUMMARY] = Definition(state, changes)
    return out
