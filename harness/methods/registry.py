"""Registry of methods: built-ins by name, third-party variants by ``module:attr`` or entry point.

Only methods are loaded as methods: a reference must resolve to a
:class:`~harness.methods.Method` subclass or to a factory declared with
:func:`method_factory`; anything else (``os:system``, a plain function, a non-Method
class) is refused before it is called. Parameters are checked against the target's
``defaults`` and their types (:func:`.params.validate_params`) before the target is
called. Naming a module (``package.module:attr``, or an entry point, which names one)
imports it, i.e. runs its top-level code, as ``import package.module`` would; entry
points are imported only when named.
"""
from __future__ import annotations

import inspect
from importlib.metadata import entry_points
from typing import Any, Callable, Mapping

from harness.imports import ReferenceLoadError, resolve

from .base import Method
from .families import FAMILIES, load_family
from .params import MethodLoadError, MethodParameterError, validate_params

ENTRY_POINT_GROUP = "lipbench.methods"

#: Attribute :func:`method_factory` sets on a declared factory.
FACTORY_MARK = "__lipbench_method_factory__"

_BUILTIN: dict[str, type[Method]] = {}


def register(cls: type[Method]) -> type[Method]:
    """Class decorator adding a built-in method under ``cls.name``."""
    if cls.name in _BUILTIN and _BUILTIN[cls.name] is not cls:
        raise ValueError(f"method name {cls.name!r} is registered twice")
    _BUILTIN[cls.name] = cls
    return cls


def method_factory(fn: Callable[..., Method] | None = None, *,
                   defaults: Mapping[str, Any] | None = None,
                   param_types: Mapping[str, Any] | None = None):
    """Declare ``fn`` a factory of :class:`Method` instances, loadable by ``module:attr``.

    Its parameters are ``defaults`` when given, else the keyword parameters of ``fn``
    that have defaults (``param_types`` as for :attr:`Method.param_types`). Use as
    ``@method_factory`` or ``@method_factory(defaults={...})``.
    """
    def mark(f: Callable[..., Method]) -> Callable[..., Method]:
        if defaults is None:
            sig = inspect.signature(f)
            found = {k: p.default for k, p in sig.parameters.items()
                     if p.default is not inspect.Parameter.empty
                     and p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)}
        else:
            found = dict(defaults)
        f.defaults = found  # type: ignore[attr-defined]
        f.param_types = dict(param_types or {})  # type: ignore[attr-defined]
        setattr(f, FACTORY_MARK, True)
        return f

    return mark(fn) if fn is not None else mark


def _is_method_class(target: Any) -> bool:
    return inspect.isclass(target) and issubclass(target, Method)


def check_target(reference: str, target: Any) -> type[Method] | Callable[..., Method]:
    """``target`` if it is a Method subclass or a declared factory; else MethodLoadError."""
    if _is_method_class(target) or (callable(target) and getattr(target, FACTORY_MARK, False) is True):
        return target
    if inspect.isclass(target):
        raise MethodLoadError(f"{reference!r} is the class {target.__name__}, which does not "
                              "subclass harness.methods.Method")
    what = getattr(target, "__qualname__", None) or repr(target)
    raise MethodLoadError(f"{reference!r} resolves to {what} ({type(target).__name__}), not a "
                          "harness.methods.Method subclass or a factory declared with "
                          "@harness.methods.method_factory; refused without calling it")


def builtin(name: str) -> type[Method]:
    """The built-in method class ``name`` (``MethodLoadError`` naming the built-ins otherwise)."""
    if name not in _BUILTIN:
        raise MethodLoadError(f"{name!r} is not a built-in method; built-ins: {', '.join(sorted(_BUILTIN))}")
    return _BUILTIN[name]


def _entry_point_methods() -> dict[str, Any]:
    return {ep.name: ep for ep in entry_points(group=ENTRY_POINT_GROUP)}


def available() -> list[str]:
    """Names accepted by :func:`get`: built-ins, then the layer families (:mod:`.families`, whether
    or not their package is installed), then installed entry points (not imported)."""
    return sorted(_BUILTIN) + sorted(FAMILIES) + sorted(set(_entry_point_methods()) - set(_BUILTIN) - set(FAMILIES))


def load(reference: str) -> type[Method] | Callable[..., Method]:
    """Resolve ``"package.module:attr"`` to a Method subclass or a declared factory.

    Imports ``package.module`` (running its top-level code); calls nothing in it.
    """
    try:
        target = resolve(reference)
    except ReferenceLoadError as exc:
        raise MethodLoadError(str(exc)) from exc
    return check_target(reference, target)


def _factory(name: str) -> type[Method] | Callable[..., Method]:
    if name in _BUILTIN:
        return _BUILTIN[name]
    if name in FAMILIES:
        return load_family(name)
    if ":" in name:
        return load(name)
    eps = _entry_point_methods()
    if name not in eps:
        raise MethodLoadError(f"unknown method {name!r}; available: {', '.join(available())}")
    try:
        target = eps[name].load()
    except Exception as exc:
        raise MethodLoadError(f"entry point {name!r} ({eps[name].value}) failed to load: "
                              f"{type(exc).__name__}: {exc}") from exc
    return check_target(f"entry point {name} = {eps[name].value}", target)


def factory(name: str) -> type[Method] | Callable[..., Method]:
    """The class or declared factory ``name`` resolves to (built-in, entry point, ``module:attr``)."""
    return _factory(name)


def check(name: str, params: Mapping[str, Any]) -> None:
    """Resolve ``name`` and validate ``params`` without building (or calling) anything.

    Suite files and the command line use it to refuse a non-method or a mistyped parameter
    before any case runs.
    """
    factory = _factory(name)
    validate_params(getattr(factory, "name", name), getattr(factory, "defaults", {}), params,
                    getattr(factory, "param_types", {}))


def get(name: str, **params: Any) -> Method:
    """An instance of the method ``name`` (built-in, entry point or ``module:attr``).

    The parameters are validated against the method's ``defaults`` and types before it
    is built (:class:`MethodParameterError`, a ``TypeError``, naming the parameter).
    """
    factory = _factory(name)
    validate_params(getattr(factory, "name", name), getattr(factory, "defaults", {}), params,
                    getattr(factory, "param_types", {}))
    method = factory(**params)
    if not isinstance(method, Method):
        raise MethodLoadError(f"{name!r} returned {type(method).__name__}, not a "
                              "harness.methods.Method")
    return method


__all__ = ["ENTRY_POINT_GROUP", "MethodLoadError", "MethodParameterError", "available", "builtin", "check", "factory",
           "check_target", "get", "load", "method_factory", "register"]
