"""Reports of a lipbench run: self-contained HTML, JUnit XML and a terminal summary.

Inputs are the long-format contracts described in docs/architecture.md and docs/results.md (results, verdicts,
traces), the validated suite files, the run manifest and image artifacts::

    from harness.reporting import write_html, write_junit, terminal_summary, overall_passed

    write_html("reports/verify.html", results, verdicts, suites, manifest,
               traces=traces, artifacts=artifacts, title="lipbench verify")
    write_junit("reports/junit.xml", verdicts)
    print(terminal_summary(verdicts))
    sys.exit(0 if overall_passed(verdicts) else 1)
"""
from .htmlreport import render_html, write_html
from .junit import junit_xml, write_junit
from .terminal import terminal_summary
from .verdicts import (FAILING, NON_FAILING, VERDICTS, is_failing, overall_passed,
                       verdict_counts)

__all__ = ["write_html", "render_html", "write_junit", "junit_xml", "terminal_summary",
           "overall_passed", "verdict_counts", "is_failing", "VERDICTS", "FAILING", "NON_FAILING"]
