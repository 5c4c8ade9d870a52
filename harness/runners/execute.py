"""Run suites case by case into a results folder: isolated, time- and memory-limited, resumable.

Each case runs through :func:`.case.run_case`, by default in its own worker process
(:mod:`.isolation`); whatever it does, it ends as rows (an ``error`` row when it failed)
and the run goes on. Every finished case is appended to the results folder at once, so
an interrupted run keeps it and ``resume`` skips it.
"""
from __future__ import annotations

import copy
import dataclasses
import sys
import time
from dataclasses import dataclass, field
from typing import Sequence

import pandas as pd
from tqdm import tqdm

from harness.methods.claims import profile
from harness.results import ResultsDir, build_manifest, device_label, error_row, make_row
from harness.results.manifest import now
from harness.suite import Case, MethodSpec, Suite

from .base import runner_for
from .case import CaseOutcome, error_outcome, run_case, short_traceback
from .isolation import default_max_memory, run_isolated

DEFAULT_TIMEOUT_S = 600.0
DEFAULT_MAX_CASES = 10_000
SUMMARY_SEED = -1
#: A case that was running when the harness itself died this many times is not retried.
MAX_HARNESS_DEATHS = 2


@dataclass
class RunOptions:
    """How to run: every knob of ``lipbench run`` / ``verify`` / ``check`` in one place."""

    device: str = "cpu"
    methods: Sequence[MethodSpec] | None = None  # replaces the suites' method lists
    resume: bool = False
    overwrite: bool = False
    retry_errors: bool = False
    timeout: float | None = None  # per case; default: the suite's
    isolation: bool = True
    max_memory: int | None = field(default_factory=default_max_memory)
    max_cases: int = DEFAULT_MAX_CASES
    progress: bool = True
    command: list[str] | None = None


def plan(suites: Sequence[Suite], preset: str, device: str,
         methods: Sequence[MethodSpec] | None = None, max_cases: int = DEFAULT_MAX_CASES) -> list[Case]:
    """Every case the run will execute, in order (``methods`` replaces the suites' lists)."""
    cases: list[Case] = []
    for suite in suites:
        runner = runner_for(suite.kind)
        override = list(methods) if (methods is not None and runner.uses_methods) else None
        defaults = runner.declarations.defaults()
        cases += [dataclasses.replace(c, settings={**copy.deepcopy(defaults), **c.settings})
                  for c in suite.cases(preset, device=device, methods=override, grouped=runner.groups_methods,
                                       max_cases=max_cases - len(cases))]
    return cases


def run_suites(suites: Sequence[Suite], preset: str, out: ResultsDir,
               options: RunOptions | None = None, **overrides) -> pd.DataFrame:
    """Run every case of ``suites`` at ``preset`` into ``out``; returns all rows.

    ``overrides`` are :class:`RunOptions` fields (``resume=True``, ``isolation=False``, ...).
    """
    options = options or RunOptions()
    if overrides:
        options = RunOptions(**{**options.__dict__, **overrides})
    cases = plan(suites, preset, options.device, options.methods, options.max_cases)
    out.prepare(resume=options.resume, overwrite=options.overwrite)
    with out.lock():
        if options.resume:
            out.repair()
        manifest = build_manifest(preset=preset, suites=[s.name for s in suites],
                                  seeds={s.name: s.resolved(preset)["seeds"] for s in suites},
                                  device=options.device, started=now(), command=options.command)
        manifest["isolation"] = "worker process per case" if options.isolation else "in-process"
        manifest["max_memory_mib"] = round(options.max_memory / 2**20) if options.max_memory else None
        manifest["methods"] = method_profiles(cases)
        out.write_json("manifest.json", manifest)
        planned = out.planned_keys() | {c.key for c in cases}
        out.write_json("plan.json", sorted(planned))
        pending = _pending(cases, out, options)
        limits = {s.name: options.timeout or s.resolved(preset).get("timeout", DEFAULT_TIMEOUT_S)
                  for s in suites}
        with _Progress(len(pending), options.progress) as progress:
            for case in pending:
                progress.starting(case)
                started = time.monotonic()
                out.record_attempt(case.key)
                try:
                    outcome = _execute(case, limits[case.suite], options)
                except KeyboardInterrupt:
                    out.record_attempt(case.key, "interrupted")
                    raise
                seconds = time.monotonic() - started
                out.append_case(case.key, outcome.rows, outcome.traces, outcome.artifacts, seconds)
                out.record_attempt(case.key, "finished")
                progress.finished(case, outcome, seconds)
        for suite in suites:
            _summarize(suite, preset, out, options.device, manifest["methods"])
        manifest["finished"] = now()
        out.write_json("manifest.json", manifest)
        return out.finalize()


