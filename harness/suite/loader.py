"""Load and validate suite files; every mistake is reported as ``file:line: key: what is wrong``.

A suite file is untrusted input, so before anything is expanded or built:

* it must be UTF-8 and at most :data:`MAX_BYTES` long;
* YAML aliases (``*name``) are refused while parsing, before any expansion, so neither an
  alias bomb nor a self-referencing alias (``&x [*x]``) can cost memory or recursion;
* a key given twice in one mapping is an error (YAML would silently keep the last);
* ``name:`` must be the file's stem (results and baselines are filed under it), and two
  files of one name in one run are an error;
* the schema, kinds, methods, metric names and every expression (type-checked against the
  names a row will have) are validated;
* every preset's case count is computed without expanding; presets within
  :data:`~.model.DEFAULT_MAX_CASES` are expanded and checked for case-id collisions
  (``2``, ``"2"`` and ``2.0`` would otherwise be one case).
"""
from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Any, Callable, Iterable

import jsonschema
import yaml

from harness.errors import UserError
from harness.expressions import ANY, BOOL, NUMBER, STRING, ExpressionError, compile_curve, compile_expression

from .model import DEFAULT_MAX_CASES, ROW_NAMES, Suite, SuiteError, SuiteLines
from .schema import SUITE_SCHEMA

#: Largest suite file read (a suite is a page of YAML; this is generous).
MAX_BYTES = 1_000_000


def _line_map(node: yaml.Node, path: tuple = (), out: dict | None = None) -> dict[tuple, int]:
    """Map each key path (tuple of keys / indices) to its 1-based line in the file."""
    out = {} if out is None else out
    out.setdefault(path, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            child = path + (key_node.value,)
            _line_map(value_node, child, out)
            out[child] = key_node.start_mark.line + 1
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            _line_map(item, path + (index,), out)
    return out


def _duplicate_keys(node: yaml.Node, path: tuple = ()) -> list[tuple[tuple, int, str]]:
    found = []
    if isinstance(node, yaml.MappingNode):
        seen: dict[Any, int] = {}
        for key_node, value_node in node.value:
            key = key_node.value
            if key in seen:
                found.append((path + (key,), key_node.start_mark.line + 1,
                              f"the key {key!r} is given twice (first on line {seen[key]})"))
            seen.setdefault(key, key_node.start_mark.line + 1)
            found += _duplicate_keys(value_node, path + (key,))
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            found += _duplicate_keys(item, path + (index,))
    return found


def _dotted(path: Iterable) -> str:
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text or "(top level)"


def _read_text(path: Path, label: str) -> str:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)  # a FIFO must not block the load
    except OSError as exc:
        raise SuiteError([f"{label}:1: cannot read suite file: {exc.strerror}"]) from None
    with os.fdopen(fd, "rb") as handle:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise SuiteError([f"{label}:1: not a regular file"])
        data = handle.read(MAX_BYTES + 1)
    if len(data) > MAX_BYTES:
        raise SuiteError([f"{label}:1: suite file larger than {MAX_BYTES} bytes"])
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[:exc.start].count(b"\n") + 1
        raise SuiteError([f"{label}:{line}: not UTF-8 (byte 0x{data[exc.start]:02x}); "
                          "save the suite file as UTF-8"]) from None


def _refuse_aliases(text: str, label: str) -> None:
    for event in yaml.parse(text, Loader=yaml.SafeLoader):
        if isinstance(event, yaml.AliasEvent):
            raise SuiteError([f"{label}:{event.start_mark.line + 1}: YAML alias *{event.anchor} is "
                              "not allowed (write the value out)"])


def _syntax_error(exc: yaml.YAMLError, label: str) -> SuiteError:
    mark = getattr(exc, "problem_mark", None)
    line = mark.line + 1 if mark else 1
    problem = " ".join(str(getattr(exc, "problem", None) or exc).split())
    return SuiteError([f"{label}:{line}: YAML syntax: {problem}"])


def parse_yaml_value(text: str, label: str) -> Any:
    """One value given as YAML on the command line (``--param k=VALUE``), aliases refused."""
    if len(text) > MAX_BYTES:
        raise SuiteError([f"{label}: value longer than {MAX_BYTES} characters"])
    try:
        _refuse_aliases(text, label)
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        problem = " ".join(str(getattr(exc, "problem", None) or exc).split())
        raise SuiteError([f"{label}: {text[:40]!r} is not a valid YAML value ({problem})"]) from None


