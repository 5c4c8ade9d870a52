"""Resolve ``"package.module:attr"`` references (user variants, model factories).

Naming a module imports it: ``package.module``'s top-level code runs, exactly as
``import package.module`` would, before anything checks what ``attr`` is. Only name
modules you trust. The current directory is put on ``sys.path`` first. What the
resolved object may be is the caller's check (methods: :mod:`harness.methods.registry`
accepts only Method subclasses and declared factories, and calls nothing else).
"""
from __future__ import annotations

import importlib
import os
import sys
from typing import Any

from harness.errors import UserError


class ReferenceLoadError(UserError, LookupError):
    """A ``module:attr`` reference that does not import or has no such attribute; says which and why."""


def resolve(reference: str) -> Any:
    """The object ``attr`` (dotted) of ``package.module``, imported (running its top-level
    code) with the current directory importable; nothing is called."""
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
