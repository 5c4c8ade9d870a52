"""Periodic (circular) strided convolutions in the frequency domain, with rounding bounds.

Sedghi, Gupta & Long, "The Singular Values of Convolutional Layers", ICLR 2019: a
stride-1 circular 2-D convolution on an ``N_h x N_w`` grid is block-diagonalised by the
2-D DFT; its singular values are the union over frequencies ``(u, v)`` of those of the
``c_out x c_in`` matrices ``P(u, v) = Σ_{p,q} W[:, :, p, q] e^{-2πi(pu/N_h + qv/N_w)}``.

Strides, by the polyphase form: with stride ``s`` dividing ``N`` (per axis), split the
taps of the dilated kernel ``K`` by residue, ``K_{a,b} = K[:, :, a::s_h, b::s_w]``; the
input splits the same way into ``s_h s_w`` sub-images on the ``(N_h/s_h) x (N_w/s_w)``
grid (an isometry), and the strided map is the sum over ``(a, b)`` of stride-1 circular
correlations of sub-image ``(a, b)`` with ``K_{a,b}``. At each frequency of the small grid
the operator is the ``c_out x (c_in s_h s_w)`` concatenation of the DFTs of the ``K_{a,b}``
(the kernel is not folded: the twiddles are periodic in the tap index). The padding
offset only shifts the signal circularly (an isometry). Dilation inserts zeros between
taps. Groups make the operator block diagonal: the norm is the largest over groups.
Real kernels give ``P(−u) = conj P(u)``, so half the frequencies suffice.

Rounding (:func:`frequency_matrices`): the DFT is evaluated as two small matrix products
with twiddles ``e^{-2πi r/M}`` computed from the exact integer ``r = (q·u) mod M``
(angle error ``≤ 3u·2π``, cos/sin within an ulp: ``|t̂ − t| ≤ 25u``). Each entry is a sum of
``L_h L_w`` terms ``K_q t_q``, so ``|P̂ − P| ≤ (60 + 4(L_h + L_w))·u·Σ_q|K_q|`` entrywise
(twiddle errors plus a complex inner-product bound ``√2 γ_{n+2}`` per stage, Higham,
*Accuracy and Stability of Numerical Algorithms*, §3.6), and
``‖P̂(u) − P(u)‖₂ ≤ ‖·‖_F ≤ ε_P`` for every ``u``, which :mod:`.gram` adds to its bounds.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from ._spec import as_float64

U = 2.0 ** -53


def dilate_kernel(weight: torch.Tensor, dilation: tuple[int, int]) -> torch.Tensor:
    """Kernel with ``d - 1`` zeros between taps: shape ``(..., d_h(k_h-1)+1, d_w(k_w-1)+1)``."""
    dh, dw = dilation
    if (dh, dw) == (1, 1):
        return weight
    kh, kw = weight.shape[-2:]
    out = weight.new_zeros(*weight.shape[:-2], dh * (kh - 1) + 1, dw * (kw - 1) + 1)
    out[..., ::dh, ::dw] = weight
    return out


def polyphase_kernel(weight: torch.Tensor, stride, dilation) -> torch.Tensor:
    """Stacked polyphase kernel ``(c_out, s_h s_w c_in, L_h, L_w)``: ``[:, (a,b,c), q] = K[:, c, s·q + (a,b)]``."""
    sh, sw = stride
    k = dilate_kernel(weight, tuple(dilation))
    lh, lw = -(-k.shape[-2] // sh), -(-k.shape[-1] // sw)
    k = torch.nn.functional.pad(k, (0, lw * sw - k.shape[-1], 0, lh * sh - k.shape[-2]))
    co, ci = k.shape[:2]
    k = k.reshape(co, ci, lh, sh, lw, sw).permute(0, 3, 5, 1, 2, 4)
    return k.reshape(co, sh * sw * ci, lh, lw)


def small_grid(grid, stride) -> tuple[int, int]:
    (nh, nw), (sh, sw) = tuple(grid), tuple(stride)
    if nh <= 0 or nw <= 0:
        raise ValueError(f"grid must be positive, got {grid}")
    if nh % sh or nw % sw:
        raise ValueError(f"polyphase form needs the stride {stride} to divide the grid {grid}")
    return nh // sh, nw // sw


def _twiddles(taps: int, size: int, count: int, offset: int = 0) -> torch.Tensor:
    """``T[j, u] = e^{-2πi (((j − offset) u) mod size)/size}`` for ``j < taps``, ``u < count``."""
    r = ((torch.arange(taps).view(-1, 1) - offset) * torch.arange(count).view(1, -1)) % size
    angle = (-2 * math.pi / size) * r.to(torch.float64)
    return torch.polar(torch.ones_like(angle), angle)


def frequency_matrices(weight, grid, stride=(1, 1), dilation=(1, 1)) -> tuple[torch.Tensor, float]:
    """``(P̂, ε_P)``: the per-frequency matrices ``(F, c_out, c_in s_h s_w)`` of the strided
    circular convolution of a single-group kernel on ``grid``, half spectrum (``v ≤ M_w/2``,
    frequency index ``u·(M_w//2+1) + v``), and the bound ``‖P̂(u) − P(u)‖₂ ≤ ε_P``."""
    mh, mw = small_grid(grid, stride)
    k = polyphase_kernel(as_float64(weight), tuple(stride), tuple(dilation))
    lh, lw = k.shape[-2:]
    th, tw = _twiddles(lh, mh, mh), _twiddles(lw, mw, mw // 2 + 1)
    p = torch.einsum("oiab,bv->oiav", k.to(torch.complex128), tw)
    p = torch.einsum("oiav,au->uvoi", p, th)
    eps = (60 + 4 * (lh + lw)) * U * float(k.abs().sum((-2, -1)).norm()) * (1 + 1e-12)
    return p.reshape(-1, *p.shape[2:]), eps


@dataclass(frozen=True)
class FrequencyGrams:
    """Hermitian ``G(u) = P(u)P(u)ᴴ`` (``side="left"``) or ``P(u)ᴴP(u)`` (the smaller side),
    ``(F, c, c)``, with ``‖Ĝ(u) − G(u)‖₂ ≤ err[u]`` for the exact ``P(u)``."""

    grams: torch.Tensor
    err: torch.Tensor
    side: str


def _gamma(n: int) -> float:
    return n * U / (1 - n * U)


def frequency_grams(weight, grid, stride=(1, 1), dilation=(1, 1)) -> FrequencyGrams:
    """The per-frequency Gram matrices of :func:`frequency_matrices`' ``P(u)``, certified.

    Two ways, the cheaper is taken: ``P̂P̂ᴴ`` from the matrices, or the DFT of the spatial
    autocorrelation ``R[δ] = Σ_{q−q'=δ} K_q K_{q'}ᵀ`` of the polyphase kernel (real
    arithmetic; ``G(u) = Σ_δ R[δ] e^{-2πi δ·u/M}``, exact for periodic signals). Errors:
    direct, ``4γ_{n+2}‖P̂‖_F² + 2‖P̂‖_F ε_P + ε_P²``; autocorrelation,
    ``γ_{n+L}(Σ_q‖K_q‖_F)² + (60 + 4(D_h + D_w))u Σ_δ‖R̂[δ]‖_F`` (real products with ``n``
    terms, at most ``L`` pairs per ``δ``, then the DFT over ``D_h × D_w`` offsets as in
    :func:`frequency_matrices`).
    """
    mh, mw = small_grid(grid, stride)
    k = polyphase_kernel(as_float64(weight), tuple(stride), tuple(dilation))
    left = k.shape[0] <= k.shape[1]
    kk = k if left else k.transpose(0, 1)  # rows: the side of the Gram
    c, n, lh, lw = kk.shape
    nfreq = mh * (mw // 2 + 1)
    if (lh * lw * c) ** 2 * n < 4 * nfreq * c * c * n:
        x = kk.permute(2, 3, 0, 1).reshape(lh * lw * c, n)
        z = (x @ x.T).reshape(lh, lw, c, lh, lw, c)
        dh, dw = 2 * lh - 1, 2 * lw - 1
        blocks = z.permute(0, 3, 1, 4, 2, 5)  # (qh, ph, qw, pw, c, c)
        idx_h = (torch.arange(lh).view(-1, 1) - torch.arange(lh).view(1, -1)) + lh - 1
        idx_w = (torch.arange(lw).view(-1, 1) - torch.arange(lw).view(1, -1)) + lw - 1
        flat = (idx_h.view(lh, lh, 1, 1) * dw + idx_w.view(1, 1, lw, lw)).reshape(-1)
        r = kk.new_zeros(dh * dw, c, c).index_add_(0, flat, blocks.reshape(-1, c, c)).reshape(dh, dw, c, c)
        th = _twiddles(dh, mh, mh, lh - 1)  # row j is the offset δ = j − (L − 1)
        tw = _twiddles(dw, mw, mw // 2 + 1, lw - 1)
        if not left:  # PᴴP = Σ K_qᵀK_q' e^{+2πi(q−q')·u/M}
            th, tw = th.conj(), tw.conj()
        g = torch.einsum("abij,bv->avij", r.to(torch.complex128), tw)
        g = torch.einsum("avij,au->uvij", g, th).reshape(-1, c, c)
        tap_norms = kk.pow(2).sum((0, 1)).sqrt().sum()
        err = (_gamma(n + lh * lw) * float(tap_norms) ** 2
               + (60 + 4 * (dh + dw)) * U * float(r.pow(2).sum((-2, -1)).sqrt().sum())) * (1 + 1e-12)
        return FrequencyGrams(g, torch.full((g.shape[0],), err, dtype=torch.float64), "left" if left else "right")
    p, eps = frequency_matrices(weight, grid, stride, dilation)
    g = p @ p.mH if left else p.mH @ p
    pf = (p.abs() ** 2).sum((-2, -1)).sqrt()
    err = (4 * _gamma(n + 2) * pf ** 2 + 2 * pf * eps + eps ** 2) * (1 + 1e-12)
    return FrequencyGrams(g, err, "left" if left else "right")


def frequency_matrix(weight, grid, stride, dilation, freq: tuple[int, int]) -> torch.Tensor:
    """``P(u)`` at one frequency ``(u, v)`` (for the top singular vector)."""
    mh, mw = small_grid(grid, stride)
    k = polyphase_kernel(as_float64(weight), tuple(stride), tuple(dilation)).to(torch.complex128)
    lh, lw = k.shape[-2:]
    ph = _twiddles(lh, mh, freq[0] + 1)[:, freq[0]]
    pw = _twiddles(lw, mw, freq[1] + 1)[:, freq[1]]
    return torch.einsum("oiab,a,b->oi", k, ph, pw)


def frequency_index(index: int, grid, stride) -> tuple[int, int]:
    """``(u, v)`` of a flat index into :func:`frequency_matrices`' frequencies."""
    _, mw = small_grid(grid, stride)
    return divmod(index, mw // 2 + 1)


def plane_wave(vector: torch.Tensor, freq: tuple[int, int], grid, stride, padding, c_in: int,
               in_hw) -> torch.Tensor:
    """The real input ``(1, c_in, *in_hw)`` whose periodic extension is the plane wave of
    right singular vector ``vector`` (length ``s_h s_w c_in``) at frequency ``freq``.

    With ``x'[i] = x[i − p]`` the strided map reads ``x'`` at ``s·o + e``; sub-image
    ``(a, b)`` of ``x'`` at small-grid cell ``r`` is ``Re(v_{a,b} e^{-2πi r·u/M})`` (see the
    module docstring). Restricted to the first ``in_hw`` cells: a warm start for Lanczos.
    """
    (sh, sw), (ph, pw) = tuple(stride), tuple(padding)
    mh, mw = small_grid(grid, stride)
    u, v = freq
    nh, nw = in_hw
    ih, iw = torch.arange(nh), torch.arange(nw)
    qh, ah = (ih + ph) // sh, (ih + ph) % sh
    qw, aw = (iw + pw) // sw, (iw + pw) % sw
    vec = vector.reshape(sh, sw, c_in)
    phase = torch.exp(-2j * math.pi * (qh.view(-1, 1) * u / mh + qw.view(1, -1) * v / mw))
    coeff = vec[ah.view(-1, 1), aw.view(1, -1), :]  # (nh, nw, c_in)
    x = (coeff * phase.unsqueeze(-1)).real.permute(2, 0, 1)
    return x.unsqueeze(0).contiguous()


def circular_conv_norm(weight, grid, stride=1, dilation=1, groups: int = 1, rtol: float = 1e-12) -> float:
    """Certified upper bound on ``‖C‖₂`` of the full circular strided convolution on ``grid``,
    within ``rtol`` of the exact value (Gram iteration, :func:`.gram.circular_bound`).
    ``weight``: ``(c_out, c_in/groups, k_h, k_w)``."""
    from .gram import circular_bound
    from ._spec import power_of_two_scaled, scale_bracket
    w = as_float64(weight)
    stride = (stride, stride) if isinstance(stride, int) else tuple(stride)
    dilation = (dilation, dilation) if isinstance(dilation, int) else tuple(dilation)
    if w.dim() != 4:
        raise ValueError(f"circular_conv_norm needs a conv2d kernel (4 dims), got {tuple(w.shape)}")
    if w.shape[0] % groups:
        raise ValueError(f"out channels {w.shape[0]} not divisible by groups={groups}")
    scaled, e, exact = power_of_two_scaled(w)
    upper = circular_bound(scaled, tuple(grid), stride, dilation, groups, rtol).upper
    margin = 0.0 if exact else math.sqrt(w.numel() * math.prod(grid)) * w.shape[-1] * w.shape[-2] * 2.0 ** -1073
    return scale_bracket(0.0, upper, e, margin)[1]
