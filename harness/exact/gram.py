"""Gram iteration: certified upper bounds on spectral norms, batched over frequencies.

Delattre, Barthélemy, Araujo & Allauzen, "Efficient Bound of Lipschitz Constant for
Convolutional Layers by Gram Iteration", ICML 2023 (arXiv 2305.16173): for a matrix
``P`` let ``G₀ = PPᴴ`` and ``G_{t+1} = G_tᴴG_t``; the eigenvalues of ``G_t`` are
``σ_i^{2^{t+1}}``, so ``σ₁(P) ≤ ‖G_t‖_F^{1/2^{t+1}}``, with a ratio to ``σ₁`` of
``(Σ_i (σ_i/σ₁)^{2^{t+2}})^{1/2^{t+2}}``: super-linear convergence once ``2^t`` exceeds the
inverse relative gap. For a circular convolution the operator is block diagonal over
frequencies (:mod:`.conv_fft`), so the norm is ``max_u σ₁(P(u))``; every frequency is
iterated in one batched matrix product, and frequencies whose bound already lies below
the best lower estimate are frozen (their bound cannot be the maximum).

Rounding, so the bound is an upper bound of the *exact* operator norm:

* the stored iterate is ``H_t = G_t / 2^{E_t}`` with power-of-two scalings (exact);
* ``fl(H_tᴴH_t) = H_tᴴH_t + Δ_t`` with ``‖Δ_t‖₂ ≤ e_t = 4γ_{c+2}‖H_t‖_F²`` (normwise complex
  matrix product, Higham §3.5-3.6, with a factor 2 to spare), hence
  ``‖H_t‖₂² = ‖H_tᴴH_t‖₂ ≤ 2^{k_{t+1}}‖H_{t+1}‖₂ + e_t`` (no Hermitian symmetry assumed);
* ``‖H_T‖₂ ≤ ‖H_T‖_F`` computed and inflated by ``γ_{2c²+4}``; the recursion is unwound
  backwards with every float operation rounded up;
* the computed ``Ĝ₀`` is within ``err`` of the exact ``PPᴴ`` (:func:`.conv_fft.frequency_grams`
  bounds the rounding of the DFT and of the products), added to the first step's bound.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from .certify import UNDERFLOW
from .conv_fft import frequency_grams, frequency_index, frequency_matrix

U = 2.0 ** -53
#: Certificate attempts before :func:`certified_top` falls back to the trace bound.
MAX_ATTEMPTS = 40


def gamma(n: int) -> float:
    return n * U / (1 - n * U)


def _up(t: torch.Tensor) -> torch.Tensor:
    """Round every entry up past the rounding error of one or two float operations."""
    t = t * (1 + 4 * U)
    return torch.nextafter(t, torch.full_like(t, math.inf))


@dataclass(frozen=True)
class GramResult:
    """Per-matrix certified upper bounds and (non-rigorous) lower estimates of ``σ₁``."""

    upper: torch.Tensor  # (F,) float64, certified
    estimate: torch.Tensor  # (F,) float64, lower estimates (not rigorous)
    iterations: int


def gram_iteration(g0: torch.Tensor, err: torch.Tensor, rtol: float = 1e-6, max_iter: int = 30) -> GramResult:
    """Certified ``σ₁`` bounds from a batch of computed Grams ``Ĝ₀ = P̂P̂ᴴ`` (``(F, c, c)``).

    ``err[u]`` bounds ``‖Ĝ₀(u) − P(u)P(u)ᴴ‖₂`` for the exact matrices (:class:`.conv_fft.FrequencyGrams`).
    Iterates until every matrix's bound is within ``rtol`` of the best lower estimate over
    the batch (or below it), or ``max_iter`` squarings.
    """
    f, c = g0.shape[0], g0.shape[-1]
    e_form = err
    e_mul = 4 * gamma(c + 2)  # each squaring, times ‖H_t‖_F²
    frob_up = 1 + gamma(2 * c * c + 4)
    cur, k0 = _scaled(g0)
    frobs = [torch.linalg.matrix_norm(cur) * frob_up]
    exps: list[torch.Tensor] = []
    upper = torch.full((f,), math.inf, dtype=torch.float64)
    estimate = torch.zeros(f, dtype=torch.float64)
    active = torch.arange(f)  # frequencies still iterated; the others keep their bound
    t = 0
    while True:
        b = frobs[-1]  # ‖H_t‖₂ ≤ ‖H_t‖_F, unwound back to ‖H_0‖₂
        for s in range(len(exps) - 1, -1, -1):
            b = _up(torch.sqrt(_up(torch.pow(2.0, exps[s]) * b + e_mul * frobs[s] ** 2 + UNDERFLOW * c * c)))
        bound = _up(torch.sqrt(_up(torch.pow(2.0, k0[active]) * b + e_form[active])))
        upper[active] = torch.minimum(upper[active], bound)
        estimate[active] = torch.maximum(estimate[active], _rayleigh(g0[active], cur))
        keep = upper[active] > float(estimate.max()) * (1 + rtol)
        if not bool(keep.any()) or t == max_iter:
            break
        active, cur = active[keep], cur[keep]
        frobs, exps = [v[keep] for v in frobs], [v[keep] for v in exps]
        cur, k = _scaled(cur.mH @ cur)
        exps.append(k)
        frobs.append(torch.linalg.matrix_norm(cur) * frob_up)
        t += 1
    return GramResult(upper, estimate, t)


def _rayleigh(g0: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
    """``√(xᴴG₀x / xᴴx)`` for ``x`` the largest column of the iterate: a lower estimate of ``σ₁``
    (``x ∝ G₀^{2^t} e_j``, a power-iteration vector)."""
    j = h.abs().pow(2).sum(-2).argmax(-1)
    x = torch.take_along_dim(h, j.view(-1, 1, 1), dim=-1)
    num = (x.mH @ g0 @ x).real.view(-1)
    den = (x.mH @ x).real.view(-1).clamp_min(1e-300)
    return torch.sqrt((num / den).clamp_min(0))


def _scaled(h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(h / 2^k, k)`` per matrix with ``‖h / 2^k‖_F`` in ``[1/2, 1)`` (exact scaling)."""
    fro = torch.linalg.matrix_norm(h)
    _, k = torch.frexp(fro)
    k = torch.where(fro > 0, k, torch.zeros_like(k)).to(torch.float64)
    return h * torch.pow(2.0, -k).view(-1, 1, 1), k


