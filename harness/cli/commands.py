"""The ``lipbench`` sub-commands (argument parsing lives in :mod:`harness.cli.main`)."""
from __future__ import annotations

import argparse
import contextlib
import dataclasses
from pathlib import Path

import pandas as pd

from harness.errors import UserError
from harness.baselines import passed, update_baselines
from harness.baselines.admission import NAME, Acceptance
from harness.baselines.compare import tolerance_of
from harness.methods import available
from harness.methods.claims import profile
from harness.reporting import write_junit
from harness.reporting.markdown import write_markdown_summary
from harness.observe.describe import check_method, describe_method
from harness.results import ResultsDir
from harness.runners import runner_for
from harness.suite import MethodSpec, Suite
from harness.suite.loader import parse_yaml_value

from .locate import baselines_dir, baselines_dir_to_write, resolve_suites, suite_files, suites_dir
from .outputs import default_report, results_folder
from .overrides import apply_overrides, parse_overrides
from .own_model import DEFAULT_AGAINST, check_batches, judge_beside, on_own_model, own_model, reference_of, takes_model
from .pipeline import baseline_notes, baseline_rows, execute, judge_results, publish, run_options


class UsageError(UserError):
    """A command-line mistake that is not a suite-file error (exit code 2)."""


def cmd_list(args: argparse.Namespace) -> int:
    directory = suites_dir(args.suites_dir)
    suites = resolve_suites([], directory, import_methods=False) if suite_files(directory) else []
    print(f"suites ({directory}):")
    for s in suites:
        runner = runner_for(s.kind)
        sizes = ", ".join(f"{p}: {len(s.cases(p, grouped=runner.groups_methods))} cases" for p in s.presets)
        where = "--device" if runner.declarations.on_device else "cpu"
        print(f"  {s.name:24s} kind={s.kind:22s} on={where:9s} {sizes}")
    print("  (on=cpu: computes on the CPU whatever --device says)")
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


def _chosen_suites(args: argparse.Namespace, names) -> list[Suite]:
    """The named suites (all when none), with ``--set`` and ``--seeds`` applied."""
    overrides = parse_overrides(args.overrides, args.seeds)
    return apply_overrides(resolve_suites(names, suites_dir(args.suites_dir)), overrides)


def _resume_needs_out(args: argparse.Namespace) -> None:
    if args.resume and not args.out:
        raise UsageError("--resume needs --out: without it every run gets a new results folder")


def cmd_run(args: argparse.Namespace) -> int:
    """Run suites; exit 1 when any case ended in error (its rows say why), 0 otherwise."""
    suites = _chosen_suites(args, args.suites)
    _resume_needs_out(args)
    with results_folder(args.out, f"run-{args.preset}") as out:
        results = execute(suites, preset=args.preset, out=out,
                          options=run_options(args, methods=_method_specs(args.methods)))
    rows = results.rows()
    errors = int((rows["status"] == "error").sum()) if len(rows) else 0
    print(f"{len(rows)} rows, {errors} error(s) -> {results.path}")
    return 1 if errors else 0


def cmd_verify(args: argparse.Namespace) -> int:
    suites = _chosen_suites(args, args.suites)
    results = execute(suites, preset=args.preset, out=Path(args.out), options=run_options(args))
    verdicts = judge_results(suites, results, baselines_dir(args.baselines))
    return publish(suites, results, verdicts, **_outputs(args),
                   title=f"lipbench verify ({args.preset})", notes=_notes(results, args.baselines),
                   baselines=baseline_rows(suites, results, baselines_dir(args.baselines)))


def _notes(results: ResultsDir, explicit: str | None) -> list[str]:
    manifest = results.manifest()
    return baseline_notes(baselines_dir(explicit), manifest.get("device_class", "cpu"))


def _path(text: str | None) -> Path | None:
    return Path(text) if text else None


