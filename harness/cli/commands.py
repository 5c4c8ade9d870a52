"""The ``lipbench`` sub-commands (argument parsing lives in :mod:`harness.cli.main`)."""
from __future__ import annotations

import argparse
import contextlib
import dataclasses
from pathlib import Path

from harness.errors import UserError
from harness.baselines import judge, passed, results_as_baseline, update_baselines
from harness.baselines.admission import NAME, Acceptance
from harness.baselines.compare import tolerance_of
from harness.methods import available
from harness.methods.registry import check as check_method
from harness.results import ResultsDir
from harness.runners import runner_for
from harness.suite import MethodSpec, Suite
from harness.suite.loader import parse_yaml_value

from .locate import baselines_dir, resolve_suites, suite_files, suites_dir
from .pipeline import baseline_notes, baseline_rows, execute, judge_results, publish, run_options


class UsageError(UserError):
    """A command-line mistake that is not a suite-file error (exit code 2)."""


def cmd_list(args: argparse.Namespace) -> int:
    directory = suites_dir(args.suites_dir)
    suites = resolve_suites([], directory, import_methods=False) if suite_files(directory) else []
    print(f"suites ({directory}):")
    for s in suites:
        grouped = runner_for(s.kind).groups_methods
        sizes = ", ".join(f"{p}: {len(s.cases(p, grouped=grouped))} cases" for p in s.presets)
        print(f"  {s.name:24s} kind={s.kind:22s} {sizes}")
    print("methods:")
    print("  " + ", ".join(available()))
    presets = sorted({p for s in suites for p in s.presets})
    print("presets:")
    print("  " + ", ".join(presets))
    return 0


def _method_specs(text: str | None) -> list[MethodSpec] | None:
    """``--methods a,b``: each checked (resolved, not called) before anything runs."""
    if not text:
        return None
    specs = [MethodSpec.parse(name.strip()) for name in text.split(",") if name.strip()]
    for spec in specs:
        check_method(spec.name, dict(spec.params))
    return specs


def _out(args: argparse.Namespace, default: str) -> Path:
    return Path(args.out or default)


def cmd_run(args: argparse.Namespace) -> int:
    suites = resolve_suites(args.suites, suites_dir(args.suites_dir))
    out = _out(args, f"results/run-{args.preset}")
    results = execute(suites, preset=args.preset, out=out,
                      options=run_options(args, methods=_method_specs(args.methods)))
    rows = results.rows()
    print(f"{len(rows)} rows, {int((rows['status'] == 'error').sum())} error(s) -> {results.path}")
    return 0


def cmd_verify(args: argparse.Namespace) -> int:
    suites = resolve_suites(args.suites, suites_dir(args.suites_dir))
    results = execute(suites, preset=args.preset, out=Path(args.out), options=run_options(args))
    verdicts = judge_results(suites, results, baselines_dir(args.baselines))
    return publish(suites, results, verdicts, report=_path(args.report), junit=_path(args.junit),
                   title=f"lipbench verify ({args.preset})", notes=_notes(results, args.baselines),
                   baselines=baseline_rows(suites, results, baselines_dir(args.baselines)))


def _notes(results: ResultsDir, explicit: str | None) -> list[str]:
    manifest = results.manifest()
    return baseline_notes(baselines_dir(explicit), manifest.get("device_class", "cpu"))


def _path(text: str | None) -> Path | None:
    return Path(text) if text else None


def _parse_params(items: list[str]) -> dict:
    params = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise UsageError(f"--param {item!r}: expected KEY=VALUE")
        params[key] = parse_yaml_value(value, f"--param {key}")
    return params


def cmd_check(args: argparse.Namespace) -> int:
    """Run a user's variant through the contract, then every suite that applies to it.

    Only the variant runs (and ``none``, the reference of timing ratios); the built-in
    methods are represented by their stored baselines. ``--against`` runs built-ins beside
    it; one a suite cannot run is skipped with a note. ``--as NAME`` labels the variant
    NAME: it is judged by NAME's claim and compared with NAME's baselines.
    """
    params = _parse_params(args.param)
    if args.as_name and args.as_name not in available():
        raise UsageError(f"--as {args.as_name!r} is not a built-in method; available: {', '.join(available())}")
    check_method(args.variant, params)  # exit 2 before anything is imported twice or run
    variant = MethodSpec(name=args.variant, params=tuple(sorted(params.items())),
                         label=args.as_name or args.variant, judged_as=args.as_name or "")
    instance = variant.build()
    against = [MethodSpec.parse(m) for m in args.against or []]
    for spec in against:
        check_method(spec.name, dict(spec.params))
    chosen, notes = [], []
    for suite in resolve_suites(args.suite_names or [], suites_dir(args.suites_dir)):
        runner = runner_for(suite.kind)
        if not runner.uses_methods or not runner.applies_to(instance):
            continue
        beside = [s for s in against if s.label != variant.label and runner.applies_to(s.build())]
        notes += [f"{suite.name}: --against {s.label} skipped (the suite does not apply to it)"
                  for s in against if s not in beside and s.label != variant.label]
        chosen.append(suite.with_methods([variant] + beside))
    if not chosen:
        raise UsageError(f"no suite applies to {args.variant!r}")
    chosen.sort(key=lambda s: s.kind != "contract")  # the contract first: seconds, and it names what broke
    out, options = Path(args.out), run_options(args)
    contract = [s for s in chosen if s.kind == "contract"]
    if contract and args.fail_fast:
        results = execute(contract, preset=args.preset, out=out, options=options)
        verdicts = judge_results(contract, results, baselines_dir(args.baselines))
        if not passed(verdicts):
            print(f"checked {args.variant} as {variant.label!r}: the contract failed (--fail-fast)")
            return publish(contract, results, verdicts, report=_path(args.report), junit=_path(args.junit),
                           title=f"lipbench check {variant.label}", notes=notes,
                           baselines=baseline_rows(contract, results, baselines_dir(args.baselines)))
        options = dataclasses.replace(options, resume=True, overwrite=False)
    results = execute(chosen, preset=args.preset, out=out, options=options)
    verdicts = judge_results(chosen, results, baselines_dir(args.baselines))
    print(f"checked {args.variant} as {variant.label!r} in: {', '.join(s.name for s in chosen)}")
    return publish(chosen, results, verdicts, report=_path(args.report), junit=_path(args.junit),
                   title=f"lipbench check {variant.label}", notes=notes + _notes(results, args.baselines),
                   baselines=baseline_rows(chosen, results, baselines_dir(args.baselines)))


