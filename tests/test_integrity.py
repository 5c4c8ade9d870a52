"""Results and baselines that nothing corrupts (docs/results.md, "Safety and failure behaviour"):
one writer per folder, nothing written or deleted through a link or outside the folders
named, baselines only from honest complete runs, reuse bound to what ran, suite identity."""
import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from cli_support import TINY, finished_run, lipbench, one_line_error, snapshot, write_suite
from harness.baselines import Acceptance, RefusedRunError, update_baselines
from harness.results import ResultsDir
from harness.results.fingerprint import module_file
from harness.results.lock import folder_lock

ROOT = Path(__file__).resolve().parents[1]
HOLD = textwrap.dedent('''
    import fcntl, os, sys, time
    fd = os.open(sys.argv[1], os.O_RDONLY | os.O_DIRECTORY)
    fcntl.flock(fd, fcntl.LOCK_EX if sys.argv[2] == "ex" else fcntl.LOCK_SH)
    print("held", flush=True)
    time.sleep(600)
''')


def hold(folder: Path, mode: str = "ex") -> subprocess.Popen:
    """Another process holding ``folder``'s lock until it is killed."""
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(folder), mode], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "held"
    return proc


def environment() -> dict:
    return {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}


# --- one writer per folder ----------------------------------------------------------------
def test_overwrite_is_refused_while_another_process_holds_the_folder_and_nothing_is_deleted(tmp_path, capsys):
    out = finished_run(tmp_path, capsys)
    before = snapshot(out)
    holder = hold(out)
    try:
        code, err = lipbench(capsys, "run", write_suite(tmp_path / "s"), "--out", out, "--overwrite")
        one_line_error(code, err, f"PID {holder.pid}", "is using this folder")
        assert snapshot(out) == before
    finally:
        holder.kill()
        holder.wait()
    # the lock died with its holder (SIGKILL): nothing stale is left to take over
    assert lipbench(capsys, "run", write_suite(tmp_path / "s"), "--out", out, "--overwrite", "--no-isolation")[0] == 0


def test_a_reader_holds_the_folder_against_an_overwrite(tmp_path, capsys):
    out = finished_run(tmp_path, capsys)
    before = snapshot(out)
    with ResultsDir(out).reading():  # a report or baseline update reading it
        code, err = lipbench(capsys, "run", write_suite(tmp_path / "s"), "--out", out, "--overwrite")
    one_line_error(code, err, "is using this folder")
    assert snapshot(out) == before
    holder = hold(out, "ex")  # and a report does not read a folder a run is writing
    try:
        code, err = lipbench(capsys, "report", out, "-o", tmp_path / "x.html", "--suites-dir", tmp_path / "s")
        one_line_error(code, err, f"PID {holder.pid}")
    finally:
        holder.kill()
        holder.wait()


