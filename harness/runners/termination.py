"""SIGINT, SIGTERM and SIGHUP end a run alike: workers killed, finished cases kept, one line.

Within :func:`stop_on_signals` (the main thread of ``lipbench``, and every run) each of the
three signals raises :class:`Terminated` (a ``KeyboardInterrupt``) in the main thread: the
executor kills every worker's process group, the running cases are recorded as interrupted
(not as deaths of the harness, so an external ``kill`` never turns a healthy case into an
error) and the command line exits ``128 + signal`` (130, 143, 129). A signal ignored when
lipbench started (``nohup``, a background job) stays ignored.

:func:`deferred` sections (appending a record, preparing a folder) finish before a signal
that arrives during them is raised, so an interruption never leaves a half-written record.
"""
from __future__ import annotations

import contextlib
import signal
import threading
from typing import Any, Iterator

SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
_received: list[int] = []  # signals received by the handler in this process (newest last)
_deferring = 0
_pending: int | None = None


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


@contextlib.contextmanager
def stop_on_signals() -> Iterator[None]:
    """Raise :class:`Terminated` on SIGINT, SIGTERM and SIGHUP within the block (main thread
    only; elsewhere, and for signals ignored by the caller, nothing changes)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {}
    for signum in SIGNALS:
        current = signal.getsignal(signum)
        if current is signal.SIG_IGN:
            continue
        previous[signum] = current
        signal.signal(signum, _handler)
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


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
