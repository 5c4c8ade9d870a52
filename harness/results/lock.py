"""One writer per folder: an OS lock on the folder itself.

``flock(2)`` on a descriptor of the folder: exclusive for a writer (a run, ``baseline
update``), shared for readers (``report``, ``compare``, ``baseline update`` reading runs).
The kernel drops the lock when its holder dies, however it dies, so a lock is never stale,
whatever PID it had (PID 1 in a container included) and across PID namespaces; nothing is
written to take it, so a read-only folder can be read under a shared lock. Forked children
(a case run in-process may fork) close their copy at once, so they never keep it alive.
"""
from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import time
from pathlib import Path
from typing import Iterator

from harness.errors import UserError

#: Descriptors of the locks this process holds (closed in forked children).
_HELD: set[int] = set()
#: How often a waiting lock tries again (seconds).
_RETRY_S = 0.1


class FolderBusyError(UserError):
    """Another lipbench process holds the folder; the message names its PID when known."""


def _close_in_child() -> None:
    for fd in list(_HELD):
        with contextlib.suppress(OSError):
            os.close(fd)
    _HELD.clear()


os.register_at_fork(after_in_child=_close_in_child)


@contextlib.contextmanager
def folder_lock(path: str | Path, *, shared: bool = False, wait: float = 0.0,
                busy: str = "another lipbench process") -> Iterator[int]:
    """Hold ``path`` (a folder that exists) for the block; yields its descriptor.

    Waits up to ``wait`` seconds for another holder to finish, then raises
    :class:`FolderBusyError` (``busy`` says who the other one is, its PID is added).
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except NotADirectoryError:
        raise UserError(f"{path}: exists and is not a folder") from None
    except OSError as exc:
        raise UserError(f"{path}: cannot open the folder: {exc.strerror}") from None
    deadline = time.monotonic() + wait
    try:
        while True:
            try:
                fcntl.flock(fd, (fcntl.LOCK_SH if shared else fcntl.LOCK_EX) | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    pids = holders(fd)
                    who = f" (PID {', '.join(map(str, pids))})" if pids else ""
                    raise FolderBusyError(f"{path}: {busy}{who} is using this folder; "
                                          "wait for it to finish") from None
                time.sleep(_RETRY_S)
            except OSError as exc:
                if exc.errno == errno.EINTR:
                    continue
                raise UserError(f"{path}: cannot lock the folder ({exc.strerror}); lipbench needs a file "
                                "system with flock(2) to keep one writer per folder") from None
    except BaseException:
        os.close(fd)
        raise
    _HELD.add(fd)
    try:
        yield fd
    finally:
        _HELD.discard(fd)
        os.close(fd)


def holders(fd: int) -> list[int]:
    """PIDs holding a flock on the file of ``fd`` (from ``/proc/locks``; empty when unknown)."""
    info = os.fstat(fd)
    ident = f"{os.major(info.st_dev):02x}:{os.minor(info.st_dev):02x}:{info.st_ino}"
    try:
        text = Path("/proc/locks").read_text()
    except OSError:
        return []
    pids = []
    for line in text.splitlines():
        parts = line.split()
        if "->" in parts:  # a waiter, not a holder
            continue
        if len(parts) >= 6 and parts[1] == "FLOCK" and parts[5] == ident and parts[4].isdigit():
            pid = int(parts[4])
            if pid and pid not in pids:
                pids.append(pid)
    return pids
