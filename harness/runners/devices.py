"""Where cases compute: ``--device`` checked before anything runs.

A device is ``cpu``, ``cuda`` or ``cuda:N``. Only runners that declare ``on_device``
(:class:`~harness.runners.spec.Declarations`) put the method's model and their measurements
on it; the others compute on the CPU whatever ``--device`` says (float64 references, Monte
Carlo of random matrices), so a run of their suites on another device is refused: its rows
and its baselines would carry the GPU's name over CPU numbers.
"""
from __future__ import annotations

import argparse
from typing import Iterable

import torch

from harness.errors import UserError
from harness.suite import Suite

from .base import runner_for

DEVICE_TYPES = ("cpu", "cuda")


def device_name(text: str) -> str:
    """An argparse type: ``cpu``, ``cuda`` or ``cuda:N``, normalised (``cuda:0`` stays ``cuda:0``)."""
    try:
        device = torch.device(text)
    except (RuntimeError, ValueError):
        device = None
    if device is None or device.type not in DEVICE_TYPES or (device.type == "cpu" and device.index is not None):
        raise argparse.ArgumentTypeError(f"expected cpu, cuda or cuda:N, got {text!r}")
    return str(device)


def computes_on_device(suite: Suite) -> bool:
    """Whether ``suite``'s runner puts its computation on ``--device``."""
    return runner_for(suite.kind).declarations.on_device


def require_on_device(suites: Iterable[Suite], device: str) -> None:
    """Refuse (exit 2) a run on another device than the CPU of suites that compute on the CPU."""
    if torch.device(device).type == "cpu":
        return
    cpu_only = [s.name for s in suites if not computes_on_device(s)]
    if cpu_only:
        raise UserError(f"--device {device}: {', '.join(cpu_only)} compute{'s' if len(cpu_only) == 1 else ''} "
                        "on the CPU whatever --device says; run "
                        f"{'it' if len(cpu_only) == 1 else 'them'} without --device")


def require_here(device: str) -> None:
    """Refuse (exit 2) a CUDA device this machine does not have (before any case starts)."""
    dev = torch.device(device)
    if dev.type != "cuda":
        return
    if not torch.cuda.is_available():
        raise UserError(f"--device {device}: torch finds no CUDA device on this machine "
                        f"(torch {torch.__version__}, torch.cuda.is_available() is false)")
    if dev.index is not None and dev.index >= torch.cuda.device_count():
        raise UserError(f"--device {device}: this machine has {torch.cuda.device_count()} CUDA device(s), "
                        f"numbered from 0")
