"""The executor: whatever a case does, it ends as rows and the run goes on; runs resume."""
import ctypes
import json
import os
import signal
import tempfile
import threading
import time
from pathlib import Path

import pandas as pd
import pytest

from harness.baselines import IncompleteRunError, load_baseline, update_baselines
from harness.errors import ResultsFolderError
from harness.results import Measurement, ResultsDir
from harness.results.lock import FolderBusyError
from harness.runners import Runner, register, run_suites
from harness.runners.executors import execute_case
from harness.suite import Suite

CALLS = []


@register
class FakeRunner(Runner):
    """Each mode is one way a case can behave (see the test names)."""

    kind = "fake_for_tests"
    uses_methods = False

    def run(self, case, ctx):
        CALLS.append(case.case)
        mode = case.params["mode"]
        if mode == "raise":
            raise RuntimeError("deliberate failure")
        if mode == "hang":
            while True:
                time.sleep(0.01)
        if mode == "stubborn":  # swallows every Exception, so no in-process signal can stop it
            while True:
                try:
                    time.sleep(0.01)
                except Exception:  # noqa: BLE001
                    pass
        if mode == "native_hang":
            ctypes.CDLL(None).sleep(60)  # inside one C call: Python signal handlers never run
        if mode == "exit":
            os._exit(7)
        if mode == "segfault":
            ctypes.string_at(0)
        if mode == "memory":
            import torch
            torch.ones(3 * 2**30 // 4)  # 3 GiB, touched
        if mode == "sys_exit":
            raise SystemExit(3)
        if mode == "interrupt":
            raise KeyboardInterrupt
        if mode == "gated":  # while its gate file exists: say so, then wait to be stopped from outside
            gate = Path(case.settings["gate"])
            if gate.exists():
                gate.with_suffix(".started").touch()
                time.sleep(60)
        if mode == "leaves_files":  # a careless case: a temporary file, a link out of its folder, an image
            tempfile.mkstemp()
            where = tempfile.gettempdir()
            Path(case.settings["keep"], "tmpdir.json").write_text(json.dumps([where, os.stat(where).st_mode & 0o777]))
            os.symlink(case.settings["keep"], ctx.artifact_dir / "link")
            ctx.artifact_path(case, "grid.png").write_bytes(b"image bytes")
        if mode == "per_layer":  # one planned case, rows under case ids and methods of its own
            return [Measurement("x", 1.0, case=f"mode=per_layer,layer={i}", method="m") for i in range(2)]
        import torch
        value = float("nan") if mode == "nan" else float(torch.rand(()).item())
        ctx.trace("loss", 0, 1.0)
        return [Measurement("x", value)]


def make_suite(modes, timeout=5, seeds=(0, 1), settings=None):
    return Suite.from_dict({
        "name": "fake", "description": "d", "kind": "fake_for_tests", "seeds": list(seeds),
        "matrix": {"mode": modes}, "timeout": timeout, "metrics": {"x": {"unit": "1"}},
        "presets": {"ci": {}, "full": {}}, "settings": settings or {},
    })


def statuses(rows):
    return rows.groupby("case")["status"].agg(set).to_dict()


@pytest.fixture
def case_tmp(tmp_path, monkeypatch):
    """A fresh, empty temporary folder for this test (``TMPDIR``), where cases' folders are made.

    One case runs first, so the fork server is started before, with its socket elsewhere: an AF_UNIX
    path has at most 107 bytes, and one in ``tmp_path`` can be longer.
    """
    execute_case(make_suite(["ok"], seeds=[0]).cases("ci")[0], 60.0, isolation=True, max_memory=None)
    folder = tmp_path / "tmp"
    folder.mkdir()
    monkeypatch.setenv("TMPDIR", str(folder))
    monkeypatch.setattr(tempfile, "tempdir", None)  # read TMPDIR again
    assert tempfile.gettempdir() == str(folder)
    return folder


def leftovers(folder: Path) -> list[str]:
    """The case folders (``lipbench-case-*``) and defendants' folders left in ``folder``."""
    return sorted(p.name for p in folder.glob("lipbench-*"))


def test_errors_nan_and_hangs_do_not_stop_the_run(tmp_path, case_tmp):
    out = ResultsDir(tmp_path / "r")
    rows = run_suites([make_suite(["ok", "raise", "nan", "hang", "sys_exit"], timeout=1)], "ci", out,
                      progress=False)
    assert statuses(rows) == {"mode=ok": {"ok"}, "mode=raise": {"error"}, "mode=nan": {"error"},
                              "mode=hang": {"error"}, "mode=sys_exit": {"error"}}
    messages = " ".join(rows["message"])
    assert "deliberate failure" in messages and "timeout of 1 s" in messages and "not finite" in messages
    assert "SystemExit" in messages
    assert (tmp_path / "r" / "results.csv").exists() and (tmp_path / "r" / "manifest.json").exists()
    assert len(out.traces()) == 4  # the ok and nan cases traced, two seeds each
    assert leftovers(case_tmp) == []  # a worker killed for its timeout leaves no folder either


@pytest.mark.parametrize("mode, needle", [
    ("stubborn", "timeout of 1 s; its worker and every process it started were killed"),
    ("native_hang", "timeout of 1 s; its worker and every process it started were killed"),
    ("exit", "exited with code 7"),
    ("segfault", "killed by SIGSEGV"),
])
def test_a_case_that_kills_or_hangs_its_worker_is_an_error_row(tmp_path, case_tmp, mode, needle):
    rows = run_suites([make_suite([mode, "ok"], timeout=1, seeds=[0])], "ci", ResultsDir(tmp_path / "r"),
                      progress=False)
    assert statuses(rows) == {f"mode={mode}": {"error"}, "mode=ok": {"ok"}}
    assert needle in rows[rows["case"] == f"mode={mode}"]["message"].iloc[0]
    assert leftovers(case_tmp) == []  # lipbench, not the killed worker, removes the case's folder


def test_a_case_over_the_memory_limit_is_an_error_row(tmp_path, case_tmp):
    rows = run_suites([make_suite(["memory", "ok"], seeds=[0])], "ci", ResultsDir(tmp_path / "r"),
                      progress=False, max_memory=int(1.5 * 2**30))
    assert statuses(rows) == {"mode=memory": {"error"}, "mode=ok": {"ok"}}
    assert "memory" in rows[rows["case"] == "mode=memory"]["message"].iloc[0]
    assert leftovers(case_tmp) == []


def test_a_cases_artifacts_come_back_and_its_folder_goes_with_all_it_left_there(tmp_path, case_tmp):
    """A case's temporary files land in its folder (``TMPDIR``), which lipbench removes without
    following the link the case planted there."""
    keep = tmp_path / "keep"
    keep.mkdir()
    (keep / "precious").write_text("the user's")
    out = ResultsDir(tmp_path / "r")
    rows = run_suites([make_suite(["leaves_files"], seeds=[0], settings={"keep": str(keep)})], "ci", out,
                      progress=False)
    assert statuses(rows) == {"mode=leaves_files": {"ok"}}
    images = list(out.artifacts.rglob("*grid.png"))
    assert len(images) == 1 and images[0].read_bytes() == b"image bytes"
    used, mode = json.loads((keep / "tmpdir.json").read_text())  # the case's TMPDIR: the folder lipbench made
    assert Path(used).parent == case_tmp and Path(used).name.startswith("lipbench-case-") and mode == 0o700
    assert not Path(used).exists()
    assert leftovers(case_tmp) == [] and not list(case_tmp.glob("tmp*"))  # mkstemp's: in the case's folder
    assert (keep / "precious").read_text() == "the user's"


def test_without_isolation_a_stubborn_case_still_times_out(tmp_path):
    rows = run_suites([make_suite(["stubborn", "ok"], timeout=0.5, seeds=[0])], "ci",
                      ResultsDir(tmp_path / "r"), progress=False, isolation=False)
    assert statuses(rows) == {"mode=stubborn": {"error"}, "mode=ok": {"ok"}}
    assert "CaseTimeout" in rows[rows["case"] == "mode=stubborn"]["message"].iloc[0]


def test_same_seed_same_values(tmp_path):
    a = run_suites([make_suite(["ok"])], "ci", ResultsDir(tmp_path / "a"), progress=False)
    b = run_suites([make_suite(["ok"])], "ci", ResultsDir(tmp_path / "b"), progress=False, isolation=False)
    assert a["value"].tolist() == b["value"].tolist()
    assert a["value"].iloc[0] != a["value"].iloc[1]  # different seeds differ


def _interrupt_when(started: Path, signum=signal.SIGINT) -> threading.Thread:
    """Send ``signum`` to this process once ``started`` exists (a case is running)."""
    def watch():
        deadline = time.monotonic() + 60
        while not started.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        os.kill(os.getpid(), signum)
    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    return thread


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM, signal.SIGHUP])
def test_a_stop_signal_keeps_finished_cases_and_resume_skips_them(tmp_path, case_tmp, signum):
    from harness.runners.termination import Terminated
    gate = tmp_path / "gate"
    gate.touch()
    suite = make_suite(["ok", "gated"], settings={"gate": str(gate)}, timeout=120)
    out = ResultsDir(tmp_path / "r")
    started = time.monotonic()
    _interrupt_when(gate.with_suffix(".started"), signum)
    with pytest.raises(Terminated) as stopped:
        run_suites([suite], "ci", out, progress=False)
    assert stopped.value.signum == signum and stopped.value.exit_code == 128 + signum
    assert time.monotonic() - started < 50  # the gated worker was killed, not waited for
    assert out.completed_keys() == {("fake", "mode=ok", "", 0), ("fake", "mode=ok", "", 1)}
    assert not out.unfinished_attempts()  # stopped from outside: no death of the harness is counted
    assert leftovers(case_tmp) == []  # nor a folder of the killed case
    with pytest.raises(ResultsFolderError, match="--resume"):
        run_suites([suite], "ci", out, progress=False)
    gate.unlink()
    CALLS.clear()
    rows = run_suites([suite], "ci", out, resume=True, progress=False, isolation=False)
    assert CALLS == ["mode=gated", "mode=gated"]
    assert set(rows["status"]) == {"ok"} and len(rows) == 4


