"""The mutant zoo (tests/mutants.py): each broken variant is caught by the contract with a
violation of the invariant that matches its bug, whose detail carries the measured numbers;
the mutation score is computed over the whole zoo."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

import mutants
from harness.methods import get
from harness.methods.contract import CLAIM_RTOL
from harness.methods.registry import _BUILTIN

#: "<quantity> = <measured> (target <target>, relative error|excess <error>)" in claim details
MEASUREMENT = re.compile(r"(\w+) = ([-+\w.]+) \(target ([-+\d.e]+), (?:relative error|excess) ([-+\w.]+)\)")
NUMBER = re.compile(r"\d")


@pytest.fixture(scope="module")
def zoo(one_thread):
    """The contract's results over the whole zoo, computed once."""
    return mutants.mutation_score()


@pytest.mark.parametrize("cls", list(mutants.MUTANTS), ids=lambda c: c.__name__)
def test_mutant_is_caught_by_its_invariant(cls, zoo):
    results = {r.invariant: r for r in zoo.results[cls.__name__]}
    for invariant in mutants.MUTANTS[cls]:
        result = results[invariant]
        assert result.verdict == "violation", (invariant, result.detail)
        assert NUMBER.search(result.detail), result.detail
        if invariant.startswith("claim_"):
            found = MEASUREMENT.findall(result.detail)
            assert found, result.detail
            quantity, measured, target, error = found[0]
            assert quantity == cls.claim.quantity  # the violated claim is named
            measured, target = float(measured), float(target)
            rel = abs(measured / target - 1) if cls.claim.kind == "equality" else measured / target - 1
            assert not rel <= CLAIM_RTOL  # the number shown is the failing measurement


def test_the_zoo_covers_every_builtin_method():
    parents = {name for name, builtin in _BUILTIN.items()
               if any(builtin in cls.__mro__[1:] for cls in mutants.MUTANTS)}
    parents |= {get("none").name for cls in mutants.MUTANTS if cls.claim.kind == "none"}
    assert parents == set(_BUILTIN)
    assert len(mutants.MUTANTS) >= 12


def test_mutation_score(zoo):
    assert zoo.total == len(mutants.MUTANTS) == len(zoo.results)
    missed = [name for name in zoo.results if not zoo.violated(name)]
    assert zoo.caught == zoo.total - len(missed)
    assert missed == [] and zoo.score == 1.0


def test_mutants_load_by_reference(monkeypatch):
    """``mutants:Name`` resolves like any third-party method (tests/ on sys.path)."""
    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parent))
    assert type(get("mutants:SNwDeclaredScale")) is mutants.SNwDeclaredScale


def test_a_layer_replacing_method_is_observed_through_its_maps():
    """gradient_bounds applies to every method: a layer a method replaced is read as its map."""
    from harness.methods.claims import profile
    from harness.runners import runner_for
    gradient_bounds = runner_for("gradient_bounds")
    assert gradient_bounds.applies_to(profile(mutants.SwappedOperatorSN()))
    assert gradient_bounds.applies_to(profile(mutants.SNw3())) and gradient_bounds.applies_to(profile(get("sn_w")))
