"""Observations as plain data: what crosses from the defendant's process to the judge's.

The process that runs a method's code (the *defendant*) reports only plain data: tensors,
numbers, strings, booleans, ``None``, and lists, tuples and string-keyed dicts of them.
It is written with ``torch.save`` and read back with ``torch.load(weights_only=True)``,
whose unpickler rebuilds tensors and containers and refuses everything else (no object
of the defendant's can run code in the judge). :func:`check_plain` refuses anything else
before it is written, and again after it is read (a tensor subclass comes back a tensor).
"""
from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Any

import torch

#: Scalar types an observation may hold besides tensors.
SCALARS = (bool, int, float, str, type(None))


class ObservationError(ValueError):
    """Observations that are not plain data, or a file that is not a regular file."""


def check_plain(value: Any, where: str = "observations") -> None:
    """Raise :class:`ObservationError` naming the first value that is not plain data."""
    if isinstance(value, torch.Tensor):
        if type(value) is not torch.Tensor and not isinstance(value, torch.nn.Parameter):
            raise ObservationError(f"{where} is a {type(value).__name__}, not a plain tensor")
        return
    if isinstance(value, SCALARS):
        return
    if isinstance(value, (list, tuple)):
        for i, item in enumerate(value):
            check_plain(item, f"{where}[{i}]")
        return
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                raise ObservationError(f"{where} has the key {key!r}, not a string")
            check_plain(item, f"{where}[{key!r}]")
        return
    raise ObservationError(f"{where} is a {type(value).__name__}, not plain data")


def plain(value: Any) -> Any:
    """``value`` with every tensor detached, on the CPU and a plain ``torch.Tensor``."""
    if isinstance(value, torch.Tensor):
        return value.detach().to("cpu").clone().as_subclass(torch.Tensor)
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    return value


def save(path: Path, value: Any) -> None:
    """Write plain ``value`` to ``path`` (a new file; the defendant writes it once)."""
    value = plain(value)
    check_plain(value)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), 0o600)
    with os.fdopen(fd, "wb") as handle:
        torch.save(value, handle)


def load(path: Path) -> Any:
    """Read what :func:`save` wrote: ``weights_only=True``, never through a symbolic link."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    except OSError as exc:
        raise ObservationError(f"cannot open the observations {path}: {exc}") from exc
    with os.fdopen(fd, "rb") as handle:
        if not stat.S_ISREG(os.fstat(handle.fileno()).st_mode):
            raise ObservationError(f"the observations {path} are not a regular file")
        try:
            value = torch.load(handle, map_location="cpu", weights_only=True)
        except Exception as exc:  # noqa: BLE001 - anything the restricted unpickler refuses
            raise ObservationError(f"the observations {path} are not plain data: "
                                   f"{type(exc).__name__}: {exc}") from exc
    check_plain(value)
    return plain(value)


__all__ = ["ObservationError", "SCALARS", "check_plain", "load", "plain", "save"]
