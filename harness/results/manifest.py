"""Provenance of a run: code version, packages, device, seeds, command line, times."""
from __future__ import annotations

import os
import platform
import sys
from datetime import datetime, timezone
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import torch

from harness.shipped import build_info, git_commit

#: Environment variables that change float rounding or timing (recorded with every run).
ENV_KEYS = ("ATEN_CPU_CAPABILITY", "ONEDNN_MAX_CPU_ISA", "MKL_ENABLE_INSTRUCTIONS", "MKL_CBWR", "OMP_NUM_THREADS",
            "MKL_NUM_THREADS", "CUDA_VISIBLE_DEVICES")
PACKAGES = ("lipbench", "torch", "torchvision", "numpy", "scipy", "pandas", "clean-fid")


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def package_versions() -> dict[str, str]:
    found = {}
    for name in PACKAGES:
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            found[name] = "not installed"
    return found


def device_label(device: str | torch.device) -> str:
    """``cpu`` or ``cuda:<gpu model>``: what result rows record."""
    device = torch.device(device)
    if device.type == "cuda":
        return f"cuda:{torch.cuda.get_device_name(device)}"
    return device.type


def device_class(label: str) -> str:
    """Baseline folder for a device label: ``cpu`` or ``cuda-<gpu-model-slug>``."""
    if label.startswith("cuda:"):
        slug = "".join(c if c.isalnum() else "-" for c in label[5:].lower()).strip("-")
        return f"cuda-{'-'.join(filter(None, slug.split('-')))}"
    return label


def _workdir_commit(own: str) -> str | None:
    """The commit of the user's repository around the current folder, when it is not lipbench's own."""
    commit = git_commit(Path.cwd())
    return None if commit in ("unknown", own) else commit


def build_manifest(*, preset: str, suites: list[str], seeds: dict[str, list[int]],
                   device: str, started: str, command: list[str] | None = None) -> dict[str, Any]:
    label = device_label(device)
    lipbench = build_info()
    return {
        "git_commit": lipbench["commit"],  # lipbench's own build (a checkout: its commit)
        "lipbench_version": lipbench["version"],
        "workdir_commit": _workdir_commit(lipbench["commit"]),
        "packages": package_versions(),
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "env": {k: os.environ[k] for k in ENV_KEYS if k in os.environ},
        "host": platform.node(),
        "device": label,
        "device_class": device_class(label),
        "preset": preset,
        "suites": suites,
        "seeds": seeds,
        "command": command if command is not None else sys.argv,
        "started": started,
        "finished": None,
    }
