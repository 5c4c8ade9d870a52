"""Every check shipped in ``suites/`` can fail: each has a breaker below, a broken method
(``tests/mutants.py``, ``tests/variants.py``, ``tests/corpus.py``) or a broken reference (a monkeypatched
computation), run through the real runner on a shrunken copy of the shipped suite; the
check must report a violation. A check without a breaker fails ``test_every_check_has_a_breaker``.
"""
from __future__ import annotations

import copy
import dataclasses
import functools
from pathlib import Path
from typing import Callable

import pytest

from harness.baselines import evaluate_checks
from harness.cli.locate import resolve_suites
from harness.results import ResultsDir
from harness.runners import run_suites
from harness.suite import MethodSpec, Suite

REPO = Path(__file__).resolve().parents[1]
SHIPPED = {s.name: s for s in resolve_suites([], REPO / "suites")}
BREAKERS: dict[tuple[str, str], Callable] = {}
_RUNS: dict[tuple, tuple] = {}  # one run per breaker and suite, shared by the checks it breaks


def breaks(suite: str, *checks: str):
    """Register ``fn(tmp_path, monkeypatch, suite)`` as the breaker of ``checks`` of ``suite``."""
    def register(fn):
        for check in checks:
            BREAKERS[(suite, check)] = functools.partial(fn, suite=suite)
        return fn
    return register


def shrunk(name: str, **changes) -> Suite:
    """The shipped suite with the ci preset replaced by ``changes`` merged into it."""
    data = copy.deepcopy(SHIPPED[name].raw)
    ci = data["presets"]["ci"]
    for key, value in changes.items():
        if key in ("settings", "matrix"):
            ci[key] = {**ci.get(key, {}), **value}
        else:
            ci[key] = value
    return Suite.from_dict(data, source=SHIPPED[name].source)


def run(tmp_path: Path, suite: Suite, methods=None):
    """Rows and method profiles of an in-process run (so monkeypatches apply)."""
    out = ResultsDir(tmp_path / "r")
    specs = [m if isinstance(m, MethodSpec) else MethodSpec.parse(m) for m in methods] if methods else None
    rows = run_suites([suite], "ci", out, progress=False, isolation=False, methods=specs)
    return suite, rows, out.read_json("manifest.json")["methods"]


def violated(suite: Suite, rows, profiles, check: str) -> list[dict]:
    verdicts = evaluate_checks(suite, rows, profiles)
    return [v for v in verdicts if v["check"] == check and v["verdict"] == "violation"]


# --- claims ------------------------------------------------------------------------------------

CLAIMS_TINY = dict(seeds=[0], settings={"iterations": 30, "warmup": 5, "trace_points": 5, "batch": 16})


@breaks("claims", "claim_on_fixed_weights", "claim_during_training")
def _claims_scaled(tmp_path, monkeypatch, suite):
    return run(tmp_path, shrunk("claims", **CLAIMS_TINY), ["mutants:SNwStaleU"])


@breaks("claims", "bound_on_fixed_weights", "bound_during_training")
def _claims_clip(tmp_path, monkeypatch, suite):
    return run(tmp_path, shrunk("claims", **CLAIMS_TINY), ["mutants:ClipUpTo2c"])


@breaks("claims", "gradient_at_interpolates")
def _claims_gp(tmp_path, monkeypatch, suite):
    return run(tmp_path, shrunk("claims", **CLAIMS_TINY), ["mutants:GPZeroLambda"])


@breaks("claims", "settles_on_fixed_weights", "settles_during_training")
def _claims_never_settles(tmp_path, monkeypatch, suite):
    settings = {**CLAIMS_TINY["settings"], "settle_budget": 250}
    return run(tmp_path, shrunk("claims", **{**CLAIMS_TINY, "settings": settings}), ["mutants:SNwAlternates"])


