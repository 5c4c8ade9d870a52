"""Run a case in a worker process the harness can kill.

Each case runs in its own process, forked from a server process that has imported torch
and the runners once (``multiprocessing``'s ``forkserver``: a fork costs ~30 ms instead of
the ~3 s of a fresh interpreter, and the server never ran a parallel region, so forking
is safe with OpenMP). The harness waits for the worker's result, and:

* kills it (SIGKILL, which nothing can catch) when it runs past the case's timeout;
* kills it when its resident memory exceeds ``max_memory`` bytes (the worker also runs
  under ``RLIMIT_DATA``, so most oversized allocations fail inside it first);
* records an ``os._exit``, a segfault or any other death as an ``error`` row naming the
  exit code or signal.

Whatever happens to the worker, the harness goes on with the next case.
"""
from __future__ import annotations

import multiprocessing
import os
import resource
import signal
import time
from multiprocessing.connection import Connection, wait
from typing import Any

from harness.observe.defendant import ended
from harness.suite import Case

from .base import Runner
from .case import CaseOutcome, error_outcome, run_case

#: Modules the server imports once, so each forked worker starts with them loaded
#: (``torch._dynamo``: torch's first optimizer step imports it, seconds per worker otherwise).
PRELOAD = ["torch", "torch._dynamo", "harness.runners.builtin", "harness.methods"]
#: How often the harness looks at a running worker's memory (seconds).
POLL_S = 0.1
_INTERRUPTED = "interrupted"
_CONTEXT: Any = None


def default_max_memory(workers: int = 1) -> int | None:
    """80% of the machine's physical memory, shared among ``workers`` (bytes)."""
    try:
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return None
    return int(total * 0.8 / max(1, workers))


def _context():
    global _CONTEXT
    if _CONTEXT is None:
        _CONTEXT = multiprocessing.get_context("forkserver")
        _CONTEXT.set_forkserver_preload(PRELOAD)
    return _CONTEXT


def _worker(conn: Connection, case: Case, runner: Runner, max_memory: int | None) -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)  # Ctrl-C ends the worker; the harness reports it
    if max_memory:
        try:
            resource.setrlimit(resource.RLIMIT_DATA, (max_memory, max_memory))
        except (ValueError, OSError):
            pass  # a hard limit below ours: the harness still watches the resident size
    try:
        outcome: Any = run_case(case, runner)
    except KeyboardInterrupt:
        outcome = _INTERRUPTED
    conn.send(outcome)
    conn.close()


def run_isolated(case: Case, runner: Runner, *, timeout: float | None,
                 max_memory: int | None) -> CaseOutcome:
    """:func:`~.case.run_case` in a fresh worker process; an error outcome if the worker dies."""
    ctx = _context()
    receive, send = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=_worker, args=(send, case, runner, max_memory), daemon=True)
    proc.start()
    send.close()
    deadline = time.monotonic() + timeout if timeout else None
    result: Any = None
    reason = ""
    try:
        while True:
            ready = wait([receive, proc.sentinel], timeout=POLL_S)
            if receive in ready:
                try:
                    result = receive.recv()
                except EOFError:
                    result = None
                break
            if proc.sentinel in ready:
                break
            if deadline is not None and time.monotonic() > deadline:
                reason = f"the case ran past its timeout of {timeout:g} s; its worker was killed"
                break
            rss = _resident_bytes(proc.pid)
            if max_memory and rss is not None and rss > max_memory:
                reason = (f"the case used {rss / 2**20:.0f} MiB, more than --max-memory "
                          f"{max_memory / 2**20:.0f} MiB; its worker was killed")
                break
    finally:
        if proc.is_alive():
            proc.kill()
        proc.join()
        receive.close()
    if result == _INTERRUPTED or proc.exitcode == -signal.SIGINT:
        raise KeyboardInterrupt
    if isinstance(result, CaseOutcome):
        return result
    return error_outcome(case, reason or _death(proc.exitcode))


def _death(code: int | None) -> str:
    return f"the case's worker process {ended(code)} before it returned a result"


def _resident_bytes(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/statm") as handle:
            return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return None
