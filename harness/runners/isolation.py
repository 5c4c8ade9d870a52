"""Run a case in a worker process the harness can kill, together with everything it started.

Each case runs in its own process, forked from a server process that has imported torch
and the runners once (``multiprocessing``'s ``forkserver``: a fork costs ~30 ms instead of
the ~3 s of a fresh interpreter, and the server never ran a parallel region, so forking
is safe with OpenMP). The worker starts a session of its own, so it and every process it
starts form one process group that no terminal signal reaches, and it adopts the orphans
of its descendants (``PR_SET_CHILD_SUBREAPER``), so one that leaves the group (``setsid``,
a double fork) is still found among the worker's descendants. The harness kills the group
and every descendant (SIGKILL) when the case:

* runs past its timeout;
* makes the resident memory of the group and the worker's descendants exceed ``max_memory``
  bytes (each process also runs under ``RLIMIT_DATA``, so most oversized allocations fail
  inside it first);
* ends in any way: what the case started never outlives it (nor holds lipbench's output);
* or when lipbench itself is stopped (:func:`kill_all`; the worker also dies with the
  fork server, ``PR_SET_PDEATHSIG``, if lipbench is killed outright).

The case's folder (its artifacts, and every temporary file the case makes: ``TMPDIR`` points
into it) is made here, private (mode 0700), before the worker starts, and removed here once the
worker is gone, whatever ended it (:func:`case_folder`): a worker killed by SIGKILL cannot clean
up after itself. Only lipbench killed outright (SIGKILL) leaves a folder behind.

An ``os._exit``, a segfault or any other death is an ``error`` row naming the exit code or
signal, and so is a ``KeyboardInterrupt`` or ``SystemExit`` raised by the code under test.
A worker ended by SIGINT, SIGTERM or SIGHUP while lipbench received one too was stopped
from outside: that stops the run (:class:`~.termination.Terminated`), it is not the case's
failure. Whatever happens to the worker, the harness goes on with the next case.
"""
from __future__ import annotations

import contextlib
import ctypes
import math
import multiprocessing
import os
import resource
import shutil
import signal
import tempfile
import threading
import time
from multiprocessing.connection import Connection, wait
from pathlib import Path
from typing import Any, Iterator

from harness.observe.defendant import ended
from harness.suite import Case

from .base import Runner
from .case import CASE_FOLDER_PREFIX, CaseOutcome, error_outcome, run_case, short_traceback
from .termination import SIGNALS, Terminated, blame_with, deferred, keep_blocked, mark, received_since

#: Modules the server imports once, so each forked worker starts with them loaded
#: (``torch._dynamo``: torch's first optimizer step imports it, seconds per worker otherwise).
PRELOAD = ["torch", "torch._dynamo", "harness.runners.builtin", "harness.methods"]
#: How often the harness looks at a running worker's memory (seconds); the whole process
#: group is summed every ``GROUP_POLL_S`` (a scan of /proc), the worker alone in between.
POLL_S = 0.1
GROUP_POLL_S = 0.5
#: How long a worker ended by a stop signal waits for lipbench's own handler to tell an
#: external stop (the whole process tree signalled) from the case signalling itself.
STOP_GRACE_S = 0.5
#: How long a worker that returned its result may take to exit by itself before it is killed.
EXIT_GRACE_S = 2.0
#: What a worker sends once it runs, before the case: a case's timeout counts from there, not
#: from the fork server's first start (which imports torch: seconds, a minute on a loaded machine).
STARTED = "started"
#: How long a worker may take to start (the fork server's imports included).
START_LIMIT_S = 600.0
_CONTEXT: Any = None
_LIVE: set[int] = set()  # process groups of running workers
_LIVE_LOCK = threading.Lock()
_BLAMED: dict[int, int] = {}  # worker -> the stop signal its case sent to lipbench
_PR_SET_PDEATHSIG = 1
_PR_SET_CHILD_SUBREAPER = 36


