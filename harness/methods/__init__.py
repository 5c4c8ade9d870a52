"""The Lipschitz methods under test, one interface (:class:`Method`) and a registry."""
from .base import Method
from .registry import ENTRY_POINT_GROUP, MethodLoadError, available, get, load, register

# Built-in methods register themselves on import.
from . import none  # noqa: E402,F401

__all__ = ["Method", "MethodLoadError", "ENTRY_POINT_GROUP", "available", "get", "load", "register"]