def _parse(text: str, label: str) -> tuple[dict, yaml.Node]:
    """The data and node tree of ``text``; aliases, duplicate keys and syntax errors refused."""
    try:
        _refuse_aliases(text, label)
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise _syntax_error(exc, label) from None
    if not isinstance(data, dict) or node is None:
        raise SuiteError([f"{label}:1: a suite file must be a mapping of keys to values"])
    duplicates = _duplicate_keys(node)
    if duplicates:
        raise SuiteError([f"{label}:{line}: {_dotted(where)}: {msg}" for where, line, msg in duplicates])
    return data, node


def load_suite(path: str | Path, known_kinds: Iterable[str] | None = None,
               known_methods: Iterable[str] | None = None,
               check_method: Callable[[str, dict], None] | None = None,
               declarations_for: Callable[[str], Any] | None = None) -> Suite:
    """Parse, validate and return the suite in ``path``; raises :class:`SuiteError`.

    ``check_method(name, params)`` validates a method without calling it (it raises with
    the reason); ``known_methods`` are the registry names; ``declarations_for(kind)`` gives
    the runner's :class:`~harness.runners.spec.Declarations` (params, settings, metrics).
    """
    path = Path(path)
    label = str(path)
    data, node = _parse(_read_text(path, label), label)
    lines = SuiteLines(label, _line_map(node))

    problems = []
    validator = jsonschema.Draft202012Validator(SUITE_SCHEMA)
    for err in sorted(validator.iter_errors(data), key=lambda e: list(map(str, e.absolute_path))):
        where = tuple(err.absolute_path)
        problems.append(f"{lines.at(where)}: {_dotted(where)}: {err.message}")
    if not problems and data["name"] != path.stem:
        problems.append(f"{lines.at(('name',))}: name: {data['name']!r} must be the file's stem {path.stem!r} "
                        "(results and baselines are filed under it); rename one of them")
    if not problems:
        declarations = None
        if declarations_for is not None and (known_kinds is None or data["kind"] in set(known_kinds)):
            declarations = declarations_for(data["kind"])
        problems = [f"{lines.at(where)}: {_dotted(where)}: {msg}"
                    for where, msg in _semantic_problems(data, known_kinds, known_methods, check_method,
                                                         declarations)]
    if not problems:
        suite = Suite.from_dict(data, source=label, lines=lines)
        problems = _case_problems(suite)
    if problems:
        raise SuiteError(problems)
    return suite


def _semantic_problems(data: dict, known_kinds, known_methods, check_method,
                       declarations) -> list[tuple[tuple, str]]:
    """What the schema cannot say: kinds, settings, parameters, methods, metric names, expressions."""
    found = []
    if known_kinds is not None and data["kind"] not in set(known_kinds):
        found.append((("kind",), f"unknown kind {data['kind']!r}; known: {', '.join(sorted(known_kinds))}"))
    if declarations is not None:
        found += _declaration_problems(data, declarations)
    types = check_types(data, declarations)
    for i, check in enumerate(data.get("checks", [])):
        if declarations is not None and declarations.metric(check["metric"]) is None:
            found.append((("checks", i, "metric"), f"kind {data['kind']!r} reports no metric "
                          f"{check['metric']!r}; it reports: {', '.join(declarations.metrics)}"))
        for key in ("assert", "when", "where"):
            if key in check:
                try:
                    compile_expression(check[key], types)
                except ExpressionError as exc:
                    found.append((("checks", i, key), str(exc)))
    for i, plot in enumerate(data.get("plots", [])):
        for j, ref in enumerate(plot.get("reference", [])):
            try:
                compile_curve(ref["expr"])
            except ExpressionError as exc:
                found.append((("plots", i, "reference", j, "expr"), str(exc)))
    found += _method_problems(data, known_methods, check_method)
    found += _seed_problems(data)
    return found


def _seed_problems(data: dict) -> list[tuple[tuple, str]]:
    """Seeds are integers as written: the schema's ``integer`` also admits ``1.0``."""
    sources = [((), data)] + [(("presets", p), v) for p, v in data["presets"].items()]
    return [(where + ("seeds", i), f"expected an integer seed, got {type(seed).__name__} {seed!r}")
            for where, source in sources for i, seed in enumerate(source.get("seeds", []))
            if not isinstance(seed, int) or isinstance(seed, bool)]


