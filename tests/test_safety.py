"""Hostile and faulty input, row by row of the safety table in docs/results.md ("Safety and
failure behaviour"): lipbench loses nothing, runs nothing it was not asked to, deletes
nothing it did not write, and every user error is exit 2 with one line and no traceback."""
import json
import os
import time
from pathlib import Path

import pytest
import yaml

from cli_support import TINY, finished_run, lipbench, one_line_error, snapshot, write_suite
from harness.cli.main import main
from harness.results import ResultsDir

REPO = Path(__file__).resolve().parents[1]
SENTINEL_MODULE = '''
import pathlib
from harness.methods import Method

def system(command="", **kwargs):
    pathlib.Path({path!r}).write_text("ran " + command)
    return Method()

class Exits(Method):
    name = "exits"
    def apply(self, model):
        import os
        os._exit(7)
'''


@pytest.fixture
def sentinel(tmp_path, monkeypatch):
    """An importable module whose functions would leave a file behind if they were called."""
    flag = tmp_path / "ran.txt"
    (tmp_path / "evilmod.py").write_text(SENTINEL_MODULE.format(path=str(flag)))
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.chdir(tmp_path)
    return flag


def test_out_folder_with_the_users_files_is_refused_and_kept(tmp_path, capsys):
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "paper.tex").write_text("precious")
    suite = write_suite(tmp_path / "s")
    for overwrite in ([], ["--overwrite"]):
        code, err = lipbench(capsys, "verify", suite, "--out", mine, "--baselines", tmp_path / "b", *overwrite)
        one_line_error(code, err, "not empty and was not created by lipbench")
    assert (mine / "paper.tex").read_text() == "precious"


def test_a_suite_naming_a_non_method_runs_nothing(tmp_path, capsys, sentinel):
    data = dict(TINY, kind="gradient_bounds", matrix={"depth": [2], "width": [4]},
                settings={"probe_samples": 2, "train_steps": 1, "lr": 1e-3, "batch": 4}, checks=[],
                methods=[{"name": "evilmod:system", "params": {"command": "touch pwned"}}])
    suite = write_suite(tmp_path / "s", data)
    code, err = lipbench(capsys, "run", suite, "--out", tmp_path / "r")
    one_line_error(code, err, f"{suite}:", "evilmod:system", "refused without calling it")
    assert not sentinel.exists()


def test_check_refuses_a_non_method_before_calling_it(tmp_path, capsys, sentinel):
    code, err = lipbench(capsys, "check", "evilmod:system", "--param", "command=touch pwned",
                         "--out", tmp_path / "r")
    one_line_error(code, err, "evilmod:system")
    assert not sentinel.exists()


def test_a_mistyped_method_parameter_is_exit_2(tmp_path, capsys):
    code, err = lipbench(capsys, "check", "sn_w", "--param", "n_power_iterations=abc", "--out", tmp_path / "r")
    one_line_error(code, err, "n_power_iterations", "abc")


def test_a_torn_last_record_is_repaired_on_resume_and_refused_by_baseline_update(tmp_path, capsys):
    out = finished_run(tmp_path, capsys)
    cases = out / "cases.jsonl"
    data = cases.read_bytes()
    cases.write_bytes(data[:-40])  # a crash in the middle of the last append
    code, err = lipbench(capsys, "baseline", "update", out, "--baselines", tmp_path / "b")
    one_line_error(code, err, "planned case(s) have no result")
    assert lipbench(capsys, "run", write_suite(tmp_path / "s"), "--out", out, "--resume")[0] == 0
    assert cases.read_bytes().count(b"\n") == data.count(b"\n")
    assert lipbench(capsys, "baseline", "update", out, "--baselines", tmp_path / "b")[0] == 0


