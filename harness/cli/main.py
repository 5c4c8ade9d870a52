"""``lipbench``: list, run, verify, check, report, compare, inspect, baseline update.

Exit codes: 0 everything passed; 1 a regression, violated bound or error; 2 a usage
or suite-file error (reported as ``file:line: key: what is wrong``, no traceback).
"""
from __future__ import annotations

import argparse
import sys
from typing import Sequence

from harness.methods import MethodLoadError

from harness.suite import SuiteError

from . import commands

USAGE_ERROR = 2


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="lipbench", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("list", help="list suites, methods and presets")
    p.add_argument("--suites-dir")
    p.set_defaults(func=commands.cmd_list)

    def run_options(p: argparse.ArgumentParser, out_default: str | None) -> None:
        p.add_argument("suites", nargs="*", metavar="SUITE", help="suite names or files (default: all)")
        p.add_argument("--preset", default="ci")
        p.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
        p.add_argument("--out", default=out_default, help="results folder")
        p.add_argument("--resume", action="store_true", help="skip cases already in --out")
        p.add_argument("--timeout", type=float, help="per-case timeout in seconds (default: the suite's)")
        p.add_argument("--suites-dir")

    p = sub.add_parser("run", help="run suites and write long-format results")
    run_options(p, None)
    p.add_argument("--methods", help="comma-separated methods replacing the suites' lists")
    p.set_defaults(func=commands.cmd_run)

    def report_options(p: argparse.ArgumentParser, report: str | None, junit: str | None) -> None:
        p.add_argument("--baselines", help="baselines folder (default: ./baselines)")
        p.add_argument("--report", default=report, help="HTML report file")
        p.add_argument("--junit", default=junit, help="JUnit XML file")

    p = sub.add_parser("verify", help="run suites, compare with baselines, report; exit 1 on failure")
    run_options(p, "results/verify")
    report_options(p, "reports/verify.html", "reports/junit.xml")
    p.set_defaults(func=commands.cmd_verify)

    p = sub.add_parser("check", help="run a variant of your own through every suite that applies")
    p.add_argument("variant", help="package.module:attr (a Method subclass or factory) or a method name")
    p.add_argument("--as", dest="as_name", help="compare against this built-in method's baselines")
    p.add_argument("--param", action="append", default=[], metavar="KEY=VALUE", help="variant parameter")
    p.add_argument("--against", nargs="+", help="built-in methods to run beside it (default: each suite's)")
    p.add_argument("--suites", nargs="+", dest="suite_names", metavar="SUITE")
    p.add_argument("--preset", default="ci")
    p.add_argument("--device", default="cpu")
    p.add_argument("--out", default="results/check")
    p.add_argument("--timeout", type=float)
    p.add_argument("--suites-dir")
    report_options(p, "reports/check.html", "reports/check-junit.xml")
    p.set_defaults(func=commands.cmd_check)

    p = sub.add_parser("report", help="HTML report of a results folder")
    p.add_argument("results")
    p.add_argument("-o", "--output", required=True)
    p.add_argument("--baselines")
    p.add_argument("--junit")
    p.add_argument("--suites-dir")
    p.set_defaults(func=commands.cmd_report)

    p = sub.add_parser("compare", help="compare results B against results A with the suites' rules")
    p.add_argument("a", metavar="RESULTS_A")
    p.add_argument("b", metavar="RESULTS_B")
    p.add_argument("--report")
    p.add_argument("--suites-dir")
    p.set_defaults(func=commands.cmd_compare)

    p = sub.add_parser("baseline", help="manage stored baselines")
    bsub = p.add_subparsers(dest="baseline_command", required=True)
    u = bsub.add_parser("update", help="write baselines from a complete run")
    u.add_argument("results", nargs="?", default="results/verify")
    u.add_argument("--baselines")
    u.set_defaults(func=commands.cmd_baseline_update)

    p = sub.add_parser("inspect", help="per-layer norms and Lipschitz bounds of a model")
    p.add_argument("target", help="package.module:factory, or a checkpoint file with --factory")
    p.add_argument("--input-shape", required=True, help="C,H,W (or features for MLPs)")
    p.add_argument("--factory", help="package.module:factory building the module a state dict loads into")
    p.add_argument("--method", help="apply this method first (name or module:attr)")
    p.add_argument("--json", action="store_true", help="print JSON records")
    p.set_defaults(func=commands.cmd_inspect)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except (SuiteError, MethodLoadError, commands.UsageError) as exc:
        print(f"lipbench: {exc}", file=sys.stderr)
        return USAGE_ERROR
    except KeyboardInterrupt:
        print("lipbench: interrupted; finished cases are kept (use --resume)", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