def _suites_of(results: ResultsDir, explicit: str | None) -> list[Suite]:
    """The suites of a results folder: from ``--suites-dir`` when given, else the files it was run from."""
    names = set(results.rows()["suite"]) | {n for n in results.manifest().get("suites", []) if isinstance(n, str)}
    files = sorted({_suite_file(name, results, explicit) for name in names if NAME.match(name)})
    return resolve_suites(files, suites_dir(explicit))


def cmd_report(args: argparse.Namespace) -> int:
    """Report a results folder (read under a shared lock; nothing is written into it)."""
    results = ResultsDir(args.results)
    with results.reading():
        suites = _suites_of(results, args.suites_dir)
        verdicts = judge_results(suites, results, baselines_dir(args.baselines))
        return publish(suites, results, verdicts, report=Path(args.output), junit=_path(args.junit),
                       baselines=baseline_rows(suites, results, baselines_dir(args.baselines)),
                       title=f"lipbench report {results.path}", notes=_notes(results, args.baselines),
                       record_verdicts=False)


def cmd_compare(args: argparse.Namespace) -> int:
    """Judge results B with results A standing in for the baselines (nothing is written into either)."""
    a, b = ResultsDir(args.a), ResultsDir(args.b)
    with a.reading(), b.reading():
        suites = _suites_of(b, args.suites_dir)
        verdicts = judge(suites, b.rows(), results_as_baseline(a.rows()), sorted(b.planned_keys()),
                         b.manifest().get("methods"))
        return publish(suites, b, verdicts, report=_path(args.report), junit=None, baselines=a.rows(),
                       title=f"lipbench compare {a.path} -> {b.path}", record_verdicts=False)


def cmd_baseline_update(args: argparse.Namespace) -> int:
    """Merge complete runs (one per machine or CPU setting) into the stored baselines.

    Only the runs' own suites are loaded, and no method is imported (the runs' manifests
    carry every claim and tag the checks need)."""
    runs = [ResultsDir(r) for r in args.results]
    with contextlib.ExitStack() as stack:
        for run in runs:
            stack.enter_context(run.reading())
        files = sorted({_suite_file(name, run, args.suites_dir) for run in runs
                        for name in run.manifest().get("suites", []) if isinstance(name, str) and NAME.match(name)})
        suites = {s.name: s for s in resolve_suites(files, suites_dir(args.suites_dir), import_methods=False)}
        accept = Acceptance(failing=args.accept_failing, relabelled=args.accept_relabelled,
                            outliers=args.accept_outliers, stale=args.replace_stale)
        changes = update_baselines(runs, baselines_dir(args.baselines), prune=args.prune,
                                   tolerance=_within_tolerance(suites), suites=suites, accept=accept)
    for change in changes:
        print("\n".join(change.lines()))
    return 0


def _suite_file(name: str, run: ResultsDir, explicit: str | None) -> str:
    """The suite file a run is checked against: ``--suites-dir``'s when given, else the file the
    run was made from (its manifest), else the default suites folder's."""
    recorded = run.manifest().get("suite_files")
    path = recorded.get(name) if isinstance(recorded, dict) and not explicit else None
    if isinstance(path, str) and path.endswith(".yaml") and Path(path).stem == name and Path(path).is_file():
        return path
    return str(suites_dir(explicit) / f"{name}.yaml")


def _within_tolerance(suites: dict[str, Suite]):
    """Whether a baseline value moved within its metric's tolerance (for the change report)."""
    def within(suite: str, metric: str, old: float, new: float) -> bool:
        declared = runner_for(suites[suite].kind).declarations.metric(metric) if suite in suites else None
        if declared is None or declared.kind in ("info", "outcome", "timing"):
            return old == new
        rtol, atol, _ = tolerance_of(declared)
        return abs(new - old) <= atol + rtol * abs(old)
    return within


def cmd_plan(args: argparse.Namespace) -> int:
    """The cases, resources, estimated wall time and GPU-hours of a run (:mod:`.plan`)."""
    from .plan import print_plan
    return print_plan(args, _method_specs(args.methods))


def cmd_inspect(args: argparse.Namespace) -> int:
    from .inspect import inspect_target
    return inspect_target(args)