def test_a_damaged_middle_record_is_named_and_refused(tmp_path, capsys):
    out = finished_run(tmp_path, capsys)
    cases = out / "cases.jsonl"
    lines = cases.read_bytes().split(b"\n")
    lines[0] = lines[0][:25]
    cases.write_bytes(b"\n".join(lines))
    for args in (["baseline", "update", out, "--baselines", tmp_path / "b"],
                 ["report", out, "-o", tmp_path / "x.html", "--suites-dir", tmp_path / "s"]):
        code, err = lipbench(capsys, *args)
        one_line_error(code, err, f"{cases}:1: damaged case record")


def test_a_partial_run_does_not_shrink_the_baseline(tmp_path, capsys):
    data = dict(TINY, kind="gradient_bounds", matrix={"depth": [2], "width": [4]}, checks=[],
                settings={"probe_samples": 2, "train_steps": 1, "lr": 1e-3, "batch": 4},
                methods=["none", "sn_w", "weight_norm"])
    suite = write_suite(tmp_path / "s", data)
    base = tmp_path / "b"
    assert lipbench(capsys, "run", suite, "--out", tmp_path / "all")[0] == 0
    assert lipbench(capsys, "baseline", "update", tmp_path / "all", "--baselines", base)[0] == 0
    path = base / "cpu" / "tiny.ci.json"
    full = json.loads(path.read_text())["rows"]
    assert lipbench(capsys, "run", suite, "--methods", "none", "--out", tmp_path / "one")[0] == 0
    assert lipbench(capsys, "baseline", "update", tmp_path / "one", "--baselines", base)[0] == 0
    after = json.loads(path.read_text())["rows"]
    assert len(after) == len(full) and {r["method"] for r in after} == {"none", "sn_w", "weight_norm"}
    assert lipbench(capsys, "baseline", "update", tmp_path / "one", "--baselines", base, "--prune")[0] == 0
    assert {r["method"] for r in json.loads(path.read_text())["rows"]} == {"none"}


def test_a_method_that_exits_the_process_is_an_error_row_and_the_run_goes_on(tmp_path, capsys, sentinel):
    data = dict(TINY, kind="gradient_bounds", matrix={"depth": [2], "width": [4]}, checks=[],
                settings={"probe_samples": 2, "train_steps": 1, "lr": 1e-3, "batch": 4},
                methods=["evilmod:Exits", "none"])
    suite = write_suite(tmp_path / "s", data)
    out = tmp_path / "r"
    assert lipbench(capsys, "run", suite, "--out", out)[0] == 1  # a case errored (docs/cli.md, exit codes)
    rows = ResultsDir(out).rows()
    assert set(rows[rows["method"] == "evilmod:Exits"]["status"]) == {"error"}
    assert "exited with code 7" in rows[rows["method"] == "evilmod:Exits"]["message"].iloc[0]
    assert set(rows[rows["method"] == "none"]["status"]) == {"ok"}
    assert lipbench(capsys, "run", suite, "--out", out, "--resume")[0] == 1  # resume does not die


@pytest.mark.parametrize("text, needle", [
    ("a: &a [x, x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]\n"
     "c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b]\nd: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c]\n"
     "e: [*d, *d, *d, *d, *d, *d, *d, *d, *d]\n", ":2: YAML alias *a is not allowed"),
    ("name: &x [*x]\n", ":1: YAML alias *x is not allowed"),
    (yaml.safe_dump(TINY, sort_keys=False) + "seeds: [1]\n", "the key 'seeds' is given twice"),
    (yaml.safe_dump(dict(TINY, matrix={"m": [2, "2", 2.0], "n": [3], "distribution": ["gaussian"]})),
     "expected an integer, got str '2'"),
    (b"name: tiny\ndescription: \xff\xfe\n", ":2: not UTF-8"),
    (yaml.safe_dump(dict(TINY, checks=[{"name": "c", "metric": "variance", "assert": "value <= bogus",
                                       "cite": "x"}])), "unknown name 'bogus'"),
    (yaml.safe_dump(dict(TINY, checks=[{"name": "c", "metric": "variance", "assert": "[0] * 10**10 == 1",
                                       "cite": "x"}])), "List is not allowed"),
    (yaml.safe_dump(dict(TINY, checks=[{"name": "c", "metric": "variance", "assert": "-" * 100_000 + "value",
                                       "cite": "x"}])), "longer than"),
])
def test_hostile_suite_files_are_refused_quickly_with_a_location(tmp_path, capsys, text, needle):
    suite = write_suite(tmp_path / "s", text=text)
    started = time.perf_counter()
    code, err = lipbench(capsys, "run", suite, "--out", tmp_path / "r")
    one_line_error(code, err, str(suite), needle)
    assert time.perf_counter() - started < 10 and not (tmp_path / "r").exists()


