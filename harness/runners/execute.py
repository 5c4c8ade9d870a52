"""Run suites case by case into a results folder: isolated, time- and memory-limited, resumable.

Each case runs through :func:`.case.run_case`, by default in its own worker process
(:mod:`.isolation`); whatever it does, it ends as rows (an ``error`` row when it failed)
and the run goes on. Where the cases run is the executor's business (:mod:`.executors`:
here one at a time, or on a Ray cluster); this driver alone writes the results folder, in
the order cases finish. Every finished case is appended at once, so an interrupted run
keeps it and ``resume`` skips it, whichever executor ran it.
"""
from __future__ import annotations

import copy
import dataclasses
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import pandas as pd
from tqdm import tqdm

from harness.errors import ResultsFolderError
from harness.methods.claims import profile
from harness.observe.describe import describe_all
from harness.results import ResultsDir, build_manifest, device_label, error_row, make_row
from harness.results.fingerprint import CASE, differences, fingerprint, suite_digest
from harness.results.manifest import device_class, now
from harness.suite import Case, MethodSpec, Suite
from harness.suite.resources import Resources

from .base import runner_for
from .case import error_outcome, short_traceback
from .devices import require_on_device
from .executors import CaseNeeds, Executor, Finished, Started, describe_case, make_executor
from .isolation import default_max_memory, kill_all
from .termination import deferred, stop_on_signals

DEFAULT_TIMEOUT_S = 600.0
DEFAULT_MAX_CASES = 10_000
SUMMARY_SEED = -1
#: A case that was running when the harness itself died this many times is not retried.
MAX_HARNESS_DEATHS = 2


@dataclass
class RunOptions:
    """How to run: every knob of ``lipbench run`` / ``verify`` / ``check`` in one place."""

    device: str = "cpu"
    methods: Sequence[MethodSpec] | None = None  # replaces the suites' method lists
    resume: bool = False
    overwrite: bool = False
    retry_errors: bool = False
    timeout: float | None = None  # per case; default: the suite's
    isolation: bool = True
    #: torch intra-op threads per case. One by default: the suites' cases are small, one thread
    #: makes a case's float reductions independent of the machine's core count, keeps timings
    #: honest on a shared machine (a busy neighbour stalls every barrier of a 2-thread pool:
    #: 3.7 s single-threaded vs 53 s two-threaded for one certificate case here) and lets a
    #: parallel executor give each case one core. 0: torch's default.
    threads: int | None = 1
    max_memory: int | None = field(default_factory=default_max_memory)
    max_cases: int = DEFAULT_MAX_CASES
    progress: bool = True
    command: list[str] | None = None
    executor: str = "local"  # or "ray" (harness.runners.executors)
    workers: int | None = None  # ray: size of a local cluster, or cases in flight on a joined one
    address: str | None = None  # ray: join this cluster ("auto": the one this machine is in)
    retries: int = 1  # ray: times a case lost with its worker or node is sent again
    overrides: dict | None = None  # --set / --seeds as given (recorded in the manifest)


def plan(suites: Sequence[Suite], preset: str, device: str,
         methods: Sequence[MethodSpec] | None = None, max_cases: int = DEFAULT_MAX_CASES,
         threads: int | None = None) -> list[Case]:
    """Every case the run will execute, in order (``methods`` replaces the suites' lists); exit 2
    for suites that cannot compute on ``device``."""
    require_on_device(suites, device)
    cases: list[Case] = []
    for suite in suites:
        runner = runner_for(suite.kind)
        override = list(methods) if (methods is not None and runner.uses_methods) else None
        defaults = runner.declarations.defaults()
        cases += [dataclasses.replace(c, settings={**copy.deepcopy(defaults), **c.settings}, threads=threads or None)
                  for c in suite.cases(preset, device=device, methods=override, grouped=runner.groups_methods,
                                       max_cases=max_cases - len(cases))]
    return cases


