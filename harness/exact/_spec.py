"""Normalised description of a layer's linear map, in float64 on the CPU.

Every convolution the exact references handle is rewritten as one forward 2-D
cross-correlation (what ``torch.nn.functional.conv2d`` computes):

* ``conv1d`` on length ``n`` is ``conv2d`` on a ``1 x n`` image with a ``1 x k`` kernel;
* ``conv_transpose2d`` is, by definition, the adjoint of the ``conv2d`` with the same
  weight, stride, padding, dilation and groups acting on inputs of the transposed
  layer's *output* size, so it has the same singular values (``transposed=True``
  records that the real layer maps the other way). With ``output_padding >= stride``
  (allowed by torch only when ``dilation > output_padding``) that ``conv2d`` has more
  outputs than the transposed layer has inputs; ``crop`` then keeps the first ones.

Bad input raises :class:`ValueError` with a message naming what is wrong; non-finite
weights are rejected before any arithmetic, so no NaN can come out.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F

KINDS = ("linear", "conv1d", "conv2d", "conv_transpose2d")
PADDING_MODES = ("zeros", "circular")

DTYPE = torch.float64


def as_float64(weight, what: str = "weight") -> torch.Tensor:
    """``weight`` as a detached float64 CPU tensor; ``ValueError`` if not finite."""
    if isinstance(weight, np.ndarray):
        weight = torch.from_numpy(weight)
    if not isinstance(weight, torch.Tensor):
        raise ValueError(f"{what} must be a torch.Tensor or numpy array, got {type(weight).__name__}")
    if weight.is_complex():
        raise ValueError(f"{what} must be real, got dtype {weight.dtype}")
    w = weight.detach().to(device="cpu", dtype=DTYPE)
    if w.numel() == 0:
        raise ValueError(f"{what} is empty (shape {tuple(w.shape)})")
    if not bool(torch.isfinite(w).all()):
        bad = int((~torch.isfinite(w)).sum())
        raise ValueError(f"{what} has {bad} non-finite entries (NaN or inf); "
                         "no operator norm is defined")
    return w


#: Smallest positive subnormal float64; every flushed or rounded scaled entry is within it.
TINY = 2.0 ** -1074


def power_of_two_scaled(w: torch.Tensor) -> tuple[torch.Tensor, int, bool]:
    """``(w / 2^e, e, exact)`` with ``max|w / 2^e|`` in ``[1/2, 1)``.

    Scaling by a power of two is exact unless an entry falls below the normal range; then it
    is rounded, by at most ``2·2^-1075`` per entry after the two half-scalings (``exact`` is
    ``False`` and callers add :func:`flush_margin`). Every later square, product and Gram entry
    of the scaled weight is then far from under- and overflow.
    """
    top = float(w.abs().max()) if w.numel() else 0.0
    if top == 0.0:
        return w, 0, True
    e = math.frexp(top)[1]
    a = -e // 2
    scaled = w * 2.0 ** a * 2.0 ** (-e - a)  # each factor representable; products exact or rounded
    back = scaled * 2.0 ** (e + a) * 2.0 ** (-a)  # no overflow: |scaled·2^(e+a)| < 2^512
    return scaled, e, bool(torch.equal(back, w))


def flush_margin(per_entry: int, nonzeros: int) -> float:
    """Bound on ``‖A_E‖₂ ≤ ‖A_E‖_F`` for the scaling error ``E`` (``|E_ij| ≤ 2^-1073``) of an operator
    with at most ``nonzeros`` non-zero entries, each a sum of at most ``per_entry`` weight entries."""
    return math.sqrt(float(nonzeros)) * float(per_entry) * 2.0 ** -1073


def scale_bracket(lower: float, upper: float, e: int, margin: float) -> tuple[float, float]:
    """``lower·2^e`` rounded down and ``upper·2^e`` rounded up, widened by ``margin`` (scaled units)
    first; ``ValueError`` if the upper end exceeds float64's range."""
    if margin:
        lower = max(math.nextafter(lower - margin, -math.inf), 0.0)
        upper = math.nextafter(upper + margin, math.inf)
    lo = math.ldexp(lower, e)
    if lo and math.ldexp(lo, -e) != lower:
        lo = math.nextafter(lo, 0.0)
    hi = math.ldexp(upper, e) if upper != math.inf else math.inf
    if hi == math.inf and upper != math.inf:
        raise ValueError(f"the operator norm, about {upper:.3g} x 2^{e}, exceeds float64's range")
    if hi and hi != math.inf and math.ldexp(hi, -e) != upper:
        hi = math.nextafter(hi, math.inf)
    return lo, hi


def _pair(value, name: str, dims: int) -> tuple[int, ...]:
    if isinstance(value, (int, np.integer)):
        out = (int(value),) * dims
    else:
        out = tuple(int(v) for v in value)
    if len(out) != dims:
        raise ValueError(f"{name} must be an int or a {dims}-tuple, got {value!r}")
    return out


