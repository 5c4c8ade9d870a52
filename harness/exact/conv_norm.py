"""Spectral norm ``‖W̃‖₂`` of a layer's linear map on inputs of a given size, with a certified bracket.

``W̃`` is the layer without bias as a linear operator on inputs of the layer's real size,
stride, padding, dilation and groups (Lin, Sekar & Fanti, NeurIPS 2021, §2). Every path
computes in float64 on the CPU, whatever the weight's dtype or device, and returns an
:class:`OperatorNorm` ``(value, lower, upper, method, rel_width)`` with
``lower ≤ ‖W̃‖₂ ≤ upper``. ``upper`` is rigorous including floating-point rounding;
``lower = ‖W̃v‖/‖v‖`` is recomputed from a returned vector ``v`` (rigorous for any ``v``).

``"dense"``    linear layers and small operators (``in_dim · out_dim ≤ dense_limit``,
               materialised on the identity basis): top eigenpair of the smaller Gram
               matrix, upper end by a Cholesky certificate (:func:`.certify.dense_matrix_norm`).
               A 1x1 kernel needs only its ``c_out x c_in`` matrix: ``W̃ = S ⊗ W`` with ``S``
               the map of outputs to the pixel each reads, ``‖W̃‖ = √r‖W‖`` (``r`` the largest
               number of outputs reading one pixel, 1 for zero padding).
``"fft"``      circular padding whose outputs are exactly the periodic strided convolution
               (``s | n`` and ``m = n/s`` per axis): per-frequency matrices
               (Sedghi, Gupta & Long, ICLR 2019; strides by the polyphase form,
               :mod:`.conv_fft`) certified by one batched Cholesky certificate
               (:func:`.gram.certified_top`); the bracket is ``~1e-12`` wide.
``"gram"``     the same, with Gram iteration (Delattre et al., ICML 2023) as the certified
               per-frequency bound (:func:`.gram.gram_iteration`); slower on a CPU.
``"lanczos"``  everything else: ``value`` by ARPACK Lanczos on the Gram operator through
               conv / conv-transpose matvecs, warm-started at the top singular vector of the
               periodic bound below (a tapered plane wave); ``upper`` as follows.

Why ``upper`` is rigorous on the Lanczos path:

* zero padding: output ``o`` of an axis reads input ``i = s·o + d·t − p`` (tap ``t``); all
  such ``i`` lie in ``[−p, s(m−1) + d(k−1) − p]``. Put the input in the first ``n`` cells
  of a periodic grid of ``N ≥ max(n + p, s(m−1) + d(k−1) − p + 1, s·m)`` cells (``s | N``),
  zeros elsewhere. Indices ``< 0`` wrap to ``[N − p, N) ⊂ [n, N)`` and indices ``≥ n`` stay
  in ``[n, N)``: both read zeros, exactly as zero padding does. So ``W̃ = R C_N E`` with
  ``E`` an isometric embedding, ``R`` a restriction to the first ``m`` outputs
  (``‖R‖ ≤ 1``) and ``C_N`` the periodic strided convolution, whose norm is certified in
  the frequency domain: ``‖W̃‖ ≤ ‖C_N‖`` (Delattre, Barthélemy & Allauzen 2024,
  arXiv 2402.00240, relate the two paddings the same way);
* circular padding that is not exactly periodic (``s ∤ n`` or ``m ≠ n/s``): the outputs are
  rows of the periodic convolution (stride ``s`` when ``s | n``, else stride 1) selected
  with repetition ``r`` (the largest number of outputs reading the same periodic row), so
  ``‖W̃‖ ≤ √r ‖C‖``;
* if that bracket is wider than ``max_rel_width`` but at most 2.5 times as wide, zero
  padding is embedded periodically along the width only (exact along the height,
  :mod:`.semi`; measured 34-44% of the periodic bound's width) and certified at 90% of the
  target width when its per-frequency Gram matrices have at most 2048 rows;
* failing that, if the smaller Gram matrix has at most
  ``certify_limit`` rows, the Gram matrix is assembled from the tap products and
  ``λ_max ≤ μ`` is proved by a Cholesky factorisation of ``μI − G`` with the floating-
  point error terms added (:func:`.certify.cholesky_certificate`); ``μ`` starts at
  ``lower² (1 + 2 tol)``. On small feature maps with a predictably loose periodic bound
  the certificate is tried first.

Verifying the Lanczos value: where the smaller Gram side has at most ``VERIFY_LIMIT`` rows the
certificate always runs at ``μ = lower²(1 + 2 tol)``. Success verifies ``value`` to ``tol``;
failure proves a singular value above ``lower(1 + tol)`` (up to the certificate's rounding
margin) that the run missed, e.g. the top of another group of a grouped convolution when the
warm start lies in one group; a restart locked against the vector found (Golub & Van Loan
§10.1) then looks for it, at most ``RESTARTS`` times. ``value`` always lies in the bracket.

Scale: every path works on the weight scaled by a power of two to ``max|w|`` in ``[1/2, 1)``
(exact, :func:`._spec.power_of_two_scaled`) and scales the bracket back with outward
rounding; ``lower`` is recomputed from the vector with the rounding of ``W̃v`` subtracted
(:func:`.certify.certified_lower`), so rounding never puts it above the truth.

``rel_width = (upper − lower) / lower`` is the bracket's relative width; ``detail`` says
how the upper end was obtained.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Sequence

import numpy as np
import torch
from torch import nn

from harness.layers import geometry

from ._spec import ConvSpec, as_float64, flush_margin, make_spec, power_of_two_scaled, scale_bracket
from .certify import cholesky_certificate, conv_gram_blocks, dense_matrix_norm, materialize
from .conv_fft import plane_wave
from .gram import CircularBound, circular_bound
from .lanczos import rayleigh_lower, top_singular_pair
from .semi import semi_periodic_certificate, side_dim

#: Materialise and certify densely when ``in_dim * out_dim`` is at most this (32 MB of float64).
DENSE_LIMIT = 4_000_000
#: Largest Gram side for the Cholesky certificate (8192² float64 = 512 MiB).
CERTIFY_LIMIT = 8192
#: Largest per-frequency Gram side for the width-periodic certificate (:mod:`.semi`).
SEMI_LIMIT = 2048
METHODS = ("auto", "fft", "gram", "dense", "lanczos")
#: Gram sides up to which the Lanczos value is always verified by a Cholesky certificate at
#: ``lower²(1 + 2 tol)`` (cheap there; it also detects a run that missed the top).
VERIFY_LIMIT = 512
#: Deflated Lanczos restarts after a failed verification (each locks the vector found).
RESTARTS = 3


@dataclass(frozen=True)
class OperatorNorm:
    """``‖W̃‖₂`` with a bracket: ``lower ≤ ‖W̃‖₂ ≤ upper``; ``value`` is the best estimate.

    ``rel_width = (upper − lower)/lower`` (0 when both are 0, ``inf`` when only ``lower`` is).
    ``vector`` (Lanczos/dense paths) is an input-shaped vector with ``‖W̃v‖/‖v‖ = lower``
    up to rounding; ``detail`` says how the upper bound was obtained.
    """

    value: float
    lower: float
    upper: float
    method: str
    rel_width: float = field(init=False)
    detail: str = field(default="", compare=False)
    vector: np.ndarray | None = field(default=None, compare=False, repr=False)

    def __post_init__(self) -> None:
        for name in ("value", "lower", "upper"):
            v = getattr(self, name)
            if not math.isfinite(v) and not (name == "upper" and v == math.inf):
                raise ValueError(f"OperatorNorm.{name} is not finite: {v}")
        if self.lower > 0:
            width = (self.upper - self.lower) / self.lower
        else:
            width = 0.0 if self.upper == 0 else math.inf
        object.__setattr__(self, "rel_width", width)

    def contains(self, truth: float, rtol: float = 1e-9) -> bool:
        """``lower ≤ truth ≤ upper`` up to a relative float tolerance ``rtol``."""
        slack = rtol * max(abs(truth), 1e-300)
        return self.lower - slack <= truth <= self.upper + slack


def linear_operator_norm(weight) -> OperatorNorm:
    """``‖W‖₂`` of a dense weight ``(out, in)``: certified bracket (:func:`.certify.dense_matrix_norm`,
    scaled by a power of two first)."""
    w = as_float64(weight)
    if w.dim() != 2:
        raise ValueError(f"linear weight must be 2-D (out, in), got shape {tuple(w.shape)}")
    lower, upper = dense_matrix_norm(w)
    return OperatorNorm(lower, lower, upper, "dense",
                        detail="top eigenpair of the smaller Gram; Cholesky certificate")


def is_exactly_periodic(spec: ConvSpec) -> bool:
    """Circular padding whose outputs are exactly one period of the strided periodic map."""
    if spec.padding_mode != "circular" or spec.crop is not None:
        return False
    return all(n % s == 0 and m == n // s
               for n, s, m in zip(spec.in_hw, spec.stride, spec.natural_out_hw))


def zero_padding_grid(spec: ConvSpec) -> tuple[int, int]:
    """Smallest periodic grid ``N`` (per axis, ``s | N``) of which zero padding is a restriction."""
    grid = []
    for n, p, s, e, m in zip(spec.in_hw, spec.padding, spec.stride, spec.effective_kernel,
                             spec.natural_out_hw):
        big = max(n + p, s * (m - 1) + e - p, s * m)
        grid.append(big + (-big) % s)
    return tuple(grid)


@dataclass(frozen=True)
class PeriodicBound:
    """A certified upper bound from a periodic convolution and the warm start it suggests."""

    upper: float
    detail: str
    start: torch.Tensor | None  # layer-input-shaped warm start for Lanczos


def _warm_start(spec: ConvSpec, cb: CircularBound, grid, stride, taper: bool) -> torch.Tensor:
    """The top singular vector of the periodic map, restricted to the layer's input (tapered)."""
    per = spec.c_in // spec.groups
    wave = plane_wave(cb.vector, cb.frequency, grid, stride, spec.padding, per, spec.in_hw)
    if taper:  # a sine window keeps the restriction close to the finite section's top vector
        for axis, n in zip((-2, -1), spec.in_hw):
            w = torch.sin(math.pi * (torch.arange(n, dtype=torch.float64) + 1) / (n + 1))
            wave = wave * (w.view(-1, 1) if axis == -2 else w.view(1, -1))
    x = torch.zeros(spec.x_shape, dtype=torch.float64)
    x[:, cb.group * per:(cb.group + 1) * per] = wave
    return spec.forward(x) if spec.transposed else x


