"""Study suites beside the papers: anchor tables, best cases, intervals, rank ranges, the report section."""
import json
import math
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from harness.cli.locate import resolve_suites, suites_dir
from harness.reporting import render_html
from harness.reporting.data import normalize_results
from harness.reporting.paper_tables import Estimate, anchors, mean_interval, paper_section, rank_ranges
from harness.runners import runner_for

REPO = Path(__file__).resolve().parents[1]


def markdown_tables(text):
    """Every markdown table after an anchor ``<a id="ID"></a>``: id -> {row label: [cells]}."""
    tables, current = {}, None
    for line in text.splitlines():
        heading = re.match(r'^<a id="(\w+)"></a>', line)
        if heading:
            current = tables.setdefault(heading.group(1), {})
        elif current is not None and line.startswith("| ") and not line.startswith("| ---") \
                and not line.startswith("| method"):
            cells = [c.strip() for c in line.strip("|").split("|")]
            current[cells[0]] = cells[1:]
    return tables


def as_text(value):
    if value is None:
        return "–"
    if isinstance(value, list):
        return f"{value[0]:.2f} ± {value[1]:.2f}"
    return f"{value:.1f}"


def test_the_docs_page_and_the_reports_anchor_file_hold_the_same_numbers():
    doc = markdown_tables((REPO / "docs" / "anchors.md").read_text(encoding="utf-8"))
    for table_id, table in anchors().items():
        assert table_id in doc, table_id
        rows = doc[table_id]
        assert list(rows) == [row["label"] for row in table["rows"]]
        for row in table["rows"]:
            expected = [as_text(row["values"].get(c["id"])) for c in table["columns"]]
            assert rows[row["label"]] == expected, (table_id, row["label"])


def test_mean_interval_is_the_student_t_interval():
    values = [3.1, 2.7, 3.9, 3.3, 2.95]
    mean, low, high = mean_interval(values)
    ref_low, ref_high = stats.t.interval(0.95, len(values) - 1, loc=np.mean(values), scale=stats.sem(values))
    assert mean == pytest.approx(np.mean(values), rel=1e-12)  # float64 arithmetic
    assert (low, high) == pytest.approx((ref_low, ref_high), rel=1e-12)
    assert mean_interval([2.0])[1:] == (-math.inf, math.inf)


def test_rank_ranges_follow_from_which_intervals_are_disjoint():
    est = {name: Estimate(mid, mid - half, mid + half, 5, name)
           for name, mid, half in [("a", 1.0, 0.1), ("b", 2.0, 0.1), ("c", 2.1, 0.3), ("d", 5.0, 0.1)]}
    lower_better = rank_ranges(est, "lower")
    # a is below every other interval; b and c overlap each other only; d is above all
    assert lower_better == {"a": (1, 1), "b": (2, 3), "c": (2, 3), "d": (4, 4)}
    higher_better = rank_ranges(est, "higher")
    assert higher_better == {"a": (4, 4), "b": (2, 3), "c": (2, 3), "d": (1, 1)}


def results_frame(spec):
    """Result rows from {(method, setting, data): [values per seed]} for metric inception_score."""
    rows = []
    for (method, setting, data), values in spec.items():
        for seed, value in enumerate(values):
            params = {"data": data, "setting": setting}
            rows.append({"suite": "s", "case": f"data={data},setting={setting}", "method": method, "seed": seed,
                         "metric": "inception_score", "value": value, "unit": "1", "device": "cpu",
                         "status": "ok", "message": "", "params": json.dumps(params), "samples": ""})
    return normalize_results(pd.DataFrame(rows))


SUITE = {"name": "s", "description": "d", "kind": "sample_quality", "plots": [], "checks": [], "compare": [],
         "metrics": {"inception_score": {"unit": "1", "better": "higher"}},
         "paper_table": {"anchor": "miyato2018_table2", "best_over": ["setting"], "rank": ["inception_score"],
                         "rows": {"sn": "sn_w", "weight_clipping": "weight_clip", "wgan_gp": "grad_penalty"}}}


