"""Where suites and baselines live, and how suite arguments are resolved."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

from harness.methods import available
from harness.observe.describe import check_method
from harness.shipped import shipped_dir
from harness.runners import kinds, runner_for
from harness.suite import Suite, SuiteError, load_suites

def _first_dir(explicit: str | None, env: str, name: str, *, shipped: bool = True) -> Path:
    """``explicit``, ``$env``, ``./name``, then (when ``shipped``) the copy installed with lipbench."""
    if explicit:
        return Path(explicit)
    for candidate in (os.environ.get(env), Path.cwd() / name):
        if candidate and Path(candidate).is_dir():
            return Path(candidate)
    installed = shipped_dir(name) if shipped else None
    return installed if installed is not None else Path.cwd() / name


def suites_dir(explicit: str | None = None) -> Path:
    """``--suites-dir``, ``$LIPBENCH_SUITES``, ``./suites`` or the suites shipped with lipbench."""
    return _first_dir(explicit, "LIPBENCH_SUITES", "suites")


def baselines_dir(explicit: str | None = None) -> Path:
    """``--baselines``, ``$LIPBENCH_BASELINES``, ``./baselines`` or the baselines shipped with lipbench."""
    return _first_dir(explicit, "LIPBENCH_BASELINES", "baselines")


def baselines_dir_to_write(explicit: str | None = None) -> Path:
    """Where ``baseline update`` writes: never into an installed package (default ``./baselines``)."""
    return _first_dir(explicit, "LIPBENCH_BASELINES", "baselines", shipped=False)


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