def batched_certificate(g: torch.Tensor, mu: float, err: torch.Tensor) -> torch.Tensor:
    """Certified ``λ_max(G_exact(u)) ≤ bound(u)`` for a batch of computed Hermitian Grams, or ``inf``
    where the Cholesky factorisation of ``μI − Ĝ(u)`` fails (:func:`.certify.cholesky_certificate`,
    with the complex unit roundoff taken as ``4u``: Higham §3.6); ``err[u] ≥ ‖Ĝ(u) − G(u)‖₂``."""
    d = g.shape[-1]
    u = 4 * U if g.is_complex() else U
    h = -g
    h.diagonal(dim1=-2, dim2=-1).add_(mu)
    _, info = torch.linalg.cholesky_ex(h)
    diag = g.diagonal(dim1=-2, dim2=-1).real
    trace = (mu - diag).sum(-1).clamp_min(0)
    max_diag = (mu - diag).abs().max(-1).values
    gd = 4 * d * u / (1 - 4 * d * u)
    margin = gd / (1 - d * gd) * trace + err + u * max_diag + UNDERFLOW * d * d
    bound = _up(mu + margin)
    return torch.where(info == 0, bound, torch.full_like(bound, math.inf))


def certified_top(g: torch.Tensor, err: torch.Tensor, rtol: float = 1e-6, candidates: int = 4) -> GramResult:
    """Certified ``σ₁`` bounds from a batch of computed Grams by one batched Cholesky certificate.

    A few batched power steps rank the matrices, the top ``candidates`` get an exact
    eigendecomposition, and ``μ = λ*(1 + rtol)`` is certified for every matrix at once
    (:func:`batched_certificate`); a matrix whose factorisation fails gets its own
    eigenvalue and ``μ`` is raised. Cheaper than Gram iteration on a CPU (one Cholesky per
    matrix); every matrix's upper bound is the common certificate.
    """
    f = g.shape[0]
    x = g.sum(-1, keepdim=True)  # batched power steps from the all-ones start (ranking only)
    for _ in range(6):
        x = g @ x
        x = x / torch.linalg.vector_norm(x, dim=-2, keepdim=True).clamp_min(1e-300)
    rough = (x.mH @ g @ x).real.view(-1)
    exact = torch.full((f,), -1.0, dtype=torch.float64)
    order = torch.argsort(rough, descending=True)[:candidates]
    exact[order] = torch.linalg.eigvalsh(g[order])[..., -1]
    delta = rtol
    for _ in range(MAX_ATTEMPTS):  # bounded: μ grows 16-fold in δ per failed attempt
        mu = max(float(exact.max()), 0.0) * (1 + delta) + 2.0 ** -1000
        bound = batched_certificate(g, mu, err)
        failed = torch.nonzero(torch.isinf(bound)).view(-1)
        if failed.numel() == 0:
            break
        fresh = failed[exact[failed] < 0]
        if fresh.numel():  # a matrix the ranking missed: its own eigenvalue raises μ
            exact[fresh] = torch.linalg.eigvalsh(g[fresh])[..., -1]
        else:  # μ within rounding of the top eigenvalue: widen
            delta = max(delta * 16, 1e-14)
    else:  # never certified: λ_max(G) ≤ tr(G) for the exact PSD G (Frobenius bound)
        trace = g.diagonal(dim1=-2, dim2=-1).real.sum(-1).clamp_min(0)
        bound = _up(trace * (1 + gamma(g.shape[-1] + 1)) + g.shape[-1] * err)
    upper = _up(torch.sqrt(bound.max())).expand(f).clone()
    return GramResult(upper, torch.sqrt(exact.clamp_min(0)), 0)


