"""Layer families of deel-torchlip and orthogonium as methods (harness/methods/families): each is
judged against its claim with certified brackets, by the contract (observation/judge split) and on
a circular model; its mutants (tests/family_mutants.py) are caught with the claim named; a family
whose package is missing is refused in one line naming the extra. The packages are installed
here and in tox (``LIPBENCH_REQUIRE_FAMILIES=1``: a missing package fails them); elsewhere a
missing package skips this module with a reason naming the extras."""
from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys

import pytest
import torch
from torch import nn

from harness.methods.families import FAMILIES, Family, installed_families, load_family

MISSING = sorted({f.distribution for f in FAMILIES.values() if not f.installed()})
if MISSING and os.environ.get("LIPBENCH_REQUIRE_FAMILIES") != "1":
    pytest.skip(f"needs {', '.join(MISSING)}: pip install lipbench[torchlip,orthogonium]", allow_module_level=True)

import family_mutants as fm  # noqa: E402  (imports the families' packages)
from harness.methods import MethodLoadError, available, get, measure_claim, run_contract
from harness.methods.claims import Claim
from harness.methods.contract import CLAIM_RTOL, violations
from harness.methods.contract.base import INPUT_SHAPE, contract_model
from harness.methods.measure import spectrum_of_layer

MEASURED = re.compile(r"(\w+) = ([-+\w.]+) \(target ([-+\d.e]+), excess ([-+\w.]+)\)")


def test_both_packages_are_installed_here():
    assert importlib.util.find_spec("deel.torchlip") and importlib.util.find_spec("orthogonium")
    assert installed_families() == list(FAMILIES)
    assert set(FAMILIES) <= set(available())


@pytest.mark.parametrize("name", sorted(FAMILIES))
def test_each_family_passes_its_claim_in_the_contract(name, one_thread):
    results = {r.invariant: r for r in run_contract(load_family(name))}
    assert results["claim_on_fixed_weights"].verdict == "pass", results["claim_on_fixed_weights"].detail
    for invariant in ("apply_returns_model", "settles", "modes_agree", "computes_what_it_reports",
                      "deepcopy_keeps_weights", "state_dict_round_trip", "unknown_layers"):
        assert results[invariant].verdict == "pass", (invariant, results[invariant].detail)


def test_torchlip_passes_the_whole_contract(one_thread):
    assert violations(run_contract(load_family("torchlip_spectral"))) == []


def test_the_contract_reports_what_orthogonium_does(one_thread):
    """Findings, not failures of lipbench: orthogonium's power iteration updates its vectors in
    eval-mode forwards; its L2Normalize keeps a float32 dtype, so its layers cannot run in float64
    (the gradient check); AOL's rescaling detaches norms, so its gradient is not the derivative."""
    aoc = {r.invariant: r for r in run_contract(load_family("orthogonium_aoc"))}
    assert aoc["eval_leaves_state_unchanged"].verdict == "violation"
    assert "pi.parametrizations.u" in aoc["eval_leaves_state_unchanged"].detail
    assert aoc["gradients_flow"].verdict == "violation" and "Double" in aoc["gradients_flow"].detail
    aol = {r.invariant: r for r in run_contract(load_family("orthogonium_aol"))}
    assert aol["gradients_flow"].verdict == "violation"
    assert "central differences" in aol["gradients_flow"].detail


@pytest.mark.parametrize("cls", list(fm.MUTANTS), ids=lambda c: c.__name__)
def test_family_mutant_is_caught_with_its_claim_named(cls, one_thread):
    where, quantity = fm.MUTANTS[cls]
    assert cls().claim.quantity == quantity
    if where == "contract":
        (result,) = run_contract(cls, only=["claim_on_fixed_weights"])
        assert result.verdict == "violation", result.detail
        found = MEASURED.findall(result.detail)
        assert found and all(q == quantity for q, *_ in found), result.detail
        assert max(float(excess) for *_, excess in found) > CLAIM_RTOL
    else:
        measured = fm.judge_circular(cls())
        assert {m.quantity for m in measured} == {quantity}
        assert max(m.error for m in measured) > CLAIM_RTOL, [m.describe() for m in measured]


@pytest.mark.parametrize("case", [c for c in fm.CORRECT if c[2] == "circular"],
                         ids=lambda c: f"{c[0].__name__}-{c[1]}")
