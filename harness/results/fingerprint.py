"""What defines a case, recorded with its results so that reuse is bound to what ran.

Every case record in ``cases.jsonl`` carries :func:`fingerprint`: the lipbench version, a
digest of the suite's content at the preset (its provenance: kind, matrix, seeds, settings,
methods; not its description, checks or plots), the preset, the case's resolved settings
(the runner's defaults included) and parameters, device and threads, and for every method
its label, name, parameters, the built-in it is judged as, and a digest of its source file.
``--resume`` compares the components that define a case's values (:data:`CASE`; adding a
value to a suite's matrix changes its digest, not the cases already run) and ``baseline
update`` those that define them on any machine (:data:`DEFINING`), naming what differs
(:func:`differences`).

A variant's source is located without importing it (:func:`module_file` walks the import
path as ``import`` would, running nothing): only the file of the named module is hashed,
not the modules it imports.
"""
from __future__ import annotations

import functools
import hashlib
import importlib.machinery
import inspect
import json
import os
import sys
from pathlib import Path
from typing import Any, Iterable

import harness

#: Components that define a case's values wherever it runs (``device`` and ``threads`` are the
#: machine's: several machines' runs of one definition make one baseline).
DEFINING = ("lipbench", "kind", "preset", "settings", "params", "methods")
#: Components that define a case's values on this machine: what ``--resume`` compares.
CASE = DEFINING + ("device", "threads")
#: Keys of a suite's resolved preset that do not change what its cases compute.
_NOT_DEFINING = ("description", "checks", "plots", "presets", "paper_table", "timeout", "resources")


def digest(value: Any) -> str:
    """A short, stable digest of JSON-able ``value`` (16 hex digits of SHA-256)."""
    text = json.dumps(value, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def suite_digest(resolved: dict[str, Any]) -> str:
    """Digest of a suite's resolved preset (``Suite.resolved``) without what does not define cases."""
    return digest({k: v for k, v in resolved.items() if k not in _NOT_DEFINING})


def fingerprint(case: Any, suite_hash: str, preset: str) -> dict[str, Any]:
    """What defines ``case`` (a :class:`harness.suite.Case`) of a suite whose digest is ``suite_hash``."""
    methods = ((case.method,) if case.method else ()) + tuple(case.methods)
    return {
        "lipbench": harness.__version__,
        "suite": suite_hash,
        "kind": case.kind,
        "preset": preset,
        "settings": json.loads(json.dumps(case.settings, sort_keys=True, default=str)),
        "params": json.loads(case.params_json),
        "methods": [{"label": m.label, "name": m.name, "params": json.loads(json.dumps(dict(m.params), default=str)),
                     "judged_as": m.judged_as, "source": method_source(m.name)} for m in methods],
        "device": case.device,
        "threads": case.threads,
    }


def defining(fp: dict[str, Any]) -> dict[str, Any]:
    """The components of ``fp`` that define the case's values on any machine."""
    return {k: fp.get(k) for k in DEFINING}


def differences(old: dict[str, Any] | None, new: dict[str, Any], keys: Iterable[str] | None = None) -> list[str]:
    """What differs between two fingerprints, as ``component: old -> new`` lines."""
    if not isinstance(old, dict):
        return ["no fingerprint recorded (written by an earlier lipbench)"]
    out = []
    for key in keys or sorted(set(old) | set(new)):
        a, b = _flat(old.get(key), key), _flat(new.get(key), key)
        for name in sorted(set(a) | set(b), key=str):
            if a.get(name, "(none)") != b.get(name, "(none)"):
                out.append(f"{name}: {_short(a.get(name, '(none)'))} -> {_short(b.get(name, '(none)'))}")
    return out


def _flat(value: Any, prefix: str) -> dict[str, Any]:
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for key, item in value.items():
            out.update(_flat(item, f"{prefix}.{key}"))
        return out or {prefix: "{}"}
    if isinstance(value, list) and value and all(isinstance(v, dict) and "label" in v for v in value):
        out = {}
        for item in value:
            out.update(_flat({k: v for k, v in item.items() if k != "label"}, f"{prefix}[{item['label']}]"))
        return out
    return {prefix: value}


def _short(value: Any) -> str:
    text = json.dumps(value, default=str) if not isinstance(value, str) else value
    return text if len(text) <= 60 else text[:57] + "..."


def method_source(name: str) -> str:
    """Digest of the source file of the module defining method ``name`` (built-in, entry point
    or ``module:attr``), found without importing it; ``unknown`` when there is no such file."""
    from harness.methods import registry
    if ":" in name:
        path = module_file(name.partition(":")[0])
    else:
        try:
            path = inspect.getsourcefile(registry.builtin(name))
        except registry.MethodLoadError:  # not a built-in: an entry point names its module
            module = _entry_points().get(name, "").partition(":")[0]
            path = module_file(module) if module else None
    return _file_digest(path) if path else "unknown"


@functools.lru_cache(maxsize=1)
def _entry_points() -> dict[str, str]:
    from importlib.metadata import entry_points

    from harness.methods.registry import ENTRY_POINT_GROUP
    return {ep.name: ep.value for ep in entry_points(group=ENTRY_POINT_GROUP)}


def module_file(dotted: str) -> str | None:
    """The file ``import dotted`` would load (the current directory first, as lipbench imports
    variants), found by the import system's path finder without running any module."""
    loaded = sys.modules.get(dotted)
    if loaded is not None:
        return getattr(loaded, "__file__", None)
    search: list[str] | None = [os.getcwd(), *sys.path]
    spec = None
    parts = dotted.split(".")
    for i in range(len(parts)):
        name = ".".join(parts[: i + 1])
        parent = sys.modules.get(name)
        if parent is not None and i < len(parts) - 1 and hasattr(parent, "__path__"):
            search = list(parent.__path__)
            continue
        try:
            spec = importlib.machinery.PathFinder.find_spec(name, search)
        except (ImportError, ValueError):
            return None
        if spec is None:
            return None
        search = list(spec.submodule_search_locations or [])
    return spec.origin if spec is not None and spec.has_location else None


def _file_digest(path: str) -> str:
    try:
        info = os.stat(path)
    except OSError:
        return "unknown"
    return _cached_digest(path, info.st_size, info.st_mtime_ns)


@functools.lru_cache(maxsize=256)
def _cached_digest(path: str, size: int, mtime_ns: int) -> str:
    try:
        return hashlib.sha256(Path(path).read_bytes()).hexdigest()[:16]
    except OSError:
        return "unknown"
