"""What a method promises, as data the harness can evaluate: :class:`Claim` and :class:`MethodTags`.

A :class:`Claim` names one measurable quantity of the map the model computes and its
target (a number, or the name of a method parameter such as ``"s"`` or ``"c"``). Its
``kind`` says how a measurement is judged:

* ``"equality"``: the quantity equals the target on every weight layer (spectral, row
  and Frobenius normalisations; orthonormal layers, every singular value at the target);
* ``"bound"``: the quantity never exceeds the target (weight clipping's entries, exactly
  after every step; a spectral norm at most the target: Björck, Parseval, Frobenius
  normalisation, whose spectral norm is at most the Frobenius norm; an orthogonal layer's
  operator, every singular value within the target tolerance of 1);
* ``"penalty"``: a soft claim, a loss term that pulls the quantity towards the target
  (two-sided) or under it (one-sided, ``interpolate_gradient_at_most``) and certifies
  nothing (gradient penalty, orthonormal regularisation);
* ``"none"``: no promise.

:class:`MethodTags` are capabilities, in the spirit of scikit-learn's estimator tags;
the harness reads them to decide which suites and invariants apply, never to judge a
claim. Both are class attributes of :class:`~harness.methods.Method`, inherited by
subclasses and overridable with :func:`dataclasses.replace`; a method whose claim depends
on a parameter sets ``self.claim`` in ``__init__`` (``grad_penalty`` with ``one_sided``).
:func:`description` gives a method as plain data (what the defendant reports, see
:mod:`harness.observe`), and :func:`profile` what checks may ask about it. The papers
behind each quantity are listed in ``docs/references.md``.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from numbers import Real
from typing import Any, Mapping, NamedTuple

class Quantity(NamedTuple):
    """A claimable quantity: how it is judged (``kind``), its prose (``{t}`` is the target as
    shown in reports) and whether it holds exactly after every step (a projection), not
    only once the method has settled."""

    kind: str
    prose: str
    every_step: bool = False


QUANTITIES: dict[str, Quantity] = {
    "none": Quantity("none", "no constraint"),
    "reshape_spectral": Quantity(
        "equality", "the spectral norm of every layer's reshaped weight Ŵ (c_out × c_in·k_h·k_w) "
                    "is {t}"),
    "reshape_spectral_at_most": Quantity(
        "bound", "the spectral norm of every layer's reshaped weight Ŵ (c_out × c_in·k_h·k_w) "
                 "is at most {t}"),
    "balanced_spectral": Quantity(
        "equality", "the mean of the spectral norms of the two channel reshapes Ŵ₁ "
                    "(c_out × c_in·k_h·k_w) and Ŵ₂ (c_in × c_out·k_h·k_w) of every layer is {t} "
                    "(linear layers: ‖Ŵ‖ = {t})"),
    "operator_spectral": Quantity(
        "equality", "the spectral norm of every layer's operator W̃ (the layer without bias as a "
                    "linear map on its real input size) is {t}"),
    "operator_spectral_at_most": Quantity(
        "bound", "the spectral norm of every layer's operator W̃ (the layer without bias as a "
                 "linear map on its real input size) is at most {t}"),
    "operator_orthogonal": Quantity(
        "bound", "every singular value of every layer's operator W̃ (the layer without bias as a linear "
                 "map on its real input size) lies within {t} of 1: max(σ_max − 1, 1 − σ_min) ≤ {t}"),
    "reshape_singular_values": Quantity(
        "equality", "every singular value of every layer's reshaped weight Ŵ is {t} (orthonormal "
                    "rows or columns, scaled by {t})"),
    "row_norms": Quantity(
        "equality", "every row of every reshaped weight Ŵ (one per output channel) has "
                    "Euclidean norm {t}"),
    "frobenius": Quantity("equality", "the Frobenius norm of every layer's weight is {t}"),
    "entries_within": Quantity("bound", "every weight entry lies in [−{t}, {t}] after every step",
                               every_step=True),
    "interpolate_gradient": Quantity(
        "penalty", "penalises input-gradient norms at interpolates of real and fake samples "
                   "away from {t} (soft: certifies nothing)"),
    "interpolate_gradient_at_most": Quantity(
        "penalty", "penalises input-gradient norms at interpolates of real and fake samples "
                   "above {t} (one-sided; soft: certifies nothing)"),
    "gram_orthonormal": Quantity(
        "penalty", "penalises ‖ŴᵀŴ − I‖²_F of every reshaped weight, pulling all singular "
                   "values towards 1 (soft: certifies nothing)"),
}

#: Quantities that fix every layer's spectral norm in some form (for a linear layer: the same number).
SPECTRAL = ("reshape_spectral", "balanced_spectral", "operator_spectral")
#: Quantities that put every layer's spectral norm at or under the target (for a linear layer:
#: ``‖W‖ ≤ t``): the spectral claims, the bounds, and orthonormal layers.
SPECTRAL_AT_MOST = SPECTRAL + ("reshape_spectral_at_most", "operator_spectral_at_most",
                               "reshape_singular_values")
#: Quantities about the whole spectrum of each layer's operator: measured with certified brackets
#: of ``σ_max`` and ``σ_min`` (:func:`harness.exact.conv_smallest_singular_value`).
OPERATOR_SPECTRUM = ("operator_orthogonal",)
#: Quantities Miyato et al. 2018 (§3, App. D) show to favour low-rank weights.
LOW_RANK = ("row_norms", "frobenius", "entries_within")
#: Claims about input gradients at interpolates (two-sided, one-sided).
INTERPOLATE = ("interpolate_gradient", "interpolate_gradient_at_most")
#: Quantities that say nothing about individual layers.
MODEL_LEVEL = frozenset({"none", *INTERPOLATE})


@dataclass(frozen=True)
class Claim:
    """``quantity`` (a key of :data:`QUANTITIES`) equals / stays under / is pulled to ``target``.

    ``target`` is a number or the name of a method parameter (``"s"``, ``"c"``) read from
    the method's parameters by :meth:`target_value`. ``gram_orthonormal`` measures the
    deviation ``‖G − I‖_F`` and so has target 0.
    """

    quantity: str
    target: float | str = 1.0

    def __post_init__(self) -> None:
        if self.quantity not in QUANTITIES:
            raise ValueError(f"unknown claim quantity {self.quantity!r}; "
                             f"known: {', '.join(QUANTITIES)}")
        t = self.target
        if isinstance(t, bool) or not (isinstance(t, Real) or (isinstance(t, str) and t.isidentifier())):
            raise ValueError(f"claim target must be a number or a parameter name, got {t!r}")

    @property
    def kind(self) -> str:
        """``"equality"``, ``"bound"``, ``"penalty"`` or ``"none"``."""
        return QUANTITIES[self.quantity].kind

    @property
    def every_step(self) -> bool:
        """Whether the claim holds exactly after every step (a projection), not only once settled."""
        return QUANTITIES[self.quantity].every_step

    @property
    def per_layer(self) -> bool:
        """Whether the claim is about every weight layer (else about the model or nothing)."""
        return self.quantity not in MODEL_LEVEL

    def target_value(self, params: Mapping[str, Any] | None = None) -> float:
        """The numeric target; a parameter name is looked up in ``params``."""
        if not isinstance(self.target, str):
            return float(self.target)
        params = params or {}
        if self.target not in params:
            raise ValueError(f"claim target {self.target!r} is not a parameter of the method "
                             f"(parameters: {', '.join(sorted(params)) or 'none'})")
        value = float(params[self.target])
        if not math.isfinite(value):
            raise ValueError(f"claim target {self.target} = {value} is not finite")
        return value

    def describe(self, params: Mapping[str, Any] | None = None) -> str:
        """The claim in words, as shown in reports, e.g. ``... is s = 1.5``."""
        if isinstance(self.target, str):
            shown = (f"{self.target} = {self.target_value(params):g}" if params is not None
                     else self.target)
        else:
            shown = f"{float(self.target):g}"
        return QUANTITIES[self.quantity].prose.format(t=shown)

    def as_dict(self, params: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """Plain data for result rows: quantity, kind, target (numeric when resolvable), text."""
        out: dict[str, Any] = {"quantity": self.quantity, "kind": self.kind,
                               "target": self.target, "text": self.describe(params)}
        if params is not None and self.kind != "none":
            out["target_value"] = self.target_value(params)
        return out


@dataclass(frozen=True)
class MethodTags:
    """Capabilities of a method (inherited; override with ``dataclasses.replace(Parent.tags, ...)``).

    ``power_iteration``: a spectral power-iteration parametrization (``estimate_sigma`` /
    ``power_iterate`` work on its layers). ``reparametrizes``: ``layer.weight`` is the
    effective weight (``torch.nn.utils.parametrize``). ``replaces_layers``: ``apply``
    returns a new model or swaps modules; the harness measures such layers through their
    forward map. ``needs_input_shape``: the claim depends on each layer's input size.
    ``certifies_lipschitz``: the claim normalises the operator norm, so the network bound
    ``∏‖W̃_i‖ · ∏ Lip(a_i)`` follows. ``penalty``: adds a loss term. ``projection``:
    ``after_step`` projects the weights.
    """

    power_iteration: bool = False
    reparametrizes: bool = False
    replaces_layers: bool = False
    needs_input_shape: bool = False
    certifies_lipschitz: bool = False
    penalty: bool = False
    projection: bool = False

    def as_dict(self) -> dict[str, bool]:
        return asdict(self)


def description(method: Any) -> dict[str, Any]:
    """A method as plain data (what the defendant reports and the judge reads): its name,
    parameters, claim (quantity and target, the target a number or a parameter's name),
    tags, declared GAN loss and class."""
    claim = method.claim
    cls = type(method)
    return {"name": str(method.name), "params": dict(method.params),
            "claim": {"quantity": claim.quantity, "target": claim.target},
            "tags": {k: bool(v) for k, v in method.tags.as_dict().items()},
            "gan_loss": str(getattr(method, "gan_loss", None) or ""),
            "class": f"{cls.__module__}:{cls.__qualname__}"}


def claim_of(described: Mapping[str, Any]) -> Claim:
    """The :class:`Claim` of a :func:`description` (validated: a known quantity, a number or
    a parameter's name as target)."""
    found = described["claim"]
    target = found["target"]
    return Claim(str(found["quantity"]), target if isinstance(target, str) else float(target))


def judged_claim(method: Any, as_name: str = "") -> tuple[Claim, dict[str, Any]]:
    """The claim a method (an instance, or its :func:`description`) is judged by, and the
    parameters its target is read from: its own, or under ``lipbench check --as NAME`` the
    built-in NAME's, built with the variant's parameters where NAME has them."""
    described = method if isinstance(method, Mapping) else description(method)
    params = dict(described["params"])
    if not as_name:
        return claim_of(described), params
    from .registry import builtin
    cls = builtin(as_name)
    own = {k: v for k, v in params.items() if k in cls.defaults}
    return cls(**own).claim, {**cls.defaults, **own}


def profile(method: Any, as_name: str = "") -> dict[str, Any]:
    """What checks may ask about a method (an instance or its :func:`description`): its
    claim (quantity, kind, target) and its tags."""
    described = method if isinstance(method, Mapping) else description(method)
    claim, params = judged_claim(described, as_name)
    target = claim.target_value(params) if claim.kind != "none" else math.nan
    tags = {name: bool(described["tags"].get(name, False)) for name in MethodTags.__dataclass_fields__}
    return {"claim": claim.quantity, "claim_kind": claim.kind, "target": target,
            "claim_text": claim.describe(params), **tags}


#: The names :func:`profile` gives check expressions, with their types.
PROFILE_TYPES = {"claim": "string", "claim_kind": "string", "target": "number",
                 **{name: "bool" for name in MethodTags.__dataclass_fields__}}

__all__ = ["Claim", "INTERPOLATE", "LOW_RANK", "MethodTags", "QUANTITIES", "MODEL_LEVEL", "OPERATOR_SPECTRUM", "PROFILE_TYPES", "Quantity",
           "SPECTRAL", "SPECTRAL_AT_MOST", "claim_of", "description", "judged_claim", "profile"]
