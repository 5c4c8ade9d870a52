"""Safe evaluation of reference-curve expressions such as ``1/x`` or ``x/(sqrt(x)+1)**2``.

The expression is parsed with :mod:`ast` and interpreted node by node over numpy
float64 arrays; nothing is passed to ``eval``.  Allowed: numbers, the variable ``x``,
``pi`` and ``e``, ``+ - * / ** %``, unary ``+``/``-`` and calls of ``sqrt, log, log2,
log10, exp, abs, min, max, floor, ceil`` (``min``/``max`` are element-wise over their
arguments).  Anything else raises :class:`ExpressionError`.
"""
from __future__ import annotations

import ast
import functools
import operator

import numpy as np

__all__ = ["ExpressionError", "evaluate", "check_expression"]

MAX_LENGTH = 300

_BINOPS = {ast.Add: np.add, ast.Sub: np.subtract, ast.Mult: np.multiply,
           ast.Div: np.true_divide, ast.Pow: np.power, ast.Mod: np.mod}
_UNARY = {ast.USub: np.negative, ast.UAdd: operator.pos}
_CONSTANTS = {"pi": np.pi, "e": np.e}


def _reduce(fn):
    def f(*args):
        if not args:
            raise ExpressionError("min/max need at least one argument")
        return functools.reduce(fn, args)
    return f


_FUNCS = {"sqrt": np.sqrt, "log": np.log, "log2": np.log2, "log10": np.log10, "exp": np.exp,
          "abs": np.abs, "floor": np.floor, "ceil": np.ceil,
          "min": _reduce(np.minimum), "max": _reduce(np.maximum)}


class ExpressionError(ValueError):
    """The expression is not in the allowed subset."""


def _parse(expr: str) -> ast.Expression:
    if not isinstance(expr, str) or not expr.strip():
        raise ExpressionError("empty expression")
    if len(expr) > MAX_LENGTH:
        raise ExpressionError(f"expression longer than {MAX_LENGTH} characters")
    try:
        return ast.parse(expr.strip(), mode="eval")
    except SyntaxError as exc:
        raise ExpressionError(f"invalid expression {expr!r}: {exc.msg}") from None


def _eval(node: ast.AST, x: np.ndarray):
    if isinstance(node, ast.Expression):
        return _eval(node.body, x)
    if isinstance(node, ast.Constant):
        if isinstance(node.value, bool) or not isinstance(node.value, (int, float)):
            raise ExpressionError(f"constant {node.value!r} is not a number")
        return np.float64(node.value)
    if isinstance(node, ast.Name):
        if node.id == "x":
            return x
        if node.id in _CONSTANTS:
            return np.float64(_CONSTANTS[node.id])
        raise ExpressionError(f"unknown name {node.id!r} (allowed: x, pi, e)")
    if isinstance(node, ast.BinOp) and type(node.op) in _BINOPS:
        return _BINOPS[type(node.op)](_eval(node.left, x), _eval(node.right, x))
    if isinstance(node, ast.UnaryOp) and type(node.op) in _UNARY:
        return _UNARY[type(node.op)](_eval(node.operand, x))
    if isinstance(node, ast.Call):
        if not isinstance(node.func, ast.Name) or node.func.id not in _FUNCS:
            raise ExpressionError(f"function not allowed (allowed: {', '.join(sorted(_FUNCS))})")
        if node.keywords or any(isinstance(a, ast.Starred) for a in node.args):
            raise ExpressionError("keyword or starred arguments are not allowed")
        return _FUNCS[node.func.id](*(_eval(a, x) for a in node.args))
    raise ExpressionError(f"{type(node).__name__} is not allowed in a reference expression")


def check_expression(expr: str) -> None:
    """Raise :class:`ExpressionError` unless ``expr`` is in the allowed subset."""
    _eval(_parse(expr), np.ones(1))


def evaluate(expr: str, x) -> np.ndarray:
    """``expr`` evaluated at every point of ``x`` (float64 array of the same shape)."""
    xs = np.asarray(x, dtype=np.float64)
    tree = _parse(expr)
    with np.errstate(all="ignore"):
        y = _eval(tree, xs)
    return np.broadcast_to(np.asarray(y, dtype=np.float64), xs.shape).copy()
