"""Bound checks written as data in suite files; they need no baseline.

A check names a metric (``*`` matches a family: ``invariant[*]``), an ``assert`` expression, optionally a ``where`` scope (rows
outside it are not this check's business and get no verdict) and a ``when``
precondition. For every row of that metric the expression sees ``value``, the case
parameters, ``method``, ``seed``, the method's claim and tags, ``judged_as`` (the built-in
the method is judged as, :mod:`.identity`) and the other metrics of the same case, method
and seed by name. A false precondition gives ``n/a`` with the reason (never a silent pass).
"""
from __future__ import annotations

import json
import math
from typing import Any

import pandas as pd

from harness.methods.claims import PROFILE_TYPES
from harness.runners.spec import matches
from harness.suite import ExpressionError, Suite, compile_expression

from .identity import judged_as
from .verdict import verdict_row


def _scopes(rows: pd.DataFrame) -> dict[tuple, dict[str, Any]]:
    """Per (case, method, seed): the metrics by name (ok rows only)."""
    scopes: dict[tuple, dict[str, Any]] = {}
    for row in rows.itertuples(index=False):
        if row.status == "ok" and row.metric.isidentifier():
            scopes.setdefault((row.case, row.method, row.seed), {})[row.metric] = row.value
    return scopes


#: The profile of rows without a method, or of a method whose profile is unknown.
NO_METHOD = {"claim": "none", "claim_kind": "none", "target": math.nan, "judged_as": "",
             **{name: False for name, kind in PROFILE_TYPES.items() if kind == "bool"}}


def evaluate_checks(suite: Suite, rows: pd.DataFrame,
                    profiles: dict[str, dict] | None = None) -> list[dict[str, Any]]:
    """Verdict rows (kind ``check``, or ``sanity`` for checks that hold by construction) for
    every check of ``suite``; ``profiles`` (method label -> claim and tags) scope them."""
    profiles = profiles or {}
    mine = rows[rows["suite"] == suite.name]
    scopes = _scopes(mine)
    verdicts = []
    for check in suite.checks:
        assertion = compile_expression(check["assert"])
        when = compile_expression(check["when"]) if "when" in check else None
        where = compile_expression(check["where"]) if "where" in check else None
        selected = mine["metric"].map(lambda name: matches(check["metric"], name))
        for row in mine[selected].itertuples(index=False):
            names = {**NO_METHOD, **_profile_names(profiles.get(row.method)),
                     **scopes.get((row.case, row.method, row.seed), {}), **json.loads(row.params or "{}"),
                     "value": row.value, "method": row.method, "seed": row.seed, "_message": row.message}
            ident = dict(suite=suite.name, case=row.case, method=row.method, seed=row.seed,
                         metric=row.metric, check=check["name"],
                         kind="sanity" if check.get("sanity") else "check", value=row.value)
            if row.status == "error":
                continue  # reported once, as a run error
            if row.status in ("diverged", "n/a"):  # n/a: the suite could not observe the method
                verdicts.append(verdict_row(**ident, verdict="n/a", detail=f"no value to check: {row.message}"))
                continue
            verdict = _judge(assertion, when, where, names, check, ident)
            if verdict is not None:
                verdicts.append(verdict)
    return verdicts


def _profile_names(profile: dict | None) -> dict[str, Any]:
    names = {k: v for k, v in (profile or {}).items() if k in NO_METHOD}
    return {**names, "judged_as": judged_as(profile)}


def _judge(assertion, when, where, names, check, ident) -> dict[str, Any] | None:
    """The verdict of one row; ``None`` when the row is outside the check's ``where`` scope."""
    cite = " ".join(check["cite"].split())  # a folded YAML block ends in a newline
    try:
        if where is not None and not where.evaluate(names):
            return None
        if when is not None and not when.evaluate(names):
            return verdict_row(**ident, verdict="n/a", detail=f"precondition `{when.text}` does not hold")
        held = bool(assertion.evaluate(names))
    except ExpressionError as exc:
        return verdict_row(**ident, verdict="error", detail=str(exc))
    bound = assertion.comparison_bound(names)
    shown = ", ".join(f"{k}={_short(names[k])}" for k in sorted(assertion.names) if k in names)
    detail = f"`{assertion.text}` {'holds' if held else 'is violated'} with {shown} ({cite})"
    if names.get("_message"):
        detail += f"; {names['_message']}"
    return verdict_row(**ident, verdict="pass" if held else "violation", reference=bound, detail=detail)


def _short(value: Any) -> str:
    return f"{value:.6g}" if isinstance(value, float) else str(value)