def test_correct_families_pass_on_circular_padding(case, one_thread):
    cls, params, _ = case
    measured = fm.judge_circular(cls(**params))
    assert len(measured) == 4
    assert all(m.error <= CLAIM_RTOL for m in measured), [m.describe() for m in measured]


def test_orthogonality_is_judged_by_certified_brackets(one_thread):
    """On the circular model every layer's σ_max and σ_min brackets lie within the tolerance of 1,
    and each bracket holds the dense SVD of the materialised operator."""
    method = get("orthogonium_aoc", orthogonal=True)
    assert method.claim == Claim("operator_orthogonal", "tol")
    for m in fm.judge_circular(method):
        s = m.summary
        assert s["sigma_max_lower"] <= s["sigma_max"] <= s["sigma_max_upper"]
        assert s["sigma_min_lower"] <= s["sigma_min"] <= s["sigma_min_upper"]
        assert s["deviation_upper"] <= method.params["tol"], m.describe()
    model = method.apply(fm.circular_model())
    conv = nn.Conv2d(4, 8, 4, stride=2, padding=1, padding_mode="circular", bias=False)
    with torch.no_grad():
        conv.weight.copy_(model.conv2.weight)  # read once: orthogonium's power iteration steps at every read
    spectrum = spectrum_of_layer(conv, (4, 8, 8))
    basis = torch.eye(4 * 8 * 8, dtype=torch.float64).view(-1, 4, 8, 8)
    with torch.no_grad():
        dense = nn.functional.conv2d(nn.functional.pad(basis, (1, 1, 1, 1), mode="circular"),
                                     conv.weight.double(), stride=2).reshape(basis.shape[0], -1)
    values = torch.linalg.svdvals(dense)
    assert spectrum["sigma_max_lower"] - 1e-12 <= float(values.max()) <= spectrum["sigma_max_upper"] + 1e-12
    assert spectrum["sigma_min_lower"] - 1e-12 <= float(values.min()) <= spectrum["sigma_min_upper"] + 1e-12


def test_orthogonality_needs_circular_padding():
    with pytest.raises(TypeError, match=r"layer 0 \(Conv2d\).*circular padding"):
        get("orthogonium_aoc", orthogonal=True).apply(contract_model())


def test_torchlip_chain_computes_what_torchlip_layers_compute():
    """The parametrizations registered on lipbench's layers are torchlip's own layers' (same
    state, same outputs in training and eval mode)."""
    from deel.torchlip.modules import SpectralConv2d, SpectralLinear

    for theirs, plain, shape in [(SpectralConv2d(3, 4, 3, stride=2, padding=1), nn.Conv2d(3, 4, 3, stride=2, padding=1),
                                  (2, 3, 8, 8)), (SpectralLinear(5, 2), nn.Linear(5, 2), (2, 5))]:
        ours = get("torchlip_spectral").apply(nn.Sequential(plain))[0]
        ours.load_state_dict(theirs.state_dict())
        x = torch.randn(shape)
        for train in (True, False):
            ours.train(train), theirs.train(train)
            torch.testing.assert_close(ours(x), theirs(x), rtol=0, atol=0)


def test_families_measure_at_the_real_input_size():
    method = get("orthogonium_aol")
    model = method.apply(contract_model())
    found = measure_claim(method, model, INPUT_SHAPE)
    assert [m.how for m in found] == ["weight"] * 4
    assert all(m.error <= CLAIM_RTOL and m.summary["lower"] <= m.measured <= m.summary["upper"] for m in found)


def test_a_missing_package_names_the_extra(monkeypatch):
    monkeypatch.setitem(FAMILIES, "orthogonium_aoc", Family("orthogonium", "OrthogoniumAOC", "not_installed_pkg",
                                                            "orthogonium", "orthogonium"))
    with pytest.raises(MethodLoadError, match=r"pip install lipbench\[orthogonium\]"):
        get("orthogonium_aoc")
    assert "orthogonium_aoc" not in installed_families()


def test_cli_exits_2_with_one_line_when_the_package_is_missing():
    """A fresh process where orthogonium cannot be imported (``sys.modules`` entry ``None``):
    `lipbench check` prints one line naming the extra and exits 2."""
    code = ("import sys; sys.modules['orthogonium'] = None; "
            "from harness.cli.main import main; sys.exit(main(['check', 'orthogonium_aol', '--suites', 'contract']))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "pip install lipbench[orthogonium]" in lines[0], proc.stderr