def _method_problems(data: dict, known_methods, check_method) -> list[tuple[tuple, str]]:
    found = []
    lists = [(("methods",), data.get("methods", []))]
    lists += [(("presets", p, "methods"), v.get("methods", [])) for p, v in data["presets"].items()]
    known = set(known_methods) if known_methods is not None else None
    for where, methods in lists:
        for i, spec in enumerate(methods):
            name = spec if isinstance(spec, str) else spec["name"]
            params = {} if isinstance(spec, str) else dict(spec.get("params") or {})
            if known is not None and ":" not in name and name not in known:
                found.append((where + (i,), f"unknown method {name!r}; available: {', '.join(sorted(known))}"))
                continue
            if check_method is not None:
                try:
                    check_method(name, params)
                except (UserError, LookupError, TypeError, ValueError) as exc:
                    found.append((where + (i,), str(exc)))
    return found


def _declaration_problems(data: dict, decl) -> list[tuple[tuple, str]]:
    """Settings and case parameters against the runner's declarations (names, types, required)."""
    kind, found = data["kind"], []
    sources = [((), data)] + [(("presets", p), v) for p, v in data["presets"].items()]
    for where, source in sources:
        for key, value in (source.get("settings") or {}).items():
            found += _fits(where + ("settings", key), kind, "setting", key, value, decl.settings)
        for key, values in (source.get("matrix") or {}).items():
            for i, value in enumerate(values):
                found += _fits(where + ("matrix", key, i), kind, "parameter", key, value, decl.params)
        for name in ("include", "exclude"):
            for i, combo in enumerate(source.get(name) or []):
                for key, value in combo.items():
                    found += _fits(where + (name, i, key), kind, "parameter", key, value, decl.params)
    for preset, over in data["presets"].items():
        merged = {**(data.get("settings") or {}), **(over.get("settings") or {})}
        missing = [k for k, spec in decl.settings.items() if spec.required and k not in merged]
        if missing:
            found.append((("presets", preset), f"preset {preset!r} lacks the required setting(s) "
                          f"{', '.join(missing)} of kind {kind!r}"))
    return found


def _fits(where: tuple, kind: str, what: str, key: str, value: Any, declared) -> list[tuple[tuple, str]]:
    spec = declared.get(key)
    if spec is None:
        known = ", ".join(sorted(declared)) or "none"
        return [(where, f"kind {kind!r} has no {what} {key!r}; its {what}s: {known}")]
    problem = spec.type_problem(value)
    return [(where, problem)] if problem else []


def check_types(data: dict, declarations=None) -> dict[str, str]:
    """The names a check expression may use, with their types: the row's own names, every
    metric the runner declares by name, and the case parameters."""
    types = dict(ROW_NAMES)
    if declarations is not None:
        types.update({m: NUMBER for m in declarations.metrics if "*" not in m})
        types.update({k: _declared_type(spec) for k, spec in declarations.params.items()})
    values: dict[str, set[str]] = {}
    sources = [data] + list(data.get("presets", {}).values())
    for source in sources:
        for key, options in (source.get("matrix") or {}).items():
            values.setdefault(key, set()).update(_type_of(v) for v in options)
        for combo in source.get("include") or []:
            for key, value in combo.items():
                values.setdefault(key, set()).add(_type_of(value))
    for key, kinds in values.items():
        types[key] = kinds.pop() if len(kinds) == 1 else ANY
    return types


def _declared_type(spec) -> str:
    kinds = spec.type if isinstance(spec.type, tuple) else (spec.type,)
    found = {BOOL if t is bool else NUMBER if t in (int, float) else STRING if t is str else ANY for t in kinds}
    return found.pop() if len(found) == 1 else ANY


def _type_of(value: Any) -> str:
    if isinstance(value, bool):
        return BOOL
    if isinstance(value, (int, float)):
        return NUMBER
    return STRING if isinstance(value, str) else ANY


def _case_problems(suite: Suite) -> list[str]:
    problems = []
    for preset in suite.presets:
        try:
            suite.cases(preset, max_cases=DEFAULT_MAX_CASES, check_ids=True)
        except SuiteError as exc:
            if "more than --max-cases" not in str(exc):  # sizes are judged against --max-cases at run time
                problems += exc.problems
    return problems


def load_suites(paths: Iterable[str | Path], **known: Any) -> list[Suite]:
    """Load several suites, collecting the problems of all of them before raising; one file
    named twice is loaded once, two files of one name are an error."""
    suites, problems, seen = [], [], {}
    for path in paths:
        real = Path(path).resolve()
        if real in seen.values():
            continue
        try:
            suite = load_suite(path, **known)
        except SuiteError as exc:
            problems += exc.problems
            continue
        if suite.name in seen:
            problems.append(f"{suite.at('name')}: name: suite {suite.name!r} is also defined by {seen[suite.name]}; "
                            "one run takes one file per suite name")
            continue
        seen[suite.name] = real
        suites.append(suite)
    if problems:
        raise SuiteError(problems)
    return suites