def test_a_million_cases_are_refused_before_planning(tmp_path, capsys):
    data = dict(TINY, matrix={"m": list(range(2, 102)), "n": list(range(2, 102)),
                              "distribution": ["gaussian", "uniform"]}, seeds=list(range(50)))
    suite = write_suite(tmp_path / "s", data)
    code, err = lipbench(capsys, "run", suite, "--out", tmp_path / "r")
    one_line_error(code, err, "plans up to 1000000 cases, more than --max-cases 10000")
    assert not (tmp_path / "r" / "plan.json").exists()


def test_bad_paths_and_folders_are_exit_2(tmp_path, capsys):
    suite = write_suite(tmp_path / "s")
    afile = tmp_path / "file.txt"
    afile.write_text("x")
    one_line_error(*lipbench(capsys, "run", suite, "--out", afile), "exists and is not a folder")
    out = finished_run(tmp_path, capsys)
    one_line_error(*lipbench(capsys, "run", suite, "--out", out), "already holds results", "--resume")
    one_line_error(*lipbench(capsys, "run", tmp_path / "nope.yaml", "--out", tmp_path / "x"), "no such suite")
    one_line_error(*lipbench(capsys, "run", suite, "--timeout", "-3"), "--timeout", "must be a positive, finite number")


@pytest.mark.parametrize("damage, needle", [
    (lambda text: text[:50], "not JSON"),
    (lambda text: text.replace('"value": ', '"value": "abc", "x": ', 1), "value: expected a finite number"),
    (lambda text: text.replace('"device_class": "cpu"', '"device_class": "cuda-h100"'), "device_class"),
    (lambda text: text.replace('"seed": 0', '"seed": "zero"', 1), "seed: expected int"),
])
def test_corrupt_or_misplaced_baselines_are_exit_2_with_file_and_line(tmp_path, capsys, damage, needle):
    out = finished_run(tmp_path, capsys)
    base = tmp_path / "b"
    assert lipbench(capsys, "baseline", "update", out, "--baselines", base)[0] == 0
    path = base / "cpu" / "tiny.ci.json"
    path.write_text(damage(path.read_text()))
    code, err = lipbench(capsys, "report", out, "-o", tmp_path / "x.html", "--suites-dir", tmp_path / "s",
                         "--baselines", base)
    one_line_error(code, err, f"{path}:", needle)


def test_exploding_check_expressions_are_error_verdicts_not_hangs(tmp_path, capsys):
    data = dict(TINY, checks=[
        {"name": "tower", "metric": "variance", "assert": "value <= 10**10**10", "cite": "x"},
        {"name": "exp", "metric": "variance", "assert": "exp(value * 1e6) > 0", "cite": "x"}])
    suite = write_suite(tmp_path / "s", data)
    started = time.perf_counter()
    code = main(["verify", str(suite), "--out", str(tmp_path / "r"), "--baselines", str(tmp_path / "b"),
                 "--report", str(tmp_path / "v.html"), "--junit", str(tmp_path / "j.xml")])
    assert code == 1 and time.perf_counter() - started < 60
    verdicts = (tmp_path / "r" / "verdicts.csv").read_text()
    assert verdicts.count(",error,") >= 4 and "overflow" in verdicts


