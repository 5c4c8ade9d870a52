"""The runner interface: one runner per suite ``kind``, a few small functions each.

A runner whose cases run a method's code is split in two (README, "The trust
model"): :meth:`Runner.request` (lipbench's process: the inputs the judge chooses),
:meth:`Runner.observe` (the defendant's process: builds the method, runs it, reports plain
observations) and :meth:`Runner.judge` (lipbench's process again: every number a verdict
rests on, computed from the observations, never importing the method's module). A runner
that only overrides :meth:`Runner.run` runs wholly in the defendant's process when its
cases carry methods, and in lipbench's when they do not.
"""
from __future__ import annotations

from abc import ABC
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Iterable

import pandas as pd
import torch

from harness.methods.claims import judged_claim
from harness.results import Measurement
from harness.suite import Case

from .spec import Declarations

_RUNNERS: dict[str, "Runner"] = {}


@dataclass
class RunContext:
    """What a runner gets besides its case: the device, the built method, trace and artifact sinks."""

    device: torch.device
    method: Any = None  # harness.methods.Method, in the defendant's process only
    methods: dict[str, Any] = field(default_factory=dict)  # label -> Method, grouped runners only
    judged_as: str = ""  # lipbench check --as NAME: judged by NAME's claim
    #: the method as plain data (``harness.methods.claims.description``), in the judge's process
    described: dict[str, Any] | None = None
    artifact_dir: Path | None = None
    traces: list[dict[str, Any]] = field(default_factory=list)
    artifacts: list[dict[str, Any]] = field(default_factory=list)

    def claim(self) -> tuple[Any, dict[str, Any]]:
        """The claim the case's method is judged by and its parameters (see ``judged_claim``)."""
        return judged_claim(self.method if self.method is not None else self.described, self.judged_as)

    def trace(self, series: str, step: int, value: float) -> None:
        self.traces.append({"series": series, "step": int(step), "value": float(value)})

    def artifact_path(self, case: Case, name: str) -> Path:
        """Where to write an image called ``name``; the executor hands its bytes to the results writer."""
        if self.artifact_dir is None:
            raise RuntimeError("this run keeps no artifacts")
        safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in name)
        path = self.artifact_dir / safe
        self.artifacts.append({"name": safe, "path": str(path)})
        return path


class Runner(ABC):
    """Base class. Subclasses set ``kind`` and ``declarations`` and implement :meth:`run`."""

    kind: ClassVar[str] = ""
    #: The case parameters, settings and metrics of this kind (see :mod:`.spec`).
    declarations: ClassVar[Declarations] = Declarations()
    #: Whether the suite's cases carry a method (False: theory suites about random matrices).
    uses_methods: ClassVar[bool] = True
    #: Whether one case takes every method at once (``ctx.methods``), e.g. to interleave timings;
    #: its measurements then name their method (``Measurement.method``).
    groups_methods: ClassVar[bool] = False

    def applies_to(self, profile: dict[str, Any]) -> bool:
        """Whether a method, given by its profile (``harness.methods.claims.profile``: claim
        and tags as plain data), is run through this suite (``lipbench check`` asks)."""
        return True

    @property
    def split(self) -> bool:
        """Whether the runner observes in the defendant and judges in lipbench's process."""
        return type(self).observe is not Runner.observe

    def request(self, case: Case) -> dict[str, Any]:
        """The inputs the judge chooses for the defendant (plain data; lipbench's process)."""
        return {}

    def observe(self, case: Case, ctx: RunContext, request: dict[str, Any]) -> dict[str, Any]:
        """The defendant's plain observations (``ctx.method`` is built; its process only)."""
        raise self._missing("observe")

    def judge(self, case: Case, ctx: RunContext, request: dict[str, Any],
              observed: dict[str, Any]) -> Iterable[Measurement]:
        """The measurements, computed from the observations (lipbench's process;
        ``ctx.described`` is the method as plain data, ``ctx.method`` is ``None``)."""
        raise self._missing("judge")

    def run(self, case: Case, ctx: RunContext) -> Iterable[Measurement]:
        """The measurements of one case, for runners that are not split (``ctx.method`` /
        ``ctx.methods`` are built when the case carries methods)."""
        raise self._missing("run")

    def _missing(self, hook: str) -> TypeError:
        """A runner implements either ``run`` or the pair ``observe`` and ``judge``; calling a
        hook it does not implement is a bug in that runner, named here."""
        kind = "split (observe/judge)" if self.split else "unsplit (run)"
        return TypeError(f"runner {type(self).__name__} ({self.kind!r}) is {kind} and has no {hook}()")

    def param(self, case: Case, name: str) -> Any:
        """A case parameter, or its declared default when the matrix does not set it."""
        if name in case.params:
            return case.params[name]
        return self.declarations.params[name].default

    def summarize(self, rows: pd.DataFrame, config: dict[str, Any]) -> list[Measurement]:
        """Suite-level metrics over all cases (a fit, a constant); case ``summary``."""
        return []


def register(cls: type[Runner]) -> type[Runner]:
    """Class decorator adding a runner under its ``kind``."""
    _RUNNERS[cls.kind] = cls()
    return cls


def runner_for(kind: str) -> Runner:
    _load_builtin()
    try:
        return _RUNNERS[kind]
    except KeyError:
        raise KeyError(f"no runner for suite kind {kind!r}; known: {', '.join(kinds())}") from None


def kinds() -> list[str]:
    _load_builtin()
    return sorted(_RUNNERS)


def _load_builtin() -> None:
    from harness.runners import builtin  # noqa: F401  (registers the shipped runners)