def run_suites(suites: Sequence[Suite], preset: str, out: ResultsDir,
               options: RunOptions | None = None, **overrides) -> pd.DataFrame:
    """Run every case of ``suites`` at ``preset`` into ``out``; returns all rows.

    ``overrides`` are :class:`RunOptions` fields (``resume=True``, ``isolation=False``, ...).
    SIGINT, SIGTERM and SIGHUP stop the run alike (:mod:`.termination`): every worker is
    killed, finished cases are kept, :class:`~.termination.Terminated` is raised.
    """
    options = options or RunOptions()
    if overrides:
        options = RunOptions(**{**options.__dict__, **overrides})
    with stop_on_signals():
        cases = plan(suites, preset, options.device, options.methods, options.max_cases, options.threads)
        needs = case_needs(suites, preset, options.timeout)
        prints = case_fingerprints(suites, preset, cases)
        with make_executor(options.executor, workers=options.workers, address=options.address,
                           retries=options.retries, isolation=options.isolation,
                           max_memory=options.max_memory) as executor:
            executor.check(cases, needs)  # a case no node can run: exit 2 before anything is written
            with out.lock():  # before anything in the folder is read or deleted
                with deferred():
                    manifest = _open_run(suites, preset, out, options, cases, prints, executor)
                pending = _pending(cases, out, options, prints)
                with _Progress(len(pending), options.progress, executor) as progress:
                    _drive(executor, pending, needs, out, progress, prints)
                for suite in suites:
                    _summarize(suite, preset, out, options.device, manifest["methods"], cases)
                with deferred():
                    manifest["executor"] = executor.describe()
                    manifest.update(_device_of_rows(out, manifest["device"]))
                    manifest["finished"] = now()
                    out.write_json("manifest.json", manifest)
                    return out.finalize()


def _open_run(suites: Sequence[Suite], preset: str, out: ResultsDir, options: RunOptions, cases: list[Case],
              prints: dict[tuple, dict], executor: Executor) -> dict:
    """Prepare the folder (its lock held), check that a resumed run is the same run, write the
    manifest and the plan; returns the manifest."""
    out.prepare(resume=options.resume, overwrite=options.overwrite)
    if options.resume:
        check_resumable(out, preset, cases, prints)  # before anything changes (a torn tail is not read)
        out.repair()
    manifest = build_manifest(preset=preset, suites=[s.name for s in suites],
                              seeds={s.name: s.resolved(preset)["seeds"] for s in suites},
                              device=options.device, started=now(), command=options.command)
    manifest["isolation"] = "worker process per case" if options.isolation else "in-process"
    manifest["case_threads"] = options.threads or manifest["torch_threads"]
    manifest["max_memory_mib"] = round(options.max_memory / 2**20) if options.max_memory else None
    manifest["methods"] = method_profiles(cases)
    manifest["suite_files"] = {s.name: str(Path(s.source).resolve()) for s in suites if Path(s.source).is_file()}
    manifest["executor"] = executor.describe()
    manifest["overrides"] = options.overrides
    out.write_json("manifest.json", manifest)
    out.write_json("plan.json", sorted(out.planned_keys() | {c.key for c in cases}))
    return manifest


def case_fingerprints(suites: Sequence[Suite], preset: str, cases: Sequence[Case]) -> dict[tuple, dict]:
    """Each case's fingerprint (:mod:`harness.results.fingerprint`), by case key."""
    digests = {s.name: suite_digest(s.resolved(preset)) for s in suites}
    return {c.key: fingerprint(c, digests[c.suite], preset) for c in cases}


def check_resumable(out: ResultsDir, preset: str, cases: Sequence[Case], prints: dict[tuple, dict]) -> None:
    """Refuse to resume what is not the same run: another preset, cases the folder planned that this
    run does not, or a finished case whose fingerprint differs (the difference is named)."""
    where = f"--resume: {out.path}"
    fix = "use --overwrite to replace the results, or another --out"
    earlier = out.manifest().get("preset")
    if earlier not in (None, preset):
        raise ResultsFolderError(f"{where} holds a run of preset {earlier!r}, not {preset!r}; resume it with "
                                 f"--preset {earlier}, or {fix}")
    dropped = sorted(out.planned_keys() - {c.key for c in cases})
    if dropped:
        raise ResultsFolderError(f"{where} planned {len(dropped)} case(s) this run does not, e.g. "
                                 f"{_describe_key(dropped[0])} (another variant, methods or suites); --resume "
                                 f"continues the same run: {fix}")
    recorded = out.fingerprints()
    changed = [(key, differences(recorded[key], prints[key], CASE)) for key in prints if key in recorded]
    changed = [(key, diff) for key, diff in changed if diff]
    if changed:
        key, diff = changed[0]
        raise ResultsFolderError(f"{where}: {len(changed)} finished case(s) were run with another definition, e.g. "
                                 f"{_describe_key(key)}: {'; '.join(diff[:3])}; {fix}")


