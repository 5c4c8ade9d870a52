"""What differs between the two runs before any metric is compared: presets, seeds, settings,
suites, cases and methods, and the build and machine that ran them (reported first)."""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from .sides import SUMMARY, Side, show, suite_definitions

#: Provenance fields shown when they differ (they explain a difference; they never fail one).
PROVENANCE = ("lipbench_version", "git_commit", "device", "torch", "cpu_capability", "torch_threads")


@dataclass(frozen=True)
class Difference:
    """One difference: what (``topic``), A's and B's side of it."""

    topic: str
    a: str
    b: str

    def line(self) -> str:
        return f"{self.topic}: {self.a} → {self.b}"


def differences(a: Side, b: Side) -> list[Difference]:
    """Every difference, most consequential first: preset, suites, settings, seeds, methods, cases,
    then provenance."""
    out: list[Difference] = []
    if a.manifest.get("preset") != b.manifest.get("preset"):
        out.append(Difference("preset", str(a.manifest.get("preset")), str(b.manifest.get("preset"))))
    suites_a, suites_b = set(a.rows["suite"]), set(b.rows["suite"])
    if suites_a != suites_b:
        out.append(Difference("suites only on one side", _names(suites_a - suites_b), _names(suites_b - suites_a)))
    for suite in sorted(suites_a & suites_b):
        out += _settings(a, b, suite)
        if a.seeds.get(suite) != b.seeds.get(suite):
            out.append(Difference(f"{suite} seeds", _seeds(a.seeds.get(suite)), _seeds(b.seeds.get(suite))))
        only_a, only_b = a.methods(suite) - b.methods(suite), b.methods(suite) - a.methods(suite)
        if only_a or only_b:
            out.append(Difference(f"{suite} methods only on one side", _names(only_a), _names(only_b)))
        cases_a, cases_b = a.cases(suite) - {SUMMARY}, b.cases(suite) - {SUMMARY}
        if cases_a != cases_b:
            out.append(Difference(f"{suite} cases only on one side", _count(cases_a - cases_b),
                                  _count(cases_b - cases_a)))
    for key in PROVENANCE:
        if a.manifest.get(key) != b.manifest.get(key):
            out.append(Difference(key, show(a.manifest.get(key, "(none)")), show(b.manifest.get(key, "(none)"))))
    return out


def _settings(a: Side, b: Side, suite: str) -> list[Difference]:
    """The settings that differ in ``suite``, each with its values and how many cases it concerns."""
    found = [d for case, d in suite_definitions(a, b, suite).items() if case != SUMMARY]
    unknown = sum(d.state == "unknown" for d in found)
    changed = Counter(change for d in found for change in d.changes)
    out = []
    for change, n in changed.items():
        key, _, values = change.partition(" ")
        left, _, right = values.partition("→")
        sampling = " (sampling)" if all(d.state == "sampling" for d in found if change in d.changes) else ""
        out.append(Difference(f"{suite} setting {key}{sampling} in {n} of {len(found)} cases", left, right))
    if unknown:
        out.append(Difference(f"{suite} settings not recorded (older results) in {unknown} cases",
                              "compared as if the same", ""))
    return out


def _names(items: set[str]) -> str:
    shown = sorted("(none)" if not x else x for x in items)
    return ", ".join(shown) if shown else "-"


def _seeds(seeds: list[int] | None) -> str:
    return show(seeds) if seeds is not None else "(not recorded)"


def _count(cases: set[str]) -> str:
    if not cases:
        return "-"
    first = sorted(cases)[0]
    return f"{len(cases)} ({first}{', ...' if len(cases) > 1 else ''})"
