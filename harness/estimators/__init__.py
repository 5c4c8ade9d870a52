"""Published estimators of a convolution's spectral norm, each with the claim its paper makes.

Every estimator is implemented from its paper (docs/references.md, docs/theory.md#bound-zoo)
in the arithmetic of the paper's reference code, and declares per layer whether its
number claims to be an upper bound, a lower bound, the exact norm or nothing
(:class:`Claim`). The ``bound_zoo`` suite judges those claims against certified float64
brackets (``harness.exact.conv_operator_norm``).

``make_estimator(name, **params)`` builds one; ``ESTIMATORS`` maps names to classes.
"""
from __future__ import annotations

from typing import Any

from .base import CLAIM_KINDS, Claim, ConvLayer, Estimator
from .delattre2024 import Delattre2024
from .gram_iteration import GramIteration
from .lipgrid import LipGrid
from .power_iteration import Lip4convPowerIteration, PowerIteration
from .reshape import MiyatoReshape, TsuzukuAlpha
from .sedghi import Sedghi2019
from .senderovich import Senderovich2022
from .singla_feizi import SinglaFeizi2021

ESTIMATORS: dict[str, type[Estimator]] = {cls.name: cls for cls in (
    Sedghi2019, Senderovich2022, GramIteration, Delattre2024, LipGrid, SinglaFeizi2021,
    PowerIteration, Lip4convPowerIteration, MiyatoReshape, TsuzukuAlpha)}


def make_estimator(name: str, **params: Any) -> Estimator:
    """The estimator called ``name`` with its constructor ``params`` (iterations, samples, seed)."""
    if name not in ESTIMATORS:
        raise KeyError(f"unknown estimator {name!r}; known: {', '.join(ESTIMATORS)}")
    try:
        return ESTIMATORS[name](**params)
    except TypeError as exc:
        raise TypeError(f"estimator {name!r}: {exc}") from None


__all__ = ["CLAIM_KINDS", "Claim", "ConvLayer", "ESTIMATORS", "Estimator", "make_estimator"]
