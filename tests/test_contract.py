"""The method contract: every built-in method and every correct re-implementation passes
it; a raising method or factory is a violation naming the exception; each invariant's
verdicts mean what they say (n/a only where the invariant does not apply)."""
from __future__ import annotations

import pytest
import torch

import mutants
from harness.methods import Method, get, run_contract
from harness.methods.contract import INVARIANTS, violations
from harness.methods.registry import _BUILTIN

BUILTIN_CASES = [(name, {}) for name in sorted(_BUILTIN)] + [
    ("ssn", {"s": 0.7}), ("bssn", {"s": 2.0}), ("weight_clip", {"c": 0.05}),
    ("grad_penalty", {"one_sided": True}), ("grad_penalty", {"lam": 1}),
    ("sn_conv", {"input_shape": (3, 32, 32)}),  # a model-specific shape: replaced by the contract's
    ("sn_w", {"n_power_iterations": 3}), ("orthonormal_reg", {"orthogonal_init": False}),
]


def _ids(case):
    name, params = case
    return name + "".join(f"-{k}={v}" for k, v in params.items())


@pytest.mark.parametrize("case", BUILTIN_CASES, ids=map(_ids, BUILTIN_CASES))
def test_builtin_methods_pass_the_contract(case, one_thread):
    name, params = case
    results = run_contract(_BUILTIN[name], params)
    assert [r.invariant for r in results] == list(INVARIANTS)
    assert violations(results) == [], [f"{r.invariant}: {r.detail}" for r in violations(results)]
    passed = {r.invariant for r in results if r.verdict == "pass"}
    assert {"apply_returns_model", "settles", "modes_agree", "computes_what_it_reports", "gradients_flow",
            "eval_leaves_state_unchanged", "state_dict_round_trip", "deepcopy_keeps_weights"} <= passed
    claim = get(name, **params).claim
    if claim.kind in ("equality", "bound"):
        assert {"claim_on_fixed_weights", "unknown_layers"} <= passed
    if claim.kind == "penalty":
        assert "penalty_pulls_towards_claim" in passed
    if claim.quantity.startswith("interpolate_gradient"):
        assert "penalty_side" in passed


@pytest.mark.parametrize("name", sorted(mutants.CORRECT))
def test_correct_reimplementations_pass(name, one_thread, monkeypatch):
    monkeypatch.syspath_prepend(str(__import__("pathlib").Path(__file__).resolve().parents[1]))
    results = run_contract(mutants.CORRECT[name]())
    assert violations(results) == [], [f"{r.invariant}: {r.detail}" for r in violations(results)]
    assert {r.invariant for r in results if r.verdict == "pass"} >= {"claim_on_fixed_weights", "gradients_flow"}


def test_none_only_runs_what_applies():
    verdicts = {r.invariant: r.verdict for r in run_contract(Method)}
    assert verdicts["claim_on_fixed_weights"] == "n/a" and verdicts["unknown_layers"] == "n/a"
    assert verdicts["penalty_side"] == "n/a" and verdicts["eval_leaves_state_unchanged"] == "pass"
    assert verdicts["gradients_flow"] == "pass" and verdicts["modes_agree"] == "pass"


class ApplyRaises(Method):
    name = "apply_raises"

    def apply(self, model):
        raise RuntimeError("deliberately broken")


class ApplyReturnsNothing(Method):
    name = "apply_returns_nothing"

    def apply(self, model):
        pass


def test_a_raising_method_is_a_violation_naming_the_exception():
    results = run_contract(ApplyRaises)
    applies = [r for r in results if r.invariant not in (
        "claim_on_fixed_weights", "penalty_pulls_towards_claim", "penalty_side", "penalty_vanishes_only_at_claim",
        "projection_after_step", "claim_follows_parameter", "unknown_layers")]
    assert applies and all(r.verdict == "violation" and "RuntimeError: deliberately broken" in r.detail
                           for r in applies), [(r.invariant, r.detail) for r in applies]


def test_apply_must_return_the_model():
    (result,) = run_contract(ApplyReturnsNothing, only=["apply_returns_model"])
    assert result.verdict == "violation" and "apply returned NoneType" in result.detail


def test_a_failing_factory_is_one_build_violation():
    (result,) = run_contract(_BUILTIN["ssn"], {"s": "big"})
    assert result.invariant == "build" and result.verdict == "violation"
    assert "'s' expects float, got 'big'" in result.detail


def test_unknown_invariant_and_rng_restored():
    with pytest.raises(ValueError, match="unknown invariant.*nope"):
        run_contract(Method, only=["nope"])
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    run_contract(_BUILTIN["sn_w"], only=["claim_on_fixed_weights"])
    assert torch.equal(torch.rand(3), expected)


def test_results_carry_timings():
    (result,) = run_contract(_BUILTIN["sn_w"], seed=1, only=["claim_on_fixed_weights"])
    assert result.verdict == "pass" and result.seconds > 0