@breaks("claims", "claim_settled_during_training")
def _claims_lazy(tmp_path, monkeypatch, suite):
    # exact only every second update, 1.25x in between, counting real updates only: the contract
    # (fixed weights) cannot see it, the settled copies at the random updates do
    return run(tmp_path, shrunk("claims", **CLAIMS_TINY),
               [{"name": "corpus:LazySN", "params": {"period": 2, "by_weight": True}}])


@breaks("claims", "computes_what_it_reports")
def _claims_computes_with_another(tmp_path, monkeypatch, suite):
    return run(tmp_path, shrunk("claims", **CLAIMS_TINY), ["corpus:ComputesWithAnother"])


@breaks("claims", "gradient_at_most_at_interpolates")
def _claims_one_sided(tmp_path, monkeypatch, suite):
    from harness.runners import claims
    real = claims.interpolate_gradient_norms
    monkeypatch.setattr(claims, "interpolate_gradient_norms", lambda *a, **k: 10 * real(*a, **k))  # a broken norm
    return run(tmp_path, shrunk("claims", **CLAIMS_TINY), [{"name": "grad_penalty", "params": {"one_sided": True}}])


@breaks("contract", "contract")
def _contract(tmp_path, monkeypatch, suite):
    return run(tmp_path, shrunk("contract"), ["mutants:SNwUndeclaredScale"])


# --- gradient_bounds -----------------------------------------------------------------------------

GRAD_TINY = dict(matrix={"depth": [3], "width": [16]}, seeds=[0],
                 settings={"probe_samples": 4, "train_steps": 5})


@breaks("gradient_bounds", "prop1_claimed_init", "prop1_claimed_trained")
def _grad_scaled(tmp_path, monkeypatch, suite):
    # Prop. 1 has slack (measured gradients are ~0.4 of the bound), so it takes a gross error
    return run(tmp_path, shrunk("gradient_bounds", **GRAD_TINY), ["variants:SNwTimes4"])


@breaks("gradient_bounds", "thm1_equal_norms")
def _grad_unequal(tmp_path, monkeypatch, suite):
    return run(tmp_path, shrunk("gradient_bounds", **GRAD_TINY), ["variants:SNwUnequalLayers"])


@breaks("gradient_bounds", "computes_what_it_reports")
def _grad_computes_with_another(tmp_path, monkeypatch, suite):
    return run(tmp_path, shrunk("gradient_bounds", **GRAD_TINY), ["corpus:ComputesWithAnother"])


@breaks("gradient_bounds", "prop1_init", "prop1_trained")
def _grad_broken_gradients(tmp_path, monkeypatch, suite):
    from harness.runners import gradient_bounds
    real = gradient_bounds.layer_gradients

    def inflated(model, x):  # a broken backward: every gradient 5x too large (beyond Prop. 1's slack)
        grads, norms = real(model, x)
        return [5 * g for g in grads], norms
    monkeypatch.setattr(gradient_bounds, "layer_gradients", inflated)
    return run(tmp_path, shrunk("gradient_bounds", **GRAD_TINY), ["none"])


@breaks("gradient_bounds", "thm1_minimum")
def _grad_broken_thm1(tmp_path, monkeypatch, suite):
    from harness.runners import gradient_bounds
    real = gradient_bounds.thm1_ratio
    monkeypatch.setattr(gradient_bounds, "thm1_ratio", lambda norms: 1 / real(norms))  # means swapped
    return run(tmp_path, shrunk("gradient_bounds", **GRAD_TINY), ["none"])


# --- lipschitz_certificate -----------------------------------------------------------------------

CERT_TINY = dict(seeds=[0], matrix={"iterations": [3]}, settings={"lower_random_starts": 1, "lower_steps": 2})


@breaks("lipschitz_certificate", "certified_after_training")
def _cert_reshape_as_operator(tmp_path, monkeypatch, suite):
    return run(tmp_path, shrunk("lipschitz_certificate", **CERT_TINY), ["mutants:ReshapeAsSNConv"])