def _describe_key(key: tuple) -> str:
    suite, case, method, seed = key
    return f"{suite} {case}{' ' + method if method else ''} seed={seed}"


def case_needs(suites: Sequence[Suite], preset: str, timeout: float | None = None) -> Callable[[Case], CaseNeeds]:
    """``needs(case)``: each suite's timeout (``timeout`` overrides it) and declared resources."""
    by_suite = {}
    for suite in suites:
        resolved = suite.resolved(preset)
        timing = any(m.kind == "timing" for m in runner_for(suite.kind).declarations.metrics.values())
        by_suite[suite.name] = (timeout or resolved.get("timeout", DEFAULT_TIMEOUT_S), resolved["resources"], timing)

    def needs(case: Case) -> CaseNeeds:
        limit, declared, timing = by_suite[case.suite]
        return CaseNeeds(limit, Resources.from_config(declared, device=case.device, timing=timing))
    return needs


def _drive(executor: Executor, pending: list[Case], needs: Callable[[Case], CaseNeeds], out: ResultsDir,
           progress: "_Progress", prints: dict[tuple, dict]) -> None:
    """Write what the executor reports, as it happens: each attempt, then each finished case."""
    running: dict[tuple, Case] = {}
    try:
        for event in executor.run(pending, needs):
            with deferred():  # a record is written whole before a stop signal is raised
                if isinstance(event, Started):
                    out.record_attempt(event.case.key)
                    running[event.case.key] = event.case
                    progress.starting(event.case, len(running))
                elif isinstance(event, Finished):
                    outcome = event.outcome
                    out.append_case(event.case.key, outcome.rows, outcome.traces, outcome.artifacts,
                                    event.seconds, node=event.node or None, fingerprint=prints.get(event.case.key))
                    if running.pop(event.case.key, None) is not None:
                        out.record_attempt(event.case.key, "finished")
                    progress.finished(event, len(running))
                else:
                    progress.note(event.text)
    except KeyboardInterrupt:
        with deferred():
            kill_all()
            for key in running:  # stopped from outside: not a death of the harness, run again on --resume
                out.record_attempt(key, "interrupted")
        raise


def _device_of_rows(out: ResultsDir, planned: str) -> dict[str, str]:
    """The device the ok case rows report when it is not the planned one (GPU cases on a Ray cluster)."""
    rows = out.rows()
    labels = set(rows[(rows["status"] == "ok") & (rows["case"] != "summary")]["device"])
    if len(labels) == 1 and (label := labels.pop()) != planned:
        return {"device": label, "device_class": device_class(label)}
    return {}


def method_profiles(cases: Sequence[Case]) -> dict[str, dict]:
    """Per method label: the claim it is judged by and its tags, for checks and reports
    (described in a defendant process: this one never imports a variant's module)."""
    specs = {s.label: s for c in cases for s in ((c.method,) if c.method else ()) + tuple(c.methods)}
    records = describe_all([(spec.name, dict(spec.params)) for spec in specs.values()])
    out = {}
    for (label, spec), record in zip(specs.items(), records):
        try:
            if "error" in record:
                raise ValueError(record["error"])
            out[label] = {"name": spec.name, "params": dict(spec.params), "judged_as": spec.judged_as,
                          **profile(record["described"], spec.judged_as)}
        except Exception as exc:  # noqa: BLE001 - the cases record the failure as error rows
            out[label] = {"name": spec.name, "error": f"{type(exc).__name__}: {exc}"}
    return out


