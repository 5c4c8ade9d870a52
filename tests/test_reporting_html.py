"""The HTML report rendered from synthetic fixtures: content, escaping, self-containedness."""
from __future__ import annotations

import base64
import io
import json
import re
from pathlib import Path

import pandas as pd
import pytest

from harness.reporting import render_html, write_html
from harness.reporting.demo import demo_inputs

XSS = "<script>alert(1)</script>"


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    return demo_inputs(tmp_path_factory.mktemp("artifacts"))


@pytest.fixture(scope="module")
def report(demo, tmp_path_factory) -> str:
    path = tmp_path_factory.mktemp("report") / "report.html"
    out = write_html(path, title="fixture report", **demo)
    assert out == path and path.exists()
    return path.read_text(encoding="utf-8")


def _section(html: str, anchor: str) -> str:
    start = html.index(f'id="{anchor}"')
    end = html.find('<section class="suite"', start + 1)
    return html[start:end if end > 0 else len(html)]


def _text(html: str) -> str:
    """Visible text, roughly: tags dropped, whitespace collapsed."""
    return " ".join(re.sub(r"<[^>]+>", " ", html).split())


def test_overall_fail_and_counts(report, demo):
    assert 'data-overall="FAIL"' in report
    assert "<title>fixture report — FAIL</title>" in report
    counts = demo["verdicts"]["verdict"].value_counts().to_dict()
    assert counts == {"pass": 125, "violation": 1, "regression": 1, "missing": 1, "error": 1,
                      "improvement": 1, "new": 1}
    chips = dict(re.findall(r'data-verdict="([^"]+)" data-count="(\d+)"', report))
    for verdict in ("pass", "violation", "regression", "missing", "error", "improvement", "new", "n/a"):
        assert int(chips[verdict]) == counts.get(verdict, 0), verdict
    assert "4 failing" in report


def test_each_suite_has_a_section(report, demo):
    for suite in demo["suites"]:
        name = suite["name"]
        sec = _section(report, f"suite-{name}")
        assert f"<h2>{name}</h2>" in sec
        assert suite["description"].split(":")[0] in sec
        for check in suite.get("checks", []):
            assert check["name"] in sec and check["cite"] in sec
    assert 'id="provenance"' in report and "2e7206f0304975365b52f4c00561e72d9b193c40" in report


def test_failing_verdicts_first_and_present(report):
    table = report[report.index('id="verdict-table"'):]
    table = table[: table.index("</table>")]
    verdicts = re.findall(r'<tr class="row-(?:fail|ok)" data-verdict="([^"]+)"', table)
    assert verdicts[:4] == ["error", "violation", "regression", "missing"]
    assert all(v not in ("error", "violation", "regression", "missing") for v in verdicts[4:])
    assert len(verdicts) == 131
    assert "value 3.12 &gt; bound 3 (Lin et al. 2021 §4)" in table
    assert "Mann-Whitney p=0.003, median ratio 1.12 &gt; 1.05" in table
    assert "in the baseline but not in this run" in table


def test_suite_sections_show_their_failures(report):
    conv = _section(report, "suite-conv_operator_norm")
    assert 'class="badge fail"' in conv and "violation" in conv
    train = _section(report, "suite-train_standard_cnn")
    assert "regression" in train and "improvement" in train
    # failing pivot cells are highlighted: wgan_gp step_ms (regression), sn_conv (error)
    pivot = train[train.index('class="pivot'):]
    assert pivot.count("cell-fail") >= 2
    assert "cell-improve" in pivot


def test_error_traceback_in_details(report):
    train = _section(report, "suite-train_standard_cnn")
    errors = train[train.index("Errors ("):]
    assert "<details class=\"error\">" in errors
    assert "RuntimeError: power iteration did not converge" in errors
    assert "File &#34;harness/methods/sn_conv.py&#34;, line 41" in errors or \
           "File &quot;harness/methods/sn_conv.py&quot;, line 41" in errors
    assert "seeds 0, 1, 2" in errors


def test_plots_svg_images_and_missing_data(report):
    train = _section(report, "suite-train_standard_cnn")
    assert train.count("<svg") == 3                       # bars + two traces
    assert "no data for this plot" in train                # inception_score never measured
    assert "plot failed" not in report
    assert re.search(r'<img src="data:image/png;base64,[A-Za-z0-9+/=]{100,}"', train)
    assert _section(report, "suite-conv_operator_norm").count("<svg") == 2
    assert _section(report, "suite-thm2_variance").count("<svg") == 1
    # ids are unique across all inline SVGs
    ids = re.findall(r'\sid="([^"]+)"', report)
    assert len(ids) == len(set(ids))


