"""The case function: run one case to its rows, traces and artifacts, whatever the case does.

Every executor calls :func:`run_case`: in a worker process the harness can kill
(:mod:`.isolation`, the default), in the harness process itself (``--no-isolation``, for
debugging), or on a cluster node. A case that raises, exits, returns a non-finite value
or no measurements becomes a single ``error`` row; only ``KeyboardInterrupt`` escapes.

The process that calls :func:`run_case` is the case's *judge*: it never builds the case's
method. Whatever runs a method's code runs in a *defendant* process forked for the case
(:func:`harness.observe.in_defendant`), which reports plain observations (or, for runners
that are not split, its measurements) that the judge reads with ``weights_only=True``
(README, "The trust model"). Method-free cases run in the judge.
"""
from __future__ import annotations

import contextlib
import os
import random
import re
import stat
import signal
import tempfile
import threading
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch
from threadpoolctl import threadpool_limits

from harness.methods.claims import description
from harness.observe import DefendantError, in_defendant
from harness.results import Measurement, device_label, error_row, make_row
from harness.suite import Case

from .base import RunContext, Runner, runner_for

#: How a case's private folder (its artifacts, and in a worker its temporary files) is named.
CASE_FOLDER_PREFIX = "lipbench-case-"


class CaseTimeout(BaseException):
    """Raised inside a case that ran past its time limit (in-process path only).

    A ``BaseException``, so a method's ``except Exception`` cannot swallow it.
    """


@dataclass
class CaseOutcome:
    """What one case produced: result rows, trace points and artifacts as ``(name, bytes)``."""

    rows: list[dict[str, Any]]
    traces: list[dict[str, Any]] = field(default_factory=list)
    artifacts: list[tuple[str, bytes]] = field(default_factory=list)

    @property
    def failed(self) -> bool:
        return any(r["status"] == "error" for r in self.rows)