@pytest.mark.parametrize("isolation", [True, False])
def test_keyboard_interrupt_or_system_exit_raised_by_a_method_is_an_error_row(tmp_path, isolation):
    rows = run_suites([make_suite(["interrupt", "sys_exit", "ok"], seeds=[0])], "ci", ResultsDir(tmp_path / "r"),
                      progress=False, isolation=isolation)
    assert statuses(rows) == {"mode=interrupt": {"error"}, "mode=sys_exit": {"error"}, "mode=ok": {"ok"}}
    assert "KeyboardInterrupt" in rows[rows["case"] == "mode=interrupt"]["message"].iloc[0]


def test_errors_are_not_retried_on_resume_unless_asked(tmp_path):
    out = ResultsDir(tmp_path / "r")
    run_suites([make_suite(["raise"], seeds=[0])], "ci", out, progress=False, isolation=False)
    CALLS.clear()
    run_suites([make_suite(["raise"], seeds=[0])], "ci", out, resume=True, progress=False, isolation=False)
    assert CALLS == []
    run_suites([make_suite(["raise"], seeds=[0])], "ci", out, resume=True, retry_errors=True,
               progress=False, isolation=False)
    assert CALLS == ["mode=raise"]


def test_a_case_that_killed_the_harness_twice_is_recorded_not_retried(tmp_path):
    out = ResultsDir(tmp_path / "r")
    run_suites([make_suite(["ok"], seeds=[0])], "ci", out, progress=False, isolation=False)
    key = ("fake", "mode=exit", "", 0)
    for _ in range(2):  # what two harness deaths in that case leave behind
        out.record_attempt(key)
    CALLS.clear()
    rows = run_suites([make_suite(["ok", "exit"], seeds=[0])], "ci", out, resume=True, progress=False,
                      isolation=False)
    assert CALLS == []
    assert "died 2 times" in rows[rows["case"] == "mode=exit"]["message"].iloc[0]


