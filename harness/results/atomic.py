"""Files lipbench writes: atomic, never through a symbolic link, never onto what is not a file.

Every file operation goes through a file descriptor of its folder. The folder a user names
(``--out``, ``--baselines``, the folder of ``-o FILE``) is opened as named; every name inside
it is opened with ``O_NOFOLLOW``, so a link planted there is refused, never followed:

* :func:`write_file`: a temporary file with a unique name (``O_CREAT | O_EXCL``) in the
  target's own folder, written, fsynced and renamed over the target (readers see the old
  file or the new one, never half). A target that is a folder, a link, a FIFO or a device
  is refused (:class:`UnsafePathError`), never replaced.
* :func:`append_file`: one ``O_APPEND`` write, fsynced (a crash tears at most that line).
* :func:`read_file`: a regular file's bytes; a FIFO or device is refused, so nothing hangs.
* :func:`remove_file`: unlinks a regular file only.
* :func:`write_output`: a file the user named on the command line (report, JUnit, HTML),
  refused inside a results folder, where lipbench writes only its own records.

Files are created ``0666`` less the umask (readable by others under the usual umask).
"""
from __future__ import annotations

import contextlib
import errno
import os
import secrets
import stat
from pathlib import Path
from typing import Iterator

from harness.errors import UserError

#: Marker file of a results folder: lipbench created it (``harness.results.store``).
MARKER = ".lipbench-results"
_NOFOLLOW = os.O_NOFOLLOW | os.O_CLOEXEC
_FOLDER = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC


class UnsafePathError(UserError):
    """A path lipbench will not write, replace or delete: a link, a folder, a device, or a
    place it does not own; the message names it."""


def _kind(mode: int) -> str:
    if stat.S_ISLNK(mode):
        return "a symbolic link"
    if stat.S_ISDIR(mode):
        return "a folder"
    return "not a regular file"


def oserror(label: str | Path, exc: OSError, doing: str) -> UserError:
    """One line naming the path and the system's reason (permissions, read-only, disk full)."""
    return UnsafePathError(f"{label}: cannot {doing}: {exc.strerror or exc}")


@contextlib.contextmanager
def open_folder(path: str | Path, *, create: bool = False) -> Iterator[int]:
    """A descriptor of the folder ``path`` (created with its parents when ``create``)."""
    path = Path(path)
    if create:
        try:
            path.mkdir(parents=True, exist_ok=True)
        except FileExistsError:
            raise UnsafePathError(f"{path}: exists and is not a folder") from None
        except OSError as exc:
            raise oserror(path, exc, "create the folder") from None
    try:
        fd = os.open(path, _FOLDER)
    except FileNotFoundError:
        raise UnsafePathError(f"{path}: no such folder") from None
    except NotADirectoryError:
        raise UnsafePathError(f"{path}: exists and is not a folder") from None
    except OSError as exc:
        raise oserror(path, exc, "open the folder") from None
    try:
        yield fd
    finally:
        os.close(fd)


def open_subfolder(dir_fd: int, name: str, label: str | Path, *, create: bool) -> int | None:
    """A descriptor of the folder ``name`` inside ``dir_fd`` (never a link to one); ``None`` when
    it is absent and ``create`` is false. The caller closes it."""
    for _ in range(2):
        try:
            return os.open(name, _FOLDER | os.O_NOFOLLOW, dir_fd=dir_fd)
        except FileNotFoundError:
            if not create:
                return None
            with contextlib.suppress(FileExistsError):
                os.mkdir(name, 0o777, dir_fd=dir_fd)
        except OSError as exc:
            if exc.errno in (errno.ELOOP, errno.ENOTDIR):
                raise UnsafePathError(f"{label}: is {_kind(_lstat(dir_fd, name))}; lipbench never writes "
                                      "through a link or into what is not its folder") from None
            raise oserror(label, exc, "open the folder") from None
    raise UnsafePathError(f"{label}: cannot create the folder")


def _lstat(dir_fd: int, name: str) -> int:
    try:
        return os.stat(name, dir_fd=dir_fd, follow_symlinks=False).st_mode
    except OSError:
        return 0


def check_replaceable(dir_fd: int, name: str, label: str | Path) -> bool:
    """True when ``name`` exists as a regular file, False when absent; refuses anything else."""
    mode = _lstat(dir_fd, name)
    if mode == 0:
        return False
    if not stat.S_ISREG(mode):
        raise UnsafePathError(f"{label}: is {_kind(mode)}; lipbench only replaces regular files "
                              "and never writes through a link")
    return True


