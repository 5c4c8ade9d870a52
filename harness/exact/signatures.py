"""Every argument of an allow-listed op, bound by name, and a record of which ones a rule read.

A rule must never miss an argument: ``x.mean(axis=2)`` once reduced over every entry
because the rule looked only for ``dim``. So each allow-listed op declares its full Python
signature (:func:`parse`, e.g. ``"input, dim=None, keepdim=False, *, dtype=None, out=None"``),
the node's positional and keyword arguments are bound to it (:func:`bind`) with the aliases
torch's argument parser accepts for builtins (``axis`` for ``dim``, ``keepdims`` for
``keepdim``, ``x``/``a``/``x1`` for ``input``, ``x2`` for ``other``: ``numpy_compatibility_arg_names``
in ``torch/csrc/utils/python_arg_parser.cpp``), an unknown or duplicated argument is a
refusal, and :class:`Args` records every argument the rule reads. After the rule, an
argument it did not read is a refusal too (:meth:`Args.unread`), so a rule that forgets an
argument refuses the model instead of mis-bounding it.
"""
from __future__ import annotations

import ast
import math
from dataclasses import dataclass, field
from typing import Any, Callable

import torch
import torch.fx as fx

#: torch's numpy-compatible argument aliases for builtins (alias -> canonical name).
ALIASES = {"axis": "dim", "keepdims": "keepdim", "x": "input", "a": "input", "x1": "input", "x2": "other"}
REQUIRED = object()


@dataclass(frozen=True)
class Signature:
    """Parameters in order (``names[0]`` is the tensor the op is called on), defaults
    (``REQUIRED`` when none), keyword-only names and a ``*varargs`` name."""

    names: tuple[str, ...]
    defaults: tuple[Any, ...]
    kwonly: tuple[str, ...] = ()
    varargs: str | None = None

    @property
    def all_names(self) -> tuple[str, ...]:
        return self.names + ((self.varargs,) if self.varargs else ()) + self.kwonly


def parse(text: str) -> Signature:
    """``"input, dim=None, *, out=None"`` or ``"input, *size"`` as a :class:`Signature`."""
    names, defaults, kwonly, varargs, keyword_only = [], [], [], None, False
    for part in (p.strip() for p in text.split(",") if p.strip()):
        if part == "*":
            keyword_only = True
            continue
        if part.startswith("*"):
            varargs, keyword_only = part[1:], True
            continue
        name, _, default = part.partition("=")
        value = ast.literal_eval(default.strip()) if default else REQUIRED
        if keyword_only:
            kwonly.append((name.strip(), value))
        else:
            names.append(name.strip())
            defaults.append(value)
    return Signature(tuple(names), tuple(defaults) + tuple(v for _, v in kwonly),
                     tuple(n for n, _ in kwonly), varargs)


class BindError(ValueError):
    """The node's arguments do not fit the declared signature (names the argument)."""


def bind(sig: Signature, args: tuple, kwargs: dict) -> dict[str, Any]:
    """The node's raw arguments (``fx.Node`` or constants) by parameter name, defaults filled."""
    bound: dict[str, Any] = {}
    positional = list(args)
    for name in sig.names:
        if not positional:
            break
        bound[name] = positional.pop(0)
    if positional:
        if sig.varargs is None:
            raise BindError(f"{len(args)} positional arguments, the signature takes {len(sig.names)}")
        bound[sig.varargs] = tuple(positional)
    known = set(sig.all_names)
    for key, value in kwargs.items():
        name = key if key in known else ALIASES.get(key, key)
        if name not in known:
            raise BindError(f"argument {key!r} is not modelled")
        if name in bound:
            raise BindError(f"argument {key!r} given twice")
        bound[name] = value
    for name, default in zip(sig.names + sig.kwonly, sig.defaults):
        if name not in bound:
            if default is REQUIRED:
                raise BindError(f"missing argument {name!r}")
            bound[name] = default
    if sig.varargs and sig.varargs not in bound:
        bound[sig.varargs] = ()
    return bound


@dataclass
class Args:
    """Bound arguments of one node; every accessor records the name as read."""

    raw: dict[str, Any]
    values: Callable[[Any], Any]  # raw argument -> its value on the probe input
    dependent: Callable[[Any], bool]  # raw argument -> whether it depends on the model input
    refuse: Callable[[str], Exception]
    read: set[str] = field(default_factory=set)

    def node(self, name: str) -> Any:
        """The raw argument (an ``fx.Node`` or a constant)."""
        self.read.add(name)
        return self.raw[name]

    def value(self, name: str) -> Any:
        """The argument's value on the probe input."""
        return self.values(self.node(name))

    def any(self, *names: str) -> None:
        """Arguments whose every value the rule models (e.g. ``keepdim``: shapes only)."""
        for name in names:
            self.node(name)

    def constant(self, name: str) -> Any:
        """The value of an argument that must not depend on the model input."""
        if self.is_dependent(name):
            raise self.refuse(f"argument {name!r} depends on the input")
        return self.value(name)

    def is_dependent(self, name: str) -> bool:
        raw = self.node(name)
        found = []
        fx.node.map_arg(raw, lambda n: found.append(n) if self.dependent(n) else None)
        return bool(found)

    def none(self, *names: str) -> None:
        """Arguments the rule does not model: refused unless ``None`` (e.g. ``out``)."""
        for name in names:
            if self.node(name) is not None:
                raise self.refuse(f"argument {name}= is not modelled")

    def equal(self, name: str, *allowed: Any) -> Any:
        """A constant argument restricted to the listed values."""
        value = self.constant(name)
        if not any(value is a or (type(value) is type(a) and value == a) for a in allowed):
            raise self.refuse(f"{name}={value!r} is not modelled (only {', '.join(map(repr, allowed))})")
        return value

    def number(self, name: str) -> float:
        """A finite real constant (Python number or one-element tensor)."""
        value = self.constant(name)
        if isinstance(value, torch.Tensor):
            if value.numel() != 1 or value.is_complex():
                raise self.refuse(f"{name}={value!r} is not a real number")
            value = value.item()
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise self.refuse(f"{name}={value!r} is not a finite real number")
        return float(value)

    def float_dtype(self, name: str) -> None:
        """A ``dtype`` argument: ``None`` or a real floating dtype (a cast to it rounds only)."""
        value = self.constant(name)
        if value is not None and not (isinstance(value, torch.dtype) and value.is_floating_point):
            raise self.refuse(f"{name}={value!r}: only floating-point results are Lipschitz")

    def unread(self) -> list[str]:
        return [name for name in self.raw if name not in self.read]
