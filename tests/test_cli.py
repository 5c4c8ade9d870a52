"""The lipbench command: exit codes, suite-file errors, verify/check/report/compare/baseline, inspect."""
import json
from pathlib import Path

import pytest
import yaml

from harness.cli.main import main

REPO = Path(__file__).resolve().parents[1]

TINY_SPECTRAL = {
    "name": "spectral_accuracy", "description": "tiny", "kind": "spectral_accuracy",
    "methods": ["sn_w"], "matrix": {"layer": ["conv"], "iterations": [200], "updates": [0]},
    "seeds": [0], "settings": {"layers": {"conv": {"kind": "conv2d", "c_in": 4, "c_out": 8, "k": 3,
                                                   "stride": 1, "padding": 1, "hw": 6}}},
    "presets": {"ci": {}, "full": {}},
}


@pytest.fixture
def suites_dir(tmp_path):
    """A suites folder with a tiny spectral_accuracy (the shipped checks) and thm2_variance."""
    shipped = yaml.safe_load((REPO / "suites" / "spectral_accuracy.yaml").read_text())
    tiny = {**TINY_SPECTRAL, "checks": shipped["checks"]}
    folder = tmp_path / "suites"
    folder.mkdir()
    (folder / "spectral_accuracy.yaml").write_text(yaml.safe_dump(tiny))
    thm2 = yaml.safe_load((REPO / "suites" / "thm2_variance.yaml").read_text())
    thm2["presets"]["ci"] = {"matrix": {"m": [2, 8], "n": [3, 16]}, "settings": {"matrices": 50}}
    (folder / "thm2_variance.yaml").write_text(yaml.safe_dump(thm2))
    return folder


def run(*args):
    return main([str(a) for a in args])


def test_list(capsys):
    assert run("list") == 0
    out = capsys.readouterr().out
    assert "thm2_variance" in out and "sn_w" in out and "ci" in out


def test_bad_suite_file_exits_2_with_location(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: bad\ndescription: x\nkind: thm2_variance\nseeds: [0]\nsettings: {matrice: 3}\n"
                   "presets: {ci: {}, full: {}}\n")
    assert run("run", bad, "--out", tmp_path / "r") == 2
    err = capsys.readouterr().err
    assert f"{bad}:5: settings.matrice: kind 'thm2_variance' has no setting 'matrice'" in err
    assert "Traceback" not in err


def test_unknown_method_exits_2(tmp_path, capsys):
    assert run("check", "no_such_method", "--out", tmp_path / "r") == 2
    assert "available:" in capsys.readouterr().err


def test_verify_baseline_cycle(tmp_path, suites_dir, capsys):
    out, base = tmp_path / "results", tmp_path / "baselines"
    report, junit = tmp_path / "v.html", tmp_path / "j.xml"
    common = ["--suites-dir", suites_dir, "--baselines", base, "--report", report, "--junit", junit,
              "--overwrite"]
    assert run("verify", "thm2_variance", "--out", out, *common) == 0  # no baseline: new, checks pass
    assert report.exists() and junit.exists() and "<testsuite" in junit.read_text()
    assert "No baselines exist for device class 'cpu'" in capsys.readouterr().out
    assert "No GPU baseline exists yet" in report.read_text()
    assert run("baseline", "update", out, "--baselines", base) == 0
    assert (base / "cpu" / "thm2_variance.ci.json").exists()
    assert run("verify", "thm2_variance", "--out", out, *common) == 0  # identical: pass
    verdicts = (out / "verdicts.csv").read_text()
    assert "regression" not in verdicts and "changed" not in verdicts and ",pass," in verdicts
    # A tampered baseline makes the exact comparison fail (a variance has no better direction).
    path = base / "cpu" / "thm2_variance.ci.json"
    data = json.loads(path.read_text())
    for row in data["rows"]:
        if row["metric"] == "variance":
            row["value"] *= 1.01
    path.write_text(json.dumps(data))
    assert run("verify", "thm2_variance", "--out", out, *common) == 1
    assert "CHANGED" in capsys.readouterr().out
    assert run("report", out, "-o", tmp_path / "again.html", "--suites-dir", suites_dir, "--baselines", base) == 1
    assert run("compare", out, out, "--suites-dir", suites_dir, "--report", tmp_path / "cmp.html") == 0


