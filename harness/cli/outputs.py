"""Default output names that never collide: one results folder (and report) per run, named by what ran and when."""
from __future__ import annotations

import contextlib
import os
import re
import time
from pathlib import Path
from typing import Iterator


def slug(text: str) -> str:
    """A file-name-safe form of a label (``my.module:MyNorm(gain=2)`` -> ``my.module-MyNorm-gain-2``)."""
    return re.sub(r"[^A-Za-z0-9._]+", "-", text).strip("-.")[:80] or "run"


def new_results_folder(label: str, root: str | Path = "results") -> Path:
    """``root/<label>-<UTC time>`` created here and now (``-2``, ``-3``, ... when that name is taken).

    The folder is made with an exclusive ``mkdir``, so two runs started in the same second
    get two folders; reports named after it (``reports/<folder name>.html``) differ too.
    """
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    base = f"{slug(label)}-{time.strftime('%Y%m%d-%H%M%S', time.gmtime())}"
    for n in range(1, 10_000):
        path = root / (base if n == 1 else f"{base}-{n}")
        try:
            os.mkdir(path)
            return path
        except FileExistsError:
            continue
    raise FileExistsError(f"{root}: no free results folder name for {base}")


@contextlib.contextmanager
def results_folder(given: str | None, label: str) -> Iterator[Path]:
    """``given`` (``--out``), or a new folder (:func:`new_results_folder`) that is removed again
    when the command fails before anything was written into it (a bad ``--device``, say)."""
    if given:
        yield Path(given)
        return
    root = Path("results")
    made = [] if root.is_dir() else [root]
    made.insert(0, new_results_folder(label, root))
    try:
        yield made[0]
    except BaseException:
        for folder in made:  # only while empty: made here a moment ago, nothing written into them yet
            with contextlib.suppress(OSError):
                folder.rmdir()
        raise


def default_report(label: str, root: str | Path = "reports") -> Path:
    """``root/<label>-<UTC time>.html``, a name no file has yet (``-2``, ``-3``, ... when taken)."""
    base = f"{slug(label)}-{time.strftime('%Y%m%d-%H%M%S', time.gmtime())}"
    for n in range(1, 10_000):
        path = Path(root) / f"{base if n == 1 else f'{base}-{n}'}.html"
        if not os.path.lexists(path):
            return path
    raise FileExistsError(f"{root}: no free report name for {base}")
