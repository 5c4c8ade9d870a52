"""``lipbench plan``: what a run would do and cost, before it spends anything.

For every suite: its cases grouped by case id (parameter combination) with the methods and
seeds, the resources one case declares, and per group the median estimated seconds of a
case with where that number comes from (:mod:`harness.runners.costs`: ``--from RESULTS``, an
earlier run's recorded seconds; otherwise a few training iterations measured on
``--device``). Then the totals: case time, GPU-hours and CPU-hours (seconds x declared GPUs /
CPUs), and the wall time of the run's own schedule (:func:`~harness.runners.executors.placement.makespan`):

* ``--executor local``: one case at a time, the sum;
* ``--executor ray --workers N``: one machine running N cases at once (N times one case's
  CPUs and GPUs: ``--workers 8`` on a GPU suite is an 8-GPU machine), exclusive cases alone;
* ``--executor ray --address ADDR``: the nodes of that running cluster.

A plan larger than ``--max-cases`` is refused (exit 2), like a run.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
from collections import OrderedDict
from typing import Sequence

from harness.errors import UserError
from harness.results import ResultsDir
from harness.runners import plan as plan_cases
from harness.runners.costs import Cost, TrainingCosts, costs_from_results
from harness.runners.devices import require_here
from harness.runners.execute import case_needs
from harness.runners.executors import CaseNeeds
from harness.runners.executors.placement import Node, makespan
from harness.suite import Case, MethodSpec, Suite

from .locate import resolve_suites, suites_dir


def print_plan(args: argparse.Namespace, methods: Sequence[MethodSpec] | None) -> int:
    """Print the plan of ``lipbench plan`` (arguments as parsed) for ``methods`` (``--methods``)."""
    suites = resolve_suites(args.suites, suites_dir(args.suites_dir))
    cases = plan_cases(suites, args.preset, args.device, methods, args.max_cases)
    needs = case_needs(suites, args.preset)
    costs = _costs(cases, args)
    print(f"lipbench plan: {', '.join(s.name for s in suites)} at preset {args.preset}: {len(cases)} case(s)")
    for suite in suites:
        mine = [c for c in cases if c.suite == suite.name]
        if mine:
            print(_suite_block(suite, mine, needs, costs))
    print(_totals(cases, needs, costs, args))
    for note in _notes(cases, needs, args):
        print(f"note: {note}")
    return 0


def _costs(cases: Sequence[Case], args: argparse.Namespace) -> dict[tuple, Cost]:
    if args.from_results:
        results = ResultsDir(args.from_results)
        if not results.has_results():
            raise UserError(f"--from {args.from_results}: holds no lipbench results")
        with results.reading():
            return costs_from_results(cases, results)
    require_here(args.device)
    measured = TrainingCosts(args.device, repeats=args.repeats,
                             on_measure=lambda text: print(text, file=sys.stderr, flush=True))
    return {c.key: measured.cost(c) for c in cases}


def _suite_block(suite: Suite, cases: list[Case], needs, costs: dict[tuple, Cost]) -> str:
    first = needs(cases[0])
    lines = [f"\n{suite.name} ({suite.kind}): {len(cases)} case(s), each {first.resources.describe()}; "
             f"timeout {first.timeout:g} s"]
    groups: OrderedDict[str, list[Case]] = OrderedDict()
    for c in cases:
        groups.setdefault(c.case, []).append(c)
    width = max(len(name) for name in groups)
    lines.append(f"  {'case':{width}s}  methods  seeds  cases  {'s/case':>10s}  estimate from")
    for name, group in groups.items():
        known = [costs[c.key].seconds for c in group if costs[c.key].seconds is not None]
        median = f"{statistics.median(known):10.4g}" if known else f"{'?':>10s}"
        labels = {c.method.label for c in group if c.method} | {m.label for c in group for m in c.methods}
        seeds = {c.seed for c in group}
        lines.append(f"  {name:{width}s}  {len(labels) or 1:7d}  {len(seeds):5d}  {len(group):5d}  {median}  "
                     f"{costs[group[0].key].source}")
    return "\n".join(lines)


def _totals(cases: Sequence[Case], needs, costs: dict[tuple, Cost], args: argparse.Namespace) -> str:
    known = [(costs[c.key].seconds, needs(c)) for c in cases if costs[c.key].seconds is not None]
    lines = ["\nestimate" + (f" (costs measured on {args.device})" if not args.from_results
                            else f" (seconds recorded in {args.from_results})") + ":"]
    if len(known) < len(cases):
        lines.append(f"  {len(cases) - len(known)} case(s) have no estimate and are left out of the totals")
    if not known:
        return "\n".join(lines)
    total = sum(seconds for seconds, _ in known)
    gpu = sum(seconds * need.resources.gpu for seconds, need in known)
    cpu = sum(seconds * need.resources.cpu for seconds, need in known)
    if args.executor == "local":
        wall, where = total, "locally, one case at a time"
    else:
        nodes, where = _nodes(known, args)
        wall = makespan([(seconds, need.resources) for seconds, need in known], nodes)
    lines += [f"  case time: {_hours(total)} in all; GPU-hours {gpu / 3600:.4g}, CPU-hours {cpu / 3600:.4g}",
              f"  wall time: {_hours(wall)} {where}"]
    return "\n".join(lines)


def _nodes(known: list[tuple[float, CaseNeeds]], args: argparse.Namespace) -> tuple[list[Node], str]:
    """The Ray nodes the schedule is simulated on, and how to say so."""
    if args.address:
        from harness.runners.executors.ray_executor import RayExecutor
        with RayExecutor(address=args.address) as ray:
            nodes = list(ray.placement.nodes.values())
        return nodes, f"on the Ray cluster at {args.address} ({len(nodes)} node(s))"
    workers = args.workers or os.cpu_count() or 1
    cpu = max(need.resources.cpu for _, need in known) * workers
    gpu = max(need.resources.gpu for _, need in known) * workers
    return [Node("plan", "plan", cpu, gpu)], \
        f"on ray with {workers} worker(s) (one machine running {workers} case(s) at once)"


def _hours(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.3g} s"
    if seconds < 7200:
        return f"{seconds / 60:.3g} min"
    return f"{seconds / 3600:.4g} h"


def _notes(cases: Sequence[Case], needs, args: argparse.Namespace) -> list[str]:
    notes = []
    if any(needs(c).resources.gpu for c in cases) and not str(args.device).startswith("cuda") \
            and not args.from_results:
        notes.append(f"the cases need GPUs but the costs were measured on {args.device}; for a GPU "
                     "estimate run this plan with --device cuda on a GPU machine, or give --from RESULTS")
    if any(c.kind == "sample_quality" and c.settings.get("inception") not in (False, "never") for c in cases):
        from harness.metrics import InceptionExtractor
        if not InceptionExtractor.available():
            notes.append("the InceptionV3 weights (inception-2015-12-05.pt) are not in the lipbench cache: "
                         "IS and FID on Inception features would be skipped")
    return notes


__all__ = ["print_plan"]
