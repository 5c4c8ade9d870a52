"""Run, judge and report: the steps ``verify``, ``check`` and ``report`` share."""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Sequence

import pandas as pd

from harness.baselines import judge, passed, rule_of, stored_baselines
from harness.baselines.identity import baseline_label
from harness.reporting import terminal_summary, write_html, write_junit
from harness.reporting.markdown import write_markdown_summary
from harness.results import ResultsDir
from harness.errors import UserError
from harness.runners import RunOptions, run_suites, runner_for
from harness.runners.isolation import default_max_memory
from harness.suite import Suite

from .overrides import parse_overrides


def run_options(args: argparse.Namespace, **extra) -> RunOptions:
    """The :class:`RunOptions` of a ``run`` / ``verify`` / ``check`` command line."""
    options = RunOptions(device=args.device, resume=args.resume, overwrite=args.overwrite,
                         retry_errors=args.retry_errors, timeout=args.timeout,
                         isolation=not args.no_isolation, max_cases=args.max_cases, threads=args.threads,
                         progress=True, command=sys.argv, executor=args.executor, workers=args.workers,
                         address=args.address, retries=args.retries,
                         overrides=parse_overrides(args.overrides, args.seeds).record(), **extra)
    if args.max_memory:
        options.max_memory = int(args.max_memory * 2**20)
    elif args.executor == "ray":
        # a local cluster shares this machine among its workers; a joined one's nodes are not
        # this machine: there a case is limited by its memory_mib and Ray's memory monitor
        options.max_memory = None if args.address else default_max_memory(args.workers or os.cpu_count() or 1)
    elif args.workers:
        options.max_memory = default_max_memory(args.workers)  # the machine shared by the workers
    if args.retry_errors and not args.resume:
        raise UserError("--retry-errors needs --resume")
    if args.resume and args.overwrite:
        raise UserError("--resume and --overwrite exclude each other")
    return options


def execute(suites: Sequence[Suite], *, preset: str, out: Path, options: RunOptions) -> ResultsDir:
    """Run the suites into ``out`` (see :func:`harness.runners.run_suites`)."""
    results = ResultsDir(out)
    run_suites(suites, preset, results, options)
    return results


def baseline_rows(suites: Sequence[Suite], results: ResultsDir, baselines: Path) -> pd.DataFrame:
    """The stored baseline rows of every suite of a run (its device class and preset), with ``suite``;
    NAME's rows also under the label ``VARIANT as NAME`` of a ``--as`` check (what it was compared with)."""
    manifest = results.manifest()
    lookup = stored_baselines(baselines, manifest.get("device_class", "cpu"), manifest.get("preset", "ci"))
    frames = [rows.assign(suite=s.name) for s in suites if (rows := lookup(s.name)) is not None]
    judged = {label: baseline_label(label, p) for label, p in (manifest.get("methods") or {}).items()
              if p.get("judged_as")}
    frames += [f[f["method"] == stored].assign(method=label) for label, stored in judged.items() for f in frames]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=["suite"])


def judge_results(suites: Sequence[Suite], results: ResultsDir, baselines: Path) -> pd.DataFrame:
    """Verdicts of a results folder against the stored baselines of its device class and preset."""
    manifest = results.manifest()
    lookup = stored_baselines(baselines, manifest.get("device_class", "cpu"), manifest.get("preset", "ci"))
    return judge(suites, results.rows(), lookup, sorted(results.planned_keys()), manifest.get("methods"),
                 results.completed_keys() if (results.path / "cases.jsonl").exists() else None)


def report_suite(suite: Suite) -> dict:
    """The suite as the report shows it: the file's content and its runner's metrics and rules."""
    declared = runner_for(suite.kind).declarations.metrics
    return {**suite.raw,
            "metrics": {name: {"unit": m.unit, "better": m.better,
                               "description": f"{m.description} [{m.kind}"
                                              f"{', implementation-specific' if m.implementation_specific else ''}]"}
                        for name, m in declared.items()},
            "compare": [{"metric": name, "rule": rule_of(m)} for name, m in declared.items() if m.kind != "info"]}


def baseline_notes(baselines: Path, device_class: str) -> list[str]:
    """What the reader must know about the baselines a run was compared with."""
    notes = []
    if not (baselines / device_class).is_dir():
        notes.append(f"No baselines exist for device class {device_class!r} under {baselines}: "
                     "every comparison is 'new'.")
    if not any(p.is_dir() for p in baselines.glob("cuda-*")):
        notes.append("No GPU baseline exists yet: there is no cuda-<gpu model> folder under "
                     f"{baselines}, so GPU timings and GPU results have not been recorded.")
    return notes


def publish(suites: Sequence[Suite], results: ResultsDir, verdicts: pd.DataFrame, *,
            report: Path | None, junit: Path | None, title: str, notes: Sequence[str] = (),
            baselines: pd.DataFrame | None = None, summary_md: Path | None = None,
            record_verdicts: bool = True) -> int:
    """Write the report files and the terminal summary; returns the exit code (0 or 1).

    ``record_verdicts``: also write ``verdicts.csv`` into the results folder (verify and check,
    whose run owns it; a report or a comparison never writes into a results folder)."""
    manifest = results.manifest()
    if record_verdicts:
        results.write_verdicts(verdicts)
    if report is not None:
        write_html(report, results.rows(), verdicts, [report_suite(s) for s in suites], manifest,
                   traces=results.traces(), artifacts=results.artifact_list(), title=title,
                   notes=list(notes), baselines=baselines)
    if junit is not None:
        write_junit(junit, verdicts)
    if summary_md is not None:
        write_markdown_summary(summary_md, verdicts, title=title, report=str(report) if report else None)
    print(terminal_summary(verdicts))
    for note in notes:
        print(f"note: {note}")
    for label, path in (("report", report), ("junit", junit), ("results", results.path)):
        if path is not None:
            print(f"{label}: {path}")
    return 0 if passed(verdicts) else 1