def test_self_contained_no_network_references(report):
    assert not re.search(r"""(?:src|href|action|poster|data)\s*=\s*["']?\s*(?:https?:)?//""", report, re.I)
    assert not re.search(r"""url\(\s*["']?\s*(?:https?:)?//""", report, re.I)
    assert "@import" not in report
    assert "<link" not in report
    assert not re.search(r"<script[^>]+src=", report)
    assert "<style>" in report and "<svg" in report


def test_html_escaping_of_suite_case_method(tmp_path):
    rows = [{"suite": XSS, "case": XSS, "method": XSS, "seed": 0, "metric": "ratio", "value": 1.5,
             "unit": "1", "device": "cpu", "status": "error" if i else "ok",
             "message": XSS if i else "", "params": json.dumps({"n": 4 + i, "p": XSS}), "samples": ""}
            for i in range(2)]
    verdicts = pd.DataFrame([{"suite": XSS, "case": XSS, "method": XSS, "seed": 0, "metric": "ratio",
                              "check": XSS, "kind": "check", "verdict": "violation", "value": 1.5,
                              "reference": 1.0, "detail": XSS}])
    suite = {"name": XSS, "description": XSS, "kind": XSS, "metrics": {"ratio": {"unit": XSS}},
             "checks": [{"name": XSS, "metric": "ratio", "assert": XSS, "cite": XSS}],
             "plots": [{"type": "line", "x": "n", "y": "ratio", "title": XSS},
                       {"type": "bars", "y": ["ratio"], "title": XSS}]}
    html = write_html(tmp_path / "x.html", pd.DataFrame(rows), verdicts, [suite], {"command": XSS},
                      title=XSS).read_text()
    assert XSS not in html
    assert "alert(1)" in html                      # it is shown ...
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html   # ... escaped
    # the only <script> element is the report's own
    assert html.count("<script") == 1


def test_all_pass_and_empty_inputs(tmp_path):
    v = pd.DataFrame([{"suite": "s", "case": "c", "method": "m", "seed": 0, "metric": "x",
                       "check": "b", "kind": "check", "verdict": "pass", "value": 1.0,
                       "reference": 2.0, "detail": "ok"}])
    html = render_html(None, v, [], None)
    assert 'data-overall="PASS"' in html and "All 1 verdicts pass" in html
    empty = render_html(None, None, [], None)
    assert 'data-overall="PASS"' in empty and "No verdicts" in empty


def test_csv_round_trip_and_unknown_suite(tmp_path, demo):
    """Rows read back from CSV (NaN for empty strings) and a suite without a suite file."""
    buf = io.StringIO()
    demo["results"].to_csv(buf, index=False)
    results = pd.read_csv(io.StringIO(buf.getvalue()))
    assert results["method"].isna().any()          # method-free suites come back as NaN
    vbuf = io.StringIO()
    demo["verdicts"].to_csv(vbuf, index=False)
    verdicts = pd.read_csv(io.StringIO(vbuf.getvalue()))
    html = render_html(results, verdicts, demo["suites"][1:], demo["manifest"],
                       traces=demo["traces"], artifacts=demo["artifacts"])
    sec = _section(html, "suite-conv_operator_norm")
    assert "No suite file was given for this suite" in sec
    assert "violation" in sec
    assert 'data-overall="FAIL"' in html


def test_broken_plot_specs_do_not_break_the_report(tmp_path, demo):
    suites = [dict(s) for s in demo["suites"]]
    suites[1] = dict(suites[1], plots=[
        {"type": "line", "x": "n", "y": "var_max", "reference": [{"label": "evil", "expr": "__import__('os')"}]},
        {"type": "violin", "y": "var_max"},
        {"type": "line", "y": "var_max"},
        {"type": "scatter", "x": "metric:nope", "y": "var_max"},
        {"type": "trace", "series": "nothing/*"},
        {"type": "images"},
        "not a mapping",
    ])
    html = render_html(demo["results"], demo["verdicts"], suites, demo["manifest"])
    sec = _section(html, "suite-thm2_variance")
    assert sec.count("plot failed") == 4          # bad expr, unknown type, missing x, non-mapping
    assert sec.count("no data for this plot") == 3
    assert "may be called" in sec


def test_image_artifact_is_embedded_bytes(tmp_path, demo):
    only_images = [dict(demo["suites"][2], plots=[{"type": "images"}])]
    html = render_html(demo["results"], demo["verdicts"], only_images, demo["manifest"],
                       artifacts=demo["artifacts"][:1])
    data = re.search(r'src="data:image/png;base64,([^"]+)"', html).group(1)
    assert base64.b64decode(data) == Path(demo["artifacts"][0]["path"]).read_bytes()
    missing = [{"suite": "train_standard_cnn", "case": "c", "method": "none", "seed": 0,
                "kind": "image", "path": str(tmp_path / "gone.png")}]
    html = render_html(None, None, only_images, None, artifacts=missing)
    assert "missing file" in html and "no data for this plot" in html
