"""Which runs may become a baseline: honest, complete runs of the suites as they are now.

:func:`admit` refuses, with one line saying why, a run that

* did not finish, has an ``error`` row or a planned case without a result;
* has a case the run did not plan, a row of a suite it did not run, or a suite, preset or
  device class that is not a plain name (a ``../`` would write outside ``--baselines``);
* was recorded without fingerprints, at another preset, or with settings other than the
  suite file in ``--suites-dir`` gives its cases now (its runner's defaults included);
* labels a variant as a built-in (``lipbench check V --as NAME``): a variant's values are not
  NAME's baseline (``--accept-relabelled`` merges them anyway);
* fails one of its suites' checks, a violation or an error (``--accept-failing``).

Values are finite in ``ok`` rows by construction: the results folder refuses other rows
when it is read (:func:`harness.results.rows.row_problem`).
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from harness.errors import UserError
from harness.results import ResultsDir, to_frame
from harness.results.fingerprint import DEFINING, defining, digest
from harness.runners import runner_for
from harness.suite import Suite

from .checks import evaluate_checks
from .verdict import FAILING

#: A suite, preset or device class: it names a baseline file, so nothing else.
NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_-]{0,99}$")
#: The fingerprint components of a suite-level (summary) row: it depends on the whole suite.
SUITE_LEVEL = ("lipbench", "suite", "kind", "preset")


class IncompleteRunError(UserError):
    """Baselines are only written from a run that finished every planned case without error."""


class RefusedRunError(UserError):
    """A run that may not become a baseline; the message says why and which flag accepts it."""


@dataclass(frozen=True)
class Acceptance:
    """What ``baseline update`` accepts only when asked explicitly."""

    failing: bool = False  # --accept-failing: runs whose checks fail
    relabelled: bool = False  # --accept-relabelled: `check --as NAME` runs as NAME's baseline
    outliers: bool = False  # --accept-outliers: outcomes beyond the robust z
    stale: bool = False  # --replace-stale: drop other sources' rows of another definition


@dataclass
class Admitted:
    """A run that may be merged: its manifest, rows (with their definition) and definitions."""

    results: ResultsDir
    manifest: dict[str, Any]
    rows: pd.DataFrame
    definitions: dict[str, dict[str, Any]] = field(default_factory=dict)


def check_name(value: Any, what: str, where: Any) -> str:
    if not isinstance(value, str) or not NAME.match(value):
        raise RefusedRunError(f"{where}: {what} {str(value)[:60]!r} is not a plain name (letters, digits, _ "
                              "and -); baselines are filed under it")
    return value


def check_complete(results: ResultsDir) -> dict[str, Any]:
    """The manifest of a run that finished every planned case without error rows."""
    manifest = results.manifest()
    if not manifest or not manifest.get("finished"):
        raise IncompleteRunError(f"{results.path}: the run did not finish; baselines need a complete run")
    rows = results.rows()
    errors = rows[rows["status"] == "error"]
    if len(errors):
        first = errors.iloc[0]
        raise IncompleteRunError(f"{results.path}: {len(errors)} error row(s), e.g. {first['suite']} "
                                 f"{first['case']} {first['method']}; fix them before updating baselines")
    missing = results.planned_keys() - results.completed_keys()
    if missing:
        raise IncompleteRunError(f"{results.path}: {len(missing)} planned case(s) have no result")
    return manifest


def admit(results: ResultsDir, suites: dict[str, Suite] | None = None,
          accept: Acceptance = Acceptance()) -> Admitted:
    """Check ``results`` (see the module doc) and return what may be merged from it.

    ``suites``: the suites as they are now, by name (the command line always gives them;
    without them the suite digests and checks are not compared)."""
    where = results.path
    manifest = check_complete(results)
    preset = check_name(manifest.get("preset"), "preset", where)
    check_name(manifest.get("device_class"), "device class", where)
    ran = {check_name(s, "suite", where) for s in manifest.get("suites", [])}
    planned = results.planned_keys()
    rows, definitions = [], {}
    for record in results.case_records():
        key = tuple(record["key"])
        label = f"{where}: case {' '.join(map(str, key))}"
        if key not in planned or key[0] not in ran:
            raise RefusedRunError(f"{label} has a result but was not planned by the run (plan.json, manifest); "
                                  "the folder was changed by something else")
        fp = record.get("fingerprint")
        if not isinstance(fp, dict) or any(k not in fp for k in DEFINING):
            raise RefusedRunError(f"{label} was recorded without a fingerprint (an earlier lipbench); "
                                  "run it again to make a baseline of it")
        _check_definition(fp, key[0], preset, suites, label, accept)
        definition = digest(defining(fp))
        definitions[definition] = _components(fp, DEFINING)
        rows += [{**row, "definition": definition} for row in record["rows"]]
    summaries = to_frame(results.summary_rows())
    for suite in sorted(set(summaries["suite"])):
        if suite not in ran:
            raise RefusedRunError(f"{where}: summaries of suite {suite!r}, which the run did not run")
    rows += _summary_rows(summaries, results, definitions)
    frame = pd.DataFrame(rows)
    if not accept.relabelled:
        relabelled = {label: p["judged_as"] for label, p in (manifest.get("methods") or {}).items()
                      if isinstance(p, dict) and p.get("judged_as")}
        if relabelled:
            label, name = sorted(relabelled.items())[0]
            raise RefusedRunError(f"{where}: a variant was run as {name!r} (lipbench check --as {name}, label "
                                  f"{label!r}); its values are not {name}'s baseline (--accept-relabelled merges "
                                  "them anyway)")
    if suites is not None and not accept.failing:
        _check_verdicts(results, manifest, ran, suites)
    return Admitted(results, manifest, frame, definitions)


def _check_definition(fp: dict[str, Any], suite_name: str, preset: str, suites: dict[str, Suite] | None,
                      label: str, accept: Acceptance) -> None:
    if fp.get("preset") != preset:
        raise RefusedRunError(f"{label}: recorded at preset {fp.get('preset')!r} in a run of preset {preset!r}")
    if not accept.relabelled:
        for method in fp.get("methods") or []:
            if isinstance(method, dict) and method.get("judged_as"):
                raise RefusedRunError(f"{label}: {method.get('name')!r} was run as {method['judged_as']!r} (lipbench "
                                      f"check --as); its values are not {method['judged_as']}'s baseline "
                                      "(--accept-relabelled merges them anyway)")
    if suites is None:
        return
    suite = suites.get(suite_name)
    if suite is None:
        raise RefusedRunError(f"{label}: no suite file of that name in the suites folder")
    if fp.get("kind") != suite.kind:
        raise RefusedRunError(f"{label}: run as kind {fp.get('kind')!r}; {suite.source} is of kind {suite.kind!r} now")
    now = digest({**runner_for(suite.kind).declarations.defaults(), **suite.resolved(preset).get("settings", {})})
    if now != digest(fp.get("settings")):
        raise RefusedRunError(f"{label}: was run with other settings than {suite.source} gives it now "
                              f"({_short(fp.get('settings'))}); run it again with this file")


def _short(value: Any) -> str:
    text = str(value)
    return text if len(text) <= 120 else text[:117] + "..."


def _components(fp: dict[str, Any], keys) -> dict[str, Any]:
    """The parts of a definition, stored in the baseline to name what differs: short values as they
    are, the rest as digests."""
    return {k: fp.get(k) if k in ("lipbench", "kind", "preset", "suite") else digest(fp.get(k)) for k in keys}


def _summary_rows(summaries: pd.DataFrame, results: ResultsDir, definitions: dict) -> list[dict]:
    """Summary rows, defined by their suite's suite-level components (from any of its records)."""
    first = {}
    for record in results.case_records():
        first.setdefault(record["key"][0], record.get("fingerprint") or {})
    out = []
    for row in summaries.to_dict("records"):
        fp = first.get(row["suite"], {})
        definition = digest({k: fp.get(k) for k in SUITE_LEVEL})
        definitions[definition] = _components({k: fp.get(k) for k in SUITE_LEVEL}, SUITE_LEVEL)
        out.append({**row, "definition": definition})
    return out


def _check_verdicts(results: ResultsDir, manifest: dict, ran: set[str], suites: dict[str, Suite]) -> None:
    rows = results.rows()
    for name in sorted(ran):
        if name not in suites:
            raise RefusedRunError(f"{results.path}: suite {name!r} of the run has no file in the suites folder")
        verdicts = pd.DataFrame(evaluate_checks(suites[name], rows, manifest.get("methods")))
        failing = verdicts[verdicts["verdict"].isin(FAILING)] if len(verdicts) else verdicts
        if len(failing):
            first = failing.iloc[0]
            raise RefusedRunError(f"{results.path}: {len(failing)} failing check verdict(s), e.g. {first['suite']} "
                                  f"{first['case']} {first['method']} seed={first['seed']} {first['check']}: "
                                  f"{first['verdict']}; a baseline records correct behaviour "
                                  "(--accept-failing merges it anyway)")
