"""False-alarm and detection rates of ``lipbench verify`` across machines: a table, not a test.

Another CPU rounds differently: its vector kernels (``ATEN_CPU_CAPABILITY``) and thread
count (``OMP_NUM_THREADS``) change float32 sums, and GAN training amplifies that. This
script simulates machines that way and measures the two error rates of the verdicts:

* **false alarms**: each simulated machine runs every suite at the preset; it is judged
  against a baseline merged from the *other* machines (leave one out), exactly as a user's
  CI machine is judged against the shipped baselines it did not help write. Every failing
  verdict on an unchanged, correct build is a false alarm.
* **detections**: regressions are injected (``benchmarks/injected.py``: a method made 25%
  slower, weight clipping at 10x c, a spectral estimate off by 2%), run on one machine
  under the label of the method they break, and judged against the baseline merged from
  all machines; an injection is detected when at least one of its verdicts fails.

    python benchmarks/bench_verdicts.py WORKDIR [--machines N] [--suites a,b] [--merge-into baselines]
    python benchmarks/bench_verdicts.py --from-baselines baselines/cpu

With ``--merge-into``, the machines' runs are merged into that baselines folder (this is
how ``baselines/cpu/`` is written): as ``lipbench baseline update`` does, runs with failing
checks are refused and outcomes beyond the robust z are named and refused, unless
``--accept-outliers``. Runs are kept under WORKDIR (a rerun resumes them).

``--from-baselines DIR`` measures the comparison rules alone, in seconds and without running
anything: each source (machine) of the stored baseline files is judged against the others'
rows (checks need the runs, so only comparison verdicts are counted), and the margin of every
outcome verdict (its change over its threshold) is summarised.
"""
from __future__ import annotations

import argparse
import copy
import os
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from harness.baselines import Acceptance, judge, stored_baselines, update_baselines  # noqa: E402
from harness.baselines.compare import compare_suite  # noqa: E402
from harness.baselines.store import read_baseline  # noqa: E402
from harness.cli.locate import resolve_suites  # noqa: E402
from harness.results import ResultsDir  # noqa: E402
from harness.results.rows import COLUMNS  # noqa: E402

#: Merging runs only to measure verdicts: what a baseline update would refuse (a failing check,
#: an outlier) is part of what is measured, not a reason to stop.
MEASURING = Acceptance(failing=True, outliers=True)

#: Simulated machines: name -> (environment, lipbench --threads). What differs between real
#: x86-64 machines is which vector kernels run: ATen's own (``ATEN_CPU_CAPABILITY``), oneDNN's
#: convolutions (``ONEDNN_MAX_CPU_ISA``) and MKL's matrix products (``MKL_ENABLE_INSTRUCTIONS``,
#: ``MKL_CBWR``); each changes float32 sums. (On the development machine ATen's avx2 and
#: avx512 kernels round alike on these suites; oneDNN's and MKL's do not.)
MACHINES = {
    "native-t1": ({}, 1),
    "default-t1": ({"ATEN_CPU_CAPABILITY": "default"}, 1),
    "avx2-t1": ({"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2", "MKL_ENABLE_INSTRUCTIONS": "AVX2"}, 1),
    "sse-t1": ({"ATEN_CPU_CAPABILITY": "default", "ONEDNN_MAX_CPU_ISA": "SSE41",
                "MKL_ENABLE_INSTRUCTIONS": "SSE4_2"}, 1),
    "compat-t1": ({"MKL_CBWR": "COMPATIBLE", "ONEDNN_MAX_CPU_ISA": "AVX2"}, 1),
    "native-t2": ({}, 2),
}


@dataclass(frozen=True)
class Injection:
    """A real regression: ``method`` (a module:attr with params) run under the label it breaks."""

    name: str
    suites: tuple[str, ...]
    method: str
    label: str


