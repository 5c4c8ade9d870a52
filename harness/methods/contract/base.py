"""What every invariant works with: the contract model, a :class:`Subject` (the method's
factory and parameters), the result and exception types, and the shared helpers
(snapshots of state, effective weights, :func:`settle`, one training step)."""
from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Callable, Mapping

import torch
from torch import nn

from ..base import Method
from ..measure import ClaimMeasurement, claim_layers, evaluating, interpolate_gradient_norms

#: Input shape (without batch) of :func:`contract_model`.
INPUT_SHAPE = (2, 6, 6)
#: :func:`settle` stops when outputs and effective weights change by less than this
#: (relative) over ``SETTLE_CHUNK`` forwards, or after ``SETTLE_MAX_FORWARDS``.
SETTLE_RTOL = 1e-6
SETTLE_CHUNK = 25
SETTLE_MAX_FORWARDS = 3000

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


# --- subjects ------------------------------------------------------------------------------------

def contract_model(seed: int = 0, dtype: torch.dtype = torch.float32) -> nn.Module:
    """The small discriminator the invariants use (input :data:`INPUT_SHAPE`; zero padding;
    stride-1 and stride-2 convolutions, a transposed convolution, a linear head)."""
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Conv2d(2, 3, 3, stride=1, padding=1), nn.LeakyReLU(0.1),        # 2×6×6 -> 3×6×6
        nn.Conv2d(3, 4, 4, stride=2, padding=1), nn.LeakyReLU(0.1),        # -> 4×3×3
        nn.ConvTranspose2d(4, 3, 4, stride=2, padding=1), nn.LeakyReLU(0.1),  # -> 3×6×6
        nn.Flatten(), nn.Linear(3 * 6 * 6, 1)).to(dtype)


class _OwnsWeight(nn.Module):
    """A custom layer owning a ``weight`` no method knows how to normalise."""

    def __init__(self) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(2, 2))

    def forward(self, x):
        return x @ self.weight


def unsupported_models() -> dict[str, nn.Module]:
    """Models containing a layer a method must refuse, keyed by that layer's path."""
    return {
        "block.odd": nn.Sequential(OrderedDict(
            conv=nn.Conv2d(2, 2, 1),
            block=nn.Sequential(OrderedDict(act=nn.ReLU(), odd=nn.Bilinear(2, 2, 2))))),
        "block.custom": nn.Sequential(OrderedDict(
            lin=nn.Linear(2, 2), block=nn.Sequential(OrderedDict(act=nn.ReLU(), custom=_OwnsWeight())))),
    }


class Subject:
    """A factory and its parameters; builds fresh methods and applied contract models."""

    def __init__(self, factory: Factory, params: Mapping[str, Any] | None, seed: int) -> None:
        self.factory, self.seed = factory, seed
        self.params = dict(params or {})
        self.method = self.build()
        self.claim = self.method.claim
        gen = torch.Generator().manual_seed(seed)
        self.x = torch.randn((4, *INPUT_SHAPE), generator=gen)
        self.real = torch.randn((16, *INPUT_SHAPE), generator=gen)
        self.fake = torch.randn((16, *INPUT_SHAPE), generator=gen) + 1.0

    def build(self, **override: Any) -> Method:
        method = self.factory(**{**self.params, **override})
        if not isinstance(method, Method):
            raise Violation(f"the factory returned {type(method).__name__}, not a harness.methods.Method")
        return method

    def applied(self, seed_offset: int = 0, dtype: torch.dtype = torch.float32,
                method: Method | None = None) -> tuple[Method, nn.Module]:
        """A fresh method applied to a fresh contract model; the model ``apply`` returned."""
        method = method or self.build()
        model = method.apply(contract_model(self.seed + seed_offset, dtype))
        if not isinstance(model, nn.Module):
            raise Violation(f"apply returned {type(model).__name__}, not the model to use "
                            "(apply must return an nn.Module)")
        return method, model


def params_for_contract(params: Mapping[str, Any] | None) -> dict[str, Any]:
    """A model-specific ``input_shape`` parameter is replaced by the contract model's."""
    params = dict(params or {})
    if params.get("input_shape") is not None:
        params["input_shape"] = INPUT_SHAPE
    return params


# --- helpers ---------------------------------------------------------------------------------

def snapshot(model: nn.Module) -> dict[str, torch.Tensor | None]:
    """Copies of every parameter and buffer (non-persistent and ``None`` buffers included)."""
    out: dict[str, torch.Tensor | None] = {}
    for name, t in model.named_parameters():
        out["param " + name] = t.detach().clone()
    for mod_name, module in model.named_modules():
        for name, t in module._buffers.items():  # non-persistent and None buffers too
            out[f"buffer {mod_name}.{name}".replace(" .", " ")] = None if t is None else t.detach().clone()
    return out


