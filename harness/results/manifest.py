"""Provenance of a run: code version, packages, device, seeds, command line, times."""
from __future__ import annotations

import os
import platform
import subprocess
import sys
from datetime import datetime, timezone
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import torch

#: Environment variables that change float rounding or timing (recorded with every run).
ENV_KEYS = ("ATEN_CPU_CAPABILITY", "ONEDNN_MAX_CPU_ISA", "MKL_ENABLE_INSTRUCTIONS", "MKL_CBWR", "OMP_NUM_THREADS",
            "MKL_NUM_THREADS", "CUDA_VISIBLE_DEVICES")
PACKAGES = ("lipbench", "torch", "torchvision", "numpy", "scipy", "pandas", "clean-fid")


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def git_commit(cwd: str | Path | None = None) -> str:
    """The checked-out commit (with ``-dirty`` when the tree has changes), or ``unknown``."""
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True,
                                text=True, timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=cwd,
                               capture_output=True, text=True, timeout=10).stdout.strip()
        return commit + ("-dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


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


def build_manifest(*, preset: str, suites: list[str], seeds: dict[str, list[int]],
                   device: str, started: str, command: list[str] | None = None) -> dict[str, Any]:
    label = device_label(device)
    return {
        "git_commit": git_commit(),
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