def write_file(dir_fd: int, name: str, data: bytes | str, label: str | Path) -> None:
    """Replace ``name`` in ``dir_fd`` with ``data``, atomically, through a uniquely named temporary."""
    payload = data.encode("utf-8") if isinstance(data, str) else data
    check_replaceable(dir_fd, name, label)
    tmp = f".{name[:200]}.{secrets.token_hex(6)}.tmp"
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _NOFOLLOW, 0o666, dir_fd=dir_fd)
    except OSError as exc:
        raise oserror(label, exc, "write") from None
    try:
        try:
            _write_all(fd, payload)
            os.fsync(fd)
        finally:
            os.close(fd)
        check_replaceable(dir_fd, name, label)
        os.replace(tmp, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
    except BaseException as exc:
        with contextlib.suppress(OSError):
            os.unlink(tmp, dir_fd=dir_fd)
        if isinstance(exc, OSError) and not isinstance(exc, UserError):
            raise oserror(label, exc, "write") from None
        raise


def append_file(dir_fd: int, name: str, data: bytes | str, label: str | Path) -> None:
    """Append ``data`` (whole lines) in one write and fsync it: a crash loses at most this call."""
    payload = data.encode("utf-8") if isinstance(data, str) else data
    try:
        fd = os.open(name, os.O_WRONLY | os.O_APPEND | os.O_CREAT | _NOFOLLOW, 0o666, dir_fd=dir_fd)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            check_replaceable(dir_fd, name, label)
        raise oserror(label, exc, "append to") from None
    try:
        check_own(fd, label)
        _write_all(fd, payload)
        os.fsync(fd)
    except OSError as exc:
        raise oserror(label, exc, "append to") from None
    finally:
        os.close(fd)


def check_own(fd: int, label: str | Path) -> None:
    """Refuse to change a file in place unless it is a regular file with no other name (a hard
    link from elsewhere would carry the change to a file lipbench did not write)."""
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode):
        raise UnsafePathError(f"{label}: is not a regular file; lipbench only changes its own records")
    if info.st_nlink > 1:
        raise UnsafePathError(f"{label}: has {info.st_nlink} names (a hard link); lipbench changes in place only "
                              "files it wrote")


def read_file(dir_fd: int, name: str, label: str | Path, *, follow: bool = False) -> bytes | None:
    """The bytes of the regular file ``name`` (``None`` when absent); links are refused unless
    ``follow``, and FIFOs and devices always (reading one could block forever)."""
    flags = os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC | (0 if follow else os.O_NOFOLLOW)
    try:
        fd = os.open(name, flags, dir_fd=dir_fd)
    except FileNotFoundError:
        return None
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise UnsafePathError(f"{label}: is a symbolic link; lipbench reads its records only from "
                                  "files it wrote") from None
        raise oserror(label, exc, "read") from None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise UnsafePathError(f"{label}: is not a regular file")
        chunks = []
        while chunk := os.read(fd, 1 << 20):
            chunks.append(chunk)
        return b"".join(chunks)
    except OSError as exc:
        raise oserror(label, exc, "read") from None
    finally:
        os.close(fd)


def remove_file(dir_fd: int, name: str, label: str | Path) -> None:
    """Unlink the regular file ``name`` (absent: nothing to do; anything else: refused)."""
    if check_replaceable(dir_fd, name, label):
        try:
            os.unlink(name, dir_fd=dir_fd)
        except FileNotFoundError:
            pass
        except OSError as exc:
            raise oserror(label, exc, "remove") from None


def _write_all(fd: int, payload: bytes) -> None:
    view = memoryview(payload)
    while view:
        view = view[os.write(fd, view):]


def results_folder_of(path: str | Path) -> Path | None:
    """The results folder ``path`` lies in (itself or an ancestor carrying the marker), if any."""
    here = Path(os.path.abspath(path))
    for folder in (here, *here.parents):
        with contextlib.suppress(OSError):
            if (folder / MARKER).is_file():
                return folder
    real = Path(os.path.realpath(path))
    if real != here:
        return results_folder_of(real)
    return None


def check_output_path(path: str | Path, flag: str) -> Path:
    """``path`` as a file lipbench may write for the user: not a folder, not inside a results folder."""
    path = Path(path)
    if path.is_dir():
        raise UnsafePathError(f"{flag} {path}: is a folder; name a file")
    if not path.name or path.name in (".", ".."):
        raise UnsafePathError(f"{flag} {path}: name a file")
    owner = results_folder_of(path.parent)
    if owner is not None:
        raise UnsafePathError(f"{flag} {path}: inside the results folder {owner}, where lipbench writes only "
                              "its own records; choose a path outside it")
    for parent in path.parents:
        if parent.exists() and not parent.is_dir():
            raise UnsafePathError(f"{flag} {path}: {parent} is not a folder")
    return path


def write_output(path: str | Path, data: bytes | str, flag: str = "output") -> Path:
    """Write a file the user named (a report, JUnit XML, an HTML page), atomically, its folder
    created as needed; see :func:`check_output_path` for what is refused."""
    path = check_output_path(path, flag)
    with open_folder(path.parent if str(path.parent) else ".", create=True) as fd:
        write_file(fd, path.name, data, f"{flag} {path}")
    return path


def atomic_write_text(path: str | Path, text: str) -> None:
    """Write ``text`` to ``path`` atomically (its folder as named; the file itself never a link)."""
    path = Path(path)
    with open_folder(path.parent, create=True) as fd:
        write_file(fd, path.name, text, path)