def periodic_bound(spec: ConvSpec, rtol: float, method: str = "cholesky") -> PeriodicBound:
    """A rigorous upper bound on ``‖W̃‖`` from a periodic convolution (see module docstring)."""
    if spec.padding_mode == "zeros":
        grid = zero_padding_grid(spec)
        cb = circular_bound(spec.weight, grid, spec.stride, spec.dilation, spec.groups, rtol, method)
        return PeriodicBound(cb.upper, f"periodic embedding N={grid} ({method})",
                             _warm_start(spec, cb, grid, spec.stride, True))
    if is_exactly_periodic(spec):
        cb = circular_bound(spec.weight, spec.in_hw, spec.stride, spec.dilation, spec.groups, rtol, method,
                            exact_vector=True)
        return PeriodicBound(cb.upper, f"per-frequency certificate ({method})",
                             _warm_start(spec, cb, spec.in_hw, spec.stride, False))
    strides, reps = [], 1
    for n, s, m in zip(spec.in_hw, spec.stride, spec.out_hw):
        if n % s == 0:
            strides.append(s)
            reps *= -(-m // (n // s))
        else:
            strides.append(1)
            counts = np.bincount((s * np.arange(m)) % n, minlength=n)
            reps *= int(counts.max())
    cb = circular_bound(spec.weight, spec.in_hw, tuple(strides), spec.dilation, spec.groups, rtol, method)
    upper = math.nextafter(math.sqrt(reps) * cb.upper * (1 + 4 * 2.0 ** -53), math.inf)
    return PeriodicBound(upper, f"periodic rows, stride {tuple(strides)}, repetition {reps} ({method})", None)


def _certificate_first(spec: ConvSpec, certify_limit: int) -> bool:
    """Skip the periodic bound when it is predictably loose and the certificate is affordable.

    Zero padding on a small input: the periodic grid is more than 15% longer than the
    input on some axis (e.g. 4x4 or 8x8 inputs of a stride-2 layer), so the embedding bound
    is usually well above 1% wide, while the Gram side is within ``certify_limit``. Rigour
    is unchanged: if the certificate fails, the periodic bound is computed after all.
    """
    if spec.padding_mode != "zeros":
        return False
    g0 = spec.split_groups()[0]
    if min(g0.x_dim, g0.y_dim) > certify_limit:
        return False
    grid = zero_padding_grid(spec)
    return any(g > 1.15 * n for g, n in zip(grid, spec.in_hw))


def _gram_certifier(spec: ConvSpec, certify_limit: int):
    """``(certify, detail)``: ``certify(μ)`` is a certified ``λ_max(W̃ᵀW̃) ≤`` bound or ``None`` (a
    Cholesky certificate of ``μI − G`` per group, the Gram blocks assembled once); ``None`` when
    the smaller Gram side exceeds ``certify_limit``."""
    groups = spec.split_groups()
    g0 = groups[0]
    side = "input" if g0.x_dim <= g0.y_dim else "output"
    dim = min(g0.x_dim, g0.y_dim)
    if dim > certify_limit:
        return None
    co, ci = g0.weight.shape[:2]
    terms = (co if side == "input" else ci) * math.prod(g0.kernel) ** 2
    frob2 = math.prod(g0.out_hw) * float((g0.weight ** 2).sum()) * (1 + 1e-12)
    grams = [conv_gram_blocks(g, side) for g in groups]

    def certify(mu: float) -> float | None:
        bounds = [cholesky_certificate(g, mu, frob2, terms) for g in grams]
        return None if any(b is None for b in bounds) else max(bounds)
    return certify, f"Cholesky certificate of μI - Gram ({side} side, {dim} rows)"


def _certify(certify, lower: float, upper: float, tol: float) -> tuple[float | None, bool]:
    """The first certified ``‖W̃‖ ≤`` bound among ``μ = lower²(1 + δ)``, ``δ = 2 tol · 30^j``, below
    ``min(upper², 1.25 lower²)``, and whether the tightest ``μ`` held (or ``upper`` is already that
    tight): then ``value`` is verified to ``tol``. Its failure proves an eigenvalue above
    ``lower²(1 + 2 tol)`` (up to the certificate's rounding margin): the estimate missed it."""
    delta = max(2 * tol, 1e-12)
    if lower <= 0:
        return None, False
    if lower ** 2 * (1 + delta) >= upper ** 2:
        return None, True
    first = True
    while lower ** 2 * (1 + delta) < min(upper ** 2, lower ** 2 * 1.25):
        bound = certify(lower ** 2 * (1 + delta))
        if bound is not None:
            return math.nextafter(math.sqrt(bound), math.inf), first
        first, delta = False, delta * 30
    return None, False


def _semi_certify(spec: ConvSpec, lower: float, max_rel_width: float) -> tuple[float, str] | None:
    """The periodic-along-the-width bound (:mod:`.semi`) certified at 90% of the target width."""
    if spec.padding_mode != "zeros" or lower <= 0 or side_dim(spec) > SEMI_LIMIT:
        return None
    mu = (lower * (1 + 0.9 * max_rel_width)) ** 2
    bound = semi_periodic_certificate(spec, mu)
    if bound is None:
        return None
    return math.nextafter(math.sqrt(bound), math.inf), \
        f"periodic along the width, exact along the height: certified at {0.9 * max_rel_width:g}"


def _spatial(input_hw, weight, kind: str, groups: int) -> tuple[int, ...] | int:
    """The spatial size from ``input_hw`` given as ``(H, W)``, ``(C, H, W)`` or ``(B, C, H, W)``
    (``conv1d``: ``L``, ``(C, L)``, ``(B, C, L)``); the channels are checked when present."""
    dims = 1 if kind == "conv1d" else 2
    if isinstance(input_hw, (int, np.integer)):
        return int(input_hw)
    shape = tuple(int(s) for s in input_hw)
    if len(shape) <= dims:
        return shape
    if len(shape) > dims + 2:
        raise ValueError(f"input size {shape} has more than batch, channel and {dims} spatial dims")
    w = torch.as_tensor(weight) if not isinstance(weight, torch.Tensor) else weight
    c_in = w.shape[0] if kind == "conv_transpose2d" else w.shape[1] * groups
    if shape[-dims - 1] != c_in:
        raise ValueError(f"input size {shape} has {shape[-dims - 1]} channels, the {kind} weight "
                         f"{tuple(w.shape)} (groups={groups}) expects {c_in}")
    return shape[-dims:]


def conv_operator_norm(weight, input_hw, stride=1, padding=0, padding_mode: str = "zeros",
                       dilation=1, kind: str = "conv2d", tol: float = 1e-6, *, groups: int = 1,
                       output_padding=0, method: str = "auto", max_rel_width: float = 0.01,
                       seed: int = 0, dense_limit: int = DENSE_LIMIT,
                       certify_limit: int = CERTIFY_LIMIT) -> OperatorNorm:
    """``‖W̃‖₂`` of a convolution (no bias) on inputs of size ``input_hw``.

    ``weight`` is the layer's weight in torch layout (``ConvTranspose2d``: ``(c_in, c_out/g,
    k_h, k_w)``), any dtype/device; the computation is float64 on the CPU. ``input_hw`` is
    the spatial size, or the input shape with channels (and batch), as
    :func:`layer_operator_norm` accepts. ``kind`` is one of ``conv1d``, ``conv2d``,
    ``conv_transpose2d`` or ``linear`` (then ``input_hw`` is ignored). ``method``:
    ``"auto"`` (fft if exact, else dense if small, else lanczos), or force ``"fft"``,
    ``"gram"``, ``"dense"`` or ``"lanczos"``. ``tol`` is the relative accuracy of ``value``;
    ``max_rel_width`` the bracket width above which the Cholesky certificate is tried.
    Formulas, tolerances and sources: module docstring. Raises ``ValueError`` for bad
    sizes, a kernel larger than the padded input, or non-finite weights.
    """
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    if not (0 < tol < 1):
        raise ValueError(f"tol must be in (0, 1), got {tol}")
    if kind == "linear":
        return linear_operator_norm(weight)
    spec = make_spec(weight, _spatial(input_hw, weight, kind, groups), kind=kind, stride=stride,
                     padding=padding, padding_mode=padding_mode, dilation=dilation, groups=groups,
                     output_padding=output_padding)
    return spec_operator_norm(spec, tol=tol, method=method, max_rel_width=max_rel_width,
                              seed=seed, dense_limit=dense_limit, certify_limit=certify_limit)


def spec_operator_norm(spec: ConvSpec, *, tol: float = 1e-6, method: str = "auto",
                       max_rel_width: float = 0.01, seed: int = 0,
                       dense_limit: int = DENSE_LIMIT,
                       certify_limit: int = CERTIFY_LIMIT) -> OperatorNorm:
    """:func:`conv_operator_norm` on an already validated :class:`~._spec.ConvSpec`.

    The weight is scaled by a power of two to ``max|w|`` in ``[1/2, 1)`` first
    (:func:`._spec.power_of_two_scaled`), so no square, Gram entry or iterate under- or
    overflows whatever the weights' scale; the bracket is scaled back with outward rounding.
    """
    if not bool(spec.weight.any()):
        return OperatorNorm(0.0, 0.0, 0.0, "zero", detail="all-zero weight")
    scaled, e, exact = power_of_two_scaled(spec.weight)
    r = _scaled_operator_norm(replace(spec, weight=scaled), tol, method, max_rel_width, seed,
                              dense_limit, certify_limit)
    taps = math.prod(spec.kernel)
    margin = 0.0 if exact else flush_margin(taps, spec.y_dim * spec.weight.shape[1] * taps)
    lower, upper = scale_bracket(r.lower, r.upper, e, margin)
    value = min(max(math.ldexp(r.value, e), lower), upper)
    return OperatorNorm(value, lower, upper, r.method, detail=r.detail, vector=r.vector)


def _scaled_operator_norm(spec: ConvSpec, tol: float, method: str, max_rel_width: float, seed: int,
                          dense_limit: int, certify_limit: int) -> OperatorNorm:
    periodic = is_exactly_periodic(spec)
    if method == "fft" and not periodic:
        raise ValueError("method='fft' is exact only for circular padding with stride dividing the "
                         f"input and m = n/stride outputs; got padding_mode={spec.padding_mode!r}, "
                         f"input {spec.in_hw}, stride {spec.stride}, outputs {spec.out_hw}")
    circ = "gram" if method == "gram" else "cholesky"
    if method == "auto":
        if periodic:
            method = "fft"
        elif spec.x_dim * spec.y_dim <= dense_limit:
            method = "dense"
        else:
            method = "lanczos"
    if method in ("fft", "gram") and periodic:
        return _periodic(spec, tol, circ)
    if spec.kernel == (1, 1) and method != "dense":
        return _pointwise(spec)
    if method == "dense":
        return _dense(spec)
    return _lanczos(spec, tol, max_rel_width, seed, certify_limit, circ)


def _periodic(spec: ConvSpec, tol: float, circ: str) -> OperatorNorm:
    bound = periodic_bound(spec, 1e-12, circ)
    lower = min(rayleigh_lower(spec.layer_matvec, bound.start, spec.layer_in_shape, spec.frobenius_bound,
                               spec.terms), bound.upper)
    return OperatorNorm(lower, lower, bound.upper, "fft" if circ == "cholesky" else "gram",
                        detail=bound.detail, vector=bound.start.numpy().reshape(spec.layer_in_shape))


def _pointwise(spec: ConvSpec) -> OperatorNorm:
    """A 1x1 kernel: ``W̃ = S ⊗ W`` per group, ``S`` the 0/1 map of outputs to the input pixel they
    read, so ``‖W̃‖ = √r · max_g ‖W_g‖`` with ``r`` the largest number of outputs reading one pixel."""
    reps = 1
    for n, s, p, m in zip(spec.in_hw, spec.stride, spec.padding, spec.out_hw):
        idx = s * np.arange(m) - p
        idx = idx % n if spec.padding_mode == "circular" else idx[(idx >= 0) & (idx < n)]
        reps *= int(np.bincount(idx, minlength=n).max()) if idx.size else 0
    if reps == 0:
        return OperatorNorm(0.0, 0.0, 0.0, "dense", detail="1x1 kernel reading only padding")
    per = spec.c_out // spec.groups
    brackets = [dense_matrix_norm(spec.weight[g * per:(g + 1) * per, :, 0, 0]) for g in range(spec.groups)]
    scale = math.sqrt(reps)
    lower = max(lo for lo, _ in brackets) * scale
    upper = math.nextafter(max(up for _, up in brackets) * scale * (1 + 4 * 2.0 ** -53), math.inf)
    return OperatorNorm(lower, lower, upper, "dense", detail=f"1x1 kernel: √{reps} × ‖W‖ (certified)")


def _dense(spec: ConvSpec) -> OperatorNorm:
    a = materialize(spec.layer_matvec, spec.layer_in_shape)
    lower, upper = dense_matrix_norm(a)
    return OperatorNorm(lower, lower, upper, "dense",
                        detail=f"{tuple(a.shape)} matrix: top Gram eigenpair, Cholesky certificate")


def _lanczos(spec: ConvSpec, tol: float, max_rel_width: float, seed: int,
             certify_limit: int, circ: str) -> OperatorNorm:
    bound = None
    if not _certificate_first(spec, certify_limit):
        bound = periodic_bound(spec, min(tol, max_rel_width / 50), circ)
    pair = dict(matvec=spec.layer_matvec, rmatvec=spec.layer_rmatvec, in_shape=spec.layer_in_shape,
                out_shape=spec.layer_out_shape, tol=tol)
    sigma, v = top_singular_pair(**pair, seed=seed, start=bound.start if bound is not None else None)
    lower = rayleigh_lower(spec.layer_matvec, v, spec.layer_in_shape, spec.frobenius_bound, spec.terms)
    upper, detail = (max(bound.upper, lower), bound.detail) if bound is not None else (math.inf, "")
    small = _gram_side(spec) <= VERIFY_LIMIT
    if (upper - lower) > max_rel_width * lower or small:
        cert = None
        if not small and upper <= lower * (1 + 2.5 * max_rel_width):  # measured: 34-44% as wide
            cert = _semi_certify(spec, lower, max_rel_width)
        certifier = None if cert is not None else _gram_certifier(spec, certify_limit)
        if certifier is not None:
            certify, cert_detail = certifier
            for restart in range(RESTARTS + 1):
                cert_upper, tight = _certify(certify, lower, upper, tol)
                if tight or restart == RESTARTS:
                    break
                # the tight μ failed: a larger singular value exists; look for it off the one found
                s2, v2 = top_singular_pair(**pair, seed=seed + 1 + restart, deflate=v)
                l2 = rayleigh_lower(spec.layer_matvec, v2, spec.layer_in_shape, spec.frobenius_bound, spec.terms)
                if not l2 > lower:
                    break
                sigma, v, lower, upper = s2, v2, l2, max(upper, l2)
            cert = (cert_upper, cert_detail) if cert_upper is not None else None
        if cert is not None and cert[0] < upper:
            upper, detail = cert
    if upper == math.inf:
        bound = periodic_bound(spec, min(tol, max_rel_width / 50), circ)
        upper, detail = max(bound.upper, lower), bound.detail
    value = min(max(sigma, lower), upper)
    return OperatorNorm(value, lower, upper, "lanczos", detail=detail,
                        vector=np.asarray(v).reshape(spec.layer_in_shape))


def _gram_side(spec: ConvSpec) -> int:
    g0 = spec.split_groups()[0]
    return min(g0.x_dim, g0.y_dim)


def materialize_operator(weight, input_hw, stride=1, padding=0, padding_mode: str = "zeros",
                         dilation=1, kind: str = "conv2d", *, groups: int = 1,
                         output_padding=0) -> torch.Tensor:
    """Dense float64 matrix ``(out_dim, in_dim)`` of ``W̃`` (the identity basis through the layer).

    Row/column order is that of ``y.reshape(-1)`` / ``x.reshape(-1)`` for the layer's own
    ``(c, h, w)`` (or ``(c, l)``) tensors. For tests and tiny layers only.
    """
    if kind == "linear":
        return as_float64(weight).clone()
    spec = make_spec(weight, input_hw, kind=kind, stride=stride, padding=padding,
                     padding_mode=padding_mode, dilation=dilation, groups=groups,
                     output_padding=output_padding)
    return materialize(spec.layer_matvec, spec.layer_in_shape)


def layer_operator_norm(layer: nn.Module, input_shape: Sequence[int] | None = None,
                        **kwargs) -> OperatorNorm:
    """:func:`conv_operator_norm` of a ``Linear``/``Conv1d``/``Conv2d``/``ConvTranspose2d`` layer.

    Reads ``layer.weight`` (the effective weight, also under ``torch.nn.utils.parametrize``)
    and the geometry from :func:`harness.layers.geometry`. ``input_shape`` is the input's
    shape with or without batch and channel dims (``(B, C, H, W)``, ``(C, H, W)`` or
    ``(H, W)``; for ``Conv1d`` ``(B, C, L)``, ``(C, L)`` or ``(L,)``); unused for ``Linear``.
    """
    geom = geometry(layer)
    weight = layer.weight
    if geom.kind == "linear":
        return linear_operator_norm(weight)
    if input_shape is None:
        raise ValueError(f"{type(layer).__name__} needs input_shape (its spatial size)")
    dims = 1 if geom.kind == "conv1d" else 2
    shape = tuple(int(s) for s in input_shape)
    if len(shape) < dims:
        raise ValueError(f"input_shape {shape} has fewer than {dims} spatial dims")
    if len(shape) > dims:
        c_in = getattr(layer, "in_channels", None)
        if c_in is not None and shape[-dims - 1] != c_in:
            raise ValueError(f"input_shape {shape} has {shape[-dims - 1]} channels, "
                             f"layer expects {c_in}")
    return conv_operator_norm(weight, shape[-dims:], stride=geom.stride, padding=geom.padding,
                              padding_mode=geom.padding_mode, dilation=geom.dilation,
                              kind=geom.kind, groups=geom.groups,
                              output_padding=geom.output_padding or 0, **kwargs)