def test_a_second_run_on_one_folder_exits_2_naming_the_first(tmp_path, capsys):
    out = finished_run(tmp_path, capsys)
    results = ResultsDir(out)
    with results.lock():
        code, err = lipbench(capsys, "run", write_suite(tmp_path / "s"), "--out", out, "--resume")
    one_line_error(code, err, f"PID {os.getpid()}")


def test_results_and_baselines_are_readable_by_others(tmp_path, capsys):
    out = finished_run(tmp_path, capsys)
    assert lipbench(capsys, "baseline", "update", out, "--baselines", tmp_path / "b")[0] == 0
    umask = os.umask(0)
    os.umask(umask)
    for path in [out / "results.csv", out / "manifest.json", tmp_path / "b" / "cpu" / "tiny.ci.json"]:
        assert path.stat().st_mode & 0o777 == 0o666 & ~umask, path


def test_internal_errors_are_one_line_without_debug_and_a_traceback_with_it(tmp_path, capsys, monkeypatch):
    from harness.cli import commands

    def broken(args):
        raise RuntimeError("a bug")
    monkeypatch.setattr(commands, "cmd_list", broken)
    code, err = lipbench(capsys, "list")
    assert code == 3 and err.strip() == "lipbench: internal error: RuntimeError: a bug (run with --debug for the traceback)"
    code, err = lipbench(capsys, "list", "--debug")
    assert code == 3 and "Traceback" in err


# --- every bad input: exit 2 and one line (docs/results.md, "Safety and failure behaviour") ------------
HOSTILE_PICKLE = b"cos\nsystem\n(S'touch pwned'\ntR."  # pickle protocol 0: os.system("touch pwned")


def _damage(out: Path, name: str, change) -> None:
    path = out / name
    path.write_text(change(path.read_text()))


def _first_row(text: str, **changes) -> str:
    lines = text.splitlines()
    record = json.loads(lines[0])
    record["rows"][0].update(changes)
    for key in [k for k, v in changes.items() if v is None]:
        del record["rows"][0][key]
    return "\n".join([json.dumps(record)] + lines[1:]) + "\n"


@pytest.mark.parametrize("args, needles", [
    (["run", "{suite}", "--preset", "nope"], ["no preset 'nope'", "its presets: ci, full"]),
    (["run", "{suite}", "--preset", "../x"], ["--preset", "expected a preset name"]),
    (["run", "{suite}", "--max-memory", "inf"], ["--max-memory", "finite"]),
    (["run", "{suite}", "--max-memory", "nan"], ["--max-memory", "finite"]),
    (["run", "{suite}", "--max-memory", "1e-300"], ["--max-memory", "from 1024"]),
    (["run", "{suite}", "--timeout", "inf"], ["--timeout", "finite"]),
    (["run", "{suite}", "--workers", "10000"], ["--workers", "from 1 to 1024"]),
    (["run", "{suite}", "--workers", "1000"], ["--workers 1000", "MiB each", "give --max-memory"]),
    (["check", "sn_w", "--param", "x=["], ["--param x", "not a valid YAML value"]),
    (["check", "sn_w", "--param", "x=[&a [1, 2], *a, *a]"], ["--param x", "YAML alias *a"]),
    (["check", "sn_w", "--param", "x=!!python/object/apply:os.system ['touch pwned']"], ["--param x"]),
    (["report", "{results}", "-o", "{tmp}"], ["-o", "is a folder"]),
    (["report", "{results}", "-o", "{tmp}/x.html", "--junit", "{tmp}"], ["--junit", "is a folder"]),
    (["verify", "{suite}", "--report", "{tmp}"], ["--report", "is a folder"]),
    (["report", "{results}", "-o", "{tmp}/x.html", "--baselines", "{suite}"], ["--baselines", "not a folder"]),
    (["inspect", "harness.training.models:StandardCNNDiscriminator", "--input-shape", "3,32,32", "--html", "{tmp}"],
     ["--html", "is a folder"]),
    (["run", "{suite}", "--out", "{suite}"], ["--out", "not a folder"]),
    (["run", "{suite}", "--out", "/sys/lipbench-cannot-write-here/r"], ["cannot create the folder"]),
    (["report", "{results}", "-o", "/sys/lipbench-cannot-write-here.html"], ["lipbench-cannot-write-here.html: cannot"]),
    (["report", "{tmp}/nowhere", "-o", "{tmp}/x.html"], ["no such results folder"]),
    (["baseline", "update", "{tmp}/s", "--baselines", "{tmp}/b"], ["the run did not finish"]),
])
def test_bad_input_is_exit_2_and_one_line(tmp_path, capsys, args, needles):
    if "/sys/" in " ".join(args) and not Path("/sys").is_dir():
        pytest.skip("no /sys: a place no user may create files in")
    results = finished_run(tmp_path, capsys)
    names = {"suite": tmp_path / "s" / "tiny.yaml", "results": results, "tmp": tmp_path}
    before = snapshot(tmp_path)
    code, err = lipbench(capsys, *[a.format(**names) for a in args])
    one_line_error(code, err, *needles)
    assert snapshot(tmp_path) == before and not Path("pwned").exists()


