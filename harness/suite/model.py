"""Validated suites and the cases they expand to."""
from __future__ import annotations

import copy
import dataclasses
import json
import math
from dataclasses import dataclass, field
from typing import Any, Sequence

from harness.errors import UserError
from harness.expressions import NUMBER, STRING
from harness.methods.claims import PROFILE_TYPES

from .matrix import case_id, expand

#: Most cases one run may plan unless ``--max-cases`` raises it.
DEFAULT_MAX_CASES = 10_000
#: Names every check expression may use besides metrics and case parameters, with their types:
#: the row's value, method label and seed, the claim and tags of the method
#: (``harness.methods.claims.profile``; ``claim == 'none'`` for rows without a method), and
#: ``judged_as``, the built-in the method is judged as (its own name, NAME under ``lipbench
#: check --as NAME``, else ``''``: ``harness.baselines.identity``), for targets written for one
#: implementation (a speed target of sn_w).
ROW_NAMES = {"value": NUMBER, "method": STRING, "seed": NUMBER, "judged_as": STRING, **PROFILE_TYPES}


class SuiteError(UserError):
    """One or more problems in a suite file; ``str()`` lists them one per line."""

    def __init__(self, problems: Sequence[str]) -> None:
        self.problems = list(problems)
        super().__init__("\n".join(self.problems))


@dataclass(frozen=True)
class SuiteLines:
    """Where each key of a suite file is: ``at(("presets", "ci", "matrix"))`` -> ``file:line``."""

    source: str
    lines: dict = field(default_factory=dict, repr=False)

    def at(self, path: tuple = ()) -> str:
        while path not in self.lines and path:
            path = path[:-1]
        return f"{self.source}:{self.lines.get(path, 1)}"


@dataclass(frozen=True)
class MethodSpec:
    """A method as a suite names it: registry name or ``module:attr``, parameters, label."""

    name: str
    params: tuple[tuple[str, Any], ...] = ()
    label: str = ""
    #: ``lipbench check --as NAME``: judged by the built-in NAME's claim and baselines
    judged_as: str = ""
    #: the GAN loss this entry trains with (GAN-training runners), chosen by the suite for this
    #: entry; empty: the method's declaration or claim decides (``harness.runners._gan_common``)
    loss: str = ""

    @classmethod
    def parse(cls, spec: str | dict) -> "MethodSpec":
        if isinstance(spec, str):
            return cls(name=spec, label=spec)
        params = tuple(sorted((spec.get("params") or {}).items()))
        label = spec.get("label") or _default_label(spec["name"], params)
        return cls(name=spec["name"], params=params, label=label, loss=spec.get("loss", ""))

    def build(self):
        """A fresh :class:`harness.methods.Method` instance."""
        from harness import methods
        return methods.get(self.name, **dict(self.params))


def _default_label(name: str, params: tuple) -> str:
    if not params:
        return name
    return f"{name}(" + ",".join(f"{k}={v}" for k, v in params) + ")"


@dataclass(frozen=True)
class Case:
    """One unit of work: a parameter combination, a method (or none) and a seed."""

    suite: str
    kind: str
    case: str
    params: dict[str, Any]
    method: MethodSpec | None
    seed: int
    settings: dict[str, Any]
    device: str
    #: For runners that take every method at once (interleaved timing): all of them.
    methods: tuple[MethodSpec, ...] = ()
    #: torch intra-op threads the case runs on (``None``: torch's setting; ``lipbench --threads``)
    threads: int | None = None

    @property
    def key(self) -> tuple[str, str, str, int]:
        """Identity used for resume: (suite, case, method label, seed)."""
        return (self.suite, self.case, self.method.label if self.method else "", self.seed)

    @property
    def params_json(self) -> str:
        return json.dumps(self.params, sort_keys=True)


