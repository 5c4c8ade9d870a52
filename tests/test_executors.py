"""Executors without Ray: the interface, placement on nodes, declared resources, flags and errors."""
import builtins
import json
import math
import sys
import types

import pytest

from harness.cli.main import main
from harness.errors import UserError
from harness.results import ResultsDir
from harness.runners import run_suites
from harness.runners.execute import case_needs
from harness.runners.executors import CaseNeeds, Finished, LocalExecutor, Started, execute_case, make_executor
from harness.runners.executors.placement import Node, Placement, makespan
from harness.suite import Suite, SuiteError, load_suite
from harness.suite.resources import Resources

from ray_support import sleepy_suite

ONE = Resources()
ALONE = Resources(exclusive=True)
GPU = Resources(gpu=1)


def nodes(*cpus, gpus=()):
    return [Node(f"n{i}", f"host/n{i}", cpu, dict(enumerate(gpus)).get(i, 0.0)) for i, cpu in enumerate(cpus)]


def test_local_events_come_in_order_and_the_driver_writes_each_case(tmp_path):
    suite = sleepy_suite(tmp_path / "m", seconds=[0], seeds=[0, 1])
    events = list(LocalExecutor(isolation=False).run(suite.cases("ci"), lambda case: CaseNeeds(10.0)))
    assert [type(e) for e in events] == [Started, Finished, Started, Finished]
    assert [e.case.seed for e in events] == [0, 0, 1, 1]
    rows = run_suites([suite], "ci", ResultsDir(tmp_path / "r"), progress=False, isolation=False)
    records = [json.loads(line) for line in (tmp_path / "r" / "cases.jsonl").read_text().splitlines()]
    assert len(rows) == 2 and all(r["node"] for r in records) and all(r["seconds"] >= 0 for r in records)


def test_placement_fills_nodes_first_in_first_out():
    book = Placement()
    book.update(nodes(2, 1))
    claims = [book.place(ONE) for _ in range(3)]
    assert sorted(c.node.id for c in claims) == ["n0", "n0", "n1"]
    assert book.place(ONE) is None and book.running() == 3
    book.release(claims[0])
    assert book.place(ONE).node.id == claims[0].node.id


def test_an_exclusive_case_waits_for_an_idle_node_and_then_holds_all_of_it():
    book = Placement()
    book.update(nodes(2))
    first = book.place(ONE)
    assert book.place(ALONE) is None  # one CPU is free, but not the whole node
    book.release(first)
    alone = book.place(ALONE)
    assert alone.cpu == 2 and book.place(ONE) is None
    book.release(alone)
    assert book.place(ONE) is not None


def test_gpu_cases_only_go_where_a_gpu_is_free():
    book = Placement()
    book.update(nodes(4, 4, gpus=(0, 1)))
    assert book.place(GPU).node.id == "n1"
    assert book.place(GPU) is None and book.could_ever_fit(GPU)
    assert not book.could_ever_fit(Resources(gpu=2))
    assert book.place(ONE) is not None  # CPU cases still fit beside it


def test_nodes_that_join_or_leave_are_reported():
    book = Placement()
    assert book.update(nodes(1, 1)) == ["node joined: host/n0 (1 CPU)", "node joined: host/n1 (1 CPU)"]
    assert book.update(nodes(1)) == ["node lost: host/n1"]
    assert book.summary() == "1 node, 1 CPU, 0 GPU"


@pytest.mark.parametrize("count, slots", [(7, 1), (7, 2), (8, 4), (1, 3)])
def test_makespan_of_equal_cases_is_rounds_times_their_cost(count, slots):
    assert makespan([(10.0, ONE)] * count, nodes(*[1] * slots)) == pytest.approx(10.0 * math.ceil(count / slots))


def test_makespan_matches_a_brute_force_schedule_with_exclusive_cases():
    """Against an independent simulation in one-second steps of one 2-CPU node: at most two
    cases at once, an exclusive one only alone, first in first out."""
    jobs = [(3, ONE), (1, ONE), (2, ALONE), (2, ONE), (1, ALONE), (4, ONE), (1, ONE)]
    clock, queue, running = 0, list(jobs), []  # running: [remaining seconds, exclusive]
    while queue or running:
        while queue:
            seconds, need = queue[0]
            busy = len(running)
            if (need.exclusive and busy == 0) or (not need.exclusive and busy < 2
                                                  and not any(ex for _, ex in running)):
                running.append([seconds, need.exclusive])
                queue.pop(0)
            else:
                break
        clock += 1
        running = [[left - 1, ex] for left, ex in running if left > 1]
    assert makespan([(float(s), n) for s, n in jobs], nodes(2)) == clock