@breaks("lipschitz_certificate", "computes_what_it_reports")
def _cert_computes_with_another(tmp_path, monkeypatch, suite):
    return run(tmp_path, shrunk("lipschitz_certificate", **CERT_TINY), ["corpus:ComputesWithAnother"])


@breaks("lipschitz_certificate", "lower_below_upper")
def _cert_broken_lower(tmp_path, monkeypatch, suite):
    from harness.runners import lipschitz_certificate
    real = lipschitz_certificate.lipschitz_lower_bound

    def inflated(*args, **kwargs):  # a broken gradient ascent reporting 100x the norm it found
        found = real(*args, **kwargs)
        return dataclasses.replace(found, value=100 * found.value)
    monkeypatch.setattr(lipschitz_certificate, "lipschitz_lower_bound", inflated)
    return run(tmp_path, shrunk("lipschitz_certificate", **CERT_TINY), ["none"])


@breaks("lipschitz_certificate", "alpha_lemma_network")
def _cert_broken_alpha(tmp_path, monkeypatch, suite):
    from harness.exact import network
    real = network.alpha_bound

    def quartered(*args, **kwargs):  # a wrong lemma: alpha four times too small
        found = real(*args, **kwargs)
        return dataclasses.replace(found, alpha=found.alpha / 4)
    monkeypatch.setattr(network, "alpha_bound", quartered)
    return run(tmp_path, shrunk("lipschitz_certificate", **CERT_TINY), ["none"])


# --- sample_quality ------------------------------------------------------------------------------

QUALITY_TINY = dict(seeds=[0], matrix={"data": ["digits"]},
                    settings={"iterations_for": {"digits": 10}, "n_fake": 200, "batch": 16, "trace_points": 2})


@breaks("miyato_table2", "sn_does_not_diverge")
@breaks("sample_quality", "sn_does_not_diverge")
def _quality_nan(tmp_path, monkeypatch, suite):
    return run(tmp_path, shrunk(suite, **QUALITY_TINY), ["variants:SNwNaN"])


@breaks("lin_bssn_sweep", "variance_under_scaled_thm2_bound")
@breaks("sample_quality", "variance_under_thm2_bound")
def _quality_times4(tmp_path, monkeypatch, suite):
    return run(tmp_path, shrunk(suite, **QUALITY_TINY), ["variants:SNwTimes4"])


@breaks("sample_quality", "spectral_keeps_rank")
def _quality_flat_rank(tmp_path, monkeypatch, suite):
    from harness.runners import sample_quality
    monkeypatch.setattr(sample_quality, "stable_rank", lambda mat: 1.0)  # a broken reference: all rank one
    return run(tmp_path, shrunk("sample_quality", **QUALITY_TINY), ["sn_w", "weight_norm"])


@breaks("lin_bssn_sweep", "quality_finite")
@breaks("miyato_table2", "quality_finite")
@breaks("sample_quality", "quality_finite")
@breaks("layer_families_quality", "quality_finite")
def _quality_negative_fid(tmp_path, monkeypatch, suite):
    from harness.runners import sample_quality
    real = sample_quality.compute_sample_quality

    def negative(*args, **kwargs):  # a broken Fréchet distance: the trace term subtracted twice
        found = real(*args, **kwargs)
        return dataclasses.replace(found, fid=-1 - found.fid)
    monkeypatch.setattr(sample_quality, "compute_sample_quality", negative)
    return run(tmp_path, shrunk(suite, **QUALITY_TINY), ["none"])


@breaks("sample_quality", "modes_in_range")
def _quality_negative_modes(tmp_path, monkeypatch, suite):
    from harness.runners import sample_quality
    real = sample_quality.classifier_metrics

    def negative(*args, **kwargs):  # a broken count
        found = real(*args, **kwargs)
        return dataclasses.replace(found, modes_covered=-1)
    monkeypatch.setattr(sample_quality, "classifier_metrics", negative)
    return run(tmp_path, shrunk("sample_quality", **QUALITY_TINY), ["none"])