def test_check_passes_a_correct_variant_and_fails_a_broken_one(tmp_path, suites_dir, capsys):
    common = ["--suites-dir", suites_dir, "--baselines", tmp_path / "none", "--report", tmp_path / "c.html",
              "--junit", tmp_path / "c.xml"]
    assert run("check", "sn_w", "--as", "sn_w", "--out", tmp_path / "ok", *common) == 0
    capsys.readouterr()
    assert run("check", "variants:ScaledSNw", "--as", "sn_w", "--out", tmp_path / "bad", *common) == 1
    out = capsys.readouterr().out
    assert "violation" in out and "effective_map_matches_estimate" in out
    assert run("check", "variants:Raises", "--out", tmp_path / "raise", *common) == 1
    assert "deliberately broken variant" in (tmp_path / "raise" / "results.csv").read_text()


def test_a_better_variant_judged_as_a_builtin_is_an_improvement_not_a_regression(tmp_path, suites_dir, capsys):
    """SN with 3 power iterations per step, checked --as sn_w against sn_w's baselines."""
    base = tmp_path / "baselines"
    tiny = yaml.safe_load((suites_dir / "spectral_accuracy.yaml").read_text())
    tiny["matrix"] = {"layer": ["conv"], "iterations": [1], "updates": [0]}
    (suites_dir / "spectral_accuracy.yaml").write_text(yaml.safe_dump(tiny))
    assert run("run", "spectral_accuracy", "--suites-dir", suites_dir, "--out", tmp_path / "sn_w") == 0
    assert run("baseline", "update", tmp_path / "sn_w", "--baselines", base, "--suites-dir", suites_dir) == 0
    common = ["--suites-dir", suites_dir, "--baselines", base, "--report", tmp_path / "c.html",
              "--junit", tmp_path / "c.xml", "--suites", "spectral_accuracy"]
    assert run("check", "mutants:SNw3", "--as", "sn_w", "--out", tmp_path / "snw3", *common) == 0
    verdicts = (tmp_path / "snw3" / "verdicts.csv").read_text()
    assert ",improvement," in verdicts and ",regression," not in verdicts


def test_an_unfinished_run_reports_every_case_that_never_ran(tmp_path, suites_dir, capsys):
    out = tmp_path / "r"
    assert run("run", "thm2_variance", "--suites-dir", suites_dir, "--out", out) == 0
    cases = out / "cases.jsonl"
    lines = cases.read_text().splitlines(keepends=True)
    cases.write_text("".join(lines[:-2]))  # the last two cases never finished
    assert run("report", out, "-o", tmp_path / "r.html", "--suites-dir", suites_dir,
               "--baselines", tmp_path / "none") == 1
    text = capsys.readouterr().out
    assert text.count("MISSING") >= 2 and "planned but never ran" in text


def test_inspect_json(capsys):
    assert run("inspect", "variants:small_discriminator", "--input-shape", "3,16,16",
               "--method", "sn_conv", "--json") == 0
    data = json.loads(capsys.readouterr().out)
    convs = [r for r in data["layers"] if r["kind"] == "conv2d"]
    assert len(convs) == 7
    for r in convs:
        assert r["operator_lower"] <= r["operator_norm"] <= r["operator_upper"]
        assert r["ratio"] <= r["alpha"] * (1 + 1e-9)
        assert abs(r["operator_norm"] - 1) < 0.05  # sn_conv normalises the operator
    assert data["network"]["lipschitz_lower"] <= data["network"]["lipschitz_upper"]


def test_inspect_checkpoint_needs_a_factory(tmp_path, capsys):
    import torch
    from harness.training.models import StandardCNNDiscriminator
    path = tmp_path / "d.pt"
    torch.save(StandardCNNDiscriminator(16).state_dict(), path)
    assert run("inspect", path, "--input-shape", "3,16,16") == 2
    assert "--factory" in capsys.readouterr().err
    assert run("inspect", path, "--input-shape", "3,16,16", "--factory",
               "harness.training.models:StandardCNNDiscriminator") == 2  # default size 32: mismatch
    assert "does not load" in capsys.readouterr().err


def test_version_names_lipbench_and_its_build_commit(capsys):
    from harness.shipped import build_info

    with pytest.raises(SystemExit) as stop:
        main(["--version"])
    assert stop.value.code == 0
    info = build_info()
    assert capsys.readouterr().out.strip() == f"lipbench {info['version']} (build {info['commit']})"


def test_a_bad_flag_is_one_line_with_one_prefix(capsys):
    assert run("run", "--no-such-flag") == 2
    err = capsys.readouterr().err.strip()
    assert err.count("lipbench:") == 1 and "\n" not in err and "--no-such-flag" in err


