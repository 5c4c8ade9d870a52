"""What a published spectral-norm estimator sees and what it claims.

A :class:`ConvLayer` is a 2-D convolution as a linear map: its weight, its geometry and
the size of its input (Lin et al. 2021 §2, ``W̃``; ``harness.layers``). An
:class:`Estimator` turns it into one number, computed the way its paper's reference code
does (dtype included), and declares per layer what that number claims to be
(:class:`Claim`): an upper bound, a lower bound, the exact norm, or nothing. The claim
is data, judged by lipbench against a certified float64 bracket of ``‖W̃‖``
(``harness.exact.conv_operator_norm``), never against another estimator, up to the
rounding of the estimator's own arithmetic (:attr:`Estimator.tolerance`).
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, replace
from typing import ClassVar, Sequence

import torch
from torch import nn

from harness.layers import LayerGeometry, apply_adjoint, apply_operator, geometry, output_shape
from harness.runners.spec import FLOAT64_RTOL

CLAIM_KINDS = ("upper", "lower", "exact", "none")
#: Relative rounding allowed to a float32 estimator's claim. Its reductions run over up to
#: ~1e6 terms on these layers (a power iteration's inner product over a 128x58x58 output),
#: well beyond the ~1e4 of ``harness.runners.spec.FLOAT32_TOL``: measured up to 1.5e-5
#: (lip4conv's power iteration on ResNet-18's layer2.0.downsample.0 lies 1.47e-5 above the
#: certified norm in float32 and 1e-12 below it in float64); 1e-4 leaves a factor 6.
FLOAT32_CLAIM_TOL = 1e-4


@dataclass(frozen=True)
class ConvLayer:
    """A bias-free ``Conv2d`` map: ``weight`` ``(c_out, c_in, k_h, k_w)`` on inputs ``(c_in, h, w)``.

    Only single-group, undilated 2-D convolutions: the shapes every estimator's paper
    covers. The weight keeps its dtype (the layers under test are float32); estimators
    cast it to their own.
    """

    name: str
    weight: torch.Tensor
    geometry: LayerGeometry
    input_shape: tuple[int, int, int]

    def __post_init__(self) -> None:
        g, w = self.geometry, self.weight
        if g.kind != "conv2d":
            raise ValueError(f"layer {self.name}: estimators take Conv2d layers, got {g.kind}")
        if g.groups != 1 or tuple(g.dilation) != (1, 1):
            raise ValueError(f"layer {self.name}: groups={g.groups}, dilation={tuple(g.dilation)}; "
                             "the estimators' papers cover single-group undilated convolutions")
        if w.dim() != 4 or w.shape[1] != self.input_shape[0]:
            raise ValueError(f"layer {self.name}: weight {tuple(w.shape)} does not read "
                             f"{self.input_shape[0]} input channels")
        if not bool(torch.isfinite(w).all()):
            raise ValueError(f"layer {self.name}: the weight has non-finite entries")

    @classmethod
    def from_module(cls, name: str, module: nn.Conv2d, input_shape: Sequence[int]) -> "ConvLayer":
        """The layer's effective weight (detached, on the CPU) at input ``(c_in, h, w)`` (a batch dim is dropped)."""
        shape = tuple(int(s) for s in input_shape)[-3:]
        return cls(name, module.weight.detach().cpu().clone(), geometry(module, name), shape)

    def with_padding_mode(self, mode: str) -> "ConvLayer":
        """The same weight and geometry with another ``padding_mode`` (``zeros`` or ``circular``)."""
        return replace(self, geometry=replace(self.geometry, padding_mode=mode))

    @property
    def in_hw(self) -> tuple[int, int]:
        return self.input_shape[1], self.input_shape[2]

    @property
    def kernel(self) -> tuple[int, int]:
        return int(self.weight.shape[2]), int(self.weight.shape[3])

    @property
    def stride(self) -> tuple[int, int]:
        return tuple(self.geometry.stride)

    @property
    def padding(self) -> tuple[int, int]:
        return tuple(self.geometry.padding)

    @property
    def circular(self) -> bool:
        return self.geometry.padding_mode == "circular"

    @property
    def out_hw(self) -> tuple[int, int]:
        return output_shape(self.geometry, self.weight, (1, *self.input_shape))[-2:]

    def exactly_periodic(self) -> bool:
        """Circular padding whose outputs are one period of the strided periodic map (``s | n``, ``m = n/s``)."""
        return self.circular and all(n % s == 0 and m == n // s
                                     for n, s, m in zip(self.in_hw, self.stride, self.out_hw))

    def kernel_fits(self) -> bool:
        """The kernel is no larger than the input on either axis (no tap wraps onto another)."""
        return all(k <= n for k, n in zip(self.kernel, self.in_hw))

    def one_period(self) -> bool:
        """Circular padding computing one period of the strided periodic map, kernel within the input:
        the layer the frequency-domain theorems describe."""
        return self.exactly_periodic() and self.kernel_fits()

    def matvec(self, x: torch.Tensor, weight: torch.Tensor | None = None) -> torch.Tensor:
        """``W̃x`` for a batch ``x`` (``weight`` defaults to the layer's, in ``x``'s dtype)."""
        w = (self.weight if weight is None else weight).to(x.dtype)
        return apply_operator(self.geometry, w, x)

    def rmatvec(self, y: torch.Tensor, weight: torch.Tensor | None = None) -> torch.Tensor:
        """``W̃ᵀy`` for a batch ``y`` (the vector-Jacobian product of :meth:`matvec`)."""
        w = (self.weight if weight is None else weight).to(y.dtype)
        return apply_adjoint(self.geometry, w, y, (y.shape[0], *self.input_shape))