# --- snw_vs_snconv -------------------------------------------------------------------------------

SNW_TINY = dict(matrix={"c_in": [3], "c_out": [8], "k": [3], "stride": [1], "padding": [1], "hw": [6],
                        "distribution": ["gaussian"]}, include=[], seeds=[0])


def _scaled_operator(monkeypatch, upper: float, lower: float):
    from harness.runners import snw_vs_snconv
    real = snw_vs_snconv.conv_operator_norm

    def wrong(*args, **kwargs):  # a broken operator norm
        found = real(*args, **kwargs)
        return dataclasses.replace(found, value=found.value * lower, lower=found.lower * lower,
                                   upper=found.upper * upper)
    monkeypatch.setattr(snw_vs_snconv, "conv_operator_norm", wrong)


@breaks("snw_vs_snconv", "alpha_upper")
def _snw_too_large(tmp_path, monkeypatch, suite):
    _scaled_operator(monkeypatch, 10, 10)
    return run(tmp_path, shrunk("snw_vs_snconv", **SNW_TINY))


@breaks("snw_vs_snconv", "alpha_lower")
def _snw_too_small(tmp_path, monkeypatch, suite):
    _scaled_operator(monkeypatch, 0.1, 0.1)
    return run(tmp_path, shrunk("snw_vs_snconv", **SNW_TINY))


@breaks("snw_vs_snconv", "certified_bracket")
def _snw_wide(tmp_path, monkeypatch, suite):
    _scaled_operator(monkeypatch, 1.5, 1)
    return run(tmp_path, shrunk("snw_vs_snconv", **SNW_TINY))


# --- spectral_accuracy ---------------------------------------------------------------------------

SPECTRAL_TINY = dict(matrix={"layer": ["conv_3_64_k3_32"], "iterations": [200]}, include=[], seeds=[0])


@breaks("spectral_accuracy", "effective_map_matches_estimate", "claim_converged")
def _spectral_scaled(tmp_path, monkeypatch, suite):
    return run(tmp_path, shrunk("spectral_accuracy", **SPECTRAL_TINY), ["mutants:SNwUndeclaredScale"])


@breaks("spectral_accuracy", "computes_what_it_reports")
def _spectral_computes_with_another(tmp_path, monkeypatch, suite):
    return run(tmp_path, shrunk("spectral_accuracy", **SPECTRAL_TINY), ["corpus:ComputesWithAnother"])


@breaks("spectral_accuracy", "converged_to_exact")
def _spectral_frozen(tmp_path, monkeypatch, suite):
    return run(tmp_path, shrunk("spectral_accuracy", **SPECTRAL_TINY), ["mutants:SNwFrozenU"])


@breaks("spectral_accuracy", "tracking_within_miyato")
def _spectral_tracking(tmp_path, monkeypatch, suite):
    suite = shrunk("spectral_accuracy", matrix={"layer": ["conv_64_128_k3_16"], "iterations": [1],
                                                "updates": [30]}, include=[], seeds=[0])
    return run(tmp_path, suite, ["mutants:SNwFrozenU"])


# --- thm2 / thm3 ---------------------------------------------------------------------------------

THM2_TINY = dict(matrix={"m": [8, 64], "n": [8, 64], "distribution": ["gaussian", "uniform", "rademacher"]},
                 exclude=[], include=[], settings={"matrices": 40})


def _thm2_with(monkeypatch, broken):
    from harness.runners import thm2_variance
    monkeypatch.setattr(thm2_variance, "top_singular_values", broken)
    return shrunk("thm2_variance", **THM2_TINY)


@breaks("thm2_variance", "thm2_upper_bound")
def _thm2_smallest(tmp_path, monkeypatch, suite):
    import torch
    # a broken reference: the smallest singular value instead of the largest
    suite = _thm2_with(monkeypatch, lambda a: torch.linalg.svdvals(a)[..., -1])
    return run(tmp_path, suite)


