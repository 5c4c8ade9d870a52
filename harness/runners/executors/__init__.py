"""Executors: where the cases of a run are computed — here, one at a time, or across a Ray cluster.

The driver (:func:`harness.runners.run_suites`) hands an executor the cases still to run and
what each needs (:class:`CaseNeeds`: its timeout and :class:`~harness.suite.resources.Resources`).
The executor yields events as they happen:

* :class:`Started` when a case is handed to a worker (the driver records the attempt);
* :class:`Finished` when its rows, traces and artifacts (bytes) are back, in completion
  order (the driver appends them to the results folder at once: it alone writes);
* :class:`Note` for what the progress display should say (a node joined or died).

Every executor runs the same case function on the same worker boundary,
:func:`execute_case`: :func:`~harness.runners.isolation.run_isolated` (a process the
harness can kill), or :func:`~harness.runners.case.run_case` in-process with
``--no-isolation``. A run started with one executor resumes with the other: the results
folder does not depend on who computed a case.

``local`` (the default) needs nothing beyond lipbench and runs ``--workers`` cases at once; ``ray`` imports Ray only when chosen
(:mod:`.ray_executor`; ``pip install "lipbench[ray]"``).
"""
from __future__ import annotations

import contextlib
import platform
import sys
import time
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Sequence

from harness.errors import UserError
from harness.suite import Case
from harness.suite.resources import Resources

from ..base import Runner, runner_for
from ..case import CaseOutcome, error_outcome, run_case, short_traceback
from ..devices import require_here
from ..isolation import kill_all, run_isolated
from ..termination import Terminated

EXECUTORS = ("local", "ray")
#: How long the local executor waits for a finished case before looking at signals again (s).
POLL_S = 0.2


@dataclass(frozen=True)
class CaseNeeds:
    """What one case needs: its time limit (seconds) and the machine resources it declares."""

    timeout: float
    resources: Resources = Resources()


@dataclass(frozen=True)
class Started:
    case: Case
    node: str


@dataclass(frozen=True)
class Finished:
    case: Case
    outcome: CaseOutcome
    seconds: float  # the case's own time on its worker
    node: str


@dataclass(frozen=True)
class Note:
    text: str


Event = Started | Finished | Note
NeedsFor = Callable[[Case], CaseNeeds]


def describe_case(case: Case) -> str:
    """``suite case method seed=N``: how progress lines and notes name a case."""
    method = f" {case.method.label}" if case.method else ""
    return f"{case.suite} {case.case}{method} seed={case.seed}"


def execute_case(case: Case, timeout: float, *, isolation: bool, max_memory: int | None,
                 runner: Runner | None = None) -> CaseOutcome:
    """The one case function every executor calls, on the worker boundary (``runner``: the
    registered one for the case's kind; executors on other machines send it along)."""
    runner = runner or runner_for(case.kind)
    if isolation:
        with _main_not_rerun(runner):
            return run_isolated(case, runner, timeout=timeout, max_memory=max_memory)
    try:
        return run_case(case, runner, timeout=timeout)
    except KeyboardInterrupt as exc:
        if isinstance(exc, Terminated):  # lipbench was told to stop
            raise
        return error_outcome(case, short_traceback(exc))  # raised by the code under test


@contextlib.contextmanager
def _main_not_rerun(runner: Runner) -> Iterator[None]:
    """Keep each forked case from first re-running this process's main script.

    ``multiprocessing`` prepares every process it starts by importing the parent's
    ``__main__`` again, by module name or file: the ``lipbench`` command (which imports the
    whole CLI, reports included) or, on a Ray worker, Ray's worker script. That costs about
    0.3 s before every case and buys nothing, since cases and shipped runners are importable
    from their own modules; only a runner defined in ``__main__`` itself needs it (then it is
    kept). The driver and a Ray worker start one case at a time, so the attributes hidden here
    are back before anything else looks at them.
    """
    main = sys.modules.get("__main__")
    if main is None or type(runner).__module__ == "__main__":
        yield
        return
    saved = {key: main.__dict__[key] for key in ("__file__", "__spec__") if key in main.__dict__}
    main.__dict__.pop("__file__", None)
    main.__spec__ = None  # read unconditionally by multiprocessing: None, not absent
    try:
        yield
    finally:
        for key in ("__file__", "__spec__"):
            main.__dict__.pop(key, None)
        main.__dict__.update(saved)