@pytest.mark.parametrize("name, change, needle", [
    ("cases.jsonl", lambda t: _first_row(t, value="0.5"), "cases.jsonl:1: damaged case record (value: expected a number"),
    ("cases.jsonl", lambda t: _first_row(t, seed=None), "cases.jsonl:1: damaged case record (a row lacks seed"),
    ("cases.jsonl", lambda t: _first_row(t, seed=2**70), "seed: expected an integer within int64"),
    ("cases.jsonl", lambda t: _first_row(t, samples="[1, 'a'"), "samples: expected a JSON list"),
    ("cases.jsonl", lambda t: "\xff" + t, "cases.jsonl:1: damaged case record"),
    ("manifest.json", lambda t: "[1, 2]", "manifest.json: damaged (expected a JSON object, found list)"),
    ("manifest.json", lambda t: t.replace('"methods": {', '"methods": 7, "x": {', 1), "methods: int"),
    ("plan.json", lambda t: '[["tiny", "c", "", "zero"]]', "plan.json: damaged (entry 1"),
    ("summaries.json", lambda t: "[]", "summaries.json: damaged (expected a JSON object"),
    ("summaries.json", lambda t: '{"tiny": [{"suite": "tiny"}]}', "summaries.json: damaged (tiny: a row lacks"),
])
def test_damaged_results_are_exit_2_naming_file_and_problem(tmp_path, capsys, name, change, needle):
    results = finished_run(tmp_path, capsys)
    _damage(results, name, change)
    for args in (["report", results, "-o", tmp_path / "x.html"],
                 ["baseline", "update", results, "--baselines", tmp_path / "b"],
                 ["compare", results, results],
                 ["run", tmp_path / "s" / "tiny.yaml", "--out", results, "--resume"]):
        one_line_error(*lipbench(capsys, *args, "--suites-dir", tmp_path / "s"), needle)
    assert not (tmp_path / "b").exists() and not (tmp_path / "x.html").exists()


def test_a_fifo_in_place_of_a_record_or_a_suite_is_refused_without_hanging(tmp_path, capsys):
    results = finished_run(tmp_path, capsys)
    (results / "cases.jsonl").unlink()
    os.mkfifo(results / "cases.jsonl")
    one_line_error(*lipbench(capsys, "report", results, "-o", tmp_path / "x.html", "--suites-dir", tmp_path / "s"),
                   "cases.jsonl: is not a regular file")
    os.mkfifo(tmp_path / "s" / "fifo.yaml")
    one_line_error(*lipbench(capsys, "run", tmp_path / "s" / "fifo.yaml", "--out", tmp_path / "r2"),
                   "fifo.yaml:1: not a regular file")


