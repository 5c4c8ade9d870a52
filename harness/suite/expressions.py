"""Check expressions written as data in suite files, e.g. ``value <= 1 / max(m, n)``.

An expression may use numbers, strings, lists, arithmetic, comparisons (chained),
``and``/``or``/``not``, ``in``, the functions in :data:`FUNCTIONS` and the names that
the caller binds (``value``, the case parameters, the case's other metrics, ``method``).
Anything else (attributes, subscripts, lambdas, comprehensions, unknown names) is
rejected when the suite file is loaded, so a typo fails early with its location.
"""
from __future__ import annotations

import ast
import math
from typing import Any, Iterable, Mapping

FUNCTIONS: dict[str, Any] = {
    "abs": abs, "min": min, "max": max, "sqrt": math.sqrt, "log": math.log,
    "log10": math.log10, "exp": math.exp, "ceil": math.ceil, "floor": math.floor,
    "isnan": math.isnan, "isfinite": math.isfinite,
}
CONSTANTS: dict[str, Any] = {"pi": math.pi, "inf": math.inf, "nan": math.nan,
                             "true": True, "false": False}

_ALLOWED_NODES = (
    ast.Expression, ast.BoolOp, ast.And, ast.Or, ast.UnaryOp, ast.Not, ast.USub, ast.UAdd,
    ast.BinOp, ast.Add, ast.Sub, ast.Mult, ast.Div, ast.FloorDiv, ast.Mod, ast.Pow,
    ast.Compare, ast.Eq, ast.NotEq, ast.Lt, ast.LtE, ast.Gt, ast.GtE, ast.In, ast.NotIn,
    ast.Call, ast.Name, ast.Load, ast.Constant, ast.List, ast.Tuple, ast.IfExp,
)


class ExpressionError(ValueError):
    """An expression that is malformed, uses a forbidden construct, or an unbound name."""


def compile_expression(text: str) -> "Expression":
    """Parse and whitelist ``text``; raises :class:`ExpressionError` with the reason."""
    try:
        tree = ast.parse(text, mode="eval")
    except SyntaxError as exc:
        raise ExpressionError(f"invalid expression {text!r}: {exc.msg}") from None
    for node in ast.walk(tree):
        if not isinstance(node, _ALLOWED_NODES):
            raise ExpressionError(f"{type(node).__name__} is not allowed in {text!r}")
        if isinstance(node, ast.Call):
            if not isinstance(node.func, ast.Name) or node.func.id not in FUNCTIONS:
                raise ExpressionError(f"only {', '.join(sorted(FUNCTIONS))} may be called "
                                      f"in {text!r}")
            if node.keywords:
                raise ExpressionError(f"keyword arguments are not allowed in {text!r}")
    return Expression(text, compile(tree, "<check>", "eval"), _free_names(tree))


def _free_names(tree: ast.AST) -> frozenset[str]:
    called = {n.func.id for n in ast.walk(tree) if isinstance(n, ast.Call)}
    names = {n.id for n in ast.walk(tree) if isinstance(n, ast.Name)}
    return frozenset(names - called - set(CONSTANTS))


class Expression:
    """A whitelisted, compiled expression and the names it needs."""

    def __init__(self, text: str, code: Any, names: frozenset[str]) -> None:
        self.text, self._code, self.names = text, code, names

    def missing(self, bound: Iterable[str]) -> set[str]:
        """Names the expression uses that ``bound`` does not provide."""
        return set(self.names) - set(bound)

    def evaluate(self, names: Mapping[str, Any]) -> Any:
        missing = self.missing(names)
        if missing:
            raise ExpressionError(f"{self.text!r} uses unknown name(s) {', '.join(sorted(missing))}; "
                                  f"known: {', '.join(sorted(names))}")
        scope = {**CONSTANTS, **FUNCTIONS, **names}
        return eval(self._code, {"__builtins__": {}}, scope)  # noqa: S307 - whitelisted AST

    def __repr__(self) -> str:
        return f"Expression({self.text!r})"
