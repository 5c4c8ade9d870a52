"""Suite files: validation errors name file, line and key; matrices and presets expand as documented."""
import textwrap

import pytest

from harness.runners import kinds, runner_for
from harness.suite import ExpressionError, SuiteError, compile_expression, expand, load_suite


def load(path, **known):
    known.setdefault("known_kinds", kinds())
    return load_suite(path, declarations_for=lambda kind: runner_for(kind).declarations, **known)

GOOD = """\
name: demo
description: a demo suite
kind: thm2_variance
seeds: [0, 1]
matrix:
  m: [2, 4]
  n: [3]
settings: {matrices: 10}
checks:
  - name: bound
    metric: variance
    assert: "value <= 1 / max(m, n)"
    cite: "Lin et al. 2021, Thm 2"
presets:
  ci: {settings: {matrices: 5}}
  full:
    matrix: {m: [2, 4, 8]}
"""


def write(tmp_path, text, name="demo.yaml"):
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


def test_good_suite_expands_presets(tmp_path):
    suite = load(write(tmp_path, GOOD))
    ci = suite.cases("ci")
    assert [c.case for c in ci] == ["m=2,n=3", "m=2,n=3", "m=4,n=3", "m=4,n=3"]
    assert [c.seed for c in ci] == [0, 1, 0, 1]
    assert ci[0].settings == {"matrices": 5}
    assert len(suite.cases("full")) == 6


@pytest.mark.parametrize("bad, line, key", [
    (GOOD.replace("kind: thm2_variance", "kind: 7"), 3, "kind"),
    (GOOD.replace("seeds: [0, 1]", "seeds: [zero]"), 4, "seeds[0]"),
    (GOOD.replace("settings: {matrices: 10}", "settings: {matrixes: 10}"), 8, "settings.matrixes"),
    (GOOD.replace("settings: {matrices: 10}", "settings: {matrices: ten}"), 8, "settings.matrices"),
    (GOOD.replace("  m: [2, 4]", "  mm: [2, 4]"), 6, "matrix.mm[0]"),
    (GOOD.replace('assert: "value <= 1 / max(m, n)"', 'assert: "value <= 1 / max(m, n"'), 12, "checks[0].assert"),
    (GOOD.replace('assert: "value <= 1 / max(m, n)"', 'assert: "__import__(1)"'), 12, "checks[0].assert"),
    (GOOD.replace('assert: "value <= 1 / max(m, n)"', 'assert: "value <= 1 / max(m, k)"'), 12, "checks[0].assert"),
    (GOOD.replace("metric: variance\n", "metric: varianse\n"), 11, "checks[0].metric"),
    (GOOD.replace("  ci: {settings: {matrices: 5}}\n", "  ci: {setings: {matrices: 5}}\n"), 15, "presets.ci"),
    (GOOD.replace("  full:\n    matrix: {m: [2, 4, 8]}\n", ""), 14, "presets"),
    (GOOD + "metrics: {variance: {unit: '1'}}\n", 1, "(top level)"),
])
def test_mistakes_name_file_line_and_key(tmp_path, bad, line, key):
    path = write(tmp_path, bad)
    with pytest.raises(SuiteError) as err:
        load(path)
    first = err.value.problems[0]
    assert first.startswith(f"{path}:{line}: {key}:"), first


def test_unknown_kind_and_method_are_reported(tmp_path):
    text = GOOD.replace("seeds: [0, 1]", "seeds: [0, 1]\nmethods: [sn_x]")
    with pytest.raises(SuiteError) as err:
        load(write(tmp_path, text), known_kinds=["other"], known_methods=["none", "sn_w"])
    text = str(err.value)
    assert ":3: kind: unknown kind 'thm2_variance'" in text
    assert ":5: methods[0]: unknown method 'sn_x'" in text


def test_yaml_syntax_error_has_a_line(tmp_path):
    path = write(tmp_path, GOOD.replace("seeds: [0, 1]", "seeds: [0, 1"))
    with pytest.raises(SuiteError, match=rf"{path}:\d+: YAML syntax"):
        load_suite(path)


def test_matrix_include_exclude():
    combos = expand({"a": [1, 2], "b": ["x", "y"]}, include=[{"a": 9, "b": "z"}], exclude=[{"a": 2}])
    assert combos == [{"a": 1, "b": "x"}, {"a": 1, "b": "y"}, {"a": 9, "b": "z"}]


def test_expressions_evaluate_and_reject_unsafe_constructs():
    expr = compile_expression("value <= 1 / max(m, n) and method in ['sn_w', 'ssn']")
    assert expr.evaluate({"value": 0.1, "m": 4, "n": 8, "method": "sn_w"}) is True
    assert expr.evaluate({"value": 0.2, "m": 4, "n": 8, "method": "sn_w"}) is False
    for text in ("x.__class__", "open('f')", "[a for a in b]", "lambda: 1", "x[0]"):
        with pytest.raises(ExpressionError):
            compile_expression(text)
    with pytest.raises(ExpressionError, match="needs m, method, n"):
        expr.evaluate({"value": 1})


def test_shipped_suites_are_valid():
    from harness.cli.locate import resolve_suites, suites_dir
    suites = resolve_suites([], suites_dir())
    assert {s.name for s in suites} >= {"thm2_variance", "thm3_bsn_variance"}
    for suite in suites:
        assert suite.cases("ci"), suite.name


def test_ambiguous_matrix_values_collide_without_declared_types(tmp_path):
    """2 and '2' print as one case id; without a runner's types only the collision check sees it."""
    path = write(tmp_path, GOOD.replace("  m: [2, 4]", "  m: [2, '2']"))
    with pytest.raises(SuiteError, match=r"give the same case id 'm=2,n=3'"):
        load_suite(path)
