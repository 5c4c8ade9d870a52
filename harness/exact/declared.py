"""User-declared Lipschitz constants for custom modules, and third-party modules known to be 1-Lipschitz."""
from __future__ import annotations

import math
from typing import Any

from torch import nn

_DECLARED: dict[type, Any] = {}


def register_lipschitz_constant(module_type: type, constant) -> None:
    """Declare that every ``module_type`` instance is ``constant``-Lipschitz (ℓ₂, input → output).

    ``constant`` is a number or a callable ``(module, input_shape) -> number`` (the input
    shape is the per-sample shape the module receives). The module is then a leaf of the
    graph: it is not traced into, and its forward is trusted to satisfy the constant; with
    several tensor inputs the constant is taken as a bound for all of them jointly.
    A module instance may instead carry a ``lipschitz_constant`` attribute (same forms).
    """
    if not (isinstance(module_type, type) and issubclass(module_type, nn.Module)):
        raise TypeError(f"register_lipschitz_constant needs an nn.Module subclass, got {module_type!r}")
    if not callable(constant):
        _check_constant(constant, module_type.__name__)
    _DECLARED[module_type] = constant


def unregister_lipschitz_constant(module_type: type) -> None:
    """Remove a declaration made by :func:`register_lipschitz_constant` (no error if absent)."""
    _DECLARED.pop(module_type, None)


def _check_constant(value, where: str) -> float:
    try:
        c = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{where}: declared Lipschitz constant {value!r} is not a number") from None
    if not (c >= 0 and math.isfinite(c)):
        raise ValueError(f"{where}: declared Lipschitz constant must be finite and >= 0, got {c}")
    return c


def declared_constant(module: nn.Module):
    """The declared constant (number or callable) of ``module``, or ``None``."""
    attr = getattr(module, "lipschitz_constant", None)
    if attr is not None:
        return attr
    for cls in type(module).__mro__:
        if cls in _DECLARED:
            return _DECLARED[cls]
    return None


_DEEL_SORTS = ("GroupSort", "GroupSort2", "FullSort", "MaxMin")


def _deel_sort(module: nn.Module) -> bool:
    return any(c.__module__.startswith("deel.torchlip") and c.__name__ in _DEEL_SORTS
               for c in type(module).__mro__)

