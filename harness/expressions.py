"""The one expression language of suite files: check bounds and plot reference curves.

Examples: ``value <= 1 / max(m, n)``, ``abs(value - 1) <= 0.05 and claim == 'reshape_spectral'``,
``x / (sqrt(x) + 1) ** 2`` (a reference curve over the plot's x values).

What an expression may contain: numbers, strings, ``true``/``false``, names the caller
declares, ``+ - * / // % **`` on numbers, unary ``- + not``, comparisons (chained),
``and``/``or``, ``a if c else b``, ``x in [...]`` with a literal list, and calls of
:data:`FUNCTIONS`. Nothing else parses (no attributes, subscripts, lambdas,
comprehensions, keyword arguments).

Why it cannot hurt: expressions are at most :data:`MAX_LENGTH` characters and
:data:`MAX_DEPTH` levels deep; :func:`compile_expression` type-checks every name,
function and operator against the declared names *when the suite file loads*, so
arithmetic on strings or lists (``[0] * 10**10``) is refused there; and evaluation is
numpy float64 arithmetic with floating-point errors raised, so ``10**10**10`` or
``exp(value * 1e6)`` is an overflow error in microseconds, never a giant integer or a
hang. Evaluation is an interpreter over the parsed tree; nothing is passed to ``eval``.
"""
from __future__ import annotations

import ast
import functools
from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np

from harness.errors import UserError

MAX_LENGTH = 1000
MAX_DEPTH = 40

#: Types of the language: what a name or sub-expression can be.
NUMBER, STRING, BOOL, ANY = "number", "string", "bool", "any"


def _reduce(fn):
    def apply(*args):
        return functools.reduce(fn, args)
    return apply


#: name -> (function, smallest and largest number of arguments, result type)
FUNCTIONS: dict[str, tuple[Any, int, int, str]] = {
    "abs": (np.abs, 1, 1, NUMBER), "sqrt": (np.sqrt, 1, 1, NUMBER), "log": (np.log, 1, 1, NUMBER),
    "log2": (np.log2, 1, 1, NUMBER), "log10": (np.log10, 1, 1, NUMBER), "exp": (np.exp, 1, 1, NUMBER),
    "ceil": (np.ceil, 1, 1, NUMBER), "floor": (np.floor, 1, 1, NUMBER),
    "min": (_reduce(np.minimum), 1, 16, NUMBER), "max": (_reduce(np.maximum), 1, 16, NUMBER),
    "isnan": (np.isnan, 1, 1, BOOL), "isfinite": (np.isfinite, 1, 1, BOOL),
}
CONSTANTS: dict[str, tuple[Any, str]] = {"pi": (np.pi, NUMBER), "e": (np.e, NUMBER),
                                         "inf": (np.inf, NUMBER), "nan": (np.nan, NUMBER),
                                         "true": (True, BOOL), "false": (False, BOOL)}
_ARITH = {ast.Add: np.add, ast.Sub: np.subtract, ast.Mult: np.multiply, ast.Div: np.true_divide,
          ast.FloorDiv: np.floor_divide, ast.Mod: np.mod, ast.Pow: np.power}
_COMPARE = {ast.Eq: np.equal, ast.NotEq: np.not_equal, ast.Lt: np.less, ast.LtE: np.less_equal,
            ast.Gt: np.greater, ast.GtE: np.greater_equal}


class ExpressionError(UserError):
    """An expression that does not parse, uses a forbidden construct, an unknown name or a
    wrong type, or fails to evaluate (overflow, division by zero, ...)."""


