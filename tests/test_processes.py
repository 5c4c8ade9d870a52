"""Signals and process trees (docs/results.md, "Safety and failure behaviour"): SIGTERM and SIGHUP stop
a run like SIGINT, a case's limits hold for everything it started, and what the code under
test raises, or signals to itself or to lipbench, is that case's error, never the run's end."""
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from cli_support import TINY, write_suite
from harness.results import ResultsDir

ROOT = Path(__file__).resolve().parents[1]
#: Methods whose ``apply`` (run in the case's worker) does what a hostile or careless variant does.
TREE_MODULE = '''
import os, pathlib, subprocess, sys, time
from harness.methods.spectral import SNw

HERE = pathlib.Path(__file__).parent


def spawn(*command):
    """Start a child that outlives this call (and would hold lipbench's stdout), note its PID."""
    child = subprocess.Popen(list(command) or ["sleep", "300"])
    (HERE / "pids").open("a").write(f"{os.getpid()} {child.pid}\\n")
    return child


class Hangs(SNw):
    """Starts a child, then hangs while the gate file exists."""
    name = "hangs"
    def apply(self, model):
        if (HERE / "gate").exists():
            spawn()
            time.sleep(300)
        return super().apply(model)


class Escapes(SNw):
    """Starts a daemon (double fork, a session of its own) that notes its PID, then hangs."""
    name = "escapes"
    def apply(self, model):
        if (HERE / "gate").exists():
            code = ("import os, subprocess, sys; d = subprocess.Popen(['sleep', '300'], start_new_session=True); "
                    "open(sys.argv[1], 'a').write('%d %d\\\\n' % (os.getpid(), d.pid))")
            subprocess.run([sys.executable, "-c", code, str(HERE / "pids")], check=True)  # the daemon is orphaned
            time.sleep(300)
        return super().apply(model)


class Hungry(SNw):
    """Starts a child that fills 2600 MiB (the worker and its defendant, about 1 GiB together, stay
    below the limit)."""
    name = "hungry"
    def apply(self, model):
        spawn(sys.executable, "-c", "import time; b = b'x' * (2600 * 2**20); time.sleep(300)")
        time.sleep(300)


class RaisesInterrupt(SNw):
    name = "raises_interrupt"
    def apply(self, model):
        raise KeyboardInterrupt


class RaisesExit(SNw):
    name = "raises_exit"
    def apply(self, model):
        raise SystemExit(0)


class TermsLipbench(SNw):
    """Sends SIGTERM to lipbench (whose PID the test notes in ``lipbench.pid``; the method runs
    in a defendant forked by the case's worker, below the fork server), as if to stop every --resume."""
    name = "terms_lipbench"
    def apply(self, model):
        import signal
        os.kill(int((HERE / "lipbench.pid").read_text()), signal.SIGTERM)
        time.sleep(30)


class TermsItself(SNw):
    """Sends SIGTERM to its own process, as if lipbench were being stopped."""
    name = "terms_itself"
    def apply(self, model):
        import signal
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(30)
'''


def suite_with(tmp_path: Path, methods, timeout=600) -> Path:
    (tmp_path / "treemod.py").write_text(TREE_MODULE)
    data = dict(TINY, kind="gradient_bounds", matrix={"depth": [2], "width": [4]}, checks=[], timeout=timeout,
                settings={"probe_samples": 2, "train_steps": 1, "lr": 1e-3, "batch": 4}, methods=methods)
    return write_suite(tmp_path / "s", data)


@pytest.fixture(autouse=True)
def lipbench_tmp(monkeypatch):
    """A fresh, empty ``TMPDIR`` for the lipbench a test starts (this process's own stays as it is),
    removed after. A short path, not in ``tmp_path``: lipbench's fork server puts its socket there,
    and an AF_UNIX path has at most 107 bytes."""
    folder = Path(tempfile.mkdtemp(prefix="lbtest-"))
    monkeypatch.setenv("TMPDIR", str(folder))
    yield folder
    shutil.rmtree(folder)


def start(tmp_path: Path, *args) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{tmp_path}", "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, "-m", "harness.cli.main", *map(str, args)], cwd=tmp_path, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def pids(tmp_path: Path, count: int = 1, wait: float = 120) -> list[int]:
    """Worker and child PIDs the methods noted, once ``count`` lines are there."""
    deadline = time.monotonic() + wait
    path = tmp_path / "pids"
    while time.monotonic() < deadline:
        lines = path.read_text().splitlines() if path.exists() else []
        if len(lines) >= count:
            return [int(x) for line in lines for x in line.split()]
        time.sleep(0.1)
    raise AssertionError("the case never started its child")


def leftovers(folder: Path) -> list[str]:
    """Cases' and defendants' folders (``lipbench-*``) left in lipbench's temporary ``folder``."""
    return sorted(p.name for p in folder.glob("lipbench-*"))


def alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie waiting for a reaper counts as dead)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def gone(pid_list, wait: float = 10) -> bool:
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        if not any(alive(p) for p in pid_list):
            return True
        time.sleep(0.1)
    return False