INJECTIONS = (
    Injection("sn_w 25% slower", ("training_time",), "benchmarks.injected:SlowerSNw", "sn_w"),
    Injection("weight clipping at 10x c", ("sample_quality", "lipschitz_certificate", "gradient_bounds"),
              "{name: weight_clip, params: {c: 0.1}}", "weight_clip"),
    Injection("spectral estimate off by 2%", ("spectral_accuracy", "claims", "gradient_bounds"),
              "benchmarks.injected:SNwOff2Percent", "sn_w"),
)


def lipbench(args: list[str], machine: str) -> None:
    env, threads = MACHINES[machine]
    full = {**os.environ, **env, "PYTHONPATH": str(ROOT)}
    subprocess.run([sys.executable, "-m", "harness.cli.main", *args, "--threads", str(threads), "--workers", "2"],
                   env=full, cwd=ROOT, check=False, stdout=subprocess.DEVNULL)


def run_machine(work: Path, name: str, suites: list[str], preset: str) -> ResultsDir:
    out = work / name
    resume = ["--resume"] if out.exists() else []
    lipbench(["run", *suites, "--preset", preset, "--out", str(out), *resume], name)
    return ResultsDir(out)


def failing(verdicts: pd.DataFrame) -> pd.DataFrame:
    return verdicts[~verdicts["verdict"].isin(["pass", "improvement", "new", "n/a"])]


def false_alarms(work: Path, runs: dict[str, ResultsDir], suites, preset: str) -> list[dict]:
    rows = []
    for name, run in runs.items():
        with tempfile.TemporaryDirectory() as tmp:
            others = [r for n, r in runs.items() if n != name]
            update_baselines(others, tmp, suites={s.name: s for s in suites}, accept=MEASURING)
            verdicts = judge(suites, run.rows(), stored_baselines(tmp, "cpu", preset), run.planned_keys(),
                             run.manifest().get("methods"), run.completed_keys())
        bad = failing(verdicts)
        rows.append({"machine": name, "verdicts": len(verdicts), "false alarms": len(bad),
                     "which": "; ".join(f"{r.suite} {r.case} {r.method} {r.metric} [{r.check}]"
                                        for r in bad.itertuples())[:400]})
    return rows


def detections(work: Path, runs: dict[str, ResultsDir], suites, preset: str) -> list[dict]:
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        update_baselines(list(runs.values()), tmp, suites={s.name: s for s in suites}, accept=MEASURING)
        selected = {s.name for s in suites}
        for inj in INJECTIONS:
            chosen = [s for s in inj.suites if s in selected]  # --suites: the injection where it can run
            if not chosen:
                continue
            out = work / f"injected-{inj.label}-{inj.name.split()[0]}-{len(inj.name)}"
            spec = inj.method if inj.method.startswith("{") else f"{{name: '{inj.method}'}}"
            injected = [_with_injection(s, spec, inj.label, work) for s in chosen]
            resume = ["--resume"] if out.exists() else []
            lipbench(["run", *map(str, injected), "--preset", preset, "--out", str(out), *resume],
                     "native-t1")
            run = ResultsDir(out)
            loaded = resolve_suites([str(s) for s in injected], ROOT / "suites")
            verdicts = judge(loaded, run.rows(), stored_baselines(tmp, "cpu", preset), run.planned_keys(),
                             run.manifest().get("methods"), run.completed_keys())
            mine = failing(verdicts[verdicts["method"] == inj.label])
            rows.append({"injection": inj.name, "suites": ", ".join(chosen), "detected": not mine.empty,
                         "failing verdicts": len(mine),
                         "by": "; ".join(sorted({f"{r.suite}/{r.metric} [{r.check}]" for r in mine.itertuples()}))[:300]})
    return rows