@dataclass(frozen=True)
class CircularBound:
    """Certified bound on the norm of a periodic strided convolution, and its top frequency."""

    upper: float
    estimate: float
    frequency: tuple[int, int]
    vector: torch.Tensor  # top right singular vector at that frequency (polyphase layout)
    group: int
    iterations: int
    method: str


def circular_bound(weight: torch.Tensor, grid, stride, dilation, groups: int = 1,
                   rtol: float = 1e-6, method: str = "cholesky", exact_vector: bool = False) -> CircularBound:
    """Certified ``‖C‖₂`` of the periodic strided convolution on ``grid`` (float64 weight).

    ``method``: ``"cholesky"`` (:func:`certified_top`, the faster on a CPU) or ``"gram"``
    (:func:`gram_iteration`). Both are upper bounds of the exact norm within about ``rtol``.
    The top right singular vector at the maximising frequency comes from an
    eigendecomposition (``exact_vector``) or from power iteration (a warm start).
    """
    solve = {"cholesky": certified_top, "gram": gram_iteration}[method]
    stride, dilation = tuple(stride), tuple(dilation)
    per = weight.shape[0] // groups
    best = None
    for gi in range(groups):
        w = weight[gi * per:(gi + 1) * per]
        if not bool(w.any()):
            continue
        fg = frequency_grams(w, grid, stride, dilation)
        g, err = fg.grams, fg.err
        if w.shape[-1] * w.shape[-2] == 1 and stride == (1, 1):
            g, err = g[:1], err[:1]  # a 1x1 kernel has the same matrix at every frequency
        res = solve(g, err, rtol)
        top = int(res.estimate.argmax())
        freq = frequency_index(top, grid, stride)
        upper = float(res.upper.max())
        if best is None or upper > best.upper:
            vec = top_right_vector(frequency_matrix(w, grid, stride, dilation, freq), exact_vector)
            best = CircularBound(upper, float(res.estimate.max()), freq, vec, gi, res.iterations, method)
    if best is None:
        c = weight.shape[1] * (stride[0] * stride[1])
        return CircularBound(0.0, 0.0, (0, 0), torch.zeros(c, dtype=torch.complex128), 0, 0, method)
    return best


def top_right_vector(p: torch.Tensor, exact: bool, steps: int = 30) -> torch.Tensor:
    """Top right singular vector of one matrix: eigendecomposition, or power iteration."""
    if exact:
        return torch.linalg.eigh(p.mH @ p)[1][:, -1]
    v = p.mH @ p.sum(-1, keepdim=True).conj() if p.shape[0] else torch.ones(p.shape[1], 1, dtype=p.dtype)
    for _ in range(steps):
        v = p.mH @ (p @ v)
        v = v / torch.linalg.vector_norm(v).clamp_min(1e-300)
    return v.view(-1)
