"""``lipbench plan``: cases, resources, estimated wall time and GPU-hours, before anything runs."""
import math
import re
import statistics

import pytest
import yaml

from harness.cli.main import main
from harness.results import ResultsDir
from harness.runners import plan
from harness.runners.costs import TrainingCosts, costs_from_results
from harness.suite import Suite

TINY = {"name": "tiny", "description": "d", "kind": "thm2_variance", "seeds": [0, 1],
        "matrix": {"m": [2, 4, 8], "n": [3], "distribution": ["gaussian"]},
        "settings": {"matrices": 20}, "presets": {"ci": {}, "full": {"resources": {"gpu": 1}}}}
GAN = {"name": "gan", "description": "d", "kind": "sample_quality", "methods": ["none", "sn_w"], "seeds": [0, 1],
       "matrix": {"data": ["ring8"], "setting": ["B", "A"]},
       "settings": {"models": {"ring8": {"name": "mlp2d", "hidden": 16, "depth": 1}}, "iterations": 50,
                    "batch": 16, "threads": 1, "inception": "never"},
       "presets": {"ci": {}, "full": {}}}


def write(tmp_path, data):
    path = tmp_path / f"{data['name']}.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def recorded(tmp_path, seconds_by_m):
    """A results folder whose cases took the given seconds (seed 0 only)."""
    out = ResultsDir(tmp_path / "earlier")
    out.prepare()
    for m, seconds in seconds_by_m.items():
        out.append_case(("tiny", f"m={m},n=3,distribution=gaussian", "", 0), [], seconds=seconds)
    return out


def plan_output(capsys, *args):
    code = main(["plan", *map(str, args)])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_costs_come_from_the_same_case_else_wider_medians(tmp_path):
    out = recorded(tmp_path, {2: 1.0, 4: 3.0})
    cases = Suite.from_dict(TINY).cases("ci")
    costs = costs_from_results(cases, out)
    by_key = {c.key: costs[c.key] for c in cases}
    assert by_key[("tiny", "m=2,n=3,distribution=gaussian", "", 0)].seconds == 1.0
    assert by_key[("tiny", "m=2,n=3,distribution=gaussian", "", 1)].seconds == 1.0  # same case id, other seed
    assert by_key[("tiny", "m=8,n=3,distribution=gaussian", "", 0)].seconds == statistics.median([1.0, 3.0])
    assert "median of its method" in by_key[("tiny", "m=8,n=3,distribution=gaussian", "", 0)].source


def test_plan_from_recorded_seconds_gives_totals_and_the_schedules_wall_time(tmp_path, capsys):
    earlier = recorded(tmp_path, {2: 10.0, 4: 10.0, 8: 10.0})
    suite = write(tmp_path, TINY)
    code, out, _ = plan_output(capsys, suite, "--from", earlier.path)
    assert code == 0 and "tiny (thm2_variance): 6 case(s), each 1 CPU; timeout 600 s" in out
    assert f"case time: 60 s in all; GPU-hours 0, CPU-hours {60 / 3600:.4g}" in out
    assert "wall time: 60 s locally, one case at a time" in out
    code, out, _ = plan_output(capsys, suite, "--from", earlier.path, "--executor", "ray", "--workers", "4")
    assert f"wall time: {10 * math.ceil(6 / 4):.3g} s on ray with 4 worker(s)" in out
    code, out, _ = plan_output(capsys, suite, "--preset", "full", "--from", earlier.path,
                               "--executor", "ray", "--workers", "3")
    assert "each 1 CPU, 1 GPU" in out and f"GPU-hours {60 / 3600:.4g}" in out and "wall time: 20 s" in out


def test_a_training_suite_is_estimated_from_measured_iterations(tmp_path, capsys):
    code, out, err = plan_output(capsys, write(tmp_path, GAN), "--repeats", "1")
    assert code == 0
    assert err.count("measuring mlp2d") == 2  # one measurement per method, shared by settings A and B
    # setting A runs 5 D updates per iteration, B one: A's cases must cost more
    per_case = {case: float(seconds) for case, seconds in re.findall(r"(data=ring8,setting=\w)\s+\d+\s+\d+\s+\d+\s+([\d.e+-]+)", out)}
    assert per_case["data=ring8,setting=A"] > per_case["data=ring8,setting=B"]
    for ms, iterations in re.findall(r"measured ([\d.e+-]+) ms/iteration x (\d+)", out):
        assert int(iterations) == 50 and float(ms) > 0


def test_costs_of_a_case_scale_with_n_dis_and_iterations():
    planned = plan([Suite.from_dict(GAN)], "ci", "cpu")  # with the runner's default settings
    cases = {c.params["setting"]: c for c in planned if c.method.label == "none" and c.seed == 0}
    costs = TrainingCosts("cpu", repeats=1)
    a, b = costs.cost(cases["A"]).seconds, costs.cost(cases["B"]).seconds
    d_step, g_step = costs.step_seconds(cases["A"])  # measured once, shared by A and B
    assert b == pytest.approx(50 * (d_step + g_step), rel=1e-12)
    assert a == pytest.approx(50 * (5 * d_step + g_step), rel=1e-12)


def test_a_plan_larger_than_max_cases_is_refused(tmp_path, capsys):
    code, _, err = plan_output(capsys, write(tmp_path, TINY), "--max-cases", "5")
    assert code == 2 and "plans up to 6 cases, more than --max-cases 5" in err and "Traceback" not in err


def test_gpu_cases_measured_on_the_cpu_get_a_note(tmp_path, capsys):
    data = {**GAN, "presets": {"ci": {"resources": {"gpu": 1}}, "full": {}}}
    code, out, _ = plan_output(capsys, write(tmp_path, data), "--repeats", "1")
    assert code == 0 and "note: the cases need GPUs but the costs were measured on cpu" in out


def test_kinds_without_a_cost_model_need_an_earlier_run(tmp_path, capsys):
    code, out, _ = plan_output(capsys, write(tmp_path, TINY))
    assert code == 0 and "6 case(s) have no estimate" in out and "use --from RESULTS" in out


def test_from_a_folder_without_results_is_exit_2(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    code, _, err = plan_output(capsys, write(tmp_path, TINY), "--from", tmp_path / "empty")
    assert code == 2 and "holds no lipbench results" in err
