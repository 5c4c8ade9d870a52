"""Run suites case by case: seeded, time-limited, crash-safe and resumable.

A case that raises, returns a non-finite value or runs past its timeout becomes an
``error`` row and the run goes on; every finished case is appended to the results
folder at once, so an interrupted run keeps them and ``resume`` skips them.
"""
from __future__ import annotations

import contextlib
import random
import signal
import sys
import threading
import traceback
from typing import Iterator, Sequence

import numpy as np
import pandas as pd
import torch
from tqdm import tqdm

from harness.results import ResultsDir, build_manifest, device_label, error_row, make_row
from harness.results.manifest import now
from harness.suite import Case, MethodSpec, Suite

from .base import RunContext, runner_for

DEFAULT_TIMEOUT_S = 600.0
SUMMARY_SEED = -1


class CaseTimeout(Exception):
    """Raised inside a case that ran past its time limit."""


@contextlib.contextmanager
def time_limit(seconds: float | None) -> Iterator[None]:
    """Interrupt the enclosed code after ``seconds`` (SIGALRM; main thread only).

    A hang inside one long native call is interrupted when that call returns to Python.
    """
    if not seconds or threading.current_thread() is not threading.main_thread() \
            or not hasattr(signal, "setitimer"):
        yield
        return

    def _raise(signum, frame):
        raise CaseTimeout(f"case exceeded its timeout of {seconds:g} s")

    previous = signal.signal(signal.SIGALRM, _raise)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def short_traceback(exc: BaseException, limit: int = 6) -> str:
    lines = traceback.format_exception(type(exc), exc, exc.__traceback__, limit=-limit)
    return "".join(lines).strip()[-4000:]


def plan(suites: Sequence[Suite], preset: str, device: str,
         methods: Sequence[MethodSpec] | None = None) -> list[Case]:
    """Every case the run will execute, in order (``methods`` replaces the suites' lists)."""
    cases: list[Case] = []
    for suite in suites:
        runner = runner_for(suite.kind)
        override = list(methods) if (methods is not None and runner.uses_methods) else None
        cases += suite.cases(preset, device=device, methods=override, grouped=runner.groups_methods)
    return cases


def run_case(case: Case, timeout: float | None, artifact_dir) -> tuple[list[dict], list[dict], list[dict]]:
    """Run one case; returns (rows, traces, artifacts), an error row when anything failed."""
    label = device_label(case.device)
    method_label = case.method.label if case.method else ""
    seed_everything(case.seed)
    ctx = RunContext(device=torch.device(case.device), artifact_dir=artifact_dir)
    try:
        with time_limit(timeout):
            ctx.method = case.method.build() if case.method else None
            ctx.methods = {spec.label: spec.build() for spec in case.methods}
            measurements = list(runner_for(case.kind).run(case, ctx))
        if not measurements:
            raise RuntimeError("the runner returned no measurements")
        rows = [make_row(case.suite, case.case, method_label, case.seed, label, case.params_json, m)
                for m in measurements]
    except KeyboardInterrupt:
        raise
    except BaseException as exc:  # a failing case never stops the run
        rows = [error_row(case.suite, case.case, method_label, case.seed, label, case.params_json,
                          short_traceback(exc))]
    ident = {"suite": case.suite, "case": case.case, "method": method_label, "seed": case.seed}
    return rows, [{**ident, **t} for t in ctx.traces], [{**ident, **a} for a in ctx.artifacts]


def run_suites(suites: Sequence[Suite], preset: str, out: ResultsDir, *, device: str = "cpu",
               methods: Sequence[MethodSpec] | None = None, resume: bool = False,
               timeout: float | None = None, progress: bool = True,
               command: list[str] | None = None) -> pd.DataFrame:
    """Run every case of ``suites`` at ``preset`` into ``out``; returns all rows."""
    out.create()
    cases = plan(suites, preset, device, methods)
    done = out.completed_keys() if resume else set()
    if not resume and out.exists():
        raise FileExistsError(f"{out.path} already holds results; use --resume to continue "
                              "or choose another --out")
    manifest = build_manifest(preset=preset, suites=[s.name for s in suites],
                              seeds={s.name: s.resolved(preset)["seeds"] for s in suites},
                              device=device, started=now(), command=command)
    out.write_json("manifest.json", manifest)
    planned = {tuple(k) for k in out.read_json("plan.json", [])} | {c.key for c in cases}
    out.write_json("plan.json", sorted(planned))
    pending = [c for c in cases if c.key not in done]
    limits = {s.name: timeout or s.resolved(preset).get("timeout", DEFAULT_TIMEOUT_S) for s in suites}
    with tqdm(total=len(pending), desc="cases", unit="case", disable=not progress,
              file=sys.stderr, dynamic_ncols=True) as bar:
        for case in pending:
            bar.set_postfix_str(f"{case.suite} {case.case} {case.method.label if case.method else ''}"[:60])
            rows, traces, artifacts = run_case(case, limits[case.suite], out.artifacts)
            for record in artifacts:
                out.add_artifact(record)
            out.append_case(rows, traces, key=case.key)
            bar.update(1)
    for suite in suites:
        _summarize(suite, preset, out, device)
    manifest["finished"] = now()
    out.write_json("manifest.json", manifest)
    return out.finalize()


def _summarize(suite: Suite, preset: str, out: ResultsDir, device: str) -> None:
    """Recompute a suite's suite-level rows from all its ok rows."""
    out.drop_summaries(suite.name)
    rows = out.rows()
    mine = rows[(rows["suite"] == suite.name) & (rows["status"] == "ok")]
    config = suite.resolved(preset)
    label = device_label(device)
    try:
        measurements = runner_for(suite.kind).summarize(mine, config)
        new = [make_row(suite.name, "summary", "", SUMMARY_SEED, label, "{}", m) for m in measurements]
    except Exception as exc:
        new = [error_row(suite.name, "summary", "", SUMMARY_SEED, label, "{}", short_traceback(exc))]
    if new:
        out.append_case(new)
