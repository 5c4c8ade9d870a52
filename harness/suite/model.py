"""Validated suites and the cases they expand to."""
from __future__ import annotations

import copy
import json
from dataclasses import dataclass, field
from typing import Any

from .matrix import case_id, expand


@dataclass(frozen=True)
class MethodSpec:
    """A method as a suite names it: registry name or ``module:attr``, parameters, label."""

    name: str
    params: tuple[tuple[str, Any], ...] = ()
    label: str = ""

    @classmethod
    def parse(cls, spec: str | dict) -> "MethodSpec":
        if isinstance(spec, str):
            return cls(name=spec, label=spec)
        params = tuple(sorted((spec.get("params") or {}).items()))
        label = spec.get("label") or _default_label(spec["name"], params)
        return cls(name=spec["name"], params=params, label=label)

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

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "<memory>") -> "Suite":
        return cls(name=data["name"], description=data["description"], kind=data["kind"],
                   source=source, raw=copy.deepcopy(data))

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
            raise KeyError(f"suite {self.name!r} ({self.source}) has no preset {preset!r}; "
                           f"presets: {', '.join(self.presets)}")
        over = self.raw["presets"][preset]
        out = copy.deepcopy(self.raw)
        out["matrix"] = {**self.raw.get("matrix", {}), **over.get("matrix", {})}
        out["settings"] = {**self.raw.get("settings", {}), **over.get("settings", {})}
        for key in ("include", "exclude", "seeds", "methods", "device", "timeout"):
            if key in over:
                out[key] = copy.deepcopy(over[key])
        out["preset"] = preset
        return out

    def method_specs(self, preset: str) -> list[MethodSpec]:
        return [MethodSpec.parse(m) for m in self.resolved(preset).get("methods", [])]

    def cases(self, preset: str, device: str | None = None,
              methods: list[MethodSpec] | None = None, grouped: bool = False) -> list[Case]:
        """Expand the preset into cases: parameter combinations x methods x seeds.

        ``grouped``: one case per combination and seed carrying every method (``Case.methods``).
        """
        r = self.resolved(preset)
        combos = expand(r.get("matrix", {}), r.get("include", []), r.get("exclude", []))
        specs: list[MethodSpec | None] = list(methods if methods is not None else self.method_specs(preset))
        group: tuple[MethodSpec, ...] = ()
        if grouped:
            specs, group = [None], tuple(s for s in specs if s is not None)
        elif not self.raw.get("methods") and methods is None:
            specs = [None]
        dev = device or r.get("device", "cpu")
        return [Case(self.name, self.kind, case_id(p), dict(p), spec, seed, dict(r.get("settings", {})), dev, group)
                for p in combos for spec in specs for seed in r["seeds"]]