@dataclass(frozen=True)
class ConvSpec:
    """A forward 2-D cross-correlation ``x (c_in, H, W) -> y (c_out, m_h, m_w)``.

    ``weight`` has shape ``(c_out, c_in // groups, k_h, k_w)`` (float64, CPU).
    """

    weight: torch.Tensor
    in_hw: tuple[int, int]
    stride: tuple[int, int]
    padding: tuple[int, int]
    dilation: tuple[int, int]
    groups: int
    padding_mode: str
    kind: str
    transposed: bool = False
    crop: tuple[int, int] | None = None

    # -- sizes ---------------------------------------------------------------------
    @property
    def c_out(self) -> int:
        return self.weight.shape[0]

    @property
    def c_in(self) -> int:
        return self.weight.shape[1] * self.groups

    @property
    def kernel(self) -> tuple[int, int]:
        return tuple(self.weight.shape[2:])

    @property
    def effective_kernel(self) -> tuple[int, int]:
        """Dilated kernel extent ``d (k - 1) + 1`` per axis."""
        return tuple(d * (k - 1) + 1 for d, k in zip(self.dilation, self.kernel))

    @property
    def natural_out_hw(self) -> tuple[int, int]:
        return tuple((n + 2 * p - e) // s + 1 for n, p, e, s in
                     zip(self.in_hw, self.padding, self.effective_kernel, self.stride))

    @property
    def out_hw(self) -> tuple[int, int]:
        return self.crop if self.crop is not None else self.natural_out_hw

    @property
    def x_shape(self) -> tuple[int, int, int, int]:
        return (1, self.c_in, *self.in_hw)

    @property
    def y_shape(self) -> tuple[int, int, int, int]:
        return (1, self.c_out, *self.out_hw)

    @property
    def x_dim(self) -> int:
        return math.prod(self.x_shape)

    @property
    def y_dim(self) -> int:
        return math.prod(self.y_shape)

    # -- the map and its adjoint (float64, batched) --------------------------------
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``y = C x`` for ``x`` of shape ``(B, c_in, H, W)``."""
        if self.padding_mode == "circular":
            ph, pw = self.padding
            x = F.pad(x, (pw, pw, ph, ph), mode="circular")
            pad = (0, 0)
        else:
            pad = self.padding
        y = F.conv2d(x, self.weight, stride=self.stride, padding=pad,
                     dilation=self.dilation, groups=self.groups)
        if self.crop is not None:
            y = y[..., : self.crop[0], : self.crop[1]]
        return y

    def adjoint(self, y: torch.Tensor) -> torch.Tensor:
        """``x = Cᵀ y`` for ``y`` of shape ``(B, c_out, m_h, m_w)`` (explicit transpose)."""
        if self.crop is not None:
            full = self.natural_out_hw
            y = F.pad(y, (0, full[1] - y.shape[-1], 0, full[0] - y.shape[-2]))
        if self.padding_mode == "circular":
            ph, pw = self.padding
            H, W = self.in_hw
            size = (H + 2 * ph, W + 2 * pw)
            z = self._transpose_to(y, size, (0, 0))
            # fold the wrapped border back: circular padding copies x[(j - p) mod n]
            rows = (torch.arange(size[0]) - ph) % H
            cols = (torch.arange(size[1]) - pw) % W
            out = z.new_zeros(z.shape[0], z.shape[1], H, size[1]).index_add_(2, rows, z)
            out = out.new_zeros(z.shape[0], z.shape[1], H, W).index_add_(3, cols, out)
            return out
        return self._transpose_to(y, self.in_hw, self.padding)

    def _transpose_to(self, y: torch.Tensor, size: Sequence[int], padding) -> torch.Tensor:
        m = y.shape[-2:]
        out_pad = tuple(n - ((mm - 1) * s - 2 * p + e)
                        for n, mm, s, p, e in zip(size, m, self.stride, padding, self.effective_kernel))
        return F.conv_transpose2d(y, self.weight, stride=self.stride, padding=padding,
                                  output_padding=out_pad, groups=self.groups,
                                  dilation=self.dilation)

    # -- the layer's own direction --------------------------------------------------
    def layer_matvec(self, x: torch.Tensor) -> torch.Tensor:
        """The real layer's map (the adjoint of ``forward`` for transposed layers)."""
        return self.adjoint(x) if self.transposed else self.forward(x)

    def layer_rmatvec(self, y: torch.Tensor) -> torch.Tensor:
        return self.forward(y) if self.transposed else self.adjoint(y)

    @property
    def layer_in_shape(self) -> tuple[int, ...]:
        return self.y_shape if self.transposed else self.x_shape

    @property
    def layer_out_shape(self) -> tuple[int, ...]:
        return self.x_shape if self.transposed else self.y_shape

    @property
    def frobenius_bound(self) -> float:
        """``‖W̃‖_F ≤ √(outputs per channel)·‖W‖_F`` (each output reads each tap at most once)."""
        return math.sqrt(math.prod(self.out_hw)) * float(torch.linalg.vector_norm(self.weight)) * (1 + 2.0 ** -50)

    @property
    def terms(self) -> int:
        """Most products summed in one entry of ``W̃x`` or ``W̃ᵀy``."""
        return max(self.weight.shape[0] // self.groups, self.weight.shape[1]) * math.prod(self.kernel)

    def split_groups(self) -> list["ConvSpec"]:
        """One single-group spec per group: the operator is block diagonal over groups."""
        if self.groups == 1:
            return [self]
        per = self.c_out // self.groups
        return [ConvSpec(self.weight[g * per:(g + 1) * per], self.in_hw, self.stride, self.padding,
                         self.dilation, 1, self.padding_mode, self.kind, self.transposed, self.crop)
                for g in range(self.groups)]


def make_spec(weight, input_hw, *, kind: str = "conv2d", stride=1, padding=0,
              padding_mode: str = "zeros", dilation=1, groups: int = 1,
              output_padding=0) -> ConvSpec:
    """Validate arguments and build the :class:`ConvSpec` of a convolution layer."""
    if kind not in KINDS or kind == "linear":
        raise ValueError(f"kind must be one of {', '.join(k for k in KINDS if k != 'linear')} "
                         f"for a convolution, got {kind!r}")
    if padding_mode not in PADDING_MODES:
        raise ValueError(f"padding_mode must be one of {PADDING_MODES}, got {padding_mode!r} "
                         "(reflect/replicate padding is not a fixed linear map of this form)")
    w = as_float64(weight)
    dims = 1 if kind == "conv1d" else 2
    if w.dim() != dims + 2:
        raise ValueError(f"{kind} weight must have {dims + 2} dims (out, in/groups, *kernel), "
                         f"got shape {tuple(w.shape)}")
    hw = _pair(input_hw, "input size", dims)
    stride, padding, dilation = (_pair(v, n, dims) for v, n in
                                 ((stride, "stride"), (padding, "padding"), (dilation, "dilation")))
    output_padding = _pair(output_padding, "output_padding", dims)
    if any(n <= 0 for n in hw):
        raise ValueError(f"input size must be positive, got {hw}")
    if any(s <= 0 for s in stride) or any(d <= 0 for d in dilation):
        raise ValueError(f"stride and dilation must be positive, got stride={stride}, dilation={dilation}")
    if any(p < 0 for p in padding) or any(o < 0 for o in output_padding):
        raise ValueError(f"padding must be non-negative, got padding={padding}, "
                         f"output_padding={output_padding}")
    if groups <= 0:
        raise ValueError(f"groups must be positive, got {groups}")
    if dims == 1:
        w = w.unsqueeze(2)
        hw, stride, padding, dilation, output_padding = ((1, hw[0]), (1, stride[0]), (0, padding[0]),
                                                         (1, dilation[0]), (0, output_padding[0]))
    transposed = kind == "conv_transpose2d"
    if transposed:
        if padding_mode != "zeros":
            raise ValueError("conv_transpose2d supports only padding_mode='zeros'")
        if w.shape[0] % groups:
            raise ValueError(f"conv_transpose2d weight dim 0 ({w.shape[0]}) not divisible by groups={groups}")
        if any(o >= max(s, d) for o, s, d in zip(output_padding, stride, dilation)):
            raise ValueError(f"output_padding {output_padding} must be smaller than stride or dilation")
        # the transposed layer on inputs hw has outputs of this size ...
        eff = [d * (k - 1) + 1 for d, k in zip(dilation, w.shape[2:])]
        out = tuple((n - 1) * s - 2 * p + e + o for n, s, p, e, o in
                    zip(hw, stride, padding, eff, output_padding))
        if any(o <= 0 for o in out):
            raise ValueError(f"conv_transpose2d on input {hw} gives non-positive output size {out}")
        # ... and is the adjoint of conv2d(weight) on inputs of that size
        spec = ConvSpec(w, out, stride, padding, dilation, groups, padding_mode, kind, True)
        if spec.natural_out_hw != hw:
            spec = ConvSpec(w, out, stride, padding, dilation, groups, padding_mode, kind, True, hw)
        return spec
    if w.shape[0] % groups:
        raise ValueError(f"out channels ({w.shape[0]}) not divisible by groups={groups}")
    if padding_mode == "circular" and any(p > n for p, n in zip(padding, hw)):
        raise ValueError(f"circular padding {padding} larger than the input {hw}")
    spec = ConvSpec(w, hw, stride, padding, dilation, groups, padding_mode, kind)
    padded = tuple(n + 2 * p for n, p in zip(hw, padding))
    if any(e > n for e, n in zip(spec.effective_kernel, padded)):
        raise ValueError(f"{kind}: dilated kernel {spec.effective_kernel} is larger than the padded "
                         f"input {padded} (input {hw}, padding {padding}); the output would be empty")
    return spec
