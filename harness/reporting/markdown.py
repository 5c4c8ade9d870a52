"""A markdown summary of a run for pull requests (``--summary-md``; GitHub's ``$GITHUB_STEP_SUMMARY``).

Short by design: the overall verdict, counts per verdict and suite, and the first failing
verdicts as a table (each on one line, as the terminal shows them); the HTML report holds
the rest. Every text cell is escaped, so a hostile method or case name cannot inject
markdown or HTML into a pull request.
"""
from __future__ import annotations

import re
from pathlib import Path

import pandas as pd

from .verdicts import VERDICTS, failing_verdicts, normalize_verdicts, overall_passed, verdict_counts

#: Failing verdicts listed in the table; the count of the others is given.
MAX_FAILING_ROWS = 25

_SPECIAL = re.compile(r"([\\`*_{}\[\]()#+\-.!|<>~])")


def md_escape(text: object) -> str:
    """``text`` as inert markdown on one line: special characters backslash-escaped, newlines folded."""
    return _SPECIAL.sub(r"\\\1", " ".join(str(text).split()))


def markdown_summary(verdicts: pd.DataFrame | None, *, title: str, report: str | None = None) -> str:
    df = normalize_verdicts(verdicts)
    status = "PASS" if overall_passed(df) else "FAIL"
    lines = [f"### {md_escape(title)}: {'✅' if status == 'PASS' else '❌'} {status}", ""]
    if df.empty:
        return "\n".join(lines + ["No verdicts.", ""])
    order = [v for v in VERDICTS if v in set(df["verdict"])] + sorted(set(df["verdict"]) - set(VERDICTS))
    counts = verdict_counts(df)
    lines.append(f"{len(df)} verdicts: " + ", ".join(f"{counts[v]} {md_escape(v)}" for v in order))
    lines += ["", "| suite | " + " | ".join(md_escape(v) for v in order) + " |",
              "| --- |" + " ---: |" * len(order)]
    for suite, group in df.groupby("suite", sort=True):
        per = group["verdict"].value_counts()
        lines.append(f"| {md_escape(suite)} | " + " | ".join(str(int(per.get(v, 0))) for v in order) + " |")
    failing = failing_verdicts(df)
    if not failing.empty:
        lines += ["", f"**{len(failing)} failing**" + (f" (first {MAX_FAILING_ROWS})"
                                                        if len(failing) > MAX_FAILING_ROWS else ""), "",
                  "| verdict | suite / case | method | metric [check] | detail |", "| --- | --- | --- | --- | --- |"]
        for _, r in failing.head(MAX_FAILING_ROWS).iterrows():
            metric = f"{r['metric']} [{r['check']}]" if r["check"] else r["metric"]
            where = f"{r['suite']}/{r['case']}"
            detail = (str(r["detail"]).strip().splitlines() or [""])[-1]
            cells = (r["verdict"].upper(), where, r["method"], metric, detail[:200])
            lines.append("| " + " | ".join(md_escape(c) for c in cells) + " |")
    if report:
        lines += ["", f"Full report: `{report.replace('`', '')}` (uploaded with the job's artifacts)."]
    return "\n".join(lines) + "\n"


def write_markdown_summary(path: str | Path, verdicts: pd.DataFrame | None, *, title: str,
                           report: str | None = None) -> None:
    """Append the summary to ``path`` (GitHub's step summary file is shared by every step of a job)."""
    with open(path, "a", encoding="utf-8") as handle:
        handle.write(markdown_summary(verdicts, title=title, report=report))
