"""What both sides of the contract share: the contract models, the inputs the judge chooses
(:func:`make_request`), the result and exception types, and the tolerances' names.

The contract runs in two processes (:mod:`harness.observe`): the defendant builds the
method and runs each scenario of :mod:`.observe`, reporting plain observations; the judge
(:mod:`.claim_invariants`, :mod:`.state_invariants`) turns them into verdicts, computing
every number itself from lipbench's own models and the observed weights.
"""
from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Callable

import torch
from torch import nn

from harness.observe.verify import make_plan

from ..base import Method

#: Input shape (without batch) of :func:`contract_model`.
INPUT_SHAPE = (2, 6, 6)
#: Settling (:func:`harness.observe.effective.settle`, its tolerances there): at most this many
#: zero-learning-rate steps. Power iteration converges geometrically at rate (σ₂/σ₁)² per step;
#: the built-ins settle on the contract model within a window (200 steps) of converging.
SETTLE_BUDGET = 3000

Factory = Callable[..., Method]


@dataclass(frozen=True)
class InvariantResult:
    """One invariant's verdict: ``"pass"``, ``"violation"`` or ``"n/a"``, what it found, how long."""

    invariant: str
    verdict: str
    detail: str
    seconds: float


class Violation(AssertionError):
    """Raised by an invariant: the method breaks it (the message says how, with numbers)."""


class NotApplicable(Exception):
    """Raised by an invariant that does not apply to the method (the message says why)."""


def contract_model(seed: int = 0, dtype: torch.dtype = torch.float32) -> nn.Module:
    """The small discriminator the invariants use (input :data:`INPUT_SHAPE`; zero padding;
    stride-1 and stride-2 convolutions, the second without a bias, a transposed
    convolution, a linear head)."""
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Conv2d(2, 3, 3, stride=1, padding=1), nn.LeakyReLU(0.1),                # 2×6×6 -> 3×6×6
        nn.Conv2d(3, 4, 4, stride=2, padding=1, bias=False), nn.LeakyReLU(0.1),    # -> 4×3×3
        nn.ConvTranspose2d(4, 3, 4, stride=2, padding=1), nn.LeakyReLU(0.1),        # -> 3×6×6
        nn.Flatten(), nn.Linear(3 * 6 * 6, 1)).to(dtype)


class _OwnsWeight(nn.Module):
    """A custom layer owning a ``weight`` no claim covers: ``x ↦ x W`` on the last dim."""

    def __init__(self, n: int = 4) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.eye(n) + 0.1)

    def forward(self, x):
        return x @ self.weight


class _ChannelBilinear(nn.Bilinear):
    """``nn.Bilinear`` of the channels with themselves, at every position."""

    def forward(self, x):  # type: ignore[override]
        y = x.movedim(1, -1)
        return super().forward(y, y).movedim(-1, 1)


#: Models holding a layer no per-layer claim covers, keyed by that layer's path, with their
#: input shapes (a method may refuse them, naming the layer, or leave that layer alone).
UNKNOWN_MODELS: dict[str, tuple[Callable[[], nn.Module], tuple[int, ...]]] = {
    "block.odd": (lambda: nn.Sequential(OrderedDict(
        conv=nn.Conv2d(2, 2, 1), block=nn.Sequential(OrderedDict(act=nn.ReLU(), odd=_ChannelBilinear(2, 2, 2))))),
        (2, 3, 3)),
    "block.custom": (lambda: nn.Sequential(OrderedDict(
        lin=nn.Linear(4, 4), block=nn.Sequential(OrderedDict(act=nn.ReLU(), custom=_OwnsWeight())))),
        (4,)),
}


def unknown_model(path: str, seed: int) -> nn.Module:
    """The model of :data:`UNKNOWN_MODELS` holding the layer ``path``, seeded."""
    torch.manual_seed(seed)
    return UNKNOWN_MODELS[path][0]()


def params_for_contract(params: dict[str, Any] | None) -> dict[str, Any]:
    """A model-specific ``input_shape`` parameter is replaced by the contract model's."""
    params = dict(params or {})
    if params.get("input_shape") is not None:
        params["input_shape"] = INPUT_SHAPE
    return params


def make_request(seed: int) -> dict[str, Any]:
    """Everything the judge chooses, as plain data: the inputs of the model and of each of its
    layers (one plan per model: the contract model, and each model of :data:`UNKNOWN_MODELS`),
    real and fake batches for penalties (the global torch RNG state is left as it was)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.random.fork_rng(devices=[]):
        return {"seed": int(seed),
                "plan": make_plan(contract_model(seed), INPUT_SHAPE, seed + 1),
                "unknown": {path: make_plan(unknown_model(path, seed), shape, seed + 2)
                            for path, (_, shape) in UNKNOWN_MODELS.items()},
                "real": torch.randn((16, *INPUT_SHAPE), generator=gen),
                "fake": torch.randn((16, *INPUT_SHAPE), generator=gen) + 1.0}


def direction(shape, seed: int, name: str, k: int) -> torch.Tensor:
    """The ``k``-th float64 direction for the parameter ``name`` of ``shape`` (unit norm; the
    same in both processes: the judge recomputes it)."""
    gen = torch.Generator().manual_seed((seed * 1_000_003 + k * 7919 + sum(map(ord, name)) * 31) % 2**62)
    d = torch.randn(tuple(shape), generator=gen, dtype=torch.float64)
    return d / d.norm().clamp_min(1e-300)


def cotangent(shape, seed: int) -> torch.Tensor:
    """The float64 output weights ``g`` of the gradient check (``∇⟨g, D(x)⟩``)."""
    return torch.randn(tuple(shape), generator=torch.Generator().manual_seed(seed + 17), dtype=torch.float64)


__all__ = ["Factory", "INPUT_SHAPE", "InvariantResult", "NotApplicable", "SETTLE_BUDGET", "UNKNOWN_MODELS", "Violation", "contract_model", "cotangent", "direction",
           "make_request", "params_for_contract", "unknown_model"]
