"""Method parameters checked against ``defaults`` and their types before a method is built.

The type of a parameter is its entry in ``param_types`` when declared, else inferred from
its default: a ``bool`` default accepts only ``True``/``False``; an ``int`` default only
integers (not booleans); a ``float`` default integers or floats (not booleans); a
``str`` default strings; a ``tuple``/``list`` default tuples or lists; a mapping
default mappings; a ``None`` default anything (declare ``param_types`` to restrict it).
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from harness.imports import ReferenceLoadError


class MethodLoadError(ReferenceLoadError):
    """A method name or ``module:attr`` reference that cannot be resolved; says which and why."""


class MethodParameterError(MethodLoadError, TypeError):
    """A method parameter that is unknown or of the wrong type; names the parameter,
    the expected type and the value."""


#: Inferred accepted types per default type (``bool`` first: it subclasses ``int``).
_INFERRED: tuple[tuple[type, tuple[type, ...], str], ...] = (
    (bool, (bool,), "bool"),
    (int, (int,), "int"),
    (float, (int, float), "float"),
    (str, (str,), "str"),
    (tuple, (tuple, list), "tuple or list"),
    (list, (tuple, list), "tuple or list"),
    (Mapping, (Mapping,), "mapping"),
)


def _accepts(default: Any, declared: Any) -> tuple[tuple[type, ...], str] | None:
    """(accepted types, their name) for a parameter, or None when anything goes."""
    if declared is not None:
        types = declared if isinstance(declared, tuple) else (declared,)
        label = " or ".join(t.__name__ for t in types)
        return ((*types, int) if float in types else types), label
    if default is None:
        return None
    for kind, types, label in _INFERRED:
        if isinstance(default, kind):
            return types, label
    return (type(default),), type(default).__name__


def validate_params(method_name: str, defaults: Mapping[str, Any], params: Mapping[str, Any],
                    types: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """``{**defaults, **params}`` after checking every name and type; raises
    :class:`MethodParameterError` naming the method, the parameter, the expected type and
    the value."""
    unknown = sorted(set(params) - set(defaults))
    if unknown:
        allowed = ", ".join(sorted(defaults)) or "none"
        raise MethodParameterError(f"method {method_name!r} got unknown parameter(s) "
                                   f"{', '.join(unknown)}; allowed: {allowed}")
    types = types or {}
    for key, value in params.items():
        accepted = _accepts(defaults[key], types.get(key))
        if accepted is None:
            continue
        classes, label = accepted
        ok = isinstance(value, classes) and not (isinstance(value, bool) and bool not in classes)
        if not ok:
            raise MethodParameterError(f"method {method_name!r}: parameter {key!r} expects "
                                       f"{label}, got {value!r} ({type(value).__name__})")
    return {**defaults, **params}


__all__ = ["MethodLoadError", "MethodParameterError", "validate_params"]
