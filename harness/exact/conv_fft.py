"""Exact spectral norms of circular (periodic) convolutions by FFT, with strides.

Sedghi, Gupta & Long, "The Singular Values of Convolutional Layers", ICLR 2019: a
stride-1 circular 2-D convolution on an ``N_h x N_w`` grid is block-diagonalised by the
2-D DFT; its singular values are the union over frequencies ``(u, v)`` of those of the
``c_out x c_in`` matrices ``P(u, v) = Σ_{p,q} W[:, :, p, q] e^{-2πi(pu/N_h + qv/N_w)}``.

Strides (polyphase form, ../shared/REFERENCE.md "Exact and certified operator norms"):
with stride ``s`` dividing ``N`` (per axis), split the taps of the dilated kernel
``K`` by residue, ``K_{a,b} = K[:, :, a::s_h, b::s_w]``; the input splits the same way
into ``s_h s_w`` sub-images on the ``(N_h/s_h) x (N_w/s_w)`` grid (an isometry), and the
strided map is the sum over ``(a, b)`` of stride-1 circular convolutions of sub-image
``(a, b)`` with ``K_{a,b}``. At each frequency of the small grid the operator is the
``c_out x (c_in s_h s_w)`` concatenation of the DFTs of the ``K_{a,b}``. Taps beyond the
small grid wrap around (they are folded, i.e. summed modulo the grid), which is exact
for a periodic signal. The offset/padding only shifts the signal circularly (an
isometry) and does not change any singular value; neither does the DFT sign convention
(the matrices at ``-u`` are the complex conjugates of those at ``u``).

Dilation ``d`` is handled by inserting ``d - 1`` zeros between taps. Groups make the
operator block diagonal: the norm is the largest over groups.

Everything is float64 / complex128; the per-frequency norm is the square root of the
largest eigenvalue of the smaller Hermitian Gram matrix (``eigvalsh``, backward stable).
"""
from __future__ import annotations

import torch

from ._spec import as_float64


def dilate_kernel(weight: torch.Tensor, dilation: tuple[int, int]) -> torch.Tensor:
    """Kernel with ``d - 1`` zeros between taps: shape ``(..., d_h(k_h-1)+1, d_w(k_w-1)+1)``."""
    dh, dw = dilation
    if (dh, dw) == (1, 1):
        return weight
    kh, kw = weight.shape[-2:]
    out = weight.new_zeros(*weight.shape[:-2], dh * (kh - 1) + 1, dw * (kw - 1) + 1)
    out[..., ::dh, ::dw] = weight
    return out