@dataclass(frozen=True)
class Claim:
    """What an estimate claims to be on one layer, and why (paper, section, scope).

    ``kind``: ``upper`` (estimate ≥ ‖W̃‖), ``lower`` (estimate ≤ ‖W̃‖), ``exact`` (both) or
    ``none`` (the layer is outside what the paper states; the ratio is still reported).
    ``known_miss`` documents why the claim is expected to fail on this layer (the
    estimator computes another map there), so a check can confirm the finding.
    """

    kind: str
    scope: str
    known_miss: str = ""

    def __post_init__(self) -> None:
        if self.kind not in CLAIM_KINDS:
            raise ValueError(f"claim kind must be one of {CLAIM_KINDS}, got {self.kind!r}")
        if self.known_miss and self.kind == "none":
            raise ValueError("a known miss needs a claim to miss")

    @property
    def bounds_above(self) -> bool:
        """The estimate claims to be at least ``‖W̃‖`` (upper bound or exact)."""
        return self.kind in ("upper", "exact")

    @property
    def bounds_below(self) -> bool:
        """The estimate claims to be at most ``‖W̃‖`` (lower bound or exact)."""
        return self.kind in ("lower", "exact")


#: The claim of a frequency-domain bound on a circular layer outside :meth:`ConvLayer.one_period`.
NOT_ONE_PERIOD = Claim("none", "circular padding that is not one period of the strided map")


class Estimator(ABC):
    """A published estimator of ``‖W̃‖₂``; subclasses set ``name``, ``paper`` and ``dtype``.

    ``paper`` cites ``docs/references.md`` with section and equation; ``dtype`` is the
    arithmetic of the paper's reference code. :meth:`estimate` may not modify the layer.
    """

    name: ClassVar[str] = ""
    paper: ClassVar[str] = ""
    dtype: torch.dtype = torch.float32

    @property
    def tolerance(self) -> float:
        """Relative rounding of the estimator's arithmetic: a claim holds up to it.

        float64: ``harness.runners.spec.FLOAT64_RTOL`` (FFT and SVD backward errors stay below
        1e-12 at these sizes); float32: :data:`FLOAT32_CLAIM_TOL`.
        """
        return FLOAT64_RTOL if self.dtype == torch.float64 else FLOAT32_CLAIM_TOL

    @abstractmethod
    def claim(self, layer: ConvLayer) -> Claim:
        """What :meth:`estimate` claims on ``layer`` (per the paper's stated scope)."""

    @abstractmethod
    def estimate(self, layer: ConvLayer) -> float:
        """The estimate of ``‖W̃‖₂`` for ``layer``."""

    def count(self, value: int, what: str = "iteration") -> int:
        """A positive integer parameter, or a ``ValueError`` naming the estimator."""
        if int(value) != value or value < 1:
            raise ValueError(f"{self.name} needs at least one {what}, got {value}")
        return int(value)

    def describe(self) -> str:
        return f"{self.name} ({self.paper}; {str(self.dtype).replace('torch.', '')})"