def _with_injection(suite: str, spec: str, label: str, work: Path) -> Path:
    """A copy of ``suites/<suite>.yaml`` whose method ``label`` is replaced by the injection."""
    import yaml
    data = yaml.safe_load((ROOT / "suites" / f"{suite}.yaml").read_text())
    method = yaml.safe_load(spec)
    method["label"] = label
    for source in [data] + list(data["presets"].values()):
        if "methods" in source:
            source["methods"] = [copy.deepcopy(method) if (m if isinstance(m, str) else m.get("label", m["name"])) == label
                                 else m for m in source["methods"]]  # a copy each: no YAML aliases
    path = work / "suites" / f"{suite}.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def from_baselines(folder: Path) -> None:
    """Leave-one-source-out comparison verdicts from stored baseline files (see the module doc)."""
    suites = {s.name: s for s in resolve_suites([], ROOT / "suites", import_methods=False)}
    table, margins = [], []
    for path in sorted(folder.glob("*.json")):
        stored = read_baseline(path)
        if stored is None or stored.suite not in suites:
            continue
        for source in sorted(set(stored.rows["source"])):
            run = stored.rows[stored.rows["source"] == source].assign(suite=stored.suite, device="cpu", message="",
                                                                      params="{}")
            verdicts = pd.DataFrame(compare_suite(suites[stored.suite], run[COLUMNS],
                                                  stored.rows[stored.rows["source"] != source]))
            if verdicts.empty:
                continue
            bad = failing(verdicts)
            outcome = verdicts[verdicts["check"] == "outcome"]
            margins += list((outcome["effect"] * outcome["reference"].abs() / outcome["threshold"]).dropna())
            table.append({"suite": stored.suite, "source": source, "verdicts": len(verdicts), "false alarms": len(bad),
                          "which": "; ".join(f"{r.case} {r.method} {r.metric}" for r in bad.itertuples())[:200]})
    frame = pd.DataFrame(table)
    with pd.option_context("display.width", 250, "display.max_colwidth", 120):
        print(frame.to_string(index=False))
    margin = pd.Series(margins, dtype=float)
    print(f"\n{int(frame['verdicts'].sum())} comparison verdicts, {int(frame['false alarms'].sum())} false alarms; "
          f"outcome verdicts: {len(margin)}, their change (the smaller of the mean's and the median's) over the "
          f"threshold: median "
          f"{margin.median():.3f}, 99th percentile {margin.quantile(0.99):.3f}, largest {margin.max():.3f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("work", type=Path, nargs="?")
    parser.add_argument("--from-baselines", type=Path, help="judge each stored source against the others, no runs")
    parser.add_argument("--accept-outliers", action="store_true", help="with --merge-into: merge outliers too")
    parser.add_argument("--machines", type=int, default=len(MACHINES))
    parser.add_argument("--suites", default="", help="comma-separated (default: every suite)")
    parser.add_argument("--preset", default="ci")
    parser.add_argument("--merge-into", type=Path, help="merge the machines' runs into this baselines folder")
    parser.add_argument("--skip-injections", action="store_true")
    args = parser.parse_args()
    if args.from_baselines:
        from_baselines(args.from_baselines)
        return
    if args.work is None:
        parser.error("WORKDIR is needed unless --from-baselines")
    names = list(MACHINES)[: args.machines]
    suite_names = [s for s in args.suites.split(",") if s]
    suites = resolve_suites(suite_names, ROOT / "suites")
    runs = {name: run_machine(args.work, name, [s.name for s in suites], args.preset) for name in names}
    incomplete = [n for n, r in runs.items() if r.planned_keys() - r.completed_keys()]
    if incomplete:
        sys.exit(f"incomplete runs: {', '.join(incomplete)}")
    with pd.option_context("display.width", 250, "display.max_colwidth", 120):
        print("False alarms (each machine against a baseline from the others):")
        print(pd.DataFrame(false_alarms(args.work, runs, suites, args.preset)).to_string(index=False))
        if not args.skip_injections:
            print("\nInjected regressions (against a baseline from every machine):")
            print(pd.DataFrame(detections(args.work, runs, suites, args.preset)).to_string(index=False))
    if args.merge_into:
        accept = Acceptance(outliers=args.accept_outliers)
        for change in update_baselines(list(runs.values()), args.merge_into, prune=True,
                                       suites={s.name: s for s in suites}, accept=accept):
            print("\n".join(change.lines()))


if __name__ == "__main__":
    main()
