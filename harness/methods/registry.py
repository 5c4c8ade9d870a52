"""Registry of methods: built-ins by name, third-party variants by ``module:attr`` or entry point."""
from __future__ import annotations

import inspect
from importlib.metadata import entry_points
from typing import Any, Callable

from harness.imports import ReferenceLoadError, resolve

from .base import Method

ENTRY_POINT_GROUP = "lipbench.methods"

_BUILTIN: dict[str, type[Method]] = {}


class MethodLoadError(ReferenceLoadError):
    """A method name or ``module:attr`` reference that cannot be resolved; says which and why."""


def register(cls: type[Method]) -> type[Method]:
    """Class decorator adding a built-in method under ``cls.name``."""
    if cls.name in _BUILTIN and _BUILTIN[cls.name] is not cls:
        raise ValueError(f"method name {cls.name!r} is registered twice")
    _BUILTIN[cls.name] = cls
    return cls


def _entry_point_methods() -> dict[str, Any]:
    return {ep.name: ep for ep in entry_points(group=ENTRY_POINT_GROUP)}


def available() -> list[str]:
    """Names accepted by :func:`get`: built-ins, then installed entry points."""
    return sorted(_BUILTIN) + sorted(set(_entry_point_methods()) - set(_BUILTIN))


def load(reference: str) -> type[Method] | Callable[..., Method]:
    """Resolve ``"package.module:attr"`` to a Method subclass or a factory returning one."""
    try:
        target = resolve(reference)
    except ReferenceLoadError as exc:
        raise MethodLoadError(str(exc)) from exc
    if inspect.isclass(target) and not issubclass(target, Method):
        raise MethodLoadError(f"{reference!r} is the class {target.__name__}, which does not "
                              "subclass harness.methods.Method")
    if not callable(target):
        raise MethodLoadError(f"{reference!r} is {type(target).__name__}, not a "
                              "harness.methods.Method subclass or a factory of one")
    return target


def get(name: str, **params: Any) -> Method:
    """An instance of the method ``name`` (built-in, entry point or ``module:attr``)."""
    if name in _BUILTIN:
        factory: Any = _BUILTIN[name]
    elif ":" in name:
        factory = load(name)
    else:
        eps = _entry_point_methods()
        if name not in eps:
            raise MethodLoadError(f"unknown method {name!r}; available: {', '.join(available())}")
        try:
            factory = eps[name].load()
        except Exception as exc:
            raise MethodLoadError(f"entry point {name!r} ({eps[name].value}) failed to load: "
                                  f"{type(exc).__name__}: {exc}") from exc
    method = factory(**params)
    if not isinstance(method, Method):
        raise MethodLoadError(f"{name!r} returned {type(method).__name__}, not a "
                              "harness.methods.Method")
    return method