@contextlib.contextmanager
def time_limit(seconds: float | None) -> Iterator[None]:
    """Interrupt the enclosed code after ``seconds`` (SIGALRM; main thread only).

    Used by the in-process path; a hang inside one native call is interrupted only when
    that call returns to Python (the worker process path kills instead).
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


def error_outcome(case: Case, message: str) -> CaseOutcome:
    """The single error row of a case that produced nothing usable."""
    return CaseOutcome([error_row(case.suite, case.case, _method_label(case), case.seed,
                                  device_label(case.device), case.params_json, message)])


def run_case(case: Case, runner: Runner | None = None, *, timeout: float | None = None,
             keep_artifacts: bool = True, threads: int | None = None, folder: Path | None = None) -> CaseOutcome:
    """Run ``case`` with ``runner`` (default: the registered one for its kind) on ``threads``
    torch intra-op threads (default: the case's own ``threads``; ``None``: torch's setting).

    ``folder``: where the case writes its artifacts, made and removed by the caller (a worker's
    folder belongs to the process that kills the worker, :func:`~.isolation.run_isolated`);
    ``None``: a temporary folder made and removed here.
    """
    runner = runner or runner_for(case.kind)
    with intra_op_threads(case.threads if threads is None else threads):
        return _run_case(case, runner, timeout, keep_artifacts, folder)


@contextlib.contextmanager
def intra_op_threads(n: int | None) -> Iterator[None]:
    """``n`` threads for torch and for NumPy/SciPy's BLAS and OpenMP pools inside the block,
    restored after (no change for ``None``/0).

    The BLAS pools matter as much as torch's: with one case per core and NumPy's OpenBLAS on
    every core (its default when ``OMP_NUM_THREADS`` is unset), the workers' threads wait for
    each other's cores; a bound_zoo case took 267 s that way and 35 s on one thread
    (docs/performance.md, "Threads").
    """
    if not n:
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(int(n))
    try:
        with threadpool_limits(limits=int(n)):
            yield
    finally:
        torch.set_num_threads(before)


def _run_case(case: Case, runner: Runner, timeout: float | None, keep_artifacts: bool,
              folder: Path | None) -> CaseOutcome:
    seed_everything(case.seed)
    own = tempfile.TemporaryDirectory(prefix=CASE_FOLDER_PREFIX) if folder is None else contextlib.nullcontext(folder)
    with own as tmp:
        ctx = RunContext(device=torch.device(case.device), artifact_dir=Path(tmp) if keep_artifacts else None,
                         judged_as=case.method.judged_as if case.method else "")
        try:
            with time_limit(timeout):
                measurements = _measurements(case, runner, ctx)
            if not measurements:
                raise RuntimeError("the runner returned no measurements")
            label = device_label(case.device)
            rows = [make_row(case.suite, case.case, _method_label(case), case.seed, label,
                             case.params_json, m) for m in measurements]
        except KeyboardInterrupt:
            raise
        except DefendantError as exc:  # the method's process raised or died: its own words
            return error_outcome(case, str(exc) + _memory_hint(exc))
        except BaseException as exc:  # noqa: BLE001 - a failing case never stops the run
            return error_outcome(case, short_traceback(exc) + _memory_hint(exc))
        artifacts = [(a["name"], data) for a in ctx.artifacts
                     if (data := _artifact_bytes(Path(tmp), a["name"])) is not None]
    ident = {"suite": case.suite, "case": case.case, "method": _method_label(case), "seed": case.seed}
    return CaseOutcome(rows, [{**ident, **t} for t in ctx.traces], artifacts)


def _measurements(case: Case, runner: Runner, ctx: RunContext) -> list[Measurement]:
    """Method-free cases here; otherwise the method runs in a defendant and, for split runners,
    the judge (this process) computes the measurements from its observations."""
    if not runner.uses_methods or (case.method is None and not case.methods):
        return list(runner.run(case, ctx))
    request = runner.request(case) if runner.split else {}
    reported = in_defendant(_defendant, case, runner, request, ctx, threads=torch.get_num_threads())
    ctx.described = reported["method"]
    ctx.traces += [{"series": str(t["series"]), "step": int(t["step"]), "value": float(t["value"])}
                   for t in reported["traces"]]
    if runner.split:
        return list(runner.judge(case, ctx, request, reported["observed"]))
    ctx.artifacts += [{"name": str(name)} for name in reported["artifacts"]]
    return [_measurement(m) for m in reported["measurements"]]


def _defendant(case: Case, runner: Runner, request: dict, judge_ctx: RunContext) -> dict:
    """What runs in the defendant's process: build the case's method(s), then observe (split
    runners) or measure (the others); everything returned is plain data."""
    seed_everything(case.seed)
    ctx = RunContext(device=judge_ctx.device, artifact_dir=judge_ctx.artifact_dir, judged_as=judge_ctx.judged_as)
    ctx.method = case.method.build() if case.method else None
    ctx.methods = {spec.label: spec.build() for spec in case.methods}
    out: dict = {"method": description(ctx.method) if ctx.method is not None else None}
    if runner.split:
        out["observed"] = runner.observe(case, ctx, request)
    else:
        out["measurements"] = [{"metric": m.metric, "value": float(m.value), "unit": m.unit,
                                "samples": None if m.samples is None else [float(x) for x in m.samples],
                                "status": m.status, "message": m.message, "case": m.case, "method": m.method}
                               for m in runner.run(case, ctx)]
        out["artifacts"] = [a["name"] for a in ctx.artifacts]
    out["traces"] = ctx.traces
    return out


def _measurement(record: dict) -> Measurement:
    """A measurement reported by a defendant (plain data), with its types enforced."""
    def text(key: str) -> str | None:
        value = record.get(key)
        return None if value is None else str(value)
    samples = record.get("samples")
    return Measurement(metric=str(record["metric"]), value=float(record["value"]), unit=str(record["unit"]),
                       samples=None if samples is None else [float(x) for x in samples],
                       status=str(record["status"]), message=str(record["message"]),
                       case=text("case"), method=text("method"))


_SAFE_NAME = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9._-]*")


def _artifact_bytes(folder: Path, name: str) -> bytes | None:
    """An artifact's bytes: a regular file directly in ``folder`` under a safe name, never
    read through a symbolic link (a defendant named it); ``None`` otherwise."""
    if not _SAFE_NAME.fullmatch(name):
        return None
    try:
        fd = os.open(folder / name, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    except OSError:
        return None
    with os.fdopen(fd, "rb") as handle:
        return handle.read() if stat.S_ISREG(os.fstat(handle.fileno()).st_mode) else None


def _method_label(case: Case) -> str:
    return case.method.label if case.method else ""


def _memory_hint(exc: BaseException) -> str:
    text = f"{type(exc).__name__}: {exc}"
    if isinstance(exc, MemoryError) or any(n in text for n in ("MemoryError", "can't allocate memory", "out of memory")):
        return "\n(the case ran out of memory: its limit is --max-memory)"
    return ""
