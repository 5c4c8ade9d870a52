"""The judge's view of one contract run: the claim, the judge's request, the defendant's
observations, and the helpers every invariant uses to read them (lipbench's process only)."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from harness.observe.verify import (CONSISTENCY_RTOL, Unobservable, measure_layers, model_difference,
                                    rebuild)

from ..claims import Claim
from ..forward_map import ClaimMeasurementError
from ..measure import ClaimMeasurement, evaluating, interpolate_gradient_norms, interpolate_measurement
from .base import Violation, contract_model, unknown_model


@dataclass
class Judged:
    """A contract run as the judge sees it."""

    claim: Claim
    params: dict[str, Any]
    request: dict[str, Any]
    scenarios: dict[str, Any]
    seconds: dict[str, float] = field(default_factory=dict)

    @property
    def seed(self) -> int:
        return int(self.request["seed"])

    @property
    def plan(self) -> dict[str, Any]:
        return self.request["plan"]

    @property
    def target(self) -> float:
        return self.claim.target_value(self.params)

    def plain(self, path: str = "") -> nn.Module:
        """lipbench's model of the run (``path``: the unknown-layer model holding it)."""
        with torch.random.fork_rng(devices=[]):
            return unknown_model(path, self.seed) if path else contract_model(self.seed)

    def scenario(self, name: str) -> dict[str, Any]:
        """A scenario's observations; a violation when the method raised in it or it is missing."""
        found = self.scenarios.get(name)
        if found is None:
            raise Violation(f"the defendant reported no observations of {name!r}")
        if "raised" in found:
            raise Violation(f"raised {found['raised']}")
        return found

    def measure(self, record: dict[str, Any], path: str = "") -> list[ClaimMeasurement]:
        """The claim on every layer of an observed record (a violation when one cannot be read)."""
        plain = self.plain(path)
        plan = self.request["unknown"][path] if path else self.plan
        try:
            return measure_layers(self.claim, self.target, plain, plan, record)
        except (Unobservable, ClaimMeasurementError) as exc:
            raise Violation(str(exc)) from None

    def model(self, record: dict[str, Any]) -> nn.Module:
        """The contract model rebuilt from an observed record, after checking that it computes
        what the method's model computed (a violation otherwise)."""
        rel = model_difference(self.plain(), self.plan, record)
        if not rel <= CONSISTENCY_RTOL:
            raise Violation(f"the model's outputs differ by {rel:.3g} (relative) from lipbench's model carrying "
                            "its reported effective weights: it computes something it does not report")
        return rebuild(self.plain(), self.plan, record)

    def interpolate_norms(self, record: dict[str, Any]) -> torch.Tensor:
        """Input-gradient norms at the judge's interpolates, on the rebuilt model (float64)."""
        model = self.model(record)
        with evaluating(model):
            return interpolate_gradient_norms(model, self.request["real"].double(), self.request["fake"].double(),
                                              self.seed)

    def distance(self, record: dict[str, Any]) -> float:
        """How far an observed model is from a penalty claim's target: the mean relative distance
        (or excess, one-sided) of the norms at interpolates, or the mean over layers."""
        if self.claim.per_layer:
            found = self.measure(record)
            return sum(m.error for m in found) / len(found)
        return interpolate_measurement(self.claim, self.target, self.interpolate_norms(record)).error


def failures(measured: list[ClaimMeasurement], rtol: float) -> list[str]:
    """The measurements whose error exceeds ``rtol`` (or is not a number), described."""
    return [m.describe() for m in measured if not m.error <= rtol]


__all__ = ["Judged", "failures"]
