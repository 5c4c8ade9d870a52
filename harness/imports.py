"""Resolve ``"package.module:attr"`` references (user variants, model factories)."""
from __future__ import annotations

import importlib
import os
import sys
from typing import Any


class ReferenceLoadError(LookupError):
    """A ``module:attr`` reference that does not import or has no such attribute; says which and why."""


def resolve(reference: str) -> Any:
    """The object ``attr`` (dotted) of ``package.module``; the current directory is importable."""
    module_name, sep, attr = reference.partition(":")
    if not sep or not module_name or not attr:
        raise ReferenceLoadError(f"{reference!r} is not of the form 'package.module:attr'")
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:  # an import error inside the user's module is reported too
        raise ReferenceLoadError(f"cannot import module {module_name!r} for {reference!r}: "
                                 f"{type(exc).__name__}: {exc}") from exc
    target: Any = module
    for part in attr.split("."):
        if not hasattr(target, part):
            raise ReferenceLoadError(f"module {module_name!r} has no attribute {attr!r}")
        target = getattr(target, part)
    return target