@dataclass
class Suite:
    """A validated suite file (see :mod:`harness.suite.schema`)."""

    name: str
    description: str
    kind: str
    source: str
    raw: dict[str, Any] = field(repr=False)
    lines: SuiteLines | None = field(default=None, repr=False)
    #: methods replacing the file's in every preset (``with_methods``)
    methods_override: tuple[MethodSpec, ...] | None = field(default=None, repr=False)

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "<memory>",
                  lines: SuiteLines | None = None) -> "Suite":
        return cls(name=data["name"], description=data["description"], kind=data["kind"],
                   source=source, raw=copy.deepcopy(data), lines=lines)

    def at(self, *path: Any) -> str:
        """``file:line`` of a key of this suite's file (the file alone for in-memory suites)."""
        return self.lines.at(tuple(path)) if self.lines else self.source

    @property
    def presets(self) -> list[str]:
        return list(self.raw["presets"])

    @property
    def metrics(self) -> dict[str, dict]:
        return self.raw["metrics"]

    @property
    def checks(self) -> list[dict]:
        return self.raw.get("checks", [])

    @property
    def compare(self) -> list[dict]:
        return self.raw.get("compare", [])

    @property
    def plots(self) -> list[dict]:
        return self.raw.get("plots", [])

    def resolved(self, preset: str) -> dict[str, Any]:
        """The suite with ``preset`` applied: matrix keys and settings merged, the rest replaced."""
        if preset not in self.raw["presets"]:
            raise SuiteError([f"{self.at('presets')}: presets: suite {self.name!r} has no preset {preset!r}; "
                              f"its presets: {', '.join(self.presets)}"])
        over = self.raw["presets"][preset]
        out = copy.deepcopy(self.raw)
        out["matrix"] = {**self.raw.get("matrix", {}), **over.get("matrix", {})}
        out["settings"] = {**self.raw.get("settings", {}), **over.get("settings", {})}
        out["resources"] = {**self.raw.get("resources", {}), **over.get("resources", {})}
        for key in ("include", "exclude", "seeds", "methods", "device", "timeout"):
            if key in over:
                out[key] = copy.deepcopy(over[key])
        out["preset"] = preset
        return out

    def method_specs(self, preset: str) -> list[MethodSpec]:
        if self.methods_override is not None:
            return list(self.methods_override)
        return [MethodSpec.parse(m) for m in self.resolved(preset).get("methods", [])]

    def with_methods(self, specs: list[MethodSpec]) -> "Suite":
        """This suite with ``specs`` as its methods in every preset (``lipbench check``)."""
        return dataclasses.replace(self, methods_override=tuple(specs))

    def cases(self, preset: str, device: str | None = None,
              methods: list[MethodSpec] | None = None, grouped: bool = False,
              max_cases: int = DEFAULT_MAX_CASES, check_ids: bool = False) -> list[Case]:
        """Expand the preset into cases: parameter combinations x methods x seeds.

        ``grouped``: one case per combination and seed carrying every method (``Case.methods``).
        Raises :class:`SuiteError` when the preset plans more than ``max_cases`` cases (counted
        before anything is expanded) and, with ``check_ids``, when two cases share an id.
        """
        r = self.resolved(preset)
        specs: list[MethodSpec | None] = list(methods if methods is not None else self.method_specs(preset))
        group: tuple[MethodSpec, ...] = ()
        if grouped:
            specs, group = [None], tuple(s for s in specs if s is not None)
        elif not self.raw.get("methods") and methods is None and self.methods_override is None:
            specs = [None]
        matrix = r.get("matrix", {})
        upper = (math.prod(len(v) for v in matrix.values()) + len(r.get("include", []))) \
            * len(specs) * len(r["seeds"])
        if upper > max_cases:
            raise SuiteError([f"{self.at('presets', preset)}: presets.{preset}: plans up to {upper} "
                              f"cases, more than --max-cases {max_cases}"])
        combos = expand(matrix, r.get("include", []), r.get("exclude", []))
        if check_ids:
            self._check_ids(preset, combos, specs)
        dev = device or r.get("device", "cpu")
        return [Case(self.name, self.kind, case_id(p), dict(p), spec, seed, dict(r.get("settings", {})), dev, group)
                for p in combos for spec in specs for seed in r["seeds"]]

    def _check_ids(self, preset: str, combos: list[dict], specs: list) -> None:
        """Two parameter combinations (or two methods) that would share a case key."""
        problems, seen = [], {}
        for combo in combos:
            ident = case_id(combo)
            if ident in seen and seen[ident] != combo:
                problems.append(f"{self.at('presets', preset, 'matrix')}: presets.{preset}: the combinations "
                                f"{seen[ident]} and {combo} give the same case id {ident!r}; "
                                "use values that differ as text (2 and '2' and 2.0 are ambiguous)")
            seen.setdefault(ident, combo)
        labels = [s.label for s in specs if s is not None]
        for label in sorted({x for x in labels if labels.count(x) > 1}):
            problems.append(f"{self.at('methods')}: methods: two methods have the label {label!r}; "
                            "give one a distinct label")
        if problems:
            raise SuiteError(problems)