@breaks("thm2_variance", "rmt_agreement", "lower_constant_band")
def _thm2_low(tmp_path, monkeypatch, suite):
    import torch
    suite = _thm2_with(monkeypatch, lambda a: 0.8 * torch.linalg.svdvals(a)[..., 0])  # 20% low
    return run(tmp_path, suite)


@breaks("thm2_variance", "loglog_slope_gaussian", "loglog_slope_uniform", "loglog_slope_rademacher")
def _thm2_frobenius(tmp_path, monkeypatch, suite):
    import torch
    # a broken reference: the Frobenius norm in place of the spectral norm (Var = 1/(mn))
    suite = _thm2_with(monkeypatch, lambda a: torch.linalg.matrix_norm(a, "fro"))
    return run(tmp_path, suite)


THM3_TINY = dict(matrix={"c_in": [16], "c_out": [16, 32], "k": [3], "distribution": ["gaussian"]},
                 settings={"kernels": 30})


def _thm3_with(monkeypatch, factor, smallest=False):
    import torch
    from harness.runners import thm3_bsn_variance
    index = -1 if smallest else 0
    monkeypatch.setattr(thm3_bsn_variance, "top_singular_values",
                        lambda a: factor * torch.linalg.svdvals(a)[..., index])
    return shrunk("thm3_bsn_variance", **THM3_TINY)


@breaks("thm3_bsn_variance", "thm3_upper_bound", "thm2_upper_bound_snw")
def _thm3_smallest(tmp_path, monkeypatch, suite):
    return run(tmp_path, _thm3_with(monkeypatch, 1.0, smallest=True))


@breaks("thm3_bsn_variance", "xavier_like")
def _thm3_tiny_norms(tmp_path, monkeypatch, suite):
    return run(tmp_path, _thm3_with(monkeypatch, 0.3))


@breaks("thm3_bsn_variance", "bsn_rmt_agreement")
def _thm3_low(tmp_path, monkeypatch, suite):
    return run(tmp_path, _thm3_with(monkeypatch, 0.8))


# --- training_time -------------------------------------------------------------------------------

def _timing(batch: int):
    return shrunk("training_time", matrix={"model": ["dcgan_digits"], "size": [8], "batch": [batch]},
                  settings={"model_args": {"dcgan_digits": {"channels": 1, "ch": 8}}, "repeats": 6, "warmup": 1})


def _as(variant: str, name: str) -> MethodSpec:
    """``lipbench check VARIANT --as NAME``: the targets written for NAME judge the variant."""
    return MethodSpec(variant, label=f"{variant} as {name}", judged_as=name)


@breaks("training_time", "gp_needs_second_backward")
def _timing_gp(tmp_path, monkeypatch, suite):
    return run(tmp_path, _timing(16), [_as("variants:GPWithoutPenalty", "grad_penalty")])


@breaks("training_time", "sn_w_overhead_cpu")
def _timing_slow(tmp_path, monkeypatch, suite):
    return run(tmp_path, _timing(16), [_as("variants:SlowSNw", "sn_w")])


@breaks("training_time", "sn_w_overhead_gpu")
def _timing_slow_batch64(tmp_path, monkeypatch, suite):
    return run(tmp_path, _timing(64), [_as("variants:SlowSNw", "sn_w")])


# --- layer families (tests/test_families.py; the extras are installed here) -----------------------

@breaks("layer_families", "claim_on_fixed_weights", "claim_during_training")
def _families_uncorrected(tmp_path, monkeypatch, suite):
    return run(tmp_path, shrunk(suite, **CLAIMS_TINY), ["family_mutants:TorchlipWithoutCorrection"])


@breaks("layer_families", "settles_on_fixed_weights")
def _families_never_settles(tmp_path, monkeypatch, suite):
    settings = {**CLAIMS_TINY["settings"], "settle_budget": 250}
    return run(tmp_path, shrunk(suite, **{**CLAIMS_TINY, "settings": settings}), ["mutants:SNwAlternates"])


