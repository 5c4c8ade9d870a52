"""JUnit XML: one ``<testcase>`` per verdict row (check, comparison, or run-level).

* ``classname`` = ``<suite_name>.<suite>.<case>``, ``name`` = ``<method>:<metric>:<check>``
  (with ``[seed=N]`` appended when the verdict is for one seed, so names stay unique);
* ``violation``/``regression``/``changed``/``missing`` -> ``<failure type=verdict>``, ``error`` ->
  ``<error>``, ``n/a`` -> ``<skipped message=reason>``; an unknown verdict string is
  reported as ``<error>`` (fail closed);
* one ``<testsuite>`` per suite inside ``<testsuites>``, all counts consistent.
"""
from __future__ import annotations

import os
import xml.etree.ElementTree as ET
from pathlib import Path

import pandas as pd

from harness.results.atomic import write_output

from .verdicts import normalize_verdicts, sort_verdicts, summary_line

__all__ = ["junit_xml", "write_junit"]

_FAILURE = {"violation", "regression", "changed", "missing"}
_PASSING = {"pass", "improvement", "new"}


def _fmt(x: float) -> str:
    return "" if pd.isna(x) else f"{x:.6g}"


def _message(row) -> str:
    """``verdict: [check] value V, bound B: detail`` on one line (see ``summary_line``)."""
    return f"{row['verdict'] or '(blank verdict)'}: {summary_line(row)}"[:500]


def _body(row) -> str:
    lines = [f"value: {_fmt(row['value'])}", f"reference: {_fmt(row['reference'])}",
             f"kind: {row['kind']}", "", str(row["detail"])]
    return "\n".join(lines)


def _xml_safe(text: str) -> str:
    """Drop characters XML 1.0 cannot carry (control characters from tracebacks)."""
    return "".join(c for c in text if c in "\t\n\r" or (ord(c) >= 0x20 and ord(c) not in (0xFFFE, 0xFFFF)
                                                       and not 0xD800 <= ord(c) <= 0xDFFF))


def junit_xml(verdicts: pd.DataFrame | None, suite_name: str = "lipbench") -> ET.ElementTree:
    df = sort_verdicts(normalize_verdicts(verdicts))
    root = ET.Element("testsuites", name=suite_name)
    totals = dict(tests=0, failures=0, errors=0, skipped=0)
    suites = list(dict.fromkeys(df["suite"]))
    for suite in suites:
        rows = df[df["suite"] == suite]
        counts = dict(tests=0, failures=0, errors=0, skipped=0)
        ts = ET.SubElement(root, "testsuite", name=f"{suite_name}.{suite}")
        for _, r in rows.iterrows():
            name = f"{r['method']}:{r['metric']}:{r['check']}"
            if r["seed"] != "":
                name += f"[seed={r['seed']}]"
            tc = ET.SubElement(ts, "testcase", classname=_xml_safe(f"{suite_name}.{suite}.{r['case']}"),
                               name=_xml_safe(name), time="0")
            counts["tests"] += 1
            v = r["verdict"]
            if v in _PASSING:
                if r["detail"]:
                    ET.SubElement(tc, "system-out").text = _xml_safe(f"{v}: {r['detail']}")
            elif v in _FAILURE:
                el = ET.SubElement(tc, "failure", type=v, message=_xml_safe(_message(r)))
                el.text = _xml_safe(_body(r))
                counts["failures"] += 1
            elif v == "n/a":
                ET.SubElement(tc, "skipped", message=_xml_safe(str(r["detail"]) or "not applicable"))
                counts["skipped"] += 1
            else:  # 'error' and anything unknown: fail closed
                el = ET.SubElement(tc, "error", type=v or "blank", message=_xml_safe(_message(r)))
                el.text = _xml_safe(_body(r))
                counts["errors"] += 1
        for k, n in counts.items():
            ts.set(k, str(n))
            totals[k] += n
        ts.set("time", "0")
    for k, n in totals.items():
        root.set(k, str(n))
    ET.indent(root)
    return ET.ElementTree(root)


def write_junit(path: str | os.PathLike, verdicts: pd.DataFrame | None,
                suite_name: str = "lipbench") -> Path:
    """Write JUnit XML for ``verdicts`` to ``path`` (atomically); returns the path."""
    data = ET.tostring(junit_xml(verdicts, suite_name).getroot(), encoding="utf-8", xml_declaration=True)
    return write_output(path, data, "junit")
