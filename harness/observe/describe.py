"""Methods described as plain data without importing their modules into lipbench's process.

``lipbench`` validates a method named on the command line or in a suite, and records its
claim and tags in the run's manifest, before any case runs. A built-in is lipbench's own
code and is described in place; any other method (``module:attr``, an entry point) is
imported and built only in a defendant process (:func:`.defendant.in_defendant`), which
reports its :func:`~harness.methods.claims.description` (name, parameters, claim, tags) or
the one-line reason it cannot be loaded. Results are remembered per process.
"""
from __future__ import annotations

import json
from typing import Any, Mapping, Sequence

from harness.methods.claims import description
from harness.methods.params import MethodLoadError, MethodParameterError

from .defendant import in_defendant

_CACHE: dict[tuple[str, str], dict[str, Any]] = {}


def _key(name: str, params: Mapping[str, Any]) -> tuple[str, str]:
    return name, json.dumps(dict(params), sort_keys=True, default=repr)


def _describe_here(specs: Sequence[tuple[str, dict]]) -> list[dict[str, Any]]:
    """Build each method and describe it, or record why it cannot be built (runs where the
    methods' code may run: a defendant, or lipbench itself for built-ins)."""
    from harness import methods
    out = []
    for name, params in specs:
        try:
            out.append({"described": description(methods.get(name, **params))})
        except MethodParameterError as exc:
            out.append({"error": str(exc), "parameter": True})
        except MethodLoadError as exc:
            out.append({"error": str(exc), "parameter": False})
        except Exception as exc:  # noqa: BLE001 - the factory itself raised
            out.append({"error": f"building {name!r} raised {type(exc).__name__}: {exc}", "parameter": False})
    return out


def _builtin(name: str) -> bool:
    from harness.methods.registry import _BUILTIN
    return name in _BUILTIN


def describe_all(specs: Sequence[tuple[str, Mapping[str, Any]]]) -> list[dict[str, Any]]:
    """One record per ``(name, params)``: ``{"described": ...}`` or ``{"error": ..., "parameter": bool}``.

    Built-ins are described here; all other methods in one defendant process.
    """
    todo = [(n, dict(p)) for n, p in specs if _key(n, p) not in _CACHE]
    local = [s for s in todo if _builtin(s[0])]
    remote = [s for s in todo if not _builtin(s[0])]
    for spec, record in zip(local, _describe_here(local)):
        _CACHE[_key(*spec)] = record
    if remote:
        for spec, record in zip(remote, in_defendant(_describe_here, remote, threads=1)):
            _CACHE[_key(*spec)] = record
    return [_CACHE[_key(n, p)] for n, p in specs]


def describe_method(name: str, params: Mapping[str, Any]) -> dict[str, Any]:
    """The description of one method; :class:`MethodLoadError` or
    :class:`MethodParameterError` (one line, exit code 2) when it cannot be built."""
    (record,) = describe_all([(name, params)])
    if "error" in record:
        raise (MethodParameterError if record["parameter"] else MethodLoadError)(record["error"])
    return record["described"]


def check_method(name: str, params: Mapping[str, Any]) -> None:
    """Raise, as :func:`describe_method`, when ``name`` with ``params`` cannot be built."""
    describe_method(name, params)


__all__ = ["check_method", "describe_all", "describe_method"]
