"""SIGINT, SIGTERM and SIGHUP end a run alike: workers killed, finished cases kept, one line.

Within :func:`stop_on_signals` (the main thread of ``lipbench``, and every run) each of the
three signals raises :class:`Terminated` (a ``KeyboardInterrupt``) in the main thread: the
executor kills every worker's process group, the running cases are recorded as interrupted
(not as deaths of the harness, so an external ``kill`` never turns a healthy case into an
error) and the command line exits ``128 + signal`` (130, 143, 129). A signal ignored when
lipbench started (``nohup``, a background job) stays ignored.

Who sent a signal decides what it means. The three signals are blocked in lipbench's
threads and taken by a watcher thread with ``sigtimedwait``, which sees the sender's PID:
a signal sent by a running case (its worker or anything the worker started, found in the
process table at that moment) is that case's doing (:func:`blame_with`: the case is killed
and becomes an ``error`` row, so a variant cannot stop every ``--resume`` by signalling
lipbench); any other sender is a stop from outside. A sender that has already exited when
the watcher looks (a ``/bin/kill`` a case started, gone within milliseconds) cannot be told
from an operator's ``/bin/kill`` and counts as one. Processes lipbench starts unblock the
signals themselves (the case's worker) or are started outside the block (a local Ray cluster).

:func:`deferred` sections (appending a record, preparing a folder) finish before a signal
that arrives during them is raised, so an interruption never leaves a half-written record.
"""
from __future__ import annotations

import _thread
import contextlib
import os
import signal
import threading
from typing import Any, Callable, Iterator

SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
#: How often the watcher looks up from ``sigtimedwait`` to see whether the block has ended (s).
WATCH_S = 0.1
_received: list[int] = []  # stop signals from outside, received in this process (newest last)
_deferring = 0
_pending: int | None = None
_watching: set[int] = set()  # the signals blocked and watched now (empty: none)
_blame_hooks: list[Callable[[int, int], bool]] = []


class Terminated(KeyboardInterrupt):
    """lipbench was told to stop by ``signum`` (SIGINT, SIGTERM or SIGHUP)."""

    def __init__(self, signum: int = signal.SIGINT) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = int(signum)

    @property
    def exit_code(self) -> int:
        return 128 + self.signum

    @property
    def name(self) -> str:
        return signal.Signals(self.signum).name


def _handler(signum: int, frame: Any) -> None:
    global _pending
    _received.append(signum)
    if _deferring:
        _pending = signum
        return
    raise Terminated(signum)


def blame_with(hook: Callable[[int, int], bool]) -> None:
    """Ask ``hook(signum, sender_pid)`` about every stop signal: True when the sender was a case,
    which the hook has dealt with (the signal then does not stop lipbench)."""
    _blame_hooks.append(hook)


@contextlib.contextmanager
def stop_on_signals() -> Iterator[None]:
    """Raise :class:`Terminated` on SIGINT, SIGTERM and SIGHUP from outside within the block
    (main thread only, once; elsewhere, and for signals ignored by the caller, nothing changes)."""
    if threading.current_thread() is not threading.main_thread() or _watching:
        yield
        return
    previous = {}
    for signum in SIGNALS:
        current = signal.getsignal(signum)
        if current is signal.SIG_IGN:
            continue
        previous[signum] = current
        signal.signal(signum, _handler)
    stop = threading.Event()
    watched = set(previous)
    mask = signal.pthread_sigmask(signal.SIG_BLOCK, watched)  # threads started in the block inherit it
    _watching.update(watched)
    watcher = threading.Thread(target=_watch, args=(watched, stop), name="lipbench-signals", daemon=True)
    watcher.start()
    try:
        yield
    finally:
        stop.set()
        watcher.join()
        _watching.clear()
        try:
            signal.pthread_sigmask(signal.SIG_SETMASK, mask)  # one still pending is raised here
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler)


def _watch(signals: set[int], stop: threading.Event) -> None:
    """Take every stop signal with its sender: a case's is blamed on it, any other stops lipbench."""
    while not stop.is_set():
        info = signal.sigtimedwait(signals, WATCH_S)
        if info is None:
            continue
        sender = info.si_pid
        if sender not in (0, os.getpid()) and any(hook(info.si_signo, sender) for hook in _blame_hooks):
            continue
        _received.append(info.si_signo)
        _thread.interrupt_main(info.si_signo)  # lipbench's handler runs in the main thread


def keep_blocked() -> None:
    """Block the watched signals in this thread again: starting a process may unblock them
    (``multiprocessing``'s resource tracker unblocks SIGINT and SIGTERM when it starts)."""
    if _watching:
        signal.pthread_sigmask(signal.SIG_BLOCK, _watching)


@contextlib.contextmanager
def unblocked() -> Iterator[None]:
    """The stop signals delivered as usual in this thread within the block (to start processes
    that must not inherit them blocked)."""
    if not _watching:
        yield
        return
    mask = signal.pthread_sigmask(signal.SIG_UNBLOCK, _watching)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, mask)


@contextlib.contextmanager
def deferred() -> Iterator[None]:
    """Hold a signal that arrives in the block until the block has finished, then raise it
    (main thread only: the handler runs there; elsewhere nothing changes)."""
    global _deferring, _pending
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    _deferring += 1
    try:
        yield
    finally:
        _deferring -= 1
        if _deferring == 0 and _pending is not None:
            signum, _pending = _pending, None
            raise Terminated(signum)


def received_since(mark: int) -> int | None:
    """The first stop signal received after :func:`mark` returned ``mark`` (``None``: none)."""
    return _received[mark] if len(_received) > mark else None


def mark() -> int:
    """A position in the history of received signals (see :func:`received_since`)."""
    return len(_received)