def method_profiles(cases: Sequence[Case]) -> dict[str, dict]:
    """Per method label: the claim it is judged by and its tags, for checks and reports."""
    specs = {s.label: s for c in cases for s in ((c.method,) if c.method else ()) + tuple(c.methods)}
    out = {}
    for label, spec in specs.items():
        try:
            out[label] = {"name": spec.name, "params": dict(spec.params), "judged_as": spec.judged_as,
                          **profile(spec.build(), spec.judged_as)}
        except Exception as exc:  # noqa: BLE001 - the cases record the failure as error rows
            out[label] = {"name": spec.name, "error": f"{type(exc).__name__}: {exc}"}
    return out


def _pending(cases: list[Case], out: ResultsDir, options: RunOptions) -> list[Case]:
    """Cases still to run; cases that killed the harness itself repeatedly are recorded as errors."""
    if not options.resume:
        return cases
    done = out.completed_keys()
    if options.retry_errors:
        done -= out.errored_keys()
    deaths = out.unfinished_attempts()
    pending = []
    for case in cases:
        if case.key in done:
            continue
        if deaths[case.key] >= MAX_HARNESS_DEATHS and not options.retry_errors:
            outcome = error_outcome(case, f"lipbench itself died {deaths[case.key]} times while running "
                                          "this case; it is not run again (use --retry-errors)")
            out.append_case(case.key, outcome.rows)
            continue
        pending.append(case)
    return pending


def _execute(case: Case, timeout: float, options: RunOptions) -> CaseOutcome:
    runner = runner_for(case.kind)
    if options.isolation:
        return run_isolated(case, runner, timeout=timeout, max_memory=options.max_memory)
    return run_case(case, runner, timeout=timeout)


class _Progress:
    """A bar on a terminal; otherwise one line per finished case on stderr (CI logs, pipes)."""

    def __init__(self, total: int, enabled: bool) -> None:
        self.total, self.done, self.enabled = total, 0, enabled
        self.bar = None
        if enabled and sys.stderr.isatty():
            self.bar = tqdm(total=total, desc="cases", unit="case", file=sys.stderr, dynamic_ncols=True)

    def __enter__(self) -> "_Progress":
        return self

    def __exit__(self, *exc) -> None:
        if self.bar is not None:
            self.bar.close()

    def starting(self, case: Case) -> None:
        if self.bar is not None:
            self.bar.set_postfix_str(_describe(case)[:60])

    def finished(self, case: Case, outcome: CaseOutcome, seconds: float) -> None:
        self.done += 1
        if self.bar is not None:
            self.bar.update(1)
        elif self.enabled:
            status = "error" if outcome.failed else "ok"
            print(f"[{self.done}/{self.total}] {_describe(case)}: {status} ({seconds:.1f} s)",
                  file=sys.stderr, flush=True)


def _describe(case: Case) -> str:
    method = f" {case.method.label}" if case.method else ""
    return f"{case.suite} {case.case}{method} seed={case.seed}"


def _summarize(suite: Suite, preset: str, out: ResultsDir, device: str, profiles: dict[str, dict]) -> None:
    """Recompute a suite's suite-level rows from all its ok case rows."""
    rows = out.rows()
    mine = rows[(rows["suite"] == suite.name) & (rows["status"] == "ok") & (rows["case"] != "summary")]
    label = device_label(device)
    try:
        config = {**suite.resolved(preset), "method_profiles": profiles}
        measurements = runner_for(suite.kind).summarize(mine, config)
        new = [make_row(suite.name, "summary", "", SUMMARY_SEED, label, "{}", m) for m in measurements]
    except Exception as exc:  # noqa: BLE001 - a failing summary is an error row, not a crash
        new = [error_row(suite.name, "summary", "", SUMMARY_SEED, label, "{}", short_traceback(exc))]
    out.write_summaries(suite.name, new)


__all__ = ["RunOptions", "plan", "run_suites", "DEFAULT_TIMEOUT_S", "DEFAULT_MAX_CASES"]
