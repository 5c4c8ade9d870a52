"""Load and validate suite files; every mistake is reported as ``file:line: key: what is wrong``."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable, Sequence

import jsonschema
import yaml

from .expressions import ExpressionError, compile_expression
from .model import Suite
from .schema import SUITE_SCHEMA


class SuiteError(ValueError):
    """One or more problems in a suite file; ``str()`` lists them one per line."""

    def __init__(self, problems: Sequence[str]) -> None:
        self.problems = list(problems)
        super().__init__("\n".join(self.problems))


def _line_map(node: yaml.Node, path: tuple = (), out: dict | None = None) -> dict[tuple, int]:
    """Map each key path (tuple of keys / indices) to its 1-based line in the file."""
    out = {} if out is None else out
    out.setdefault(path, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            child = path + (key_node.value,)
            out[child] = key_node.start_mark.line + 1
            _line_map(value_node, child, out)
            out[child] = key_node.start_mark.line + 1
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            _line_map(item, path + (index,), out)
    return out


def _dotted(path: Iterable) -> str:
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text or "(top level)"


def _where(lines: dict[tuple, int], path: tuple) -> int:
    while path not in lines and path:
        path = path[:-1]
    return lines.get(path, 1)


def load_suite(path: str | Path, known_kinds: Iterable[str] | None = None,
               known_methods: Iterable[str] | None = None) -> Suite:
    """Parse, validate and return the suite in ``path``; raises :class:`SuiteError`."""
    path = Path(path)
    label = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise SuiteError([f"{label}:1: cannot read suite file: {exc.strerror}"]) from None
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark else 1
        raise SuiteError([f"{label}:{line}: YAML syntax: {getattr(exc, 'problem', exc)}"]) from None
    if not isinstance(data, dict):
        raise SuiteError([f"{label}:1: a suite file must be a mapping of keys to values"])
    lines = _line_map(node)

    problems = []
    validator = jsonschema.Draft202012Validator(SUITE_SCHEMA)
    for err in sorted(validator.iter_errors(data), key=lambda e: list(map(str, e.absolute_path))):
        where = tuple(err.absolute_path)
        problems.append(f"{label}:{_where(lines, where)}: {_dotted(where)}: {err.message}")
    if not problems:
        problems = [f"{label}:{_where(lines, where)}: {_dotted(where)}: {msg}"
                    for where, msg in _semantic_problems(data, known_kinds, known_methods)]
    if problems:
        raise SuiteError(problems)
    return Suite.from_dict(data, source=label)


def _semantic_problems(data: dict, known_kinds, known_methods) -> list[tuple[tuple, str]]:
    """What the schema cannot say: expressions, metric names, kinds, method names."""
    found = []
    metrics = set(data["metrics"])
    if known_kinds is not None and data["kind"] not in set(known_kinds):
        found.append((("kind",), f"unknown kind {data['kind']!r}; known: {', '.join(sorted(known_kinds))}"))
    for i, check in enumerate(data.get("checks", [])):
        if check["metric"] not in metrics:
            found.append((("checks", i, "metric"), f"metric {check['metric']!r} is not declared in metrics"))
        for key in ("assert", "when", "where"):
            if key in check:
                try:
                    compile_expression(check[key])
                except ExpressionError as exc:
                    found.append((("checks", i, key), str(exc)))
    for i, rule in enumerate(data.get("compare", [])):
        if rule["metric"] not in metrics:
            found.append((("compare", i, "metric"), f"metric {rule['metric']!r} is not declared in metrics"))
    if known_methods is not None:
        known = set(known_methods)
        lists = [(("methods",), data.get("methods", []))]
        lists += [(("presets", p, "methods"), v.get("methods", [])) for p, v in data["presets"].items()]
        for where, methods in lists:
            for i, spec in enumerate(methods):
                name = spec if isinstance(spec, str) else spec["name"]
                if ":" not in name and name not in known:
                    found.append((where + (i,), f"unknown method {name!r}; available: {', '.join(sorted(known))}"))
    return found


def load_suites(paths: Iterable[str | Path], **known: Any) -> list[Suite]:
    """Load several suites, collecting the problems of all of them before raising."""
    suites, problems = [], []
    for path in paths:
        try:
            suites.append(load_suite(path, **known))
        except SuiteError as exc:
            problems += exc.problems
    if problems:
        raise SuiteError(problems)
    return suites
