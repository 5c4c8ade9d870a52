"""The markdown summary (``--summary-md``): verdict counts per suite, failing verdicts, inert text."""
import pandas as pd

from harness.reporting.markdown import MAX_FAILING_ROWS, markdown_summary, write_markdown_summary


def _verdict(verdict, suite="claims", method="sn_w", detail="", **extra):
    return {"suite": suite, "case": "k=1", "method": method, "seed": 0, "metric": "m", "check": "c",
            "kind": "check", "verdict": verdict, "value": 1.0, "reference": float("nan"), "effect": float("nan"),
            "threshold": float("nan"), "detail": detail, **extra}


def test_a_passing_run_has_counts_per_suite_and_no_failing_table():
    text = markdown_summary(pd.DataFrame([_verdict("pass"), _verdict("pass", suite="contract"),
                                          _verdict("n/a", suite="contract")]), title="lipbench verify (ci)")
    assert text.splitlines()[0] == "### lipbench verify \\(ci\\): ✅ PASS"
    assert "3 verdicts: 2 pass, 1 n/a" in text
    assert "| claims | 1 | 0 |" in text and "| contract | 1 | 1 |" in text
    assert "failing" not in text


def test_failing_verdicts_are_listed_one_line_each_and_capped():
    rows = [_verdict("violation", detail=f"line one\nvalue {i} > 1") for i in range(MAX_FAILING_ROWS + 5)]
    text = markdown_summary(pd.DataFrame(rows + [_verdict("pass")]), title="t", report="reports/x.html")
    assert "❌ FAIL" in text and f"**{MAX_FAILING_ROWS + 5} failing** (first {MAX_FAILING_ROWS})" in text
    table = [ln for ln in text.splitlines() if ln.startswith("| VIOLATION")]
    assert len(table) == MAX_FAILING_ROWS and "value 0 \\> 1" in table[0] and "line one" not in table[0]
    assert text.rstrip().endswith("(uploaded with the job's artifacts).")


def test_hostile_names_cannot_inject_markdown_or_html():
    hostile = "x|<script>alert(1)</script>](http://evil) *bold* `code`\n# heading"
    text = markdown_summary(pd.DataFrame([_verdict("error", method=hostile, detail=hostile)]), title=hostile)
    assert "<script>" not in text and "](http" not in text and "\n# heading" not in text
    for row in (ln for ln in text.splitlines() if ln.startswith("| ERROR")):
        assert row.count("|") - row.count("\\|") == 6  # five cells, no cell split by a name


def test_the_summary_is_appended_like_github_step_summaries(tmp_path):
    path = tmp_path / "summary.md"
    path.write_text("earlier step\n")
    write_markdown_summary(path, pd.DataFrame([_verdict("pass")]), title="t")
    assert path.read_text().startswith("earlier step\n### t: ✅ PASS")