@pytest.mark.parametrize("signum, times", [(signal.SIGTERM, 2), (signal.SIGHUP, 1)])
def test_sigterm_and_sighup_stop_the_run_kill_every_process_and_are_no_case_crash(tmp_path, lipbench_tmp, signum,
                                                                                 times):
    suite = suite_with(tmp_path, ["none", "treemod:Hangs"])
    out = tmp_path / "r"
    (tmp_path / "gate").touch()
    for attempt in range(times):  # an external stop, again and again: never "lipbench died" for the case
        proc = start(tmp_path, "run", suite, "--out", out, *(["--resume"] if attempt else []))
        started = pids(tmp_path, attempt + 1)[-2:]
        proc.send_signal(signum)
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == 128 + signum, err
        assert err.strip().splitlines()[-1] == (f"lipbench: stopped by {signal.Signals(signum).name}; every worker "
                                                "was killed and finished cases are kept (use --resume)")
        assert gone(started), "the worker or the process it started outlived lipbench"
        assert leftovers(lipbench_tmp) == []  # nor the killed case's folder, nor its defendant's
        assert ResultsDir(out).completed_keys() == {("tiny", "depth=2,width=4", "none", 0)}
    (tmp_path / "gate").unlink()
    proc = start(tmp_path, "run", suite, "--out", out, "--resume")
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    rows = ResultsDir(out).rows()
    assert set(rows["status"]) == {"ok"}, rows[rows["status"] != "ok"]["message"].tolist()


@pytest.mark.parametrize("method", ["treemod:Hangs", "treemod:Escapes"])
def test_a_timeout_kills_the_cases_whole_process_tree_and_the_run_ends(tmp_path, lipbench_tmp, method):
    suite = suite_with(tmp_path, [method], timeout=3)
    (tmp_path / "gate").touch()
    proc = start(tmp_path, "run", suite, "--out", tmp_path / "r")
    out, err = proc.communicate(timeout=300)  # a surviving child holding stdout would make this hang
    assert proc.returncode == 1, err  # the run ended; its case is an error row
    assert gone(pids(tmp_path))
    assert leftovers(lipbench_tmp) == []  # nor the killed case's folder, nor the one its defendant's was in
    rows = ResultsDir(tmp_path / "r").rows()
    assert "timeout of 3 s; its worker and every process it started were killed" in rows["message"].iloc[0]


def test_the_memory_limit_holds_for_the_cases_whole_process_tree(tmp_path, lipbench_tmp):
    suite = suite_with(tmp_path, ["treemod:Hungry"], timeout=120)
    proc = start(tmp_path, "run", suite, "--out", tmp_path / "r", "--max-memory", "3072")
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 1, err  # the run ended; its case is an error row
    assert gone(pids(tmp_path))
    assert leftovers(lipbench_tmp) == []
    message = ResultsDir(tmp_path / "r").rows()["message"].iloc[0]
    assert "(its worker and the processes it started), more than --max-memory 3072 MiB" in message, message


def test_what_a_method_raises_or_signals_to_itself_is_an_error_row_and_the_run_goes_on(tmp_path):
    suite = suite_with(tmp_path, ["treemod:RaisesInterrupt", "treemod:RaisesExit", "treemod:TermsItself",
                                  "treemod:TermsLipbench", "none"])
    for resume in ([], ["--resume"]):  # and it stops no later --resume either
        proc = start(tmp_path, "run", suite, "--out", tmp_path / "r", *resume)
        (tmp_path / "lipbench.pid").write_text(str(proc.pid))
        _, err = proc.communicate(timeout=600)
        assert proc.returncode == 1, err  # the run went on to the end; four cases are error rows
    rows = ResultsDir(tmp_path / "r").rows()
    by_method = {m: set(g["status"]) for m, g in rows.groupby("method")}
    assert by_method == {"treemod:RaisesInterrupt": {"error"}, "treemod:RaisesExit": {"error"},
                         "treemod:TermsItself": {"error"}, "treemod:TermsLipbench": {"error"}, "none": {"ok"}}
    messages = dict(zip(rows["method"], rows["message"]))
    assert "KeyboardInterrupt" in messages["treemod:RaisesInterrupt"]
    assert "SystemExit" in messages["treemod:RaisesExit"]
    assert "killed by SIGTERM" in messages["treemod:TermsItself"]
    assert "the case sent SIGTERM to lipbench itself" in messages["treemod:TermsLipbench"]
    assert not [json.loads(x) for x in (tmp_path / "r" / "attempts.jsonl").read_text().splitlines()
                if json.loads(x)["outcome"] == "interrupted"]


@pytest.mark.parametrize("unbuffered", [True, False])
def test_output_closed_early_by_its_reader_ends_quietly_with_141(tmp_path, lipbench_tmp, unbuffered):
    """``lipbench list | head``: the reader's end is closed before lipbench prints (its imports take
    seconds), so the output meets a closed pipe, at a print (unbuffered) or at the last flush
    (buffered, as when stdout is a pipe): exit 141 (128 + SIGPIPE), nothing on stderr."""
    read, write = os.pipe()
    os.close(read)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}
    env.update({"PYTHONPATH": str(ROOT), **({"PYTHONUNBUFFERED": "1"} if unbuffered else {})})
    proc = subprocess.run([sys.executable, "-m", "harness.cli.main", "list"], cwd=tmp_path, env=env,
                          stdout=write, stderr=subprocess.PIPE, text=True, timeout=300)
    os.close(write)
    assert proc.returncode == 141 and proc.stderr == ""
