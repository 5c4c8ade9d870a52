"""Per-method settings follow what a method is (its suite entry, declaration, claim), never its
label (issue 16, item 5). Before, the loss was looked up by label (``loss_for: {grad_penalty:
wasserstein}``), so a copy of WGAN-GP under its own name trained with the hinge loss and failed
``gradient_at_interpolates`` (0.77 on one seed)."""
from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml

from harness.baselines import evaluate_checks
from harness.cli.locate import resolve_suites
from harness.methods import get
from harness.results import ResultsDir
from harness.runners import run_suites, runner_for
from harness.runners._gan_common import loss_for
from harness.suite import MethodSpec, Suite, SuiteError, load_suite

import from_scratch
import renamed

REPO = Path(__file__).resolve().parents[1]
SUITES = {s.name: s for s in resolve_suites([], REPO / "suites")}
DEFAULTS = runner_for("claims").declarations.defaults()


def _settings(**over):
    return {**copy.deepcopy(DEFAULTS), **over}


class _SpectralClaimingHinge(from_scratch.MiyatoSN):
    name = "declares_nonsaturating"
    gan_loss = "nonsaturating"


@pytest.mark.parametrize("reference, expected", [
    ("grad_penalty", "wasserstein"), ("weight_clip", "wasserstein"), ("sn_w", "hinge"), ("none", "hinge"),
    ("from_scratch:WGANGPCopy", "wasserstein"), ("renamed:grad_penalty", "wasserstein"),
    ("renamed:weight_clip", "wasserstein"), ("from_scratch:MiyatoSN", "hinge"),
])
def test_the_loss_follows_the_claim(reference, expected):
    method = get(reference)
    assert loss_for(_settings(), method, MethodSpec(reference, label=reference)) == expected


def test_a_label_never_chooses_the_loss():
    """A spectral method labelled ``grad_penalty`` trains as what it is."""
    spec = MethodSpec("from_scratch:MiyatoSN", label="grad_penalty")
    assert loss_for(_settings(), get(spec.name), spec) == "hinge"


def test_entry_then_declaration_then_claim_then_default():
    declared = _SpectralClaimingHinge()
    assert loss_for(_settings(), declared, MethodSpec("x:Y", label="x")) == "nonsaturating"
    assert loss_for(_settings(), declared, MethodSpec("x:Y", label="x", loss="wasserstein")) == "wasserstein"
    assert loss_for(_settings(loss="nonsaturating"), get("sn_w"), None) == "nonsaturating"
    assert loss_for(_settings(loss="nonsaturating"), None, None) == "nonsaturating"
    assert loss_for(_settings(loss_by_claim={"reshape_spectral": "wasserstein"}), get("sn_w"), None) == "wasserstein"


def test_judged_as_trains_with_the_claim_it_is_judged_by():
    spec = MethodSpec("from_scratch:MiyatoSN", label="from_scratch:MiyatoSN as grad_penalty",
                      judged_as="grad_penalty")
    assert loss_for(_settings(), get(spec.name), spec) == "wasserstein"


def _walk(value, path=()):
    if isinstance(value, dict):
        for key, item in value.items():
            yield path + (key,), key
            yield from _walk(item, path + (key,))
    elif isinstance(value, list):
        for i, item in enumerate(value):
            yield from _walk(item, path + (i,))
    else:
        yield path, value


@pytest.mark.parametrize("name", sorted(SUITES))
def test_no_suite_setting_names_a_method(name):
    suite = SUITES[name]
    labels = {MethodSpec.parse(m).label for m in suite.raw.get("methods", [])}
    labels |= {MethodSpec.parse(m).label for p in suite.raw["presets"].values() for m in p.get("methods", [])}
    names = labels | {n for n in renamed.BUILTINS if n != "none"}
    sources = [("settings", suite.raw.get("settings", {}))]
    sources += [(f"presets.{p}.settings", v.get("settings", {})) for p, v in suite.raw["presets"].items()]
    found = [(where, path, item) for where, settings in sources for path, item in _walk(settings)
             if isinstance(item, str) and item in names]
    assert not found, f"{suite.source}: method labels in settings: {found}"


def _write(tmp_path, mutate) -> Path:
    data = yaml.safe_load((REPO / "suites" / "claims.yaml").read_text())
    mutate(data)
    path = tmp_path / "claims.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


@pytest.mark.parametrize("mutate, words", [
    (lambda d: d["settings"].update(loss_for={"grad_penalty": "wasserstein"}), "no setting 'loss_for'"),
    (lambda d: d["settings"].update(loss_by_claim={"grad_penalty": "wasserstein"}), "not a claim quantity"),
    (lambda d: d["settings"].update(loss_by_claim={"interpolate_gradient": "wgan-gp"}), "unknown loss"),
    (lambda d: d["settings"].update(loss="hinje"), "unknown loss"),
    (lambda d: d["methods"].append({"name": "sn_w", "label": "sn_w_ns", "loss": "ns2"}), "methods"),
])
def test_bad_loss_settings_are_file_line_errors(tmp_path, mutate, words):
    with pytest.raises(SuiteError) as info:
        load_suite(_write(tmp_path, mutate), known_kinds=["claims"],
                   declarations_for=lambda kind: runner_for(kind).declarations)
    assert words in str(info.value) and "claims.yaml:" in str(info.value)


