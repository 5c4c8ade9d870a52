"""A family on one plain model, observed then judged (in one process: benchmarks and tests).

The defendant's side (:mod:`harness.observe.effective`: zero-learning-rate steps until the
method is at rest, then one eval-mode observation) and the judge's (:mod:`harness.observe.verify`:
the claim on every observed layer, and the certified ``σ_max`` / ``σ_min`` brackets of each
layer's observed operator) are the suites'; only the process boundary is left out.
"""
from __future__ import annotations

import copy
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Sequence

import torch
from torch import nn

from harness.observe.effective import observe_now, settle
from harness.observe.verify import _carrying, covered_layers, layer_map, make_plan, measure_layers

from ..measure import ClaimMeasurement, spectrum_of_layer, spectrum_of_map


#: Input shape (without batch) of :func:`circular_model`.
CIRCULAR_SHAPE = (2, 8, 8)


def circular_model(seed: int = 0) -> nn.Module:
    """A small discriminator with circular padding throughout (stride 1, stride 2 with k = 4 and
    with k = s = 2, a linear head): the geometry an orthogonal convolution can be orthogonal on."""
    torch.manual_seed(seed)
    return nn.Sequential(OrderedDict(
        conv1=nn.Conv2d(2, 4, 3, padding=1, padding_mode="circular"), act1=nn.LeakyReLU(0.1),
        conv2=nn.Conv2d(4, 8, 4, stride=2, padding=1, padding_mode="circular"), act2=nn.LeakyReLU(0.1),
        conv3=nn.Conv2d(8, 8, 2, stride=2, padding_mode="circular"), act3=nn.LeakyReLU(0.1),
        flat=nn.Flatten(), head=nn.Linear(8 * 2 * 2, 1)))


@dataclass(frozen=True)
class JudgedLayer:
    """One layer: the claim measured on it and its operator's ``σ_max``/``σ_min`` brackets."""

    measurement: ClaimMeasurement
    spectrum: dict[str, Any]


def observe_and_judge(method, plain: nn.Module, input_shape: Sequence[int], seed: int = 0,
                      budget: int = 400, spectrum: bool = True) -> list[JudgedLayer]:
    """Apply ``method`` to a copy of ``plain``, let it settle (at most ``budget`` steps), observe it
    in eval mode and judge every covered layer (``spectrum``: with its σ brackets too)."""
    plan = make_plan(plain, tuple(input_shape), seed + 1)
    model = method.apply(copy.deepcopy(plain))
    settle(model, method, plan["inputs"], plan, budget=budget)
    model.eval()
    with torch.no_grad():
        record = observe_now(model, plan)
    target = method.claim.target_value(method.params)
    found = measure_layers(method.claim, target, plain, plan, record)
    layers = dict(covered_layers(plain))
    out = []
    for m in found:
        spec: dict[str, Any] = {}
        if spectrum:
            shape = tuple(plan["shapes"][m.layer])
            how, value = layer_map(m.layer, layers[m.layer], record["layers"][m.layer], shape)
            spec = (spectrum_of_layer(_carrying(layers[m.layer], value[0]), shape) if how == "weight"
                    else spectrum_of_map(value))
        out.append(JudgedLayer(m, spec))
    return out


__all__ = ["CIRCULAR_SHAPE", "JudgedLayer", "circular_model", "observe_and_judge"]
