"""Exact Lipschitz constants of pooling layers at their real input size.

Every pooling torch offers works per channel on windows that are products of one window
per spatial axis, so it is described here by the list of input indices each output
reads along each axis (:func:`axis_windows`, following torch's output-size formulas for
padding, dilation and ``ceil_mode``; adaptive pooling reads
``[⌊i·n/o⌋, ⌈(i+1)·n/o⌉)``).

* Average pooling is linear: per channel the operator is ``A_h ⊗ A_w`` (the divisor is a
  product of per-axis counts in every torch mode, or a constant with
  ``divisor_override``), so ``‖pool‖₂ = σ₁(A_h)·σ₁(A_w)`` (the norm of a Kronecker product
  is the product of the norms; the channels are identical diagonal blocks). This covers
  non-divisible adaptive pooling and upsampling, e.g. VGG's ``AdaptiveAvgPool2d`` from
  1x1 to 7x7 (``A = 1₇``, norm 7).
* Max pooling: ``|max a − max b| ≤ max|a − b|``, so ``‖pool(x) − pool(y)‖² ≤ r‖x − y‖²``
  with ``r = r_h r_w`` the largest number of windows reading one pixel; and ``√r`` is
  attained (make that pixel the unique maximum of every window containing it: the
  Jacobian then copies it ``r`` times). So ``√r`` is the exact constant.

:func:`check_windows` compares the description with torch's own output on the probe
input, so a mismatch in semantics is an error, never a wrong number.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch

from ._spec import as_float64
from .certify import dense_matrix_norm
from .plans import U, sqrt_down, sqrt_up, up


@dataclass(frozen=True)
class PoolSpec:
    """A pooling layer, normalised: per-axis windows and, for averages, per-axis weights."""

    kind: str  # "avg" or "max"
    windows: tuple[tuple[tuple[int, ...], ...], ...]  # per axis, per output: input indices
    divisors: tuple[tuple[float, ...], ...] | None = None  # per axis, per output (avg only)
    scale: float = 1.0  # divisor_override folded in (avg only)


def _tuple(value, dims: int, name: str) -> tuple[int, ...]:
    if value is None:
        return (None,) * dims
    if isinstance(value, int):
        return (value,) * dims
    out = tuple(value)
    if len(out) == 1 and dims > 1:
        out = out * dims
    if len(out) != dims:
        raise ValueError(f"pooling {name} {value!r} does not have {dims} entries")
    return out


def _out_size(n: int, k: int, s: int, p: int, d: int, ceil_mode: bool) -> int:
    """torch's pooling output size (``pooling_output_shape`` in ATen)."""
    span = n + 2 * p - d * (k - 1) - 1
    out = (span + (s - 1 if ceil_mode else 0)) // s + 1
    if ceil_mode and (out - 1) * s >= n + p:
        out -= 1
    return out


def axis_windows(n: int, k: int, s: int, p: int = 0, d: int = 1,
                 ceil_mode: bool = False) -> tuple[tuple[int, ...], ...]:
    """Input indices (in ``[0, n)``) read by each output of a sliding window along one axis."""
    m = _out_size(n, k, s, p, d, ceil_mode)
    return tuple(tuple(i for i in (o * s - p + d * t for t in range(k)) if 0 <= i < n)
                 for o in range(m))