def default_max_memory(workers: int = 1) -> int | None:
    """80% of the machine's physical memory, shared among ``workers`` (bytes)."""
    total = physical_memory()
    return None if total is None else int(total * 0.8 / max(1, workers))


def physical_memory() -> int | None:
    """This machine's physical memory in bytes (``None`` when unknown)."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return None


def _context():
    global _CONTEXT
    if _CONTEXT is None:
        _CONTEXT = multiprocessing.get_context("forkserver")
        _CONTEXT.set_forkserver_preload(PRELOAD)
    return _CONTEXT


def _worker(conn: Connection, case: Case, runner: Runner, max_memory: int | None, folder: Path) -> None:
    os.setsid()  # a process group of its own: killed as one, out of reach of terminal signals
    signal.pthread_sigmask(signal.SIG_UNBLOCK, SIGNALS)  # lipbench blocks them (termination); a case must not
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)  # dies with the fork server (with lipbench)
        libc.prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)  # orphans of its descendants stay in its tree
    for signum in SIGNALS:
        signal.signal(signum, signal.SIG_DFL)
    if max_memory:
        try:
            resource.setrlimit(resource.RLIMIT_DATA, (max_memory, max_memory))
        except (ValueError, OSError):
            pass  # a hard limit below ours: the harness still watches the resident size
    # every temporary file of the case (its defendants', its children's) goes into its folder
    tempfile.tempdir = os.environ["TMPDIR"] = str(folder)
    conn.send(STARTED)
    try:
        outcome: Any = run_case(case, runner, folder=folder)
    except KeyboardInterrupt as exc:  # raised by the code under test: no signal reaches a worker's session
        outcome = error_outcome(case, short_traceback(exc))
    conn.send(outcome)
    conn.close()


def run_isolated(case: Case, runner: Runner, *, timeout: float | None,
                 max_memory: int | None) -> CaseOutcome:
    """:func:`~.case.run_case` in a fresh worker process; an error outcome if the worker dies."""
    with case_folder() as folder:
        return _supervise(case, runner, folder, timeout, max_memory)


@contextlib.contextmanager
def case_folder() -> Iterator[Path]:
    """A private folder (mode 0700) for one case, removed when the block ends in any way.

    Removal never follows a symbolic link: one planted inside is removed, not its target
    (``shutil.rmtree`` works through directory descriptors), and a folder replaced by a link
    is left alone.
    """
    folder = None
    try:
        with deferred():  # a stop signal arriving now is raised once the folder is known
            folder = tempfile.mkdtemp(prefix=CASE_FOLDER_PREFIX)
        yield Path(folder)
    finally:
        if folder is not None:
            with deferred():
                shutil.rmtree(folder, ignore_errors=True)


def _supervise(case: Case, runner: Runner, folder: Path, timeout: float | None,
               max_memory: int | None) -> CaseOutcome:
    """Start the case's worker in ``folder``, watch its time and memory, and end it (with all it started)."""
    ctx = _context()
    receive, send = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=_worker, args=(send, case, runner, max_memory, folder), daemon=True)
    since = mark()
    proc.start()
    keep_blocked()
    with _LIVE_LOCK:
        _LIVE.add(proc.pid)
    send.close()
    deadline = None  # set once the worker runs
    start_by = time.monotonic() + START_LIMIT_S
    result: Any = None
    reason = ""
    next_group_poll = 0.0
    try:
        while True:
            ready = wait([receive, proc.sentinel], timeout=POLL_S)
            if receive in ready:
                try:
                    result = receive.recv()
                except EOFError:
                    result = None
                if isinstance(result, str) and result == STARTED:
                    result, deadline = None, time.monotonic() + timeout if timeout else math.inf
                    continue
                break
            if proc.sentinel in ready:
                break
            if deadline is None and time.monotonic() > start_by:
                reason = f"the case's worker did not start within {START_LIMIT_S:g} s; it was killed"
                break
            if deadline is not None and time.monotonic() > deadline:
                reason = (f"the case ran past its timeout of {timeout:g} s; its worker and every process "
                          "it started were killed")
                break
            if max_memory:
                now = time.monotonic()
                rss = _resident_bytes(proc.pid)
                if now >= next_group_poll:
                    rss, next_group_poll = tree_resident_bytes(proc.pid), now + GROUP_POLL_S
                if rss is not None and rss > max_memory:
                    reason = (f"the case used {rss / 2**20:.0f} MiB (its worker and the processes it started), "
                              f"more than --max-memory {max_memory / 2**20:.0f} MiB; they were killed")
                    break
    finally:
        with deferred():
            if result is not None:
                proc.join(EXIT_GRACE_S)  # its own exit first (finalizers), then whatever it left running
            kill_tree(proc.pid)
            if proc.is_alive():
                proc.kill()
            proc.join()
            receive.close()
            with _LIVE_LOCK:
                _LIVE.discard(proc.pid)
    if isinstance(result, CaseOutcome):
        return result
    blamed = _BLAMED.pop(proc.pid, None)
    if blamed is not None:
        return error_outcome(case, f"the case sent {signal.Signals(blamed).name} to lipbench itself (PID "
                                   f"{os.getpid()}); its worker and every process it started were killed")
    stopped = _stop_signal(proc.exitcode, since) if not reason else None
    if stopped is not None:
        raise Terminated(stopped)
    return error_outcome(case, reason or _death(proc.exitcode))