def test_declared_resources_merge_suite_and_preset_and_have_defaults(tmp_path):
    data = {"name": "s", "description": "d", "kind": "thm2_variance", "seeds": [0],
            "matrix": {"m": [2], "n": [2], "distribution": ["gaussian"]},
            "resources": {"cpu": 2, "memory_mib": 500},
            "presets": {"ci": {}, "full": {"resources": {"gpu": 1, "memory_mib": 4000}}}}
    suite = Suite.from_dict(data)
    ci = case_needs([suite], "ci")(suite.cases("ci")[0])
    full = case_needs([suite], "full", timeout=7)(suite.cases("full")[0])
    assert ci == CaseNeeds(600.0, Resources(cpu=2, gpu=0, memory_mib=500))
    assert full == CaseNeeds(7, Resources(cpu=2, gpu=1, memory_mib=4000))
    cuda = suite.cases("ci", device="cuda")[0]
    assert case_needs([suite], "ci")(cuda).resources.gpu == 1  # a cuda case needs a GPU by default


def test_timing_suites_are_exclusive_unless_they_say_otherwise(tmp_path):
    from harness.cli.locate import resolve_suites, suites_dir
    timing = resolve_suites(["training_time"], suites_dir(None))[0]
    assert case_needs([timing], "ci")(timing.cases("ci", grouped=True)[0]).resources.exclusive
    relaxed = Suite.from_dict({**timing.raw, "resources": {"exclusive": False}})
    assert not case_needs([relaxed], "ci")(relaxed.cases("ci", grouped=True)[0]).resources.exclusive


def test_a_misspelt_resource_is_an_error_naming_file_and_line(tmp_path):
    path = tmp_path / "s.yaml"
    path.write_text("name: s\ndescription: d\nkind: thm2_variance\nseeds: [0]\n"
                    "matrix: {m: [2], n: [2], distribution: [gaussian]}\n"
                    "resources: {cpus: 2}\npresets: {ci: {}, full: {}}\n")
    with pytest.raises(SuiteError, match=r"s.yaml:6: resources: Additional properties .*'cpus'"):
        load_suite(path)


def test_local_refuses_flags_it_cannot_honour():
    assert make_executor("local", workers=2).workers == 2
    with pytest.raises(UserError, match="--workers 2 needs worker processes"):
        make_executor("local", workers=2, isolation=False)
    with pytest.raises(UserError, match="--address needs --executor ray"):
        make_executor("local", address="auto")


def test_ray_missing_is_one_line_exit_2_saying_how_to_install(tmp_path, capsys, monkeypatch):
    real_import = builtins.__import__

    def no_ray(name, *args, **kwargs):
        if name == "ray" or name.startswith("ray."):
            raise ImportError("No module named 'ray'")
        return real_import(name, *args, **kwargs)
    monkeypatch.setattr(builtins, "__import__", no_ray)
    code = main(["run", "thm2_variance", "--out", str(tmp_path / "r"), "--executor", "ray"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and 'pip install "lipbench[ray]"' in err, err
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize("flags, needle", [
    (["--executor", "spark"], "invalid choice: 'spark'"),
    (["--workers", "0"], "must be from 1 to 1024"),
    (["--retries", "-1"], "must be from 0 to 100"),
])
def test_bad_executor_flags_are_exit_2(tmp_path, capsys, flags, needle):
    code = main(["run", "thm2_variance", "--out", str(tmp_path / "r"), *flags])
    err = capsys.readouterr().err
    assert code == 2 and needle in err and "Traceback" not in err, err



def test_a_forked_case_does_not_rerun_the_main_script_first(tmp_path, monkeypatch):
    """multiprocessing re-imports ``__main__`` in each child; the executor keeps it from doing so
    (the lipbench command imports the whole CLI: ~0.3 s per case), restoring it afterwards."""
    flag = tmp_path / "main-ran"
    script = tmp_path / "main_script.py"
    script.write_text(f"import pathlib\npathlib.Path({str(flag)!r}).write_text('ran')\n")
    fake_main = types.ModuleType("__main__")
    fake_main.__file__ = str(script)
    fake_main.__spec__ = None
    monkeypatch.setitem(sys.modules, "__main__", fake_main)
    case = Suite.from_dict({"name": "t", "description": "d", "kind": "thm2_variance", "seeds": [0],
                            "matrix": {"m": [2], "n": [2], "distribution": ["gaussian"]},
                            "settings": {"matrices": 2, "confidence": 0.99}, "presets": {"ci": {}, "full": {}}}
                           ).cases("ci")[0]
    outcome = execute_case(case, 60.0, isolation=True, max_memory=None)
    assert not outcome.failed and not flag.exists()
    assert fake_main.__file__ == str(script) and fake_main.__spec__ is None
