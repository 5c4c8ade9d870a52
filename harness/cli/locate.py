"""Where suites and baselines live, and how suite arguments are resolved."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

from harness.methods import available
from harness.methods.registry import check as check_method
from harness.runners import kinds, runner_for
from harness.suite import Suite, SuiteError, load_suites

_REPO = Path(__file__).resolve().parents[2]


def _first_dir(explicit: str | None, env: str, name: str) -> Path:
    if explicit:
        return Path(explicit)
    for candidate in (os.environ.get(env), Path.cwd() / name, _REPO / name):
        if candidate and Path(candidate).is_dir():
            return Path(candidate)
    return Path.cwd() / name


def suites_dir(explicit: str | None = None) -> Path:
    """``--suites-dir``, ``$LIPBENCH_SUITES``, ``./suites`` or the repository's ``suites/``."""
    return _first_dir(explicit, "LIPBENCH_SUITES", "suites")


def baselines_dir(explicit: str | None = None) -> Path:
    """``--baselines``, ``$LIPBENCH_BASELINES``, ``./baselines`` or the repository's ``baselines/``."""
    return _first_dir(explicit, "LIPBENCH_BASELINES", "baselines")


def suite_files(directory: Path) -> list[Path]:
    return sorted(directory.glob("*.yaml"))


def resolve_suites(names: Sequence[str], directory: Path, import_methods: bool = True) -> list[Suite]:
    """Load the named suites (file stems or paths); all suites in ``directory`` when none are named.

    ``import_methods=False`` checks method names against the registry but imports no
    ``module:attr`` method (``list`` and ``baseline update`` run no method)."""
    if not names:
        paths = suite_files(directory)
        if not paths:
            raise SuiteError([f"{directory}: no suite files (*.yaml) found"])
    else:
        paths = []
        for name in names:
            path = Path(name)
            if not path.suffix:
                path = directory / f"{name}.yaml"
            if not path.exists():
                known = ", ".join(p.stem for p in suite_files(directory))
                raise SuiteError([f"{name}: no such suite (looked for {path}); known: {known}"])
            paths.append(path)
    return load_suites(paths, known_kinds=kinds(), known_methods=available(),
                       check_method=check_method if import_methods else None,
                       declarations_for=lambda kind: runner_for(kind).declarations)
