"""``--set KEY=VALUE`` and ``--seeds``: a suite's settings and seeds changed from the command line.

``--set matrices=500`` sets a runner setting in every chosen suite whose runner declares it;
``--set thm2_variance.matrices=500`` in that suite only. The value is parsed as YAML and
type-checked against the runner's declaration (``harness/runners/spec.py``), exactly like
the same key in a suite file; an override wins over every preset. ``--seeds 0,1,2`` or
``--seeds 0-4`` replaces every chosen suite's seeds. The overrides are recorded in the
run's manifest (``overrides``) and change the cases' settings, so a resumed run with
other overrides is not mistaken for the same run.
"""
from __future__ import annotations

import copy
import dataclasses
from dataclasses import dataclass, field
from typing import Any, Sequence

import yaml

from harness.errors import UserError
from harness.runners import runner_for
from harness.suite import Suite

#: Largest seed lipbench accepts (numpy's and torch's generators take 64-bit seeds; one past
#: 2^63 - 1 overflows torch.manual_seed).
MAX_SEED = 2**63 - 1


class OverrideError(UserError):
    """A ``--set`` or ``--seeds`` flag that names no setting, or a value of the wrong type."""


@dataclass(frozen=True)
class Overrides:
    """Settings per suite name (``""``: every suite that declares the key) and seeds."""

    settings: dict[str, dict[str, Any]] = field(default_factory=dict)
    seeds: tuple[int, ...] | None = None

    def record(self) -> dict[str, Any]:
        """What the manifest keeps."""
        return {"set": copy.deepcopy(self.settings), "seeds": list(self.seeds) if self.seeds else None}

    def __bool__(self) -> bool:
        return bool(self.settings) or self.seeds is not None


def parse_overrides(items: Sequence[str], seeds: str | None) -> Overrides:
    """The ``--set`` items (``[SUITE.]KEY=VALUE``) and the ``--seeds`` text, parsed."""
    settings: dict[str, dict[str, Any]] = {}
    for item in items:
        target, sep, text = item.partition("=")
        suite, _, key = target.rpartition(".")
        if not sep or not key.isidentifier() or (suite and not suite.isidentifier()):
            raise OverrideError(f"--set {item!r}: expected KEY=VALUE or SUITE.KEY=VALUE")
        try:
            value = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            problem = str(exc).splitlines()[0]
            raise OverrideError(f"--set {item!r}: the value is not YAML ({problem})") from None
        settings.setdefault(suite, {})[key] = value
    return Overrides(settings, _parse_seeds(seeds) if seeds is not None else None)


def _parse_seeds(text: str) -> tuple[int, ...]:
    found: list[int] = []
    for part in filter(None, (p.strip() for p in text.split(","))):
        low, dash, high = part.partition("-")
        try:
            values = range(int(low), int(high) + 1) if dash and low else [int(part)]
        except ValueError:
            raise OverrideError(f"--seeds {text!r}: expected integers, e.g. 0,1,2 or 0-4") from None
        found.extend(values)
    bad = [v for v in found if not 0 <= v <= MAX_SEED]
    if not found or bad:
        raise OverrideError(f"--seeds {text!r}: expected seeds from 0 to 2^63-1"
                            + (f", got {bad[0]}" if bad else ""))
    if len(set(found)) != len(found):
        raise OverrideError(f"--seeds {text!r}: a seed is listed twice")
    return tuple(found)


def apply_overrides(suites: Sequence[Suite], overrides: Overrides) -> list[Suite]:
    """The suites with the overrides applied to the file and every preset (checked, one-line errors)."""
    if not overrides:
        return list(suites)
    by_name = {s.name: s for s in suites}
    for name in overrides.settings:
        if name and name not in by_name:
            raise OverrideError(f"--set {name}.…: no chosen suite is called {name!r}; "
                                f"chosen: {', '.join(by_name)}")
    used: set[tuple[str, str]] = set()
    changed = [_override(s, overrides, used) for s in suites]
    for scope, values in overrides.settings.items():
        for key in values:
            if (scope, key) not in used:
                where = f"suite {scope!r}" if scope else "no chosen suite"
                raise OverrideError(f"--set {scope + '.' if scope else ''}{key}: {where} has a setting {key!r}")
    return changed


def _override(suite: Suite, overrides: Overrides, used: set[tuple[str, str]]) -> Suite:
    declared = runner_for(suite.kind).declarations.settings
    raw = copy.deepcopy(suite.raw)
    for scope in ("", suite.name):
        for key, value in overrides.settings.get(scope, {}).items():
            if key not in declared:
                if scope:
                    raise OverrideError(f"--set {scope}.{key}: kind {suite.kind!r} has no setting {key!r}; "
                                        f"its settings: {', '.join(sorted(declared)) or 'none'}")
                continue
            problem = declared[key].type_problem(value)
            if problem:
                raise OverrideError(f"--set {(scope + '.') if scope else ''}{key}={value!r}: {problem}")
            used.add((scope, key))
            raw.setdefault("settings", {})[key] = value
            for preset in raw["presets"].values():
                preset.get("settings", {}).pop(key, None)
    if overrides.seeds is not None:
        raw["seeds"] = list(overrides.seeds)
        for preset in raw["presets"].values():
            preset.pop("seeds", None)
    return dataclasses.replace(suite, raw=raw)