def test_baselines_only_from_a_complete_run(tmp_path):
    bad = ResultsDir(tmp_path / "bad")
    run_suites([make_suite(["ok", "raise"])], "ci", bad, progress=False, isolation=False)
    with pytest.raises(IncompleteRunError, match="error row"):
        update_baselines(bad, tmp_path / "baselines")
    good = ResultsDir(tmp_path / "good")
    run_suites([make_suite(["ok"])], "ci", good, progress=False, isolation=False)
    written = [c.path for c in update_baselines(good, tmp_path / "baselines")]
    assert [p.name for p in written] == ["fake.ci.json"]
    data = json.loads(written[0].read_text())
    (source,) = data["sources"].values()
    assert source["git_commit"] and len(data["rows"]) == 2
    base = load_baseline(tmp_path / "baselines", "cpu", "fake", "ci")
    assert isinstance(base, pd.DataFrame) and set(base["metric"]) == {"x"}


def test_prune_keeps_rows_a_case_produced_under_its_own_ids(tmp_path):
    run = ResultsDir(tmp_path / "r")
    run_suites([make_suite(["ok", "per_layer"], seeds=(0,))], "ci", run, progress=False, isolation=False)
    (change,) = update_baselines(run, tmp_path / "b", prune=True)
    rows = json.loads(change.path.read_text())["rows"]
    assert change.removed == 0 and len(rows) == 3
    assert {r["case"] for r in rows} == {"mode=ok", "mode=per_layer,layer=0", "mode=per_layer,layer=1"}
    smaller = ResultsDir(tmp_path / "only_ok")
    run_suites([make_suite(["ok"], seeds=(0,))], "ci", smaller, progress=False, isolation=False)
    (change,) = update_baselines(smaller, tmp_path / "b", prune=True)
    assert change.removed == 2  # the per-layer rows of a case no run planned or produced