def _pending(cases: list[Case], out: ResultsDir, options: RunOptions, prints: dict[tuple, dict]) -> list[Case]:
    """Cases still to run; cases that killed the harness itself repeatedly are recorded as errors."""
    if not options.resume:
        return cases
    done = out.completed_keys()
    if options.retry_errors:
        done -= out.errored_keys()
    deaths = out.unfinished_attempts()
    pending = []
    for case in cases:
        if case.key in done:
            continue
        if deaths[case.key] >= MAX_HARNESS_DEATHS and not options.retry_errors:
            outcome = error_outcome(case, f"lipbench itself died {deaths[case.key]} times while running "
                                          "this case; it is not run again (use --retry-errors)")
            with deferred():
                out.append_case(case.key, outcome.rows, fingerprint=prints.get(case.key))
            continue
        pending.append(case)
    return pending


class _Progress:
    """A bar on a terminal, otherwise one line per finished case on stderr (CI logs, pipes);
    both show the cases done / running / queued and the executor's nodes."""

    def __init__(self, total: int, enabled: bool, executor: Executor) -> None:
        self.total, self.done, self.started, self.enabled = total, 0, 0, enabled
        self.executor = executor
        self.bar = None
        if enabled and sys.stderr.isatty():
            self.bar = tqdm(total=total, desc="cases", unit="case", file=sys.stderr, dynamic_ncols=True)
        if total:
            self.note(executor.nodes())

    def __enter__(self) -> "_Progress":
        return self

    def __exit__(self, *exc) -> None:
        if self.bar is not None:
            self.bar.close()

    def _counts(self, running: int) -> str:
        return f"running {running}, queued {self.total - self.started}"

    def note(self, text: str) -> None:
        if not (self.enabled and text):
            return
        if self.bar is not None:
            self.bar.write(text, file=sys.stderr)
        else:
            print(text, file=sys.stderr, flush=True)

    def starting(self, case: Case, running: int) -> None:
        self.started += 1
        if self.bar is not None:
            self.bar.set_postfix_str(f"{self._counts(running)} | {describe_case(case)}"[:80])

    def finished(self, event: Finished, running: int) -> None:
        self.done += 1
        if self.bar is not None:
            self.bar.update(1)
            self.bar.set_postfix_str(self._counts(running))
        elif self.enabled:
            status = "error" if event.outcome.failed else "ok"
            where = f" on {event.node}" if self.executor.name != "local" and event.node else ""
            print(f"[{self.done}/{self.total}] {describe_case(event.case)}: {status} ({event.seconds:.1f} s{where}), "
                  f"{self._counts(running)}", file=sys.stderr, flush=True)


def _summarize(suite: Suite, preset: str, out: ResultsDir, device: str, profiles: dict[str, dict],
               cases: Sequence[Case]) -> None:
    """Recompute a suite's suite-level rows from all its ok case rows, taken in plan order."""
    rows = out.rows()
    mine = _in_plan_order(rows[(rows["suite"] == suite.name) & (rows["status"] == "ok") & (rows["case"] != "summary")],
                          cases)
    label = device_label(device)
    try:
        config = {**suite.resolved(preset), "method_profiles": profiles}
        measurements = runner_for(suite.kind).summarize(mine, config)
        new = [make_row(suite.name, "summary", "", SUMMARY_SEED, label, "{}", m) for m in measurements]
    except Exception as exc:  # noqa: BLE001 - a failing summary is an error row, not a crash
        new = [error_row(suite.name, "summary", "", SUMMARY_SEED, label, "{}", short_traceback(exc))]
    out.write_summaries(suite.name, new)


def _in_plan_order(rows: pd.DataFrame, cases: Sequence[Case]) -> pd.DataFrame:
    """``rows`` sorted by their case's place in the plan (stable; unplanned cases last).

    Rows are stored in the order cases finish, which depends on the executor and on resumes;
    a summary (a fit, a mean) summed in another order can differ in its last bits.
    """
    index = {c.key: i for i, c in enumerate(cases)}
    position = [index.get((suite, case, method, seed), index.get((suite, case, "", seed), len(index)))
                for suite, case, method, seed in zip(rows["suite"], rows["case"], rows["method"], rows["seed"])]
    return rows.assign(_position=position).sort_values("_position", kind="stable").drop(columns="_position")


__all__ = ["RunOptions", "case_fingerprints", "case_needs", "check_resumable", "plan", "run_suites",
           "DEFAULT_TIMEOUT_S", "DEFAULT_MAX_CASES"]
