"""``lipbench``: list, run, verify, check, plan, report, compare, inspect, baseline update.

Exit codes: 0 everything passed; 1 a regression, violated bound or error; 2 bad input
(a file, line, key, flag, path, baseline or method named in one line, no traceback), or a
file system that refuses (permissions, read-only, full); 3 an internal error (a bug:
``--debug`` shows its traceback); 128 + N stopped by signal N (130 SIGINT, 143 SIGTERM,
129 SIGHUP), finished cases kept.
"""
from __future__ import annotations

import argparse
import errno
import math
import os
import re
import select
import sys
import traceback
from pathlib import Path
from typing import NoReturn, Sequence

from harness.errors import UserError
from harness.shipped import build_info
from harness.results.atomic import check_output_path, results_folder_of

from harness.runners.devices import device_name
from harness.runners.executors import EXECUTORS
from harness.runners.isolation import default_max_memory
from harness.runners.termination import Terminated, stop_on_signals
from harness.suite import DEFAULT_MAX_CASES

from . import commands, own_model

USAGE_ERROR = 2
INTERNAL_ERROR = 3
#: The reader of the output closed it early: 128 + SIGPIPE, as a shell reports a command that died of it.
PIPE_CLOSED = 141
#: Smallest --max-memory, and smallest share of the machine one of --workers may get: a worker
#: process with torch and lipbench loaded is resident at 448 MiB before its case starts
#: (measured on the development machine), so a limit much nearer than this fails every case.
MIN_CASE_MEMORY_MIB = 1024
#: Most cases at once on one machine, and most torch threads per case: beyond these a flag is a typo.
MAX_WORKERS = 1024
#: Errors of the file system the user's paths live on: bad input or environment, not a bug.
_ENVIRONMENT_ERRNOS = {errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOSPC, errno.EDQUOT, errno.ENAMETOOLONG,
                       errno.ELOOP, errno.ENOTDIR, errno.EISDIR, errno.EEXIST, errno.ENOENT, errno.EMFILE,
                       errno.EFBIG, errno.EBUSY, errno.ETXTBSY}
_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_-]{0,99}$")