def _complete_run(tmp_path):
    out = ResultsDir(tmp_path / "r")
    clean = run_suites([make_suite(["ok", "nan"])], "ci", out, progress=False, isolation=False)
    return out, clean, (out.path / "cases.jsonl").read_bytes()


def _cut_points(start: int, end: int, edge: int = 48, stride: int = 17) -> list[int]:
    """Where a crash may stop the write of the line ``data[start:end]``: every byte near both
    ends (the key, the closing braces and the newline) and every ``stride``-th byte between
    (a prime stride, so the cuts fall at every kind of position in the record's fields)."""
    every = set(range(start + 1, min(start + edge, end))) | set(range(max(start + 1, end - edge), end))
    return sorted(every | set(range(start + 1, end, stride)))


def test_a_torn_last_line_is_repaired_on_resume_wherever_the_write_stopped(tmp_path):
    out, clean, data = _complete_run(tmp_path)
    start = data.rstrip(b"\n").rfind(b"\n") + 1  # the last case's line
    last_key = tuple(json.loads(data[start:])["key"])
    for cut in _cut_points(start, len(data)):  # a crash can stop the write after any byte
        (out.path / "cases.jsonl").write_bytes(data[:cut])
        assert out.torn() and last_key not in out.completed_keys()
        CALLS.clear()
        rows = run_suites([make_suite(["ok", "nan"])], "ci", out, resume=True, progress=False, isolation=False)
        assert not out.torn()
        pd.testing.assert_frame_equal(rows.sort_values(["case", "seed"]).reset_index(drop=True),
                                      clean.sort_values(["case", "seed"]).reset_index(drop=True))
        assert CALLS == [last_key[1]]