@dataclass(frozen=True)
class Expression:
    """A parsed, type-checked expression and the names it reads."""

    text: str
    tree: ast.Expression
    names: frozenset[str]
    type: str

    def evaluate(self, names: Mapping[str, Any]) -> Any:
        """The value for scalar ``names``; :class:`ExpressionError` on any arithmetic error."""
        missing = self.names - set(names)
        if missing:
            raise ExpressionError(f"{self.text!r} needs {', '.join(sorted(missing))}, which this row "
                                  "does not have")
        try:
            with np.errstate(all="raise"):
                value = _Evaluator(names).visit(self.tree.body)
        except (FloatingPointError, ArithmeticError, TypeError, ValueError) as exc:
            raise ExpressionError(f"cannot evaluate {self.text!r}: {type(exc).__name__}: {exc}") from None
        return value.item() if isinstance(value, np.generic) else value

    def curve(self, x: Any) -> np.ndarray:
        """The value at every point of ``x`` (reference curves; non-finite points stay NaN/inf)."""
        xs = np.asarray(x, dtype=np.float64)
        with np.errstate(all="ignore"):
            y = _Evaluator({"x": xs}).visit(self.tree.body)
        return np.broadcast_to(np.asarray(y, dtype=np.float64), xs.shape).copy()

    def comparison_bound(self, names: Mapping[str, Any]) -> float:
        """For ``value <op> EXPR``, EXPR's value (shown in reports as the bound); NaN otherwise."""
        body = self.tree.body
        if (isinstance(body, ast.Compare) and isinstance(body.left, ast.Name) and body.left.id == "value"
                and len(body.comparators) == 1):
            try:
                with np.errstate(all="raise"):
                    return float(_Evaluator(names).visit(body.comparators[0]))
            except (FloatingPointError, ArithmeticError, TypeError, ValueError, KeyError):
                return float("nan")
        return float("nan")


def compile_expression(text: str, types: Mapping[str, str] | None = None) -> Expression:
    """Parse ``text`` and type-check it against ``types`` (name -> type; ``None``: any name).

    Raises :class:`ExpressionError` saying what is wrong.
    """
    if not isinstance(text, str) or not text.strip():
        raise ExpressionError("empty expression")
    if len(text) > MAX_LENGTH:
        raise ExpressionError(f"expression longer than {MAX_LENGTH} characters")
    try:
        tree = ast.parse(text.strip(), mode="eval")
    except (SyntaxError, RecursionError, MemoryError, ValueError) as exc:
        raise ExpressionError(f"invalid expression {text!r}: {getattr(exc, 'msg', exc)}") from None
    checker = _TypeChecker(text, types)
    result = checker.visit(tree.body)
    return Expression(text, tree, frozenset(checker.names), result)


def compile_curve(text: str) -> Expression:
    """A reference curve ``y(x)`` of a plot: a number-valued expression of ``x`` alone."""
    expression = compile_expression(text, {"x": NUMBER})
    if expression.type not in (NUMBER, ANY):
        raise ExpressionError(f"a reference curve must be a number, {text!r} is a {expression.type}")
    return expression


class _TypeChecker(ast.NodeVisitor):
    """The type of every sub-expression; :class:`ExpressionError` on anything not allowed."""

    def __init__(self, text: str, types: Mapping[str, str] | None) -> None:
        self.text, self.types, self.names, self.depth = text, types, set(), 0

    def fail(self, what: str) -> ExpressionError:
        return ExpressionError(f"{what} in {self.text!r}")

    def visit(self, node: ast.AST) -> str:
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise self.fail(f"nesting deeper than {MAX_DEPTH}")
        try:
            method = getattr(self, f"visit_{type(node).__name__}", None)
            if method is None:
                raise self.fail(f"{type(node).__name__} is not allowed")
            return method(node)
        finally:
            self.depth -= 1

    def numbers(self, *nodes: ast.AST, what: str) -> None:
        for node in nodes:
            if self.visit(node) not in (NUMBER, BOOL, ANY):
                raise self.fail(f"{what} needs numbers")

    def visit_Constant(self, node: ast.Constant) -> str:
        if isinstance(node.value, bool):
            return BOOL
        if isinstance(node.value, (int, float)):
            return NUMBER
        if isinstance(node.value, str):
            return STRING
        raise self.fail(f"the constant {node.value!r} is not allowed")

    def visit_Name(self, node: ast.Name) -> str:
        if node.id in CONSTANTS:
            return CONSTANTS[node.id][1]
        if node.id in FUNCTIONS:
            raise self.fail(f"{node.id} is a function; call it")
        if self.types is not None and node.id not in self.types:
            known = ", ".join(sorted(self.types))
            raise self.fail(f"unknown name {node.id!r} (known: {known})")
        self.names.add(node.id)
        return self.types[node.id] if self.types is not None else ANY

    def visit_BinOp(self, node: ast.BinOp) -> str:
        if type(node.op) not in _ARITH:
            raise self.fail(f"the operator {type(node.op).__name__} is not allowed")
        self.numbers(node.left, node.right, what="arithmetic")
        return NUMBER

    def visit_UnaryOp(self, node: ast.UnaryOp) -> str:
        if isinstance(node.op, ast.Not):
            self.visit(node.operand)
            return BOOL
        if isinstance(node.op, (ast.USub, ast.UAdd)):
            self.numbers(node.operand, what="a sign")
            return NUMBER
        raise self.fail(f"the operator {type(node.op).__name__} is not allowed")

    def visit_BoolOp(self, node: ast.BoolOp) -> str:
        for value in node.values:
            self.visit(value)
        return BOOL

    def visit_IfExp(self, node: ast.IfExp) -> str:
        self.visit(node.test)
        a, b = self.visit(node.body), self.visit(node.orelse)
        return a if a == b else ANY

    def visit_Compare(self, node: ast.Compare) -> str:
        left = self.visit(node.left)
        for op, right in zip(node.ops, node.comparators):
            if isinstance(op, (ast.In, ast.NotIn)):
                if not isinstance(right, (ast.List, ast.Tuple)):
                    raise self.fail("`in` needs a literal list on its right")
                for item in right.elts:
                    self.visit(item)
                continue
            if type(op) not in _COMPARE:
                raise self.fail(f"the comparison {type(op).__name__} is not allowed")
            kind = self.visit(right)
            if type(op) not in (ast.Eq, ast.NotEq) and STRING in (left, kind):
                raise self.fail("ordering comparisons need numbers")
            left = kind
        return BOOL

    def visit_Call(self, node: ast.Call) -> str:
        if not isinstance(node.func, ast.Name) or node.func.id not in FUNCTIONS:
            raise self.fail(f"only {', '.join(sorted(FUNCTIONS))} may be called")
        if node.keywords or any(isinstance(a, ast.Starred) for a in node.args):
            raise self.fail("keyword or starred arguments are not allowed")
        _, low, high, result = FUNCTIONS[node.func.id]
        if not low <= len(node.args) <= high:
            raise self.fail(f"{node.func.id} takes {low}..{high} arguments")
        self.numbers(*node.args, what=node.func.id)
        return result