class _Parser(argparse.ArgumentParser):
    """argparse, but a bad flag is one line (``lipbench: ...``) and exit code 2."""

    def error(self, message: str) -> NoReturn:
        raise commands.UsageError(f"{message} (see {self.prog} --help)")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="lipbench", description=__doc__.split("\n")[0])
    info = build_info()
    parser.add_argument("--version", action="version", version=f"lipbench {info['version']} (build {info['commit']})")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    p = sub.add_parser("list", help="list suites, methods and presets")
    p.add_argument("--suites-dir")
    p.set_defaults(func=commands.cmd_list)

    def run_options(p: argparse.ArgumentParser, out_default: str | None) -> None:
        p.add_argument("suites", nargs="*", metavar="SUITE", help="suite names or files (default: all)")
        p.add_argument("--preset", default="ci", type=preset_name)
        p.add_argument("--device", default="cpu", type=device_name, help="cpu, cuda or cuda:N")
        p.add_argument("--out", default=out_default, help="results folder")
        execution_options(p)
        p.add_argument("--suites-dir")

    def execution_options(p: argparse.ArgumentParser) -> None:
        p.add_argument("--set", dest="overrides", action="append", default=[], metavar="[SUITE.]KEY=VALUE",
                       help="override a runner setting (VALUE parsed as YAML, checked against its declaration; "
                            "wins over every preset); repeatable")
        p.add_argument("--seeds", help="replace the suites' seeds: 0,1,2 or 0-4")
        p.add_argument("--resume", action="store_true", help="continue the results in --out, skipping finished cases")
        p.add_argument("--overwrite", action="store_true",
                       help="replace the results in --out (removes lipbench's own files only)")
        p.add_argument("--retry-errors", action="store_true", help="with --resume: run cases that ended in error again")
        p.add_argument("--timeout", type=positive_float, help="per-case timeout in seconds (default: the suite's)")
        p.add_argument("--max-cases", type=positive_int, default=DEFAULT_MAX_CASES,
                       help=f"refuse a plan with more cases (default {DEFAULT_MAX_CASES})")
        p.add_argument("--max-memory", type=memory_mib, metavar="MIB",
                       help="kill a case whose worker uses more memory (default: 80%% of the machine)")
        p.add_argument("--threads", type=thread_count, default=1, metavar="N",
                       help="torch intra-op threads per case (default 1; 0: torch's default)")
        p.add_argument("--no-isolation", action="store_true",
                       help="run cases in the lipbench process itself (debugging; no hard timeout or memory limit)")
        p.add_argument("--executor", choices=EXECUTORS, default="local",
                       help="where cases run: local (this machine, the default) or ray (a Ray cluster: "
                            'pip install "lipbench[ray]")')
        p.add_argument("--workers", type=worker_count,
                       help="local: cases at once (default 1); ray: CPUs of the local cluster it starts "
                            "(default: this machine's), with --address: most cases in flight at once")
        p.add_argument("--address", help="ray: join a running cluster instead (auto: the one `ray start` "
                                         "joined this machine to, or HOST:PORT of its head)")
        p.add_argument("--retries", type=retry_count, default=1,
                       help="ray: how often a case lost with its worker or node is sent again (default 1)")

    p = sub.add_parser("run", help="run suites and write long-format results")
    run_options(p, None)
    p.add_argument("--methods", help="comma-separated methods replacing the suites' lists")
    p.set_defaults(func=commands.cmd_run)

    def report_options(p: argparse.ArgumentParser, report: str | None, junit: str | None) -> None:
        p.add_argument("--baselines", help="baselines folder (default: ./baselines)")
        p.add_argument("--report", default=report, help="HTML report file")
        p.add_argument("--junit", default=junit, help="JUnit XML file")
        p.add_argument("--summary-md", metavar="FILE",
                       help="append a markdown summary (for a pull request: $GITHUB_STEP_SUMMARY)")

    p = sub.add_parser("verify", help="run suites, compare with baselines, report; exit 1 on failure")
    run_options(p, "results/verify")
    report_options(p, "reports/verify.html", "reports/junit.xml")
    p.set_defaults(func=commands.cmd_verify)

    p = sub.add_parser("check", help="run a variant of your own through every suite that applies")
    p.add_argument("variant", help="package.module:attr (a Method subclass or factory) or a method name")
    p.add_argument("--as", dest="as_name", help="compare against this built-in method's baselines")
    p.add_argument("--param", action="append", default=[], metavar="KEY=VALUE", help="variant parameter")
    p.add_argument("--against", nargs="+", help="built-in methods to run beside it (default: none; with --model: "
                                                "sn_w none)")
    p.add_argument("--suites", nargs="+", dest="suite_names", metavar="SUITE")
    p.add_argument("--preset", default="ci", type=preset_name)
    p.add_argument("--device", default="cpu", type=device_name, help="cpu, cuda or cuda:N")
    p.add_argument("--out", help="results folder (default: results/check-VARIANT-TIME, a new one each time)")
    p.add_argument("--fail-fast", action="store_true", help="stop after the contract when it is violated")
    own_model.add_options(p)
    execution_options(p)
    p.add_argument("--suites-dir")
    report_options(p, None, None)  # default: reports/check-VARIANT-TIME.html and -junit.xml
    p.set_defaults(func=commands.cmd_check)

    p = sub.add_parser("report", help="HTML report of a results folder")
    p.add_argument("results")
    p.add_argument("-o", "--output", required=True)
    p.add_argument("--baselines")
    p.add_argument("--junit")
    p.add_argument("--summary-md", metavar="FILE", help="append a markdown summary")
    p.add_argument("--suites-dir")
    p.set_defaults(func=commands.cmd_report)

    p = sub.add_parser("compare", help="compare results B with results A: differences first, each metric by its rule")
    p.add_argument("a", metavar="RESULTS_A")
    p.add_argument("b", metavar="RESULTS_B")
    p.add_argument("--report", help="HTML report, A and B side by side (default: reports/compare-A-B-TIME.html)")
    p.add_argument("--junit")
    p.add_argument("--summary-md", metavar="FILE", help="append a markdown summary")
    p.add_argument("--suites-dir")
    p.set_defaults(func=commands.cmd_compare)

    p = sub.add_parser("baseline", help="manage stored baselines")
    bsub = p.add_subparsers(dest="baseline_command", required=True)
    u = bsub.add_parser("update", help="write baselines from a complete run")
    u.add_argument("results", nargs="*", default=["results/verify"],
                   help="complete results folders, one per machine or CPU setting (default: results/verify)")
    u.add_argument("--baselines")
    u.add_argument("--prune", action="store_true", help="also remove baseline rows of cases the runs did not plan")
    u.add_argument("--replace-stale", action="store_true",
                   help="remove other sources' rows of a case whose definition (fingerprint) differs from the run's")
    u.add_argument("--accept-failing", action="store_true",
                   help="merge runs whose checks fail (violations, errors); refused otherwise")
    u.add_argument("--accept-relabelled", action="store_true",
                   help="merge a `check --as NAME` run as NAME's baseline; refused otherwise")
    u.add_argument("--accept-outliers", action="store_true",
                   help="merge training outcomes beyond the robust z of the baseline; refused otherwise")
    u.add_argument("--suites-dir")
    u.set_defaults(func=commands.cmd_baseline_update)

    p = sub.add_parser("plan", help="cases, resources, estimated wall time and GPU-hours of a run, before it runs")
    p.add_argument("suites", nargs="*", metavar="SUITE", help="suite names or files (default: all)")
    p.add_argument("--preset", default="ci", type=preset_name)
    p.add_argument("--device", default="cpu", type=device_name,
                   help="where one iteration is measured (cpu, cuda or cuda:N)")
    p.add_argument("--methods", help="comma-separated methods replacing the suites' lists")
    p.add_argument("--executor", choices=EXECUTORS, default="local", help="the executor the run would use")
    p.add_argument("--workers", type=worker_count, help="ray: cases at once (default: this machine's CPUs)")
    p.add_argument("--address", help="ray: estimate for the nodes of this running cluster")
    p.add_argument("--from", dest="from_results", metavar="RESULTS",
                   help="take each case's seconds from an earlier results folder instead of measuring")
    p.add_argument("--repeats", type=positive_int, default=2, help="timed training iterations per measurement")
    p.add_argument("--max-cases", type=positive_int, default=DEFAULT_MAX_CASES,
                   help=f"refuse a plan with more cases (default {DEFAULT_MAX_CASES})")
    p.add_argument("--suites-dir")
    p.set_defaults(func=commands.cmd_plan)

    p = sub.add_parser("inspect", help="per-node Lipschitz bound of a model (certified)")
    p.add_argument("target", help="package.module:factory, or a checkpoint file with --factory")
    p.add_argument("--input-shape", required=True, help="C,H,W (or features for MLPs), no batch dim")
    p.add_argument("--factory", help="package.module:factory building the module a state dict loads into")
    p.add_argument("--method", help="apply this method first (name or module:attr)")
    p.add_argument("--param", action="append", default=[], metavar="KEY=VALUE",
                   help="method parameter (VALUE parsed as YAML); repeatable")
    p.add_argument("--tol", type=positive_float, default=1e-4,
                   help="relative accuracy of each operator norm's value (brackets are certified anyway)")
    p.add_argument("--max-rel-width", type=positive_float, default=0.01,
                   help="operator-norm bracket width above which a Cholesky certificate is tried")
    p.add_argument("--wrt", metavar="NAME",
                   help="the forward argument the bound is with respect to (default: the first)")
    p.add_argument("--classes", metavar="SET",
                   help="class labels for a conditional model's other input, e.g. 0-9 or 0,3,7: the bound for "
                        "each class (held constant) and their maximum")
    p.add_argument("--label-arg", metavar="NAME",
                   help="the forward argument that takes the class label (default: the only other one "
                        "without a default)")
    p.add_argument("--json", action="store_true", help="print JSON records")
    p.add_argument("--html", metavar="FILE",
                   help="also write the table, a plot of the running bound and a bar chart of factors as a page")
    p.set_defaults(func=commands.cmd_inspect)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv  # accepted anywhere on the line: shows tracebacks of errors
    argv = [a for a in argv if a != "--debug"]
    try:
        with stop_on_signals():
            args = build_parser().parse_args(argv)
            check_arguments(args)
            code = int(args.func(args) or 0)
            if sys.stdout is not None:  # None: started with its output closed
                sys.stdout.flush()  # a closed pipe surfaces here, not in the interpreter's exit
            return code
    except UserError as exc:
        return _usage_error(str(exc), debug)
    except KeyboardInterrupt as exc:
        signum = exc if isinstance(exc, Terminated) else Terminated()
        print(f"lipbench: stopped by {signum.name}; every worker was killed and finished cases are kept "
              "(use --resume)", file=sys.stderr)
        return signum.exit_code
    except BrokenPipeError as exc:
        if not _output_closed():  # another pipe of lipbench's own: a bug
            return _internal_error(exc, debug)
        # the reader of the output went away (`lipbench list | head`): not an error here
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # the exit's flush must not fail again
        return PIPE_CLOSED
    except OSError as exc:
        if exc.errno in _ENVIRONMENT_ERRNOS:
            where = f"{exc.filename}: " if exc.filename else ""
            return _usage_error(f"{where}{exc.strerror or exc}", debug)
        return _internal_error(exc, debug)
    except Exception as exc:  # noqa: BLE001 - a bug: one line unless --debug
        return _internal_error(exc, debug)