def test_baseline_update_never_writes_into_the_installed_suites_or_baselines(tmp_path, monkeypatch):
    from harness.cli.locate import baselines_dir, baselines_dir_to_write
    from harness.shipped import shipped_dir

    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("LIPBENCH_BASELINES", raising=False)
    assert baselines_dir() == shipped_dir("baselines") != None  # read: the shipped ones (wheel or checkout)
    assert baselines_dir_to_write() == tmp_path / "baselines"  # written: the user's folder


def test_set_and_seeds_override_every_preset_and_are_recorded(tmp_path, suites_dir):
    out = tmp_path / "r"
    assert run("run", "thm2_variance", "--suites-dir", suites_dir, "--out", out,
               "--set", "matrices=20", "--set", "thm2_variance.confidence=0.9", "--seeds", "3-4") == 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["overrides"] == {"set": {"": {"matrices": 20}, "thm2_variance": {"confidence": 0.9}},
                                     "seeds": [3, 4]}
    assert manifest["seeds"] == {"thm2_variance": [3, 4]}
    # the same as editing the file: the preset's own value is overridden too
    edited = yaml.safe_load((suites_dir / "thm2_variance.yaml").read_text())
    edited["presets"]["ci"]["settings"]["matrices"] = 20
    edited["settings"]["confidence"] = 0.9
    edited["presets"]["ci"]["seeds"] = [3, 4]
    other = tmp_path / "edited"
    other.mkdir()
    (other / "thm2_variance.yaml").write_text(yaml.safe_dump(edited))
    assert run("run", "thm2_variance", "--suites-dir", other, "--out", tmp_path / "e") == 0
    assert (out / "results.csv").read_text() == (tmp_path / "e" / "results.csv").read_text()


@pytest.mark.parametrize("flags, named", [
    (["--set", "matrices=many"], "--set matrices='many': expected an integer"),
    (["--set", "no_such_setting=1"], "--set no_such_setting"),
    (["--set", "other_suite.matrices=1"], "--set other_suite."),
    (["--set", "matrices"], "--set 'matrices': expected KEY=VALUE"),
    (["--set", "matrices=[1"], "--set 'matrices=[1': the value is not YAML"),
    (["--seeds", "a,b"], "--seeds 'a,b': expected integers"),
    (["--seeds", str(2**70)], "--seeds"),
    (["--seeds", "1,1"], "a seed is listed twice"),
])
def test_a_bad_override_is_exit_2_and_one_line_naming_the_flag(tmp_path, suites_dir, capsys, flags, named):
    assert run("run", "thm2_variance", "--suites-dir", suites_dir, "--out", tmp_path / "r", *flags) == 2
    err = capsys.readouterr().err.strip()
    assert named in err and "\n" not in err
    assert not (tmp_path / "r").exists()


def test_run_exits_1_when_a_case_errored(tmp_path, suites_dir, capsys):
    assert run("run", "spectral_accuracy", "--suites-dir", suites_dir, "--out", tmp_path / "r",
               "--methods", "variants:Raises") == 1
    assert "error(s)" in capsys.readouterr().out


def test_default_check_folders_and_reports_never_collide(tmp_path, suites_dir, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    common = ["--suites-dir", suites_dir, "--baselines", tmp_path / "none", "--suites", "spectral_accuracy"]
    assert run("check", "sn_w", *common) == 0
    assert run("check", "sn_w", *common) == 0  # the same second or not: a second folder and report
    folders = sorted(p.name for p in (tmp_path / "results").iterdir())
    reports = sorted(p.name.removesuffix(".html") for p in (tmp_path / "reports").glob("*.html"))
    assert len(folders) == 2 and all(f.startswith("check-sn_w-") for f in folders)
    assert reports == folders  # compared as names: "T.html" sorts after "T-2.html", "T" before "T-2"
    assert run("check", "sn_w", "--resume", *common) == 2  # --resume needs the folder named


def test_a_broken_pipe_of_lipbench_s_own_is_an_internal_error_not_a_closed_output(monkeypatch, capsys):
    """Only a closed standard output is the reader going away (exit 141, tests/test_processes.py);
    a BrokenPipeError from any other pipe (a worker's, say) is a bug and says so."""
    from harness.cli import commands

    def broken(args):
        raise BrokenPipeError(32, "Broken pipe")
    monkeypatch.setattr(commands, "cmd_list", broken)
    assert run("list") == 3
    assert "internal error: BrokenPipeError" in capsys.readouterr().err