def _stop_signal(code: int | None, since: int) -> int | None:
    """The stop signal lipbench received when its worker died of one (``None``: the case's own death)."""
    if code is None or -code not in SIGNALS:
        return None
    deadline = time.monotonic() + STOP_GRACE_S
    while time.monotonic() < deadline:
        found = received_since(since)
        if found is not None:
            return found
        time.sleep(0.02)  # in the main thread, lipbench's handler raises Terminated here
    return None


def kill_tree(worker: int) -> None:
    """SIGKILL a worker, its process group and every descendant (twice over: one may fork meanwhile)."""
    for _ in range(2):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(worker, signal.SIGKILL)
        for pid in _tree(worker, _processes()) - {worker}:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)


def _blame(signum: int, sender: int) -> bool:
    """A stop signal sent by a running case (its worker or a descendant): kill that case."""
    table = _processes()
    with _LIVE_LOCK:
        workers = list(_LIVE)
    for worker in workers:
        if sender in _tree(worker, table):
            _BLAMED[worker] = signum
            kill_tree(worker)
            return True
    return False


blame_with(_blame)


def kill_all() -> None:
    """Kill every running worker with everything it started (lipbench is stopping)."""
    with _LIVE_LOCK:
        workers = list(_LIVE)
    for worker in workers:
        kill_tree(worker)


def _death(code: int | None) -> str:
    return f"the case's worker process {ended(code)} before it returned a result"


def _resident_bytes(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/statm") as handle:
            return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return None


def _processes() -> dict[int, tuple[int, int]]:
    """Every process as ``pid -> (parent pid, process group)``, from /proc (empty without it)."""
    table = {}
    try:
        entries = os.listdir("/proc")
    except OSError:
        return table
    for entry in entries:
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as handle:
                fields = handle.read().rsplit(b")", 1)[1].split()
            table[int(entry)] = (int(fields[1]), int(fields[2]))
        except (OSError, IndexError, ValueError):
            continue
    return table


def _tree(worker: int, table: dict[int, tuple[int, int]]) -> set[int]:
    """The worker, its process group and all its descendants."""
    found = {pid for pid, (_, group) in table.items() if group == worker} | {worker}
    children: dict[int, list[int]] = {}
    for pid, (parent, _) in table.items():
        children.setdefault(parent, []).append(pid)
    stack = list(found)
    while stack:
        for child in children.get(stack.pop(), []):
            if child not in found:
                found.add(child)
                stack.append(child)
    return found


def tree_resident_bytes(worker: int) -> int | None:
    """Resident memory of a worker, its process group and its descendants (``None``: unknown)."""
    sizes = [size for pid in _tree(worker, _processes()) if (size := _resident_bytes(pid)) is not None]
    return sum(sizes) if sizes else None
