"""Smallest singular value ``σ_min(W̃)`` of a convolution, with a certified bracket.

``σ_min`` is the smallest of the ``min(in_dim, out_dim)`` singular values of the layer's
map ``W̃`` (no bias) on inputs of its real size: ``√λ_min(G)`` for the smaller Gram matrix
``G`` (``W̃ᵀW̃`` if ``in_dim ≤ out_dim``, else ``W̃W̃ᵀ``). A layer that claims orthogonality
claims every one of them within a tolerance of 1 (docs/theory.md#sigma-min). Every path
computes in float64 on the CPU and returns ``lower ≤ σ_min ≤ upper``
(:class:`SmallestSingularValue`):

* ``upper``: ``‖W̃x‖/‖x‖`` (or ``‖W̃ᵀy‖/‖y‖`` on the output side) for an actual vector, which
  is at least ``σ_min`` for any vector of the smaller side; the float64 rounding of the
  convolution is added (``γ_K ‖|W̃||x|‖``, Higham, *Accuracy and Stability of Numerical
  Algorithms*, §3.1, with ``|W̃||x|`` the convolution of ``|W|`` with ``|x|``);
* ``lower``: ``G − μI`` positive definite, proved by a Cholesky factorisation that runs to
  completion: floating-point Cholesky that completes on ``H`` factors ``H + E`` exactly with
  ``‖E‖₂ ≤ γ·tr(H)/(1 − Dγ)`` (Demmel 1989; Higham Thm 10.5; Rump, BIT 2006), so
  ``λ_min(G) ≥ μ − ‖E‖ − (rounding of the shift) − ‖Ĝ − G‖`` (the error of forming ``G``),
  as :mod:`.certify` does for the largest eigenvalue.

Paths (``method``):

``"fft"``      circular padding whose outputs are exactly the periodic strided map
               (``s | n``, ``m = n/s``): the singular values are the union over
               frequencies of those of ``P(u)`` (Sedghi, Gupta & Long 2019; strides by the
               polyphase form, :mod:`.conv_fft`), so ``σ_min = min_u σ_min(P(u))``, exact per
               frequency; the per-frequency Grams come with their rounding bound
               (:func:`.conv_fft.frequency_grams`) and one batched Cholesky certifies all
               of them; the vector is the plane wave of the bottom eigenvector at the
               minimising frequency;
``"dense"``    small operators, materialised: eigendecomposition of the smaller Gram and
               the dense certificate;
``"lanczos"``  everything else (zero padding): ARPACK Lanczos on the smaller Gram through
               convolution / transposed-convolution matvecs for the vector (upper end),
               and the Cholesky certificate of the Gram assembled from the tap products
               (:func:`.certify.conv_gram`) when its side is at most
               ``certify_limit``; beyond, the lower end is the trivial 0.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Callable

import numpy as np
import torch

from ._spec import ConvSpec, make_spec
from .certify import conv_gram, materialize
from .conv_fft import frequency_grams, frequency_index, plane_wave, small_grid
from .conv_norm import is_exactly_periodic

U = 2.0 ** -53
#: Materialise when ``in_dim · out_dim`` is at most this (as ``conv_norm.DENSE_LIMIT``).
DENSE_LIMIT = 4_000_000
#: Largest Gram side assembled for the Cholesky certificate (8192² float64 = 512 MiB).
CERTIFY_LIMIT = 8192
METHODS = ("auto", "fft", "dense", "lanczos")


@dataclass(frozen=True)
class SmallestSingularValue:
    """``lower ≤ σ_min(W̃) ≤ upper``; ``value`` the best estimate, ``vector`` the witness of ``upper``
    (input-shaped when ``side == "input"``, output-shaped otherwise)."""

    value: float
    lower: float
    upper: float
    method: str
    side: str
    detail: str = ""
    vector: np.ndarray | None = field(default=None, compare=False, repr=False)

    def __post_init__(self) -> None:
        if not (0 <= self.lower <= self.upper and math.isfinite(self.upper)):
            raise ValueError(f"not a bracket: lower={self.lower}, upper={self.upper}")

    @property
    def rel_width(self) -> float:
        """``(upper − lower)/upper`` (1 when the lower end is the trivial 0)."""
        return (self.upper - self.lower) / self.upper if self.upper > 0 else 0.0

    def contains(self, truth: float, rtol: float = 1e-9) -> bool:
        slack = rtol * max(abs(truth), 1e-300)
        return self.lower - slack <= truth <= self.upper + slack


def gamma(n: int, u: float = U) -> float:
    return n * u / (1 - n * u)


def _down(x: float) -> float:
    """``x`` moved down past one rounding (for a certified lower end)."""
    return max(0.0, math.nextafter(x * (1 - 4 * U), -math.inf))


def _up(x: float) -> float:
    return math.nextafter(x * (1 + 4 * U), math.inf)


#: Matrices per batched factorisation: bounds the memory of a batch to about 2^24 entries.
CHUNK_ENTRIES = 2 ** 24


def chunks(h: torch.Tensor) -> list[slice]:
    """Slices of a batch ``(F, d, d)`` holding about :data:`CHUNK_ENTRIES` entries each."""
    step = max(1, CHUNK_ENTRIES // (h.shape[-1] ** 2))
    return [slice(i, i + step) for i in range(0, h.shape[0], step)]


def cholesky_lower(h: torch.Tensor, err: torch.Tensor | float, mu: float) -> float | None:
    """Certified ``λ_min(G) ≥ returned value`` for every exact ``G`` within ``err`` of the computed
    Hermitian ``Ĝ`` (batch ``(F, d, d)`` or one matrix), from Cholesky of ``Ĝ − μI``; ``None`` if it fails.

    Margin: ``γ'·tr(H)/(1 − dγ')`` with ``γ' = γ_{4d}`` (blocked LAPACK Cholesky, as
    :func:`.certify.cholesky_certificate`), ``u·max|h_ii|`` for the shift, and ``err``;
    complex arithmetic with the unit roundoff ``4u`` (Higham §3.6).
    """
    g = h if h.dim() == 3 else h.unsqueeze(0)
    d = g.shape[-1]
    u = 4 * U if g.is_complex() else U
    gd = gamma(4 * d, u)
    err_t = torch.as_tensor(err, dtype=torch.float64).expand(g.shape[0])
    worst = 0.0
    for part in chunks(g):
        shifted = g[part].clone()
        shifted.diagonal(dim1=-2, dim2=-1).sub_(mu)
        _, info = torch.linalg.cholesky_ex(shifted)
        if bool((info != 0).any()):
            return None
        diag = shifted.diagonal(dim1=-2, dim2=-1).real
        margin = gd / (1 - d * gd) * diag.sum(-1).clamp_min(0) + u * diag.abs().max(-1).values + err_t[part]
        worst = max(worst, float(margin.max()))
    return _down(mu - _up(worst))


def certified_lambda_min(h: torch.Tensor, err, estimate: float | None, scale: float,
                         rel: float = 1e-12, attempts: int = 12) -> float:
    """The best certified lower end of ``λ_min`` among ``μ = estimate − δ·scale`` for growing ``δ``
    (``scale ≥ λ_max`` sets the size of the rounding); 0 when ``estimate ≤ 0`` or every attempt fails."""
    if estimate is None or not math.isfinite(estimate) or estimate <= 0:
        return 0.0
    delta = max(rel, 16 * h.shape[-1] * U)
    for _ in range(attempts):
        mu = estimate - delta * scale
        if mu <= 0:
            return 0.0
        bound = cholesky_lower(h, err, mu)
        if bound is not None:
            return bound
        delta *= 16
    return 0.0


def vector_upper(apply: Callable[[torch.Tensor], torch.Tensor], apply_abs: Callable[[torch.Tensor], torch.Tensor],
                 x: torch.Tensor, terms: int) -> float:
    """Rigorous upper end of ``‖Ax‖/‖x‖`` evaluated in float64: the rounding of ``Ax`` is at most
    ``γ_K |A||x|`` entrywise (``K = terms`` products per entry) and each 2-norm is within ``γ_{n+2}``."""
    x = x.to(torch.float64)
    n = x.numel()
    nx = float(torch.linalg.vector_norm(x))
    if nx == 0:
        raise ValueError("the witness vector is zero")
    ax = float(torch.linalg.vector_norm(apply(x)))
    rounding = gamma(terms) * float(torch.linalg.vector_norm(apply_abs(x.abs()))) * (1 + gamma(terms))
    g = gamma(n + 2)
    return _up((ax * (1 + g) + rounding) / (nx * (1 - g)))


def _abs_spec(spec: ConvSpec) -> ConvSpec:
    return replace(spec, weight=spec.weight.abs())


def _terms(spec: ConvSpec) -> int:
    """Products per entry of the forward or adjoint map, with room for the circular fold."""
    return 4 * max(spec.c_in // spec.groups, spec.c_out // spec.groups) * math.prod(spec.kernel) + 4


def _spec_upper(spec: ConvSpec, vec: torch.Tensor, side: str) -> float:
    absolute = _abs_spec(spec)
    if side == "input":
        return vector_upper(spec.forward, absolute.forward, vec.reshape(spec.x_shape), _terms(spec))
    return vector_upper(spec.adjoint, absolute.adjoint, vec.reshape(spec.y_shape), _terms(spec))


def _embed(spec: ConvSpec, group: int, side: str, v: torch.Tensor) -> np.ndarray:
    """The group's witness as a vector of the whole layer's input (or output): zeros elsewhere."""
    shape = spec.x_shape if side == "input" else spec.y_shape
    per = shape[1] // spec.groups
    full = torch.zeros(shape, dtype=torch.float64)
    full[:, group * per:(group + 1) * per] = v.to(torch.float64).reshape(shape[0], per, *shape[2:])
    return full.numpy()


def _real_phase(v: torch.Tensor) -> torch.Tensor:
    """``v`` times the unit phase that makes its largest entry real (a real eigenvector stays real)."""
    j = int(v.abs().argmax())
    return v * (v[j].conj() / v[j].abs()) if v[j].abs() > 0 else v


def _output_wave(vector: torch.Tensor, freq: tuple[int, int], grid: tuple[int, int],
                 c_out: int) -> torch.Tensor:
    """``y[c, o] = Re(ψ_c e^{-2πi o·u/M})`` on the small grid: the output-side plane wave whose
    transpose-image sits at frequency ``u`` (see :func:`.conv_fft.plane_wave` for the input side)."""
    mh, mw = grid
    oh, ow = torch.arange(mh).view(-1, 1), torch.arange(mw).view(1, -1)
    phase = torch.exp(-2j * math.pi * (oh * freq[0] / mh + ow * freq[1] / mw))
    return (vector.view(c_out, 1, 1) * phase).real.unsqueeze(0)


@dataclass(frozen=True)
class _Group:
    """One group's result: certified ``λ_min ≥ lower2``, the estimate of ``λ_min``, the upper end
    of ``σ_min`` and its witness (the group's own input or output)."""

    lower2: float
    estimate: float
    upper: float
    side: str
    vector: torch.Tensor


def _combine(spec: ConvSpec, groups: list[_Group], method: str, detail: str) -> SmallestSingularValue:
    """The operator is block diagonal over groups: ``σ_min`` is the least over groups, and so are
    both ends; the witness is the group with the least upper end, embedded in the whole layer."""
    lower = min(_down(math.sqrt(max(g.lower2, 0.0))) for g in groups)
    best = min(range(len(groups)), key=lambda i: groups[i].upper)
    upper = groups[best].upper
    lower = min(lower, upper)
    estimates = [math.sqrt(g.estimate) for g in groups if math.isfinite(g.estimate) and g.estimate > 0]
    value = min(max(min(estimates) if estimates else lower, lower), upper)
    side = groups[best].side
    return SmallestSingularValue(value, lower, upper, method, side, detail,
                                 _embed(spec, best, side, groups[best].vector))


def _periodic(spec: ConvSpec) -> SmallestSingularValue:
    """Circular, exactly periodic: ``min_u λ_min(G(u))`` over frequencies, certified, per group."""
    grid = spec.in_hw
    small = small_grid(grid, spec.stride)
    results = []
    for g in spec.split_groups():
        fg = frequency_grams(g.weight, grid, g.stride, g.dilation)
        lam = torch.cat([torch.linalg.eigvalsh(fg.grams[part]) for part in chunks(fg.grams)])
        f = int(lam[:, 0].argmin())
        estimate, scale = float(lam[f, 0]), float(lam[:, -1].max())
        lower2 = certified_lambda_min(fg.grams, fg.err, estimate, max(scale, 1e-300))
        side = "output" if fg.side == "left" else "input"
        freq = frequency_index(f, grid, g.stride)
        psi = _real_phase(torch.linalg.eigh(fg.grams[f])[1][:, 0])
        if side == "input":
            wave = plane_wave(psi, freq, grid, g.stride, g.padding, g.c_in, g.in_hw)
        else:
            wave = _output_wave(psi, freq, small, g.c_out)
        results.append(_Group(lower2, estimate, _spec_upper(g, wave, side), side, wave))
    return _combine(spec, results, "fft", "per-frequency Grams, batched Cholesky certificate")


def _dense(spec: ConvSpec) -> SmallestSingularValue:
    results = []
    for g in spec.split_groups():
        a = materialize(g.forward, g.x_shape)
        gram, side = (a.T @ a, "input") if a.shape[1] <= a.shape[0] else (a @ a.T, "output")
        lam, vec = torch.linalg.eigh(gram)
        err = gamma(max(a.shape)) * float((a * a).sum()) * (1 + 1e-12)
        lower2 = certified_lambda_min(gram, err, float(lam[0]), max(float(lam[-1]), 1e-300))
        results.append(_Group(lower2, float(lam[0]), _spec_upper(g, vec[:, 0], side), side, vec[:, 0]))
    return _combine(spec, results, "dense", "materialised: eigendecomposition of the smaller Gram, "
                                            "Cholesky certificate")


def _bottom_pair(gram: Callable[[torch.Tensor], torch.Tensor], dim: int, tol: float, seed: int,
                 maxiter: int) -> tuple[float, torch.Tensor]:
    """Smallest eigenpair estimate of a PSD operator by ARPACK Lanczos (``which="SA"``)."""
    from scipy.sparse.linalg import ArpackNoConvergence, LinearOperator, eigsh

    op = LinearOperator((dim, dim), matvec=lambda z: gram(torch.from_numpy(np.asarray(z).reshape(-1))).numpy(),
                        dtype=np.float64)
    v0 = np.random.default_rng(seed).standard_normal(dim)
    try:
        lam, vec = eigsh(op, k=1, which="SA", tol=tol, v0=v0, maxiter=maxiter, ncv=min(dim, 40))
    except ArpackNoConvergence as exc:  # keep the best Ritz pair found: the upper end stays rigorous
        if len(exc.eigenvalues) == 0:
            return math.inf, torch.from_numpy(v0)
        lam, vec = exc.eigenvalues, exc.eigenvectors
    return float(lam[0]), torch.from_numpy(np.ascontiguousarray(vec[:, 0]))


#: Largest assembled Gram whose bottom eigenpair is taken from a dense eigendecomposition.
EIGH_LIMIT = 4096


def _gram_certificate(g: ConvSpec, side: str, estimate: float | None) -> tuple[float, float, torch.Tensor | None]:
    """``(certified lower end of λ_min, estimate, bottom eigenvector or None)`` from the Gram
    assembled from the tap products (dense eigendecomposition when it has at most
    :data:`EIGH_LIMIT` rows, else the given Lanczos ``estimate``)."""
    dense = conv_gram(g, side)  # indexed like x.reshape(-1) (or y)
    vector = None
    if dense.shape[0] <= EIGH_LIMIT:
        lam, vec = torch.linalg.eigh(dense)
        estimate, vector = float(lam[0]), vec[:, 0]
    terms = (g.c_out if side == "input" else g.c_in) * math.prod(g.kernel) ** 2
    frob2 = float(dense.diagonal().sum()) * (1 + 2 * gamma(terms))  # tr(AᵀA) = ‖A‖_F², all terms ≥ 0
    scale = float(dense.abs().sum(1).max())  # ≥ λ_max (row sums)
    lower2 = certified_lambda_min(dense, gamma(terms) * frob2, estimate, max(scale, 1e-300))
    return lower2, estimate, vector


def _lanczos(spec: ConvSpec, tol: float, seed: int, certify_limit: int) -> SmallestSingularValue:
    results, detail = [], ""
    for g in spec.split_groups():
        side = "input" if g.x_dim <= g.y_dim else "output"
        dim, shape = (g.x_dim, g.x_shape) if side == "input" else (g.y_dim, g.y_shape)
        first, second = (g.forward, g.adjoint) if side == "input" else (g.adjoint, g.forward)
        lower2, estimate, v = 0.0, math.inf, None
        detail = f"Lanczos upper end; Gram side {dim} > {certify_limit}: lower end 0"
        if dim > min(EIGH_LIMIT, certify_limit):
            estimate, v = _bottom_pair(lambda z: second(first(z.reshape(shape))).reshape(-1), dim, tol, seed,
                                       maxiter=max(1000, dim // 4))
        if dim <= certify_limit:
            lower2, estimate, dense_v = _gram_certificate(g, side, estimate if v is not None else None)
            v = dense_v if dense_v is not None else v
            detail = f"Cholesky certificate of Gram - μI ({side} side, {dim} rows)"
        results.append(_Group(lower2, estimate, _spec_upper(g, v, side), side, v))
    return _combine(spec, results, "lanczos", detail)


def conv_smallest_singular_value(weight, input_hw, stride=1, padding=0, padding_mode: str = "zeros",
                                 dilation=1, kind: str = "conv2d", *, groups: int = 1, output_padding=0,
                                 method: str = "auto", tol: float = 1e-6, seed: int = 0,
                                 dense_limit: int = DENSE_LIMIT,
                                 certify_limit: int = CERTIFY_LIMIT) -> SmallestSingularValue:
    """Certified ``σ_min(W̃)`` of a convolution (no bias) on inputs of spatial size ``input_hw``.

    Arguments as :func:`.conv_operator_norm` (``kind``: ``conv1d``, ``conv2d`` or
    ``conv_transpose2d``, whose map is the adjoint of a convolution and has the same
    singular values). ``method``: ``"auto"`` (fft if exactly periodic, else dense if small,
    else lanczos) or forced. ``tol``: Lanczos tolerance on ``λ_min``. Formulas: module docstring.
    """
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    spec = make_spec(weight, input_hw, kind=kind, stride=stride, padding=padding,
                     padding_mode=padding_mode, dilation=dilation, groups=groups,
                     output_padding=output_padding)
    if spec.transposed:  # same singular values as the convolution it is the adjoint of
        spec = replace(spec, transposed=False)
    periodic = is_exactly_periodic(spec)
    if method == "fft" and not periodic:
        raise ValueError("method='fft' needs circular padding with the stride dividing the input and "
                         f"n/stride outputs; got padding_mode={spec.padding_mode!r}, input {spec.in_hw}, "
                         f"stride {spec.stride}, outputs {spec.out_hw}")
    if method == "auto":
        method = "fft" if periodic else "dense" if spec.x_dim * spec.y_dim <= dense_limit else "lanczos"
    if not bool(spec.weight.any()):
        side = "input" if spec.x_dim <= spec.y_dim else "output"
        return SmallestSingularValue(0.0, 0.0, 0.0, "zero", side, "all-zero weight")
    if method == "fft":
        return _periodic(spec)
    if method == "dense":
        return _dense(spec)
    return _lanczos(spec, tol, seed, certify_limit)
