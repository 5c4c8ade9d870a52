"""What a method promises, as data the harness can evaluate: :class:`Claim` and :class:`MethodTags`.

A :class:`Claim` names one measurable quantity of the map the model computes and its
target (a number, or the name of a method parameter such as ``"s"`` or ``"c"``). Its
``kind`` says how a measurement is judged:

* ``"equality"``: the quantity equals the target on every weight layer (spectral, row
  and Frobenius normalisations);
* ``"bound"``: the quantity never exceeds the target (weight clipping's entries);
* ``"penalty"``: a soft claim, a loss term that pulls the quantity towards the target
  and certifies nothing (gradient penalty, orthonormal regularisation);
* ``"none"``: no promise.

:class:`MethodTags` are capabilities, in the spirit of scikit-learn's estimator tags;
the harness reads them to decide which suites and invariants apply, never to judge a
claim. Both are class attributes of :class:`~harness.methods.Method`, inherited by
subclasses and overridable with :func:`dataclasses.replace`. The papers behind each
quantity are listed in ``docs/references.md``.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from numbers import Real
from typing import Any, Mapping

#: quantity -> (kind, prose template; ``{t}`` is the target as shown in reports).
QUANTITIES: dict[str, tuple[str, str]] = {
    "none": ("none", "no constraint"),
    "reshape_spectral": (
        "equality", "the spectral norm of every layer's reshaped weight Ŵ (c_out × c_in·k_h·k_w) "
                    "is {t}"),
    "balanced_spectral": (
        "equality", "the mean of the spectral norms of the two channel reshapes Ŵ₁ "
                    "(c_out × c_in·k_h·k_w) and Ŵ₂ (c_in × c_out·k_h·k_w) of every layer is {t} "
                    "(linear layers: ‖Ŵ‖ = {t})"),
    "operator_spectral": (
        "equality", "the spectral norm of every layer's operator W̃ (the layer without bias as a "
                    "linear map on its real input size) is {t}"),
    "row_norms": (
        "equality", "every row of every reshaped weight Ŵ (one per output channel) has "
                    "Euclidean norm {t}"),
    "frobenius": ("equality", "the Frobenius norm of every layer's weight is {t}"),
    "entries_within": ("bound", "every weight entry lies in [−{t}, {t}] after every step"),
    "interpolate_gradient": (
        "penalty", "penalises input-gradient norms at interpolates of real and fake samples "
                   "away from {t} (soft: certifies nothing)"),
    "gram_orthonormal": (
        "penalty", "penalises ‖ŴᵀŴ − I‖²_F of every reshaped weight, pulling all singular "
                   "values towards 1 (soft: certifies nothing)"),
}

#: Quantities that fix every layer's spectral norm in some form (for a linear layer: the same number).
SPECTRAL = ("reshape_spectral", "balanced_spectral", "operator_spectral")
#: Quantities Miyato et al. 2018 (§3, App. D) show to favour low-rank weights.
LOW_RANK = ("row_norms", "frobenius", "entries_within")
#: Quantities that say nothing about individual layers.
MODEL_LEVEL = frozenset({"none", "interpolate_gradient"})


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
        return QUANTITIES[self.quantity][0]

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
        return QUANTITIES[self.quantity][1].format(t=shown)

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


def judged_claim(method: Any, as_name: str = "") -> tuple[Claim, dict[str, Any]]:
    """The claim a method is judged by, and the parameters its target is read from: its own,
    or under ``lipbench check --as NAME`` the built-in NAME's (the variant's parameters
    where NAME has them, NAME's defaults otherwise)."""
    if not as_name:
        return method.claim, dict(method.params)
    from .registry import builtin
    cls = builtin(as_name)
    return cls.claim, {**cls.defaults, **{k: v for k, v in method.params.items() if k in cls.defaults}}


def profile(method: Any, as_name: str = "") -> dict[str, Any]:
    """What checks may ask about a method: its claim (quantity, kind, target) and its tags."""
    claim, params = judged_claim(method, as_name)
    target = claim.target_value(params) if claim.kind != "none" else math.nan
    return {"claim": claim.quantity, "claim_kind": claim.kind, "target": target,
            "claim_text": claim.describe(params), **method.tags.as_dict()}


#: The names :func:`profile` gives check expressions, with their types.
PROFILE_TYPES = {"claim": "string", "claim_kind": "string", "target": "number",
                 **{name: "bool" for name in MethodTags.__dataclass_fields__}}

__all__ = ["Claim", "LOW_RANK", "MethodTags", "QUANTITIES", "MODEL_LEVEL", "SPECTRAL", "PROFILE_TYPES", "judged_claim", "profile"]