def _fold(k: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
    """Sum taps modulo ``grid`` on the last two axes (periodic wrap-around)."""
    mh, mw = grid
    lh, lw = k.shape[-2:]
    ph, pw = (-lh) % mh, (-lw) % mw
    if lh == 0 or lw == 0:
        return k.new_zeros(*k.shape[:-2], mh, mw)
    k = torch.nn.functional.pad(k, (0, pw, 0, ph))
    k = k.reshape(*k.shape[:-2], (lh + ph) // mh, mh, lw + pw).sum(-3)
    return k.reshape(*k.shape[:-1], (lw + pw) // mw, mw).sum(-2)


def polyphase_kernel(weight: torch.Tensor, stride, dilation) -> torch.Tensor:
    """Stacked polyphase kernel ``(c_out, s_h s_w c_in, L_h, L_w)``: ``[:, (a,b,c), q] = K[:, c, s·q + (a,b)]``."""
    sh, sw = stride
    k = dilate_kernel(weight, tuple(dilation))
    lh, lw = -(-k.shape[-2] // sh), -(-k.shape[-1] // sw)
    k = torch.nn.functional.pad(k, (0, lw * sw - k.shape[-1], 0, lh * sh - k.shape[-2]))
    co, ci = k.shape[:2]
    k = k.reshape(co, ci, lh, sh, lw, sw).permute(0, 3, 5, 1, 2, 4)
    return k.reshape(co, sh * sw * ci, lh, lw)


def _check_grid(grid, stride) -> tuple[int, int]:
    (nh, nw), (sh, sw) = tuple(grid), tuple(stride)
    if nh <= 0 or nw <= 0:
        raise ValueError(f"grid must be positive, got {grid}")
    if nh % sh or nw % sw:
        raise ValueError(f"polyphase form needs the stride {stride} to divide the grid {grid}")
    return nh // sh, nw // sw


def frequency_matrices(weight, grid, stride=(1, 1), dilation=(1, 1)) -> torch.Tensor:
    """Per-frequency matrices of the strided circular convolution, ``(F, c_out, c_in s_h s_w)``.

    ``weight`` is a single-group conv2d kernel ``(c_out, c_in, k_h, k_w)``; ``grid`` the
    circular input size ``(N_h, N_w)`` with ``s_h | N_h`` and ``s_w | N_w``. Only the
    ``rfft`` half of the frequencies is returned (the rest are complex conjugates).
    """
    small = _check_grid(grid, stride)
    k = polyphase_kernel(as_float64(weight), tuple(stride), tuple(dilation))
    p = torch.fft.rfft2(_fold(k, small))  # (c_out, c_in s², M_h, M_w//2+1)
    return p.permute(2, 3, 0, 1).reshape(-1, p.shape[0], p.shape[1])


def frequency_grams(weight, grid, stride=(1, 1), dilation=(1, 1)) -> torch.Tensor:
    """Hermitian Gram matrices ``P(u)P(u)ᴴ`` (or ``P(u)ᵀ conj(P(u))``, the smaller side), ``(F, c, c)``.

    Their largest eigenvalues are the squared per-frequency norms. Computed either in the
    frequency domain or, when cheaper, as the DFT of the (folded) spatial autocorrelation
    ``R[δ] = Σ_q K[q] K[q − δ]ᵀ`` of the stacked polyphase kernel (real arithmetic):
    ``P(u)P(u)ᴴ = Σ_δ R[δ] e^{-2πi δ·u/M}``, and folding ``δ`` modulo the grid is exact.
    """
    small = _check_grid(grid, stride)
    k = polyphase_kernel(as_float64(weight), tuple(stride), tuple(dilation))
    if k.shape[0] > k.shape[1]:
        k = k.transpose(0, 1)  # Pᵀ has the singular values of P
    c, cb, lh, lw = k.shape
    nfreq = small[0] * (small[1] // 2 + 1)
    if 2 * (lh * lw * c) ** 2 * cb < 8 * nfreq * c * c * cb:
        x = k.permute(2, 3, 0, 1).reshape(lh * lw * c, cb)
        z = (x @ x.T).reshape(lh, lw, c, lh, lw, c)  # z[q, :, r, :] = K[q] K[r]ᵀ
        z = z.permute(0, 3, 1, 4, 2, 5).reshape(-1, c, c)  # (qh, rh, qw, rw)
        ar_h, ar_w = torch.arange(lh), torch.arange(lw)
        dh = (ar_h.view(-1, 1) - ar_h.view(1, -1)) % small[0]  # δ = q - r, folded
        dw = (ar_w.view(-1, 1) - ar_w.view(1, -1)) % small[1]
        idx = (dh.view(lh, lh, 1, 1) * small[1] + dw.view(1, 1, lw, lw)).reshape(-1)
        r = k.new_zeros(small[0] * small[1], c, c).index_add_(0, idx, z)
        r = r.reshape(small[0], small[1], c, c).permute(2, 3, 0, 1)
        g = torch.fft.rfft2(r)
        return g.permute(2, 3, 0, 1).reshape(-1, c, c)
    p = torch.fft.rfft2(_fold(k, small))
    p = p.permute(2, 3, 0, 1).reshape(-1, c, cb)
    return p @ p.mH


def batched_top_singular(p: torch.Tensor) -> torch.Tensor:
    """Largest singular value of each matrix in a batch ``(F, m, n)`` (float64 result)."""
    if p.shape[-2] <= p.shape[-1]:
        g = p @ p.mH
    else:
        g = p.mH @ p
    lam = torch.linalg.eigvalsh(g)[..., -1]
    return lam.clamp_min(0).sqrt()


def circular_conv_norm(weight, grid, stride=1, dilation=1, groups: int = 1) -> float:
    """Exact ``‖C‖₂`` of the full circular (periodic) strided convolution on ``grid``.

    Formula: ``max_{u,v} ‖[DFT(K_{a,b})(u,v)]_{a,b}‖₂`` over the ``(N_h/s_h) x (N_w/s_w)``
    frequency grid (Sedghi et al. ICLR 2019, extended to strides by the polyphase form of
    REFERENCE.md); exact up to float64 rounding. ``weight``: ``(c_out, c_in/groups, k_h, k_w)``.
    """
    w = as_float64(weight)
    stride = (stride, stride) if isinstance(stride, int) else tuple(stride)
    dilation = (dilation, dilation) if isinstance(dilation, int) else tuple(dilation)
    if w.dim() != 4:
        raise ValueError(f"circular_conv_norm needs a conv2d kernel (4 dims), got {tuple(w.shape)}")
    if w.shape[0] % groups:
        raise ValueError(f"out channels {w.shape[0]} not divisible by groups={groups}")
    per = w.shape[0] // groups
    best = 0.0
    for g in range(groups):
        gram = frequency_grams(w[g * per:(g + 1) * per], grid, stride, dilation)
        best = max(best, float(torch.linalg.eigvalsh(gram)[..., -1].max().clamp_min(0).sqrt()))
    return best