def _output_closed() -> bool:
    """Whether standard output is a pipe whose reader has gone (``poll`` reports an error on it)."""
    try:
        poll = select.poll()
        poll.register(sys.stdout.fileno(), select.POLLOUT)
        return any(events & select.POLLERR for _, events in poll.poll(0))
    except (AttributeError, OSError, ValueError):
        return False


def _usage_error(message: str, debug: bool) -> int:
    if debug:
        traceback.print_exc()
    first, _, rest = message.partition("\n")
    more = rest.count("\n") + 1 if rest else 0
    print(f"lipbench: {first}" + (f" (and {more} more problem(s); --debug lists them)" if more and not debug
                                  else ""), file=sys.stderr)
    if debug and rest:
        print(rest, file=sys.stderr)
    return USAGE_ERROR


def _internal_error(exc: BaseException, debug: bool) -> int:
    if debug:
        traceback.print_exc()
    text = " ".join(f"{type(exc).__name__}: {exc}".split())
    print(f"lipbench: internal error: {text} (run with --debug for the traceback)", file=sys.stderr)
    return INTERNAL_ERROR


def check_arguments(args: argparse.Namespace) -> None:
    """What argparse cannot check alone: output paths, folders, the memory each worker gets."""
    out = getattr(args, "out", None)
    for flag, attr in (("-o", "output"), ("--report", "report"), ("--junit", "junit"), ("--html", "html"),
                       ("--summary-md", "summary_md")):
        value = getattr(args, attr, None)
        if value:
            path = check_output_path(value, flag)
            if out and _inside(path, Path(out)):
                raise commands.UsageError(f"{flag} {path}: inside the results folder --out {out}, where lipbench "
                                          "writes only its own records; choose a path outside it")
    baselines = getattr(args, "baselines", None)
    if baselines:
        if Path(baselines).exists() and not Path(baselines).is_dir():
            raise commands.UsageError(f"--baselines {baselines}: exists and is not a folder")
        owner = results_folder_of(baselines)
        if owner is not None or (out and _inside(Path(baselines), Path(out))):
            raise commands.UsageError(f"--baselines {baselines}: inside the results folder {owner or out}; "
                                      "baselines live outside results folders")
    if out and Path(out).exists() and not Path(out).is_dir():
        raise commands.UsageError(f"--out {out}: exists and is not a folder")
    workers = getattr(args, "workers", None)
    if workers and not getattr(args, "max_memory", None) and not getattr(args, "address", None) \
            and hasattr(args, "max_memory"):
        share = default_max_memory(workers)
        if share is not None and share < MIN_CASE_MEMORY_MIB * 2**20:
            raise commands.UsageError(f"--workers {workers}: 80% of this machine's memory shared by {workers} "
                                      f"workers is {share / 2**20:.0f} MiB each, below the {MIN_CASE_MEMORY_MIB} MiB "
                                      "a case needs; use fewer workers or give --max-memory")