def test_an_entry_names_its_own_loss():
    specs = {s.label: s for s in SUITES["miyato_table2"].method_specs("ci")}
    assert specs["sn_w_hinge"].loss == "hinge" and specs["sn_w"].loss == ""
    assert loss_for(_settings(loss="nonsaturating"), get("sn_w"), specs["sn_w_hinge"]) == "hinge"
    assert loss_for(_settings(loss="nonsaturating"), get("sn_w"), specs["sn_w"]) == "nonsaturating"


def _claims(seeds, **settings) -> Suite:
    data = copy.deepcopy(SUITES["claims"].raw)
    data["presets"]["ci"] = {**data["presets"]["ci"], "seeds": seeds,
                             "settings": {**data["presets"]["ci"].get("settings", {}), **settings}}
    return Suite.from_dict(data, source=SUITES["claims"].source)


def _run(tmp_path, suite: Suite, references: list[str]):
    specs = [MethodSpec(r, label=r) for r in references]
    out = ResultsDir(tmp_path)
    rows = run_suites([suite], "ci", out, progress=False, isolation=False, methods=specs)
    return rows, out.read_json("manifest.json")["methods"]


def test_a_wgan_gp_copy_trains_with_the_wasserstein_loss_and_holds_its_claim(tmp_path, one_thread):
    """The shipped claims suite's ci settings (200 updates), seed 0: with the hinge loss this copy
    measured 0.77 and failed; with the loss its claim implies it matches the built-in."""
    suite = _claims([0])
    rows, profiles = _run(tmp_path, suite, ["from_scratch:WGANGPCopy"])
    verdicts = [v for v in evaluate_checks(suite, rows, profiles) if v["check"] == "gradient_at_interpolates"]
    assert [v["verdict"] for v in verdicts] == ["pass"], verdicts


#: Suites whose every setting that depends on a method is chosen by claim, tags or declaration,
#: and whose rows are deterministic on one machine: claims (the GAN loss of every method, the
#: settling of power iterations by parametrization type) and gradient_bounds (settling, the claimed
#: norms). Shrunk to one seed and a few updates so that 2 x 12 methods run in about a minute on the
#: 2-core machine. Not here: contract (no setting depends on the method), training_time (timings are
#: not deterministic, and its speed targets are written for a named built-in: test_cost_checks.py),
#: sample_quality, lipschitz_certificate and the studies (minutes per case; they choose the loss
#: with the same loss_for as claims).
RENAMED_SUITES = {
    "claims": lambda: _claims([1], iterations=20, warmup=4, trace_points=4, batch=16),
    "gradient_bounds": lambda: _shrunk("gradient_bounds", matrix={"depth": [3], "width": [16]}, seeds=[0],
                                       settings={"probe_samples": 4, "train_steps": 5}),
}


def _shrunk(name, matrix, seeds, settings) -> Suite:
    data = copy.deepcopy(SUITES[name].raw)
    ci = data["presets"]["ci"]
    ci.update(matrix={**ci.get("matrix", {}), **matrix}, seeds=seeds, settings={**ci.get("settings", {}), **settings})
    return Suite.from_dict(data, source=SUITES[name].source)


def _judged(rows, verdicts, rename):
    values = rows.assign(method=rows["method"].map(rename))[["case", "method", "seed", "metric", "status", "value"]]
    values = values.sort_values(["case", "method", "seed", "metric"]).reset_index(drop=True)
    found = sorted((v["case"], rename(v["method"]), v["seed"], v["metric"], v["check"], v["verdict"]) for v in verdicts)
    return values, found


@pytest.mark.parametrize("name", sorted(RENAMED_SUITES))
def test_every_builtin_renamed_gets_the_same_rows_and_verdicts(name, tmp_path, one_thread):
    suite = RENAMED_SUITES[name]()
    runner = runner_for(suite.kind)
    names = [n for n in renamed.BUILTINS if runner.applies_to(get(n))]
    rows, profiles = _run(tmp_path / "builtin", suite, names)
    copies, copy_profiles = _run(tmp_path / "renamed", suite, [f"renamed:{n}" for n in names])
    mine = _judged(rows, evaluate_checks(suite, rows, profiles), lambda m: m)
    theirs = _judged(copies, evaluate_checks(suite, copies, copy_profiles), lambda m: m.removeprefix("renamed:"))
    assert mine[1] == theirs[1]
    assert mine[0].equals(theirs[0]), "the same computation gave other numbers under another name"
    assert len(mine[1]) > len(names)