def test_each_method_is_reported_at_its_best_setting_beside_the_paper():
    rows = results_frame({("sn_w", "A", "cifar10"): [7.0, 7.2, 7.1], ("sn_w", "B", "cifar10"): [7.5, 7.7, 7.6],
                          ("weight_clip", "A", "cifar10"): [6.0, 6.4, 6.2],
                          ("grad_penalty", "A", "cifar10"): [6.5, 6.9, 6.7],
                          ("none", "A", "cifar10"): [2.0, 2.1, 2.2]})
    section = paper_section(SUITE, rows)
    sn = next(r for r in section["rows"] if r["label"] == "SN-GANs")
    cifar_is = section["columns"].index("CIFAR-10 IS")
    mean, low, high = mean_interval([7.5, 7.7, 7.6])
    assert sn["cells"][cifar_is]["paper"] == "7.42 ± 0.08"
    assert sn["cells"][cifar_is]["chosen"] == "sn_w, setting=B"
    assert sn["cells"][cifar_is]["ours"].startswith(f"{mean:.4g} [")
    ranking = section["rankings"][0]
    assert [e["group"] for e in ranking["entries"]] == ["SN-GANs", "WGAN-GP", "Weight clipping", "none"]
    assert ranking["entries"][-1]["paper_rank"] == ""  # none has no row in the paper
    paper = {"SN-GANs": 7.42, "WGAN-GP": 6.68, "Weight clipping": 6.41}
    ours = {"SN-GANs": 7.6, "WGAN-GP": 6.7, "Weight clipping": 6.2}
    tau = stats.kendalltau(list(paper.values()), [ours[k] for k in paper]).statistic
    assert ranking["tau"] == f"{tau:.2f}"
    assert [e["paper_rank"] for e in ranking["entries"][:3]] == [1, 2, 3]


def test_glob_rows_pick_the_best_scale_per_metric_like_lin_table_1():
    suite = {**SUITE, "paper_table": {"anchor": "lin2021_table1", "rank": ["inception_score"],
                                      "rows": {"sn": "ssn(s=1.0)", "ssn": "ssn(*)"}}}
    rows = results_frame({("ssn(s=1.0)", "B", "cifar10"): [7.0, 7.1], ("ssn(s=2.0)", "B", "cifar10"): [7.4, 7.5],
                          ("ssn(s=0.7)", "B", "cifar10"): [6.0, 6.1]})
    section = paper_section(suite, rows)
    chosen = {e["group"]: e["chosen"] for e in section["rankings"][0]["entries"]}
    assert chosen == {"SSN": "ssn(s=2.0)", "SN": "ssn(s=1.0)"}


def test_the_report_shows_the_paper_table_and_the_ranking():
    rows = results_frame({("sn_w", "A", "cifar10"): [7.0, 7.2], ("weight_clip", "A", "cifar10"): [6.0, 6.4]})
    html = render_html(rows, None, [SUITE], {})
    assert "Miyato et al. 2018, Table 2" in html and "Ranking on cifar10" in html and "7.42 ± 0.08" in html


@pytest.mark.parametrize("name, counted", [
    ("miyato_table2", {"ci": 1 * 7 * 3, "full": 2 * 6 * 7 * 5}),  # data x settings x methods x seeds
    ("lin_bssn_sweep", {"ci": 6 * 3, "full": 19 * 2 * 5}),        # scales x {SSN, BSSN} x seeds
])
def test_study_suites_plan_the_papers_case_counts(name, counted):
    suite = resolve_suites([name], suites_dir(None))[0]
    assert {p: len(suite.cases(p)) for p in ("ci", "full")} == counted
    declared = runner_for(suite.kind).declarations
    assert all(declared.metric(m) is not None for m in suite.raw["paper_table"]["rank"])
    assert suite.raw["paper_table"]["anchor"] in anchors()