class Executor(ABC):
    """Runs cases and reports what happens; a context manager (connect on enter, release on exit)."""

    name = ""

    def __enter__(self) -> "Executor":
        return self

    def __exit__(self, *exc: Any) -> None:
        return None

    def check(self, cases: Sequence[Case], needs: NeedsFor) -> None:
        """Raise :class:`UserError` when some case can never run here (before anything is written)."""

    @abstractmethod
    def run(self, cases: Sequence[Case], needs: NeedsFor) -> Iterator[Event]:
        """Run ``cases``; yield :class:`Started` / :class:`Finished` / :class:`Note` events."""

    def nodes(self) -> str:
        """One line about the machines running the cases (progress; empty: nothing to say)."""
        return ""

    def describe(self) -> dict[str, Any]:
        """What the manifest records about this executor."""
        return {"name": self.name}


class LocalExecutor(Executor):
    """Cases on this machine: one at a time, or up to ``workers`` at once, each in its own worker
    process (the threads here only wait for them). A case that declares ``exclusive`` (timing
    suites) runs alone: the others in flight finish first, and none starts beside it."""

    name = "local"

    def __init__(self, *, workers: int = 1, isolation: bool = True, max_memory: int | None = None) -> None:
        self.workers, self.isolation, self.max_memory = workers, isolation, max_memory
        self.host = platform.node() or "localhost"

    def check(self, cases: Sequence[Case], needs: NeedsFor) -> None:
        """A CUDA device this machine lacks: exit 2 before anything is written."""
        for device in sorted({c.device for c in cases}):
            require_here(device)

    def run(self, cases: Sequence[Case], needs: NeedsFor) -> Iterator[Event]:
        if self.workers == 1:
            for case in cases:
                yield Started(case, self.host)
                yield self._finished(case, needs)
            return
        with ThreadPoolExecutor(max_workers=self.workers) as pool:
            running: dict[Future, Case] = {}
            try:
                for case in cases:
                    exclusive = needs(case).resources.exclusive
                    while running and (exclusive or len(running) >= self.workers):
                        yield from self._collect(running)
                    yield Started(case, self.host)
                    running[pool.submit(self._finished, case, needs)] = case
                    while exclusive and running:
                        yield from self._collect(running)
                while running:
                    yield from self._collect(running)
            except BaseException:
                kill_all()  # the threads' workers die now, so the pool does not wait for their cases
                for future in running:
                    future.cancel()
                raise

    def _finished(self, case: Case, needs: NeedsFor) -> Finished:
        started = time.monotonic()
        outcome = execute_case(case, needs(case).timeout, isolation=self.isolation, max_memory=self.max_memory)
        return Finished(case, outcome, time.monotonic() - started, self.host)

    @staticmethod
    def _collect(running: dict[Future, Case]) -> Iterator[Event]:
        done: set[Future] = set()
        while not done:  # in slices, so a stop signal is handled while the cases run
            done, _ = wait(running, timeout=POLL_S, return_when=FIRST_COMPLETED)
        for future in done:
            running.pop(future)
            yield future.result()  # a KeyboardInterrupt in a worker is raised here

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "nodes": [self.host], "workers": self.workers}


def make_executor(name: str, *, workers: int | None = None, address: str | None = None, retries: int = 1,
                  isolation: bool = True, max_memory: int | None = None) -> Executor:
    """The executor called ``name`` (``--executor``); ``UserError`` for flags it cannot honour."""
    if name == "local":
        if address:
            raise UserError("--address needs --executor ray")
        if (workers or 1) > 1 and not isolation:
            raise UserError(f"--workers {workers} needs worker processes: drop --no-isolation")
        return LocalExecutor(workers=workers or 1, isolation=isolation, max_memory=max_memory)
    if name == "ray":
        from .ray_executor import RayExecutor
        return RayExecutor(workers=workers, address=address, retries=retries, isolation=isolation,
                           max_memory=max_memory)
    raise UserError(f"--executor {name!r}: choose one of {', '.join(EXECUTORS)}")


__all__ = ["CaseNeeds", "EXECUTORS", "Event", "Executor", "Finished", "LocalExecutor", "NeedsFor", "Note",
           "Started", "describe_case", "execute_case", "make_executor"]