class _Evaluator:
    """Evaluates a checked tree; numbers are numpy float64 (scalars or arrays)."""

    def __init__(self, names: Mapping[str, Any]) -> None:
        self.names = names

    def visit(self, node: ast.AST) -> Any:
        return getattr(self, f"visit_{type(node).__name__}")(node)

    def visit_Constant(self, node: ast.Constant) -> Any:
        if isinstance(node.value, (int, float)) and not isinstance(node.value, bool):
            return np.float64(node.value)
        return node.value

    def visit_Name(self, node: ast.Name) -> Any:
        if node.id in CONSTANTS:
            return CONSTANTS[node.id][0]
        value = self.names[node.id]
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return np.float64(value)
        return value

    def visit_BinOp(self, node: ast.BinOp) -> Any:
        return _ARITH[type(node.op)](self.visit(node.left), self.visit(node.right))

    def visit_UnaryOp(self, node: ast.UnaryOp) -> Any:
        value = self.visit(node.operand)
        if isinstance(node.op, ast.Not):
            return not bool(value)
        return -value if isinstance(node.op, ast.USub) else +value

    def visit_BoolOp(self, node: ast.BoolOp) -> Any:
        if isinstance(node.op, ast.And):
            return all(bool(self.visit(v)) for v in node.values)
        return any(bool(self.visit(v)) for v in node.values)

    def visit_IfExp(self, node: ast.IfExp) -> Any:
        return self.visit(node.body) if bool(self.visit(node.test)) else self.visit(node.orelse)

    def visit_Compare(self, node: ast.Compare) -> Any:
        left = self.visit(node.left)
        for op, right_node in zip(node.ops, node.comparators):
            if isinstance(op, (ast.In, ast.NotIn)):
                inside = any(left == self.visit(item) for item in right_node.elts)
                held = inside if isinstance(op, ast.In) else not inside
                right = None
            else:
                right = self.visit(right_node)
                held = bool(_COMPARE[type(op)](left, right)) if not isinstance(left, str) \
                    and not isinstance(right, str) else _compare_text(op, left, right)
            if not held:
                return False
            left = right
        return True

    def visit_Call(self, node: ast.Call) -> Any:
        fn = FUNCTIONS[node.func.id][0]
        return fn(*(self.visit(a) for a in node.args))


def _compare_text(op: ast.cmpop, left: Any, right: Any) -> bool:
    return (left == right) if isinstance(op, ast.Eq) else (left != right)


__all__ = ["ANY", "BOOL", "CONSTANTS", "Expression", "ExpressionError", "FUNCTIONS", "NUMBER", "STRING",
           "compile_curve", "compile_expression"]