def test_two_baseline_updates_at_once_both_land(tmp_path, capsys):
    one = finished_run(tmp_path, capsys, "one", "--threads", "1")
    two = finished_run(tmp_path, capsys, "two", "--threads", "2")  # another source (thread count)
    base = tmp_path / "b"
    base.mkdir()
    with folder_lock(base):  # both updates start while the folder is held, so they overlap
        procs = [subprocess.Popen([sys.executable, "-m", "harness.cli.main", "baseline", "update", str(run),
                                   "--baselines", str(base), "--suites-dir", str(tmp_path / "s")],
                                  env=environment(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                 for run in (one, two)]
        time.sleep(1.0)
    results = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], results
    stored = json.loads((base / "cpu" / "tiny.ci.json").read_text())
    assert len(stored["sources"]) == 2 and {r["source"] for r in stored["rows"]} == set(stored["sources"])


def test_baseline_update_waits_for_the_folder_then_refuses_naming_the_holder(tmp_path, capsys, monkeypatch):
    from harness.baselines import store
    monkeypatch.setattr(store, "LOCK_WAIT_S", 0.3)
    out = finished_run(tmp_path, capsys)
    base = tmp_path / "b"
    base.mkdir()
    with folder_lock(base):
        code, err = lipbench(capsys, "baseline", "update", out, "--baselines", base, "--suites-dir", tmp_path / "s")
    one_line_error(code, err, f"PID {os.getpid()}", "another baseline update")
    assert list(base.iterdir()) == []


# --- files: atomic, never through a link, never outside the folders named -----------------
def test_a_planted_link_in_a_results_folder_is_never_written_or_deleted_through(tmp_path, capsys):
    precious = tmp_path / "thesis.tex"
    precious.write_text("precious")
    users = tmp_path / "users"
    users.mkdir()
    (users / "figure.png").write_text("mine")
    for name, target in (("verdicts.csv", precious), ("cases.jsonl", precious), ("artifacts", users)):
        out = finished_run(tmp_path, capsys, f"r-{name}")
        if (out / name).exists():
            (out / name).unlink()
        (out / name).symlink_to(target)
        for flags in (["--resume"], ["--overwrite"]):
            code, err = lipbench(capsys, "verify", write_suite(tmp_path / "s"), "--out", out, "--baselines",
                                 tmp_path / "b", "--report", tmp_path / "v.html", "--junit", tmp_path / "j.xml",
                                 "--no-isolation", *flags)
            one_line_error(code, err, name, "symbolic link")
        assert (out / name).is_symlink()
    assert precious.read_text() == "precious" and (users / "figure.png").read_text() == "mine"


def test_an_output_file_that_is_a_link_or_a_folder_is_refused(tmp_path, capsys):
    out = finished_run(tmp_path, capsys)
    precious = tmp_path / "thesis.tex"
    precious.write_text("precious")
    link = tmp_path / "report.html"
    link.symlink_to(precious)
    one_line_error(*lipbench(capsys, "report", out, "-o", link, "--suites-dir", tmp_path / "s"), "symbolic link")
    assert precious.read_text() == "precious"
    for flag in ("-o", "--junit"):
        args = ["-o", tmp_path / "x.html"] if flag == "--junit" else []
        one_line_error(*lipbench(capsys, "report", out, flag, tmp_path, *args, "--suites-dir", tmp_path / "s"),
                       flag, "is a folder")


def test_temporary_files_have_unique_names_and_leave_users_files_alone(tmp_path, capsys):
    out = finished_run(tmp_path, capsys)
    reports = tmp_path / "reports"
    reports.mkdir()
    for name in ("x.html.tmp", ".x.html.tmp", "j.xml.tmp"):
        (reports / name).write_text("the user's")
    assert lipbench(capsys, "report", out, "-o", reports / "x.html", "--junit", reports / "j.xml",
                    "--suites-dir", tmp_path / "s")[0] == 0
    assert sorted(p.name for p in reports.iterdir()) == [".x.html.tmp", "j.xml", "j.xml.tmp", "x.html", "x.html.tmp"]
    assert all((reports / n).read_text() == "the user's" for n in ("x.html.tmp", ".x.html.tmp", "j.xml.tmp"))


@pytest.mark.parametrize("args", [
    ["report", "{r}", "-o", "{r}/cases.jsonl"],
    ["report", "{r}", "-o", "{r}/report.html"],
    ["report", "{r}", "-o", "{t}/x.html", "--junit", "{r}/junit.xml"],
    ["verify", "{s}", "--out", "{t}/new", "--report", "{t}/new/v.html"],
    ["run", "{s}", "--out", "{r}/nested"],
    ["baseline", "update", "{r}", "--baselines", "{r}/baselines"],
])
def test_outputs_inside_a_results_folder_are_refused(tmp_path, capsys, args):
    out = finished_run(tmp_path, capsys)
    names = {"r": out, "t": tmp_path, "s": tmp_path / "s" / "tiny.yaml"}
    before = snapshot(tmp_path)
    code, err = lipbench(capsys, *[a.format(**names) for a in args], "--suites-dir", tmp_path / "s")
    one_line_error(code, err, "results folder")
    assert snapshot(tmp_path) == before


def test_report_and_compare_of_a_read_only_results_folder_write_nothing_into_it(tmp_path, capsys):
    out = finished_run(tmp_path, capsys)
    other = finished_run(tmp_path, capsys, "other")
    before = snapshot(tmp_path)
    for folder in (out, other):
        for path in [folder, *folder.iterdir()]:
            path.chmod(0o555 if path.is_dir() else 0o444)
    try:
        assert lipbench(capsys, "report", out, "-o", tmp_path / "rep" / "x.html", "--suites-dir",
                        tmp_path / "s")[0] == 0
        assert lipbench(capsys, "compare", out, other, "--report", tmp_path / "rep" / "c.html", "--suites-dir",
                        tmp_path / "s")[0] == 0
    finally:
        for folder in (out, other):
            for path in [folder, *folder.iterdir()]:
                path.chmod(0o755 if path.is_dir() else 0o644)
    assert {k: v for k, v in snapshot(tmp_path).items() if not k.startswith("rep")} == before
    assert (tmp_path / "rep" / "x.html").exists() and (tmp_path / "rep" / "c.html").exists()


# --- baselines admit only honest, complete runs --------------------------------------------
def _edit_first_row(out: Path, **changes) -> None:
    cases = out / "cases.jsonl"
    lines = cases.read_text().splitlines()
    record = json.loads(lines[0])
    record["rows"][0].update(changes)
    lines[0] = json.dumps(record)
    cases.write_text("\n".join(lines) + "\n")


@pytest.mark.parametrize("changes, needle", [
    ({"value": float("nan")}, "not finite in an ok row"),
    ({"value": float("inf")}, "not finite in an ok row"),
    ({"value": "abc"}, "value: expected a number"),
    ({"seed": 2**70}, "seed: expected an integer within int64"),
    ({"suite": "other"}, "a row of suite 'other'"),
])
def test_damaged_rows_never_reach_a_baseline_or_a_report(tmp_path, capsys, changes, needle):
    out = finished_run(tmp_path, capsys)
    _edit_first_row(out, **changes)
    for args in (["baseline", "update", out, "--baselines", tmp_path / "b"],
                 ["report", out, "-o", tmp_path / "x.html"]):
        one_line_error(*lipbench(capsys, *args, "--suites-dir", tmp_path / "s"), "cases.jsonl:1", needle)
    assert not (tmp_path / "b" / "cpu").exists()


def test_baselines_refuse_cases_and_suites_the_run_did_not_plan(tmp_path, capsys):
    out = finished_run(tmp_path, capsys)
    cases = out / "cases.jsonl"
    record = json.loads(cases.read_text().splitlines()[0])
    record["key"][1] = "m=99,n=3,distribution=gaussian"
    for row in record["rows"]:
        row["case"] = record["key"][1]
    cases.write_text(cases.read_text() + json.dumps(record) + "\n")
    code, err = lipbench(capsys, "baseline", "update", out, "--baselines", tmp_path / "b", "--suites-dir",
                         tmp_path / "s")
    one_line_error(code, err, "m=99", "was not planned")
    assert not (tmp_path / "b" / "cpu").exists()


@pytest.mark.parametrize("field, value", [("preset", "../../escaped"), ("device_class", "../escaped"),
                                          ("suites", ["../../escaped"])])
def test_names_that_would_escape_the_baselines_folder_are_refused(tmp_path, capsys, field, value):
    out = finished_run(tmp_path, capsys)
    manifest = json.loads((out / "manifest.json").read_text())
    manifest[field] = value
    (out / "manifest.json").write_text(json.dumps(manifest))
    before = snapshot(tmp_path)
    code, err = lipbench(capsys, "baseline", "update", out, "--baselines", tmp_path / "deep" / "b",
                         "--suites-dir", tmp_path / "s")
    one_line_error(code, err, "is not a plain name")
    assert snapshot(tmp_path) == before


def test_a_run_with_failing_checks_is_refused_unless_accepted(tmp_path, capsys):
    failing = dict(TINY, checks=[{"name": "never", "metric": "variance", "assert": "value < 0", "cite": "x"}])
    suite = write_suite(tmp_path / "s", failing)
    out = tmp_path / "r"
    assert lipbench(capsys, "run", suite, "--out", out, "--no-isolation")[0] == 0
    args = ["baseline", "update", out, "--baselines", tmp_path / "b"]
    one_line_error(*lipbench(capsys, *args), "failing check verdict", "never", "--accept-failing")
    assert not (tmp_path / "b" / "cpu").exists()
    assert lipbench(capsys, *args, "--accept-failing")[0] == 0


def test_a_check_as_run_is_refused_as_that_methods_baseline_unless_accepted(tmp_path, capsys):
    out = tmp_path / "r"
    code, err = lipbench(capsys, "check", "examples.my_norm:MyNorm", "--param", "gain=1.0", "--as", "sn_w",
                         "--suites", "contract", "--out", out, "--baselines", tmp_path / "none",
                         "--report", tmp_path / "c.html", "--junit", tmp_path / "c.xml")
    assert code in (0, 1), err
    args = ["baseline", "update", out, "--baselines", tmp_path / "b"]
    one_line_error(*lipbench(capsys, *args), "run as 'sn_w'", "--accept-relabelled")
    assert not (tmp_path / "b" / "cpu").exists()
    assert lipbench(capsys, *args, "--accept-relabelled")[0] == 0


def test_list_and_baseline_update_never_import_another_suites_methods(tmp_path, capsys, monkeypatch):
    flag = tmp_path / "imported"
    (tmp_path / "sideeffect.py").write_text(f"import pathlib\npathlib.Path({str(flag)!r}).touch()\n"
                                            "from harness.methods.spectral import SNw as Variant\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.chdir(tmp_path)
    other = dict(TINY, name="other", kind="gradient_bounds", matrix={"depth": [2], "width": [4]}, checks=[],
                 settings={"probe_samples": 2, "train_steps": 1, "lr": 1e-3, "batch": 4},
                 methods=["sideeffect:Variant"])
    write_suite(tmp_path / "s", other, name="other")
    out = finished_run(tmp_path, capsys)
    assert lipbench(capsys, "list", "--suites-dir", tmp_path / "s")[0] == 0
    assert lipbench(capsys, "baseline", "update", out, "--baselines", tmp_path / "b", "--suites-dir",
                    tmp_path / "s")[0] == 0
    assert not flag.exists()


# --- fingerprints: reuse bound to what ran -------------------------------------------------
def test_every_case_record_carries_its_fingerprint_and_the_variant_is_not_imported_to_take_it(tmp_path, capsys,
                                                                                             monkeypatch):
    out = finished_run(tmp_path, capsys)
    record = json.loads((out / "cases.jsonl").read_text().splitlines()[0])
    fp = record["fingerprint"]
    assert fp["settings"]["matrices"] == 20 and fp["preset"] == "ci" and fp["params"]["m"] == 2
    assert {"lipbench", "suite", "kind", "methods", "device", "threads"} <= set(fp)
    (tmp_path / "notimported.py").write_text("raise SystemExit('imported')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    from harness.results.fingerprint import method_source
    import hashlib
    assert module_file("notimported") == str(tmp_path / "notimported.py")
    assert method_source("notimported:Anything") == \
        hashlib.sha256((tmp_path / "notimported.py").read_bytes()).hexdigest()[:16]
    assert "notimported" not in sys.modules


def test_resume_refuses_a_changed_definition_naming_what_changed(tmp_path, capsys):
    out = finished_run(tmp_path, capsys)
    before = (out / "cases.jsonl").read_bytes()
    write_suite(tmp_path / "s", dict(TINY, settings={"matrices": 30}))
    code, err = lipbench(capsys, "run", tmp_path / "s" / "tiny.yaml", "--out", out, "--resume", "--no-isolation")
    one_line_error(code, err, "another definition", "settings.matrices: 20 -> 30", "--overwrite")
    assert (out / "cases.jsonl").read_bytes() == before


def test_resume_may_add_cases_to_the_same_run(tmp_path, capsys):
    out = finished_run(tmp_path, capsys)
    write_suite(tmp_path / "s", dict(TINY, matrix={"m": [2, 4, 8], "n": [3], "distribution": ["gaussian"]}))
    assert lipbench(capsys, "run", tmp_path / "s" / "tiny.yaml", "--out", out, "--resume", "--no-isolation")[0] == 0
    assert len(ResultsDir(out).completed_keys()) == 3


def test_resume_at_another_preset_is_refused(tmp_path, capsys):
    out = finished_run(tmp_path, capsys)
    code, err = lipbench(capsys, "run", tmp_path / "s" / "tiny.yaml", "--out", out, "--resume", "--preset", "full")
    one_line_error(code, err, "preset 'ci', not 'full'")
    assert not list(tmp_path.rglob("*.full.json"))


def test_resume_after_the_variants_source_changed_is_refused(tmp_path, capsys, monkeypatch):
    variant = tmp_path / "myvariant.py"
    variant.write_text("from harness.methods.spectral import SNw\n\nclass V(SNw):\n    name = 'v'\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.chdir(tmp_path)
    data = dict(TINY, kind="gradient_bounds", matrix={"depth": [2], "width": [4]}, checks=[],
                settings={"probe_samples": 2, "train_steps": 1, "lr": 1e-3, "batch": 4}, methods=["myvariant:V"])
    suite = write_suite(tmp_path / "s", data)
    out = tmp_path / "r"
    assert lipbench(capsys, "run", suite, "--out", out, "--no-isolation")[0] == 0
    variant.write_text(variant.read_text() + "    # changed: a researcher edited the variant\n")
    code, err = lipbench(capsys, "run", suite, "--out", out, "--resume", "--no-isolation")
    one_line_error(code, err, "methods[myvariant:V].source")


def test_resume_with_other_methods_or_parameters_is_refused(tmp_path, capsys):
    data = dict(TINY, kind="gradient_bounds", matrix={"depth": [2], "width": [4]}, checks=[],
                settings={"probe_samples": 2, "train_steps": 1, "lr": 1e-3, "batch": 4},
                methods=[{"name": "sn_w", "label": "sn", "params": {"eps": 1e-12}}])
    suite = write_suite(tmp_path / "s", data)
    out = tmp_path / "r"
    assert lipbench(capsys, "run", suite, "--out", out, "--no-isolation")[0] == 0
    code, err = lipbench(capsys, "run", suite, "--out", out, "--resume", "--methods", "weight_norm")
    one_line_error(code, err, "planned 1 case(s) this run does not", "tiny depth=2,width=4 sn seed=0")
    data["methods"][0]["params"]["eps"] = 1e-6  # same label, other parameters
    write_suite(tmp_path / "s", data)
    code, err = lipbench(capsys, "run", suite, "--out", out, "--resume")
    one_line_error(code, err, "methods[sn].params.eps: 1e-12 -> 1e-06")


def test_a_check_folder_of_another_variant_is_refused(tmp_path, capsys):
    out = tmp_path / "r"
    common = ["--suites", "contract", "--out", out, "--baselines", tmp_path / "none", "--report",
              tmp_path / "c.html", "--junit", tmp_path / "c.xml"]
    assert lipbench(capsys, "check", "examples.my_norm:MyNorm", *common)[0] in (0, 1)
    code, err = lipbench(capsys, "check", "examples.third_party:TorchSpectralNorm", *common, "--resume")
    one_line_error(code, err, "--resume", "examples.my_norm:MyNorm")


def test_baseline_update_refuses_to_mix_two_definitions_of_a_case(tmp_path, capsys):
    first = finished_run(tmp_path, capsys, "first", "--threads", "1")
    base = tmp_path / "b"
    assert lipbench(capsys, "baseline", "update", first, "--baselines", base)[0] == 0
    suite = write_suite(tmp_path / "s", dict(TINY, settings={"matrices": 30}))
    second = tmp_path / "second"  # another machine (thread count), after the suite changed
    assert lipbench(capsys, "run", suite, "--out", second, "--no-isolation", "--threads", "2")[0] == 0
    one_line_error(*lipbench(capsys, "baseline", "update", first, "--baselines", tmp_path / "b2"),
                   "other settings than")  # the first run no longer matches the suite file
    code, err = lipbench(capsys, "baseline", "update", second, "--baselines", base)
    one_line_error(code, err, "another definition", "differs in settings", "--replace-stale")
    assert lipbench(capsys, "baseline", "update", second, "--baselines", base, "--replace-stale")[0] == 0
    stored = json.loads((base / "cpu" / "tiny.ci.json").read_text())
    assert len(stored["sources"]) == 1 and {r["definition"] for r in stored["rows"]} == set(stored["definitions"])


# --- suite identity ------------------------------------------------------------------------
def test_a_suite_name_must_be_its_file_stem(tmp_path, capsys):
    suite = write_suite(tmp_path / "s", dict(TINY, name="other"))
    one_line_error(*lipbench(capsys, "run", suite, "--out", tmp_path / "r"), f"{suite}:1: name: 'other'",
                   "file's stem 'tiny'")


def test_two_suite_files_of_one_name_are_an_error(tmp_path, capsys):
    one, two = write_suite(tmp_path / "a"), write_suite(tmp_path / "b")
    one_line_error(*lipbench(capsys, "run", one, two, "--out", tmp_path / "r"), "suite 'tiny' is also defined by")
    assert lipbench(capsys, "run", one, one, "--out", tmp_path / "r", "--no-isolation")[0] == 0  # one file twice


# --- robust statistics at the gate: outliers ----------------------------------------------
def test_baseline_update_refuses_an_outlying_training_outcome_unless_accepted(tmp_path, monkeypatch):
    import outcome_runner
    from harness.runners import run_suites
    normal, odd = ResultsDir(tmp_path / "normal"), ResultsDir(tmp_path / "odd")
    run_suites([outcome_runner.outcome_suite()], "ci", normal, progress=False, isolation=False, threads=1)
    monkeypatch.setattr(outcome_runner, "OUTLIER_SEED", 2)  # another machine, one seed far out
    run_suites([outcome_runner.outcome_suite()], "ci", odd, progress=False, isolation=False, threads=2)
    suites = {"outcomes": outcome_runner.outcome_suite()}
    update_baselines(normal, tmp_path / "b", suites=suites)
    before = (tmp_path / "b" / "cpu" / "outcomes.ci.json").read_text()
    with pytest.raises(RefusedRunError, match=r"beyond robust z 6 .* seed=2 score = 1e\+06"):
        update_baselines(odd, tmp_path / "b", suites=suites)
    assert (tmp_path / "b" / "cpu" / "outcomes.ci.json").read_text() == before
    changes = update_baselines(odd, tmp_path / "b", suites=suites, accept=Acceptance(outliers=True))
    assert len(changes[0].outliers) == 1 and "seed=2" in changes[0].outliers[0]