def test_a_damaged_line_in_the_middle_is_an_error_naming_file_and_line(tmp_path):
    out, _, data = _complete_run(tmp_path)
    lines = data.split(b"\n")
    lines[1] = lines[1][: len(lines[1]) // 2]  # half a record, then the next one
    (out.path / "cases.jsonl").write_bytes(b"\n".join(lines))
    with pytest.raises(ResultsFolderError, match=r"cases\.jsonl:2: damaged case record"):
        out.rows()
    with pytest.raises(ResultsFolderError, match=r"cases\.jsonl:2"):
        update_baselines(out, tmp_path / "baselines")
    with pytest.raises(ResultsFolderError, match=r"cases\.jsonl:2"):
        run_suites([make_suite(["ok", "nan"])], "ci", out, resume=True, progress=False, isolation=False)


def test_grouped_cases_resume_and_count_as_complete(tmp_path):
    """A case whose rows carry other method labels (interleaved timing) is still 'done'."""
    @register
    class Grouped(Runner):
        kind = "grouped_for_tests"
        groups_methods = True

        def run(self, case, ctx):
            CALLS.append(case.case)
            return [Measurement("t", 1.0, method=label) for label in ctx.methods]

    suite = Suite.from_dict({"name": "g", "description": "d", "kind": "grouped_for_tests", "seeds": [0],
                             "methods": ["none", "sn_w"], "matrix": {"b": [1]}, "metrics": {"t": {"unit": "ms"}},
                             "presets": {"ci": {}, "full": {}}})
    out = ResultsDir(tmp_path / "r")
    rows = run_suites([suite], "ci", out, progress=False, isolation=False)
    assert sorted(rows["method"]) == ["none", "sn_w"]
    assert out.completed_keys() == {("g", "b=1", "", 0)}
    CALLS.clear()
    run_suites([suite], "ci", out, resume=True, progress=False, isolation=False)
    assert CALLS == []
    update_baselines(out, tmp_path / "baselines")  # complete: no IncompleteRunError


def test_a_case_run_again_keeps_its_last_record(tmp_path):
    out = ResultsDir(tmp_path / "r")
    run_suites([make_suite(["ok"])], "ci", out, progress=False, isolation=False)
    first = out.rows()
    row = dict(first.iloc[0])
    out.append_case(("fake", row["case"], "", row["seed"]), [row | {"value": 42.0}])
    again = out.rows()
    assert len(again) == len(first) and 42.0 in again["value"].tolist()


def test_results_folders_protect_what_lipbench_did_not_write(tmp_path):
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "thesis.tex").write_text("precious")
    with pytest.raises(ResultsFolderError, match="not empty and was not created by lipbench"):
        run_suites([make_suite(["ok"])], "ci", ResultsDir(mine), progress=False, overwrite=True)
    assert (mine / "thesis.tex").read_text() == "precious"
    afile = tmp_path / "file"
    afile.write_text("x")
    with pytest.raises(ResultsFolderError, match="not a folder"):
        run_suites([make_suite(["ok"])], "ci", ResultsDir(afile), progress=False)
    out = ResultsDir(tmp_path / "r")
    run_suites([make_suite(["ok"])], "ci", out, progress=False, isolation=False)
    (out.path / "notes.txt").write_text("mine")  # a user's file inside a results folder
    run_suites([make_suite(["ok"])], "ci", out, progress=False, isolation=False, overwrite=True)
    assert (out.path / "notes.txt").read_text() == "mine"


