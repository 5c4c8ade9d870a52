"""Run a method's code in its own process (the *defendant*) and get plain observations back.

The judge (lipbench's process, or the case's worker) never runs, imports or unpickles the
method under test. :func:`in_defendant` forks a child process; the child runs
``fn(*args)`` (which builds the method, importing its module, and observes it) and writes
the plain result with :func:`.plain.save`; the judge reads it with ``weights_only=True``
(:func:`.plain.load`) once the child has exited. What the child does to its own process
(patching lipbench's measurement, torch's linear algebra, the results writer) stays there.

The child dies with the judge (``PR_SET_PDEATHSIG``: a judge killed for its timeout takes
its defendant with it) and inherits its resource limits. An exception in the child comes
back as :class:`DefendantError` carrying the child's traceback text; a child that exits or
is killed without reporting is one too, naming its exit code or signal.
"""
from __future__ import annotations

import ctypes
import os
import signal
import sys
import tempfile
import traceback
from pathlib import Path
from typing import Any, Callable

from .plain import load, save

_PR_SET_PDEATHSIG = 1


class DefendantError(RuntimeError):
    """The defendant raised (the message is its traceback) or died before reporting."""


def _die_with_parent() -> None:
    try:
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    except (OSError, AttributeError):  # not Linux: the judge still kills it when it can
        pass


def _child(fn: Callable[..., Any], args: tuple, path: str, threads: int | None) -> None:
    _die_with_parent()
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    if threads:
        import torch
        torch.set_num_threads(int(threads))
    try:
        result: Any = {"ok": fn(*args)}
    except BaseException as exc:  # noqa: BLE001 - reported to the judge as text
        lines = traceback.format_exception(type(exc), exc, exc.__traceback__, limit=-8)
        result = {"error": "".join(lines).strip()[-4000:]}
    try:
        save(Path(path), result)
    except Exception as exc:  # noqa: BLE001 - e.g. an observation that is not plain data
        save(Path(path + ".error"), {"error": f"the observations could not be written: "
                                              f"{type(exc).__name__}: {exc}"})


def in_defendant(fn: Callable[..., Any], *args: Any, threads: int | None = None) -> Any:
    """``fn(*args)`` run in a forked child process; its plain result, read back safely.

    ``fn`` and ``args`` reach the child by ``fork`` (nothing is pickled; a plain
    ``os.fork``, so a daemonic worker process may call it too); the result must be plain
    data (:func:`.plain.check_plain`). ``threads``: torch intra-op threads in the child.
    Raises :class:`DefendantError` when the child raised or died.
    """
    _preload()
    with tempfile.TemporaryDirectory(prefix="lipbench-defendant-") as tmp:
        path = os.path.join(tmp, "observations.pt")
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:  # the defendant
            code = 0
            try:
                _child(fn, args, path, threads)
            except BaseException:  # noqa: BLE001 - nothing may escape into the judge's code
                code = 1
            finally:
                sys.stdout.flush()
                sys.stderr.flush()
                os._exit(code)
        status = None
        try:
            _, status = os.waitpid(pid, 0)
        finally:
            if status is None:  # interrupted (a timeout, Ctrl-C): the defendant goes too
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
        for candidate in (path, path + ".error"):
            if os.path.lexists(candidate):
                report = load(Path(candidate))
                break
        else:
            raise DefendantError(_death(os.waitstatus_to_exitcode(status)))
    if not isinstance(report, dict) or not ({"ok"} == set(report) or {"error"} == set(report)):
        raise DefendantError("the defendant process reported something other than its observations")
    if "error" in report:
        raise DefendantError(str(report["error"]))
    return report["ok"]


def _preload() -> None:
    """Import here, once, what every defendant would otherwise import on its own: torch's first
    optimizer step imports ``torch._dynamo`` (hundreds of modules, seconds); forked children
    share the parent's imports."""
    import torch._dynamo  # noqa: F401


def ended(code: int | None) -> str:
    """How a process ended, from its exit code: ``"was killed by SIGSEGV"``, ``"exited with code 7"``."""
    if code is not None and code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        return f"was killed by {name}"
    return f"exited with code {code}"


def _death(code: int | None) -> str:
    return f"the defendant process (running the method's code) {ended(code)} before it reported its observations"


__all__ = ["DefendantError", "ended", "in_defendant"]
