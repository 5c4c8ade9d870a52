"""Which built-in a method is judged as, and whose baselines it is compared with.

A method's *profile* (the run manifest's ``methods[label]``: ``name``, ``params``,
``judged_as`` and its claim and tags) says what ran under a label:

* a built-in run under its own registry name (``sn_w``, also under a suite label such as
  ``sn_w_hinge``) is judged as itself;
* ``lipbench check VARIANT --as NAME`` runs the variant under the label ``VARIANT as NAME``:
  judged as NAME (NAME's claim, NAME's baselines, targets written for NAME), yet another
  implementation, whose quantities that differ between correct implementations by design are
  reported, not failed (:func:`other_implementation`);
* every other method (a variant, a subclass of a built-in under its own name) is judged as
  nothing but itself: its claim and its own baselines.
"""
from __future__ import annotations

from functools import lru_cache
from typing import Any, Mapping

from harness.methods.registry import MethodLoadError, builtin
from harness.suite import MethodSpec


@lru_cache(maxsize=None)
def _is_builtin(name: str) -> bool:
    try:
        builtin(name)
    except MethodLoadError:
        return False
    return True


def judged_as(profile: Mapping[str, Any] | None) -> str:
    """The built-in a method is judged as: NAME under ``--as NAME``, a built-in's own name, else ``''``."""
    if not profile:
        return ""
    if profile.get("judged_as"):
        return str(profile["judged_as"])
    name = str(profile.get("name", ""))
    return name if _is_builtin(name) else ""


def other_implementation(profile: Mapping[str, Any] | None) -> bool:
    """Whether a method judged ``--as NAME`` is not NAME's own code."""
    return bool(profile and profile.get("judged_as") and profile.get("name") != profile["judged_as"])


def baseline_label(label: str, profile: Mapping[str, Any] | None) -> str:
    """The method label a row's baselines are stored under: under ``--as NAME`` the label NAME has
    in the suites (``ssn(s=1.5)`` when the variant's ``s`` is 1.5, NAME's other parameters at
    their defaults), else the row's own label."""
    if not profile or not profile.get("judged_as"):
        return label
    name = str(profile["judged_as"])
    defaults = builtin(name).defaults
    shared = {k: v for k, v in (profile.get("params") or {}).items() if k in defaults and v != defaults[k]}
    return MethodSpec.parse({"name": name, "params": shared}).label