def _outputs(args: argparse.Namespace, report: str | None = None) -> dict[str, Path | None]:
    """The report files a command line asks for (``--report``/``-o``, ``--junit``, ``--summary-md``)."""
    return {"report": _path(report or getattr(args, "report", None)), "junit": _path(getattr(args, "junit", None)),
            "summary_md": _path(args.summary_md)}


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
    it; one a suite cannot run is skipped with a note. ``--as NAME`` runs the variant as
    ``VARIANT as NAME``: judged by NAME's claim and the targets written for NAME, compared with
    NAME's baselines, where quantities correct implementations differ in are reported, not
    failed (:mod:`harness.baselines.identity`).
    """
    params = _parse_params(args.param)
    if args.as_name and args.as_name not in available():
        raise UsageError(f"--as {args.as_name!r} is not a built-in method; available: {', '.join(available())}")
    # described in a defendant process (exit 2 on a bad name or parameter): lipbench's own
    # process never imports the variant's module
    mine = profile(describe_method(args.variant, params))
    label = f"{args.variant} as {args.as_name}" if args.as_name else args.variant
    variant = MethodSpec(name=args.variant, params=tuple(sorted(params.items())), label=label,
                         judged_as=args.as_name or "")
    against = [MethodSpec.parse(m) for m in args.against or (DEFAULT_AGAINST if args.model else [])]
    if args.model and args.as_name and args.as_name not in {s.name for s in against}:
        against.append(MethodSpec.parse(args.as_name))
    # --model: validated in a defendant (with the built-ins that run on it), and its data
    own = own_model(args, [s.name for s in against if s.name in available()])
    theirs = {spec.label: profile(describe_method(spec.name, dict(spec.params))) for spec in against}
    chosen, notes, on_cpu = [], [], []
    suites = _chosen_suites(args, args.suite_names or [])
    for suite in on_own_model(suites, own) if own else suites:
        runner = runner_for(suite.kind)
        if not runner.uses_methods or not runner.applies_to(mine):
            continue
        if args.device != "cpu" and not runner.declarations.on_device:
            on_cpu.append(suite.name)
            continue
        beside = [s for s in against if s.label != variant.label and runner.applies_to(theirs[s.label])]
        notes += [f"{suite.name}: --against {s.label} skipped (the suite does not apply to it)"
                  for s in against if s not in beside and s.label != variant.label]
        chosen.append(suite.with_methods([variant] + beside))
    if on_cpu:
        note = (f"{', '.join(on_cpu)}: compute on the CPU whatever --device says; run `lipbench check "
                f"{args.variant}` without --device for them")
        if not chosen:
            raise UsageError(f"--device {args.device}: no suite that applies to {args.variant!r} computes there "
                             f"({note})")
        notes.append(note)
    if not chosen:
        raise UsageError(f"no suite applies to {args.variant!r}")
    if own:
        check_batches(chosen, own, args.preset)
    chosen.sort(key=lambda s: s.kind != "contract")  # the contract first: seconds, and it names what broke
    _resume_needs_out(args)
    with results_folder(args.out, f"check-{variant.label}") as out:
        options = run_options(args)
        if args.report is None:
            args.report = f"reports/{out.name}.html"
        if args.junit is None:
            args.junit = f"reports/{out.name}-junit.xml"
        contract = [s for s in chosen if s.kind == "contract"]
        if contract and args.fail_fast:
            results = execute(contract, preset=args.preset, out=out, options=options)
            verdicts = judge_results(contract, results, baselines_dir(args.baselines))
            if not passed(verdicts):
                print(f"checked {variant.label}: the contract failed (--fail-fast)")
                return publish(contract, results, verdicts, **_outputs(args),
                               title=f"lipbench check {variant.label}", notes=notes,
                               baselines=baseline_rows(contract, results, baselines_dir(args.baselines)))
            options = dataclasses.replace(options, resume=True, overwrite=False)
        results = execute(chosen, preset=args.preset, out=out, options=options)
        if own:
            return _publish_beside(args, chosen, results, variant, against, notes)
        verdicts = judge_results(chosen, results, baselines_dir(args.baselines))
        print(f"checked {variant.label} in: {', '.join(s.name for s in chosen)}")
        return publish(chosen, results, verdicts, **_outputs(args),
                       title=f"lipbench check {variant.label}", notes=notes + _notes(results, args.baselines),
                       baselines=baseline_rows(chosen, results, baselines_dir(args.baselines)))


def _publish_beside(args: argparse.Namespace, chosen: list[Suite], results: ResultsDir, variant: MethodSpec,
                    against: list[MethodSpec], notes: list[str]) -> int:
    """A ``--model`` check: suites on the user's model judged beside the built-ins of this run, the
    others against the stored baselines (:mod:`.own_model`)."""
    mine = [s for s in chosen if takes_model(s)]
    theirs = [s for s in chosen if not takes_model(s)]
    reference = reference_of(against, args.as_name)
    verdicts = [judge_beside(mine, results, variant.label, reference,
                             [s.label for s in against if s.label != variant.label])]
    baselines = [results.rows()[lambda r: r["suite"].isin({s.name for s in mine}) & (r["method"] == reference)]]
    if theirs:  # judged against the stored baselines; the errors of the suites on the model are counted above
        stored = judge_results(theirs, results, baselines_dir(args.baselines))
        verdicts.append(stored[~stored["suite"].isin({s.name for s in mine})])
        baselines.append(baseline_rows(theirs, results, baselines_dir(args.baselines)))
    model = f"{args.model} ({args.input_shape}, data {args.data or 'digits'})"
    print(f"checked {variant.label} on {model} beside {', '.join(s.label for s in against)} in: "
          f"{', '.join(s.name for s in chosen)}")
    notes = notes + [f"on your model {model}: {', '.join(s.name for s in mine)}; compared with {reference} on the "
                     "same model in this run (no stored baseline exists for your model)"]
    if theirs:
        notes += [f"on lipbench's own models (stored baselines): {', '.join(s.name for s in theirs)}"]
    return publish(chosen, results, pd.concat(verdicts, ignore_index=True), **_outputs(args),
                   title=f"lipbench check {variant.label} on {args.model}", notes=notes,
                   baselines=pd.concat(baselines, ignore_index=True))


def _suites_of(results: ResultsDir, explicit: str | None) -> list[Suite]:
    """The suites of a results folder: from ``--suites-dir`` when given, else the files it was run from."""
    return resolve_suites(_suite_files_of(results, explicit), suites_dir(explicit))


def _suite_files_of(results: ResultsDir, explicit: str | None) -> list[str]:
    names = set(results.rows()["suite"]) | {n for n in results.manifest().get("suites", []) if isinstance(n, str)}
    return sorted({_suite_file(name, results, explicit) for name in names if NAME.match(name)})


def _checked_suites(results: ResultsDir, explicit: str | None) -> list[Suite]:
    """The suites of B whose files exist (their checks are compared; no method is imported)."""
    files = [f for f in _suite_files_of(results, explicit) if Path(f).is_file()]
    return resolve_suites(files, suites_dir(explicit), import_methods=False) if files else []


def cmd_report(args: argparse.Namespace) -> int:
    """Report a results folder (read under a shared lock; nothing is written into it)."""
    results = ResultsDir(args.results)
    with results.reading():
        suites = _suites_of(results, args.suites_dir)
        verdicts = judge_results(suites, results, baselines_dir(args.baselines))
        return publish(suites, results, verdicts, **_outputs(args, report=args.output),
                       baselines=baseline_rows(suites, results, baselines_dir(args.baselines)),
                       title=f"lipbench report {results.path}", notes=_notes(results, args.baselines),
                       record_verdicts=False)


def cmd_compare(args: argparse.Namespace) -> int:
    """Compare results B with results A (:mod:`harness.compare`); nothing is written into either.

    Exit 1 when a comparison fails (a regression, a change without a better direction, something
    A has that B lacks, an error in B), 0 otherwise."""
    from harness.compare import MAX_LINES, compare_runs, read_side, summary_lines
    from harness.reporting.compare_html import write_comparison

    a, b = ResultsDir(args.a), ResultsDir(args.b)
    with a.reading(), b.reading():
        kinds = _suite_kinds(args.suites_dir)
        comparison = compare_runs(read_side(a, "A", kinds), read_side(b, "B", kinds),
                                  _checked_suites(b, args.suites_dir))
    title = f"lipbench compare {a.path} -> {b.path}"
    report = Path(args.report) if args.report else default_report(f"compare-{a.path.name}-{b.path.name}")
    write_comparison(report, comparison, title=title)
    if args.junit:
        write_junit(Path(args.junit), comparison.verdicts)
    if args.summary_md:
        write_markdown_summary(Path(args.summary_md), comparison.verdicts, title=title, report=str(report))
    files = [("report", str(report))] + ([("junit", args.junit)] if args.junit else [])
    lines = summary_lines(comparison.verdicts, comparison.differences, str(a.path), str(b.path), files)
    print("\n".join(lines[:MAX_LINES]))
    return 0 if passed(comparison.verdicts) else 1


def _suite_kinds(explicit: str | None):
    """The runner kind of suites no case fingerprint names (results of an earlier lipbench): from
    the suite files the runs were made from (no method is imported)."""
    def kinds_of(results: ResultsDir, names: set[str]) -> dict[str, str]:
        files = sorted({_suite_file(n, results, explicit) for n in names if NAME.match(n)})
        return {s.name: s.kind for s in resolve_suites(files, suites_dir(explicit), import_methods=False)}
    return kinds_of


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
        changes = update_baselines(runs, baselines_dir_to_write(args.baselines), prune=args.prune,
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
