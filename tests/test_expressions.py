"""The one expression language: checks and reference curves, typed at load, safe to evaluate."""
import time

import numpy as np
import pytest

from harness.expressions import NUMBER, STRING, ExpressionError, compile_curve, compile_expression

TYPES = {"value": NUMBER, "m": NUMBER, "n": NUMBER, "method": STRING}


def test_checks_evaluate():
    expr = compile_expression("value <= 1 / max(m, n) and method in ['sn_w', 'ssn']", TYPES)
    assert expr.evaluate({"value": 0.1, "m": 4, "n": 8, "method": "sn_w"}) is True
    assert expr.evaluate({"value": 0.2, "m": 4, "n": 8, "method": "sn_w"}) is False
    assert compile_expression("value <= 1 / max(m, n)", TYPES).comparison_bound({"m": 4, "n": 8}) == 0.125
    assert compile_expression("1 < value < 3 if method == 'a' else value == 0", TYPES).evaluate(
        {"value": 2, "method": "a"}) is True


def test_curves_evaluate_over_arrays():
    x = np.array([1.0, 4.0, 9.0])
    np.testing.assert_allclose(compile_curve("x/(sqrt(x)+1)**2").curve(x), x / (np.sqrt(x) + 1) ** 2)
    np.testing.assert_allclose(compile_curve("1").curve(x), [1, 1, 1])
    np.testing.assert_allclose(compile_curve("max(x, 4) - min(x, 4)").curve(x), [3, 0, 5])
    np.testing.assert_allclose(compile_curve("log(exp(x)) + abs(-pi) - pi").curve(x), x)
    assert np.isinf(compile_curve("9**9**9").curve([1.0])).all()  # float power: no giant integers


@pytest.mark.parametrize("text, why", [
    ("__import__('os')", "may be called"), ("value.__class__", "Attribute"), ("[value]", "List"),
    ("lambda: 1", "Lambda"), ("open('f')", "may be called"), ("y + 1", "unknown name 'y'"),
    ("method + 1", "needs numbers"), ("[0] * 10**10", "List"), ("method * 3", "needs numbers"),
    ("abs(value, 2)", "arguments"), ("sqrt(x=1)", "keyword"), ("value[0]", "Subscript"),
    ("", "empty"), ("-" * 100_000 + "1", "longer than"), ("-" * 60 + "1", "nesting deeper"),
    ("method < 'b'", "ordering comparisons need numbers"), ("value in method", "literal list"),
])
def test_checks_reject_at_load(text, why):
    with pytest.raises(ExpressionError, match=why):
        compile_expression(text, TYPES)


@pytest.mark.parametrize("text", ["'a'", "True", "x < 1", "y"])
def test_curves_must_be_numbers_of_x(text):
    with pytest.raises(ExpressionError):
        compile_curve(text)


@pytest.mark.parametrize("text", ["10**10**10", "exp(value * 1e6)", "value / 0", "sqrt(-value)"])
def test_arithmetic_errors_are_expression_errors_not_crashes_or_hangs(text):
    started = time.perf_counter()
    with pytest.raises(ExpressionError, match="cannot evaluate"):
        compile_expression(text, TYPES).evaluate({"value": 3.0})
    assert time.perf_counter() - started < 1.0  # not a giant integer or a hang


def test_a_missing_name_at_evaluation_is_named():
    with pytest.raises(ExpressionError, match="needs m, n"):
        compile_expression("value <= 1 / max(m, n)", TYPES).evaluate({"value": 1})