def _inside(path: Path, folder: Path) -> bool:
    path, folder = Path(path).absolute(), Path(folder).absolute()
    return path == folder or folder in path.parents


def _bounded(cast, noun: str, ok, rule: str):
    """An argparse type: a ``cast`` value (int or float) satisfying ``ok``, with a one-line error."""
    def parse(text: str):
        try:
            value = cast(text)
        except (ValueError, OverflowError):
            raise argparse.ArgumentTypeError(f"expected {noun}, got {text!r}") from None
        if not ok(value):
            raise argparse.ArgumentTypeError(f"{rule}, got {text!r}")
        return value
    return parse


def preset_name(text: str) -> str:
    """A preset's name: letters, digits, ``_`` and ``-`` (it becomes part of baseline file names)."""
    if not _NAME.match(text):
        raise argparse.ArgumentTypeError(f"expected a preset name (letters, digits, _ and -), got {text!r}")
    return text


positive_float = _bounded(float, "a number", lambda v: math.isfinite(v) and v > 0, "must be a positive, finite number")
positive_int = _bounded(int, "an integer", lambda v: v > 0, "must be positive")
memory_mib = _bounded(float, "a number of MiB", lambda v: math.isfinite(v) and MIN_CASE_MEMORY_MIB <= v <= 2**40,
                      f"must be a finite number of MiB from {MIN_CASE_MEMORY_MIB} (a worker alone needs ~450) to 2^40")
worker_count = _bounded(int, "an integer", lambda v: 0 < v <= MAX_WORKERS, f"must be from 1 to {MAX_WORKERS}")
thread_count = _bounded(int, "an integer", lambda v: 0 <= v <= MAX_WORKERS, f"must be from 0 to {MAX_WORKERS}")
retry_count = _bounded(int, "an integer", lambda v: 0 <= v <= 100, "must be from 0 to 100")


if __name__ == "__main__":
    sys.exit(main())