def state_changes(before: Mapping[str, Any], after: Mapping[str, Any]) -> list[str]:
    """What differs between two :func:`snapshot` s, with the size of each change."""
    def label(t: Any) -> str:
        return "absent" if isinstance(t, str) else "None" if t is None else f"shape {tuple(t.shape)}"

    out = []
    for key in sorted(set(before) | set(after)):
        a, b = before.get(key, "absent"), after.get(key, "absent")
        if isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor) and a.shape == b.shape:
            if not torch.equal(a, b):
                diff = float((a.double() - b.double()).abs().max())
                out.append(f"{key} (max |change| {diff:.3g})")
        elif label(a) != label(b):
            out.append(f"{key} ({label(a)} -> {label(b)})")
    return out


def effective(model: nn.Module, x: torch.Tensor) -> dict[str, torch.Tensor]:
    """Eval-mode model output and every standard layer's effective weight (no state change)."""
    with evaluating(model):
        out = {"output": model(x).detach().clone()}
        for name, layer, how in claim_layers(model):
            if how == "weight":
                out[f"{name}.weight"] = layer.weight.detach().clone()
    return out


def differences(a: Mapping[str, torch.Tensor], b: Mapping[str, torch.Tensor]) -> list[str]:
    """Entries of two :func:`effective` results that are not bit-identical, with their
    relative difference."""
    out = []
    for key in a:
        if key not in b or a[key].shape != b[key].shape:
            out.append(f"{key} missing or reshaped")
        elif not torch.equal(a[key], b[key]):
            rel = float((a[key] - b[key]).norm() / a[key].norm().clamp_min(1e-30))
            out.append(f"{key} differs (relative {rel:.3g})")
    return out


def settle(model: nn.Module, x: torch.Tensor) -> int:
    """Training-mode forwards without grad (each advances a power iteration by its
    ``n_power_iterations``; the stored weight is untouched) until the eval-mode output and
    effective weights change by less than :data:`SETTLE_RTOL` over :data:`SETTLE_CHUNK`
    forwards, or :data:`SETTLE_MAX_FORWARDS`; returns the number of forwards."""
    prev = effective(model, x)
    done = 0
    while done < SETTLE_MAX_FORWARDS:
        with torch.no_grad():
            for _ in range(SETTLE_CHUNK):
                model(x)
        done += SETTLE_CHUNK
        cur = effective(model, x)
        change = max(float((cur[k] - prev[k]).norm() / cur[k].norm().clamp_min(1e-30)) for k in cur)
        if not change >= SETTLE_RTOL:  # converged, or not finite (nothing to wait for)
            break
        prev = cur
    return done


def failures(measured: list[ClaimMeasurement], rtol: float) -> list[str]:
    """The measurements whose error exceeds ``rtol`` (or is not a number), described."""
    return [m.describe() for m in measured if not m.error <= rtol]


def stored_weight(layer: nn.Module) -> torch.Tensor:
    """The weight parameter an optimiser updates (a parametrization's ``original``)."""
    plist = getattr(getattr(layer, "parametrizations", None), "weight", None)
    return plist.original if plist is not None else layer.weight


def weight_layers(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """The claim layers that expose a ``weight`` (not wrappers measured as a whole)."""
    return [(n, layer) for n, layer, _ in claim_layers(model)
            if isinstance(getattr(layer, "weight", None), torch.Tensor)]


#: :func:`push_away` puts the median input-gradient norm at interpolates here: above a
#: gradient penalty's target 1, so one-sided penalties (which ignore norms below 1) pull too.
PUSHED_GRADIENT_NORM = 3.0


def push_away(s: "Subject", model: nn.Module) -> None:
    """Move the model away from a penalty claim's target so the penalty's gradient is not
    zero by construction: double every stored weight (orthonormal weights get singular
    values 2), or for ``interpolate_gradient`` scale the last layer so the median
    input-gradient norm at the reference interpolates is :data:`PUSHED_GRADIENT_NORM`
    (the network's output, hence its input gradient, is linear in the last weight)."""
    layers = weight_layers(model)
    if s.claim.quantity != "interpolate_gradient":
        with torch.no_grad():
            for _, layer in layers:
                stored_weight(layer).mul_(2.0)
        return
    with evaluating(model):
        norms = interpolate_gradient_norms(model, s.real, s.fake, s.seed)
    with torch.no_grad():
        stored_weight(layers[-1][1]).mul_(PUSHED_GRADIENT_NORM / float(norms.median()))


def train_step(method: Method, model: nn.Module, x: torch.Tensor, lr: float = 1e-2) -> None:
    """One SGD step on ``mean D(x)`` plus the method's penalty, then ``after_step``."""
    opt = torch.optim.SGD(model.parameters(), lr=lr)
    opt.zero_grad()
    model.train()
    loss = model(x).mean() + method.penalty(model, x, x + 1.0)
    loss.backward()
    opt.step()
    method.after_step(model)