@breaks("layer_families", "computes_what_it_reports")
def _families_computes_with_another(tmp_path, monkeypatch, suite):
    return run(tmp_path, shrunk(suite, **CLAIMS_TINY), ["corpus:ComputesWithAnother"])


@breaks("layer_families_time", "time_measured")
def _families_time_nan(tmp_path, monkeypatch, suite):
    from harness.runners import training_time
    monkeypatch.setattr(training_time, "_median", lambda values: -1.0)  # a broken median
    return run(tmp_path, shrunk(suite, matrix={"model": ["dcgan_digits"], "size": [8], "batch": [16]},
                                settings={"model_args": {"dcgan_digits": {"channels": 1, "ch": 8}}, "repeats": 2}),
               ["torchlip_spectral"])


# --- bound_zoo -----------------------------------------------------------------------------------

ZOO_TINY = dict(matrix={"model": ["dcgan28"], "stage": ["init"], "padding": ["zeros", "circular"]}, include=[],
                settings={"layers": {"dcgan28": ["features.0"]}, "timing_repeats": 1,
                          "estimators": ["gram_iteration", "power_iteration", "lip4conv_power_iteration"]})


@breaks("bound_zoo", "upper_claims_hold")
def _zoo_bound_too_low(tmp_path, monkeypatch, suite):
    from harness.estimators.gram_iteration import GramIteration
    real = GramIteration.estimate
    monkeypatch.setattr(GramIteration, "estimate", lambda self, layer: 0.5 * real(self, layer))
    return run(tmp_path, shrunk("bound_zoo", **ZOO_TINY))


@breaks("bound_zoo", "lower_claims_hold")
def _zoo_estimate_too_high(tmp_path, monkeypatch, suite):
    from harness.estimators.power_iteration import PowerIteration
    real = PowerIteration.estimate
    monkeypatch.setattr(PowerIteration, "estimate", lambda self, layer: 1.01 * real(self, layer))
    return run(tmp_path, shrunk("bound_zoo", **ZOO_TINY))


@breaks("bound_zoo", "known_misses_reproduce")
def _zoo_miss_fixed(tmp_path, monkeypatch, suite):
    from harness.estimators.power_iteration import Lip4convPowerIteration, PowerIteration
    monkeypatch.setattr(Lip4convPowerIteration, "estimate", PowerIteration.estimate)  # the layer's own map
    return run(tmp_path, shrunk("bound_zoo", **ZOO_TINY))


# --- the tests -----------------------------------------------------------------------------------

def test_every_check_has_a_breaker():
    shipped = {(s.name, c["name"]) for s in SHIPPED.values() for c in s.checks}
    assert shipped - set(BREAKERS) == set(), "checks nobody has shown can fail"
    assert set(BREAKERS) - shipped == set(), "breakers for checks that no longer exist"


@pytest.mark.parametrize("suite_check", sorted(BREAKERS), ids=lambda k: f"{k[0]}.{k[1]}")
def test_the_check_fails_on_its_breaker(suite_check, tmp_path, monkeypatch, one_thread):
    breaker = BREAKERS[suite_check]
    key = (breaker.func, breaker.keywords["suite"])
    if key not in _RUNS:
        _RUNS[key] = breaker(tmp_path, monkeypatch)
    suite, rows, profiles = _RUNS[key]
    found = violated(suite, rows, profiles, suite_check[1])
    assert found, f"{suite_check} did not fail: {rows[rows['status'] != 'ok']['message'].tolist()[:2]}"


def test_the_docs_list_every_check():
    text = (REPO / "docs" / "suites.md").read_text()
    table = text[text.index("## Every shipped check"):]
    missing = [f"{s.name}/{c['name']}" for s in SHIPPED.values() for c in s.checks
               if f"| {s.name} | `{c['name']}` (" not in table]
    assert not missing, f"docs/suites.md, 'Every shipped check', lacks {missing}"