def test_a_results_csv_only_folder_with_damaged_values_is_exit_2(tmp_path, capsys):
    results = finished_run(tmp_path, capsys)
    (results / "cases.jsonl").unlink()
    _damage(results, "results.csv", lambda t: t.replace(",ok,", ",maybe,", 1))
    one_line_error(*lipbench(capsys, "report", results, "-o", tmp_path / "x.html", "--suites-dir", tmp_path / "s"),
                   "results.csv: damaged (status: expected one of ok, error, diverged")


@pytest.mark.parametrize("content, needle", [
    (b"\x00garbage that is no checkpoint", "not a checkpoint lipbench can load with weights_only=True"),
    (HOSTILE_PICKLE, "not a checkpoint lipbench can load with weights_only=True"),
])
def test_a_corrupt_or_hostile_checkpoint_for_inspect_is_exit_2_and_runs_nothing(tmp_path, capsys, monkeypatch,
                                                                                content, needle):
    monkeypatch.chdir(tmp_path)
    checkpoint = tmp_path / "d.pt"
    checkpoint.write_bytes(content)
    code, err = lipbench(capsys, "inspect", checkpoint, "--factory", "harness.training.models:StandardCNNDiscriminator",
                         "--input-shape", "3,32,32")
    one_line_error(code, err, str(checkpoint), needle)
    assert not (tmp_path / "pwned").exists()


@pytest.mark.parametrize("seeds, needle", [([2**70], "seeds[0]"), ([-1], "seeds[0]"), ([True], "seeds[0]"),
                                           ([0, 1.0], "seeds[1]: expected an integer seed, got float 1.0")])
def test_seeds_outside_int64_or_negative_are_a_file_line_error(tmp_path, capsys, seeds, needle):
    suite = write_suite(tmp_path / "s", dict(TINY, seeds=seeds))
    one_line_error(*lipbench(capsys, "run", suite, "--out", tmp_path / "r"), f"{suite}:", needle)
    assert not (tmp_path / "r").exists()


def test_a_read_only_file_system_is_exit_2_naming_the_path(tmp_path, capsys, monkeypatch):
    import errno
    real_mkdir = Path.mkdir

    def refuse(self, *args, **kwargs):
        if "readonly" in str(self):
            raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(self))
        return real_mkdir(self, *args, **kwargs)
    monkeypatch.setattr(Path, "mkdir", refuse)
    one_line_error(*lipbench(capsys, "run", write_suite(tmp_path / "s"), "--out", tmp_path / "readonly" / "r"),
                   "readonly", "Read-only file system")


def test_every_row_of_the_safety_table_names_tests_that_exist():
    import re
    text = (REPO / "docs" / "results.md").read_text()
    table = text[text.index("## Safety and failure behaviour"):text.index("## Reports")]
    files = {"S": "test_safety.py", "I": "test_integrity.py", "P": "test_processes.py",
             "R": "test_runner_framework.py", "V": "test_verdicts.py"}
    defined = {k: set(re.findall(r"^def (test_\w+)\(", (REPO / "tests" / f).read_text(), re.M)) for k, f in files.items()}
    rows = [line for line in table.splitlines() if line.startswith("| ") and not line.startswith(("| input", "| ---"))]
    named = set()
    for row in rows:
        tests = re.findall(r"\b([SIPRV]) `(test_\w+)`", row.rsplit(" | ", 1)[-1])
        assert tests, f"a guarantee without a test: {row[:80]}"
        for kind, name in tests:
            assert name in defined[kind], f"{files[kind]} has no {name}"
            named.add((kind, name))
    for kind in ("I", "P"):  # every test of these files holds a row of the table
        assert {(kind, n) for n in defined[kind]} <= named, sorted(defined[kind] - {n for k, n in named if k == kind})