def test_one_run_per_results_folder(tmp_path):
    out = ResultsDir(tmp_path / "r")
    out.prepare()
    with out.lock():  # another holder (this process, through another descriptor)
        with pytest.raises(FolderBusyError, match=f"PID {os.getpid()}"):
            run_suites([make_suite(["ok"])], "ci", ResultsDir(out.path), progress=False, resume=True)
    (out.path / "lock").write_text("1\n")  # an earlier version's lock file naming PID 1 (alive, in a container)
    run_suites([make_suite(["ok"])], "ci", out, progress=False, isolation=False, resume=True)
    assert len(out.completed_keys()) == 2  # the OS lock died with its holder: nothing stale to take over


def test_files_are_readable_by_others(tmp_path):
    out = ResultsDir(tmp_path / "r")
    run_suites([make_suite(["ok"])], "ci", out, progress=False, isolation=False)
    written = [c.path for c in update_baselines(out, tmp_path / "baselines")]
    umask = os.umask(0)
    os.umask(umask)
    for path in [out.path / "results.csv", out.path / "manifest.json", *written]:
        assert path.stat().st_mode & 0o777 == 0o666 & ~umask, path


def test_local_workers_run_cases_at_once_with_the_same_rows(tmp_path):
    suite = make_suite(["ok", "raise", "exit", "nan"], timeout=5)
    one = run_suites([suite], "ci", ResultsDir(tmp_path / "one"), progress=False)
    two = run_suites([suite], "ci", ResultsDir(tmp_path / "two"), progress=False, workers=2)
    key = ["case", "seed", "metric"]
    pd.testing.assert_frame_equal(one.sort_values(key)[key + ["value", "status"]].reset_index(drop=True),
                                  two.sort_values(key)[key + ["value", "status"]].reset_index(drop=True))


def test_an_exclusive_case_runs_alone_among_local_workers():
    from harness.runners.executors import CaseNeeds, Finished, LocalExecutor, Started
    from harness.runners.execute import plan
    from harness.suite.resources import Resources
    cases = plan([make_suite(["ok"], seeds=[0, 1, 2, 3, 4])], "ci", "cpu")
    alone = cases[2]

    def needs(case):
        return CaseNeeds(30, Resources(exclusive=case is alone))
    events = list(LocalExecutor(workers=2).run(cases, needs))
    kinds = [(type(e).__name__, e.case.seed) for e in events if isinstance(e, (Started, Finished))]
    start, end = kinds.index(("Started", alone.seed)), kinds.index(("Finished", alone.seed))
    assert end == start + 1, kinds  # nothing started or finished while it ran
    assert sum(k == "Finished" for k, _ in kinds[:start]) == 2  # the two before it had finished


def test_a_hook_a_runner_does_not_implement_names_the_runner():
    """A runner implements ``run`` or the pair ``observe``/``judge``; the other hooks say so."""
    from harness.runners.base import Runner as Base

    class OnlyRun(Base):
        kind = "only_run_for_tests"

        def run(self, case, ctx):
            return []

    with pytest.raises(TypeError, match=r"runner OnlyRun \('only_run_for_tests'\) is unsplit \(run\) and has no observe\(\)"):
        OnlyRun().observe(None, None, {})


def test_a_case_runs_numpy_blas_on_its_own_threads_too():
    """A case's thread count bounds NumPy/SciPy's BLAS and OpenMP pools as well as torch's: with
    OMP_NUM_THREADS unset OpenBLAS uses every core, and one-case-per-core workers then wait on
    each other (docs/performance.md, "Threads")."""
    import numpy  # noqa: F401 - loads the BLAS whose pool is inspected
    from threadpoolctl import threadpool_info, threadpool_limits

    from harness.runners.case import intra_op_threads

    with threadpool_limits(limits=2):
        before = {p["filepath"]: p["num_threads"] for p in threadpool_info()}
        with intra_op_threads(1):
            inside = {p["filepath"]: p["num_threads"] for p in threadpool_info()}
        after = {p["filepath"]: p["num_threads"] for p in threadpool_info()}
    assert inside and set(inside.values()) == {1}
    assert after == before
