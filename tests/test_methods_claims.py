"""Claims as data and capability tags: validation, targets from parameters, the prose,
inheritance, and what every built-in declares."""
from __future__ import annotations

import dataclasses

import pytest

from harness.methods import Claim, Method, MethodTags, available, get
from harness.methods.claims import QUANTITIES
from harness.methods.spectral import BSSN, SNw, SSN

#: What each built-in promises (the specification in each class's docstring and paper).
DECLARED = {
    "none": ("none", "none"), "sn_w": ("reshape_spectral", 1.0), "torch_sn": ("reshape_spectral", 1.0),
    "ssn": ("reshape_spectral", "s"), "bsn": ("balanced_spectral", 1.0), "bssn": ("balanced_spectral", "s"),
    "sn_conv": ("operator_spectral", 1.0), "weight_norm": ("row_norms", 1.0),
    "frobenius_norm": ("frobenius", 1.0), "weight_clip": ("entries_within", "c"),
    "grad_penalty": ("interpolate_gradient", 1.0), "orthonormal_reg": ("gram_orthonormal", 0.0),
}


@pytest.mark.parametrize("name", sorted(DECLARED))
def test_builtin_claims(name):
    quantity, target = DECLARED[name]
    claim = get(name).claim
    assert claim.quantity == quantity
    if quantity != "none":
        assert claim.target == target


def test_every_builtin_is_listed():
    assert set(DECLARED) <= set(available())


@pytest.mark.parametrize("quantity,kind", [("reshape_spectral", "equality"), ("frobenius", "equality"),
                                           ("entries_within", "bound"), ("gram_orthonormal", "penalty"),
                                           ("interpolate_gradient", "penalty"), ("none", "none")])
def test_kind_follows_quantity(quantity, kind):
    assert Claim(quantity).kind == kind


def test_per_layer():
    assert Claim("reshape_spectral").per_layer and Claim("entries_within", "c").per_layer
    assert not Claim("none").per_layer and not Claim("interpolate_gradient").per_layer


@pytest.mark.parametrize("quantity,target,match", [("spectral", 1.0, "unknown claim quantity"),
                                                   ("frobenius", True, "number or a parameter"),
                                                   ("frobenius", "not a name", "number or a parameter")])
def test_invalid_claims(quantity, target, match):
    with pytest.raises(ValueError, match=match):
        Claim(quantity, target)


def test_target_from_parameters_and_prose():
    m = get("ssn", s=1.5)
    assert m.claim.target_value(m.params) == 1.5
    assert m.claim_text == m.claim.describe({"s": 1.5})
    assert "reshaped weight Ŵ" in m.claim_text and m.claim_text.endswith("is s = 1.5")
    assert get("weight_clip", c=0.05).claim_text.startswith("every weight entry lies in [−c = 0.05, c = 0.05]")
    assert Claim("reshape_spectral", "s").describe().endswith("is s")  # no parameters: the name
    with pytest.raises(ValueError, match="'gain' is not a parameter"):
        Claim("reshape_spectral", "gain").target_value({"s": 1.0})


def test_as_dict():
    assert get("bssn", s=2).claim.as_dict(get("bssn", s=2).params) == {
        "quantity": "balanced_spectral", "kind": "equality", "target": "s", "target_value": 2.0,
        "text": get("bssn", s=2).claim_text}


def test_every_quantity_has_prose():
    for quantity in QUANTITIES:
        assert Claim(quantity).describe({})


def test_claims_and_tags_are_inherited_and_overridable():
    assert SSN.claim == Claim("reshape_spectral", "s") and BSSN.tags is SNw.tags
    assert SNw.tags.power_iteration and SNw.tags.reparametrizes and not SNw.tags.certifies_lipschitz
    assert get("sn_conv").tags.certifies_lipschitz and get("sn_conv").tags.needs_input_shape
    assert get("weight_clip").tags.projection and get("grad_penalty").tags.penalty

    class Replacing(SNw):
        tags = dataclasses.replace(SNw.tags, replaces_layers=True)

    assert Replacing.tags.replaces_layers and Replacing.tags.power_iteration
    assert not SNw.tags.replaces_layers
    with pytest.raises(dataclasses.FrozenInstanceError):
        SNw.tags.penalty = True  # type: ignore[misc]
    assert Method.tags == MethodTags() and Method.claim == Claim("none")
