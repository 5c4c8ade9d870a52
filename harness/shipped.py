"""What lipbench ships beside its code: suites, baselines, its version and build commit.

A wheel carries ``suites/`` and ``baselines/`` as package data (``harness/_shipped/``,
written by the build hook in ``setup.py``); a source checkout (editable install, tests)
has them at the repository root. :func:`shipped_dir` finds either, so ``lipbench list``
and ``lipbench verify`` work from any folder.
"""
from __future__ import annotations

import json
import subprocess
from functools import lru_cache
from importlib import resources
from pathlib import Path

_CHECKOUT = Path(__file__).resolve().parents[1]


def _package_data() -> Path | None:
    shipped = resources.files("harness") / "_shipped"
    return Path(str(shipped)) if shipped.is_dir() else None


def shipped_dir(name: str) -> Path | None:
    """``suites`` or ``baselines`` as installed with lipbench (wheel) or in its checkout; ``None`` if absent."""
    data = _package_data()
    for root in filter(None, (data, _CHECKOUT)):
        if (root / name).is_dir() and (root is data or (_CHECKOUT / "pyproject.toml").is_file()):
            return root / name
    return None


def git_commit(cwd: str | Path | None = None) -> str:
    """The commit checked out in ``cwd`` (with ``-dirty`` for uncommitted changes), or ``unknown``."""
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True,
                                text=True, timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=cwd,
                               capture_output=True, text=True, timeout=10).stdout.strip()
        return commit + ("-dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


@lru_cache(maxsize=1)
def build_info() -> dict[str, str]:
    """lipbench's version and the commit it was built from (a checkout: its current commit)."""
    from harness import __version__

    data = _package_data()
    if data is not None and (data / "build.json").is_file():
        commit = json.loads((data / "build.json").read_text()).get("commit", "unknown")
    elif (_CHECKOUT / "pyproject.toml").is_file():
        commit = git_commit(_CHECKOUT)
    else:
        commit = "unknown"
    return {"version": __version__, "commit": commit}