def adaptive_windows(n: int, o: int) -> tuple[tuple[int, ...], ...]:
    """Windows of adaptive pooling from ``n`` to ``o``: ``[⌊i n/o⌋, ⌈(i+1) n/o⌉)``."""
    return tuple(tuple(range((i * n) // o, -(-((i + 1) * n) // o))) for i in range(o))


def _avg_divisors(n: int, k: int, s: int, p: int, ceil_mode: bool,
                  count_include_pad: bool) -> tuple[float, ...]:
    """Per-output divisor of ``avg_pool`` along one axis (ATen's ``AvgPoolKernel``)."""
    out = []
    for o in range(_out_size(n, k, s, p, 1, ceil_mode)):
        start = o * s - p
        end = min(start + k, n + p)
        size = end - start
        if not count_include_pad:
            size = min(end, n) - max(start, 0)
        out.append(float(size))
    return tuple(out)


def avg_pool_spec(spatial: Sequence[int], kernel, stride=None, padding=0, ceil_mode=False,
                  count_include_pad=True, divisor_override=None) -> PoolSpec:
    dims = len(spatial)
    k = _tuple(kernel, dims, "kernel_size")
    s = tuple(kk if ss is None else ss for kk, ss in zip(k, _tuple(stride, dims, "stride")))
    p = _tuple(padding, dims, "padding")
    windows = tuple(axis_windows(n, kk, ss, pp, 1, ceil_mode) for n, kk, ss, pp in zip(spatial, k, s, p))
    if divisor_override:
        divisors = tuple(tuple(1.0 for _ in w) for w in windows)
        scale = 1.0 / float(divisor_override)
    else:
        divisors = tuple(_avg_divisors(n, kk, ss, pp, ceil_mode, count_include_pad)
                         for n, kk, ss, pp in zip(spatial, k, s, p))
        scale = 1.0
    return PoolSpec("avg", windows, divisors, scale)


def adaptive_pool_spec(kind: str, spatial: Sequence[int], output_size) -> PoolSpec:
    dims = len(spatial)
    out = _tuple(output_size, dims, "output_size")
    out = tuple(n if o is None else o for n, o in zip(spatial, out))
    windows = tuple(adaptive_windows(n, o) for n, o in zip(spatial, out))
    divisors = tuple(tuple(float(len(w)) for w in ws) for ws in windows) if kind == "avg" else None
    return PoolSpec(kind, windows, divisors)


def max_pool_spec(spatial: Sequence[int], kernel, stride=None, padding=0, dilation=1,
                  ceil_mode=False) -> PoolSpec:
    dims = len(spatial)
    k = _tuple(kernel, dims, "kernel_size")
    s = tuple(kk if ss is None else ss for kk, ss in zip(k, _tuple(stride, dims, "stride")))
    p, d = _tuple(padding, dims, "padding"), _tuple(dilation, dims, "dilation")
    return PoolSpec("max", tuple(axis_windows(n, kk, ss, pp, dd, ceil_mode)
                                 for n, kk, ss, pp, dd in zip(spatial, k, s, p, d)))


def axis_matrix(windows: Sequence[Sequence[int]], divisors: Sequence[float], n: int) -> torch.Tensor:
    """The ``(outputs, n)`` averaging matrix of one axis (float64)."""
    a = torch.zeros(len(windows), n, dtype=torch.float64)
    for o, (w, div) in enumerate(zip(windows, divisors)):
        a[o, list(w)] = 1.0 / div
    return a


def pool_constant(spec: PoolSpec, spatial: Sequence[int]) -> tuple[float, float, str]:
    """``(lower, upper, detail)`` of the exact Lipschitz constant of the pooling layer."""
    if spec.kind == "max":
        r = 1
        for axis, n in zip(spec.windows, spatial):
            counts = [0] * n
            for w in axis:
                for i in w:
                    counts[i] += 1
            r *= max(counts, default=0)
        return sqrt_down(r), sqrt_up(r), f"max pooling: sqrt(largest window multiplicity {r})"
    # the matrices hold 1/divisor rounded (relative error ≤ u per entry, all entries ≥ 0, so the
    # exact norm is within a factor 1 ± u of the computed one); every product rounds once more
    lower = upper = abs(spec.scale)
    for axis, div, n in zip(spec.windows, spec.divisors, spatial):
        lo, hi = dense_matrix_norm(axis_matrix(axis, div, n))
        lower, upper = lower * lo * (1 - 4 * U), up(upper * hi, 3)
    return lower, up(upper, 2), "average pooling: product of per-axis norms (certified)"


def predict(spec: PoolSpec, x: torch.Tensor) -> torch.Tensor:
    """The pooling of ``x`` (``(B, C, *spatial)``) as this description computes it (float64)."""
    y = as_float64(x, "probe input")
    dims = len(spec.windows)
    for axis in range(dims):
        dim = y.dim() - dims + axis
        parts = []
        for o, w in enumerate(spec.windows[axis]):
            if not w:
                raise ValueError("a pooling window lies entirely in the padding")
            sel = y.index_select(dim, torch.tensor(w, dtype=torch.long))
            if spec.kind == "max":
                parts.append(sel.amax(dim, keepdim=True))
            else:
                parts.append(sel.sum(dim, keepdim=True) / spec.divisors[axis][o])
        y = torch.cat(parts, dim)
    return y * spec.scale if spec.kind == "avg" else y


def check_windows(spec: PoolSpec, x: torch.Tensor, out: torch.Tensor, where: str) -> None:
    """``ValueError`` unless this description reproduces torch's pooling of the probe ``x``."""
    pred = predict(spec, x)
    got = as_float64(out, f"{where} output")
    if tuple(pred.shape) != tuple(got.shape):
        raise ValueError(f"{where}: pooling output shape {tuple(got.shape)} differs from the "
                         f"modelled {tuple(pred.shape)}; this pooling mode is not supported")
    err = float((pred - got).abs().max()) if got.numel() else 0.0
    if err > 1e-4 * (float(got.abs().max()) + 1e-30):  # float32 sums: ~1e-7 relative
        raise ValueError(f"{where}: torch's pooling differs from the modelled windows by {err:.3g}; "
                         "this pooling mode is not supported")
