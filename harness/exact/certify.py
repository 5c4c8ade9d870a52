"""Dense pieces for small operators: materialisation, tap-structured Gram, Cholesky certificate.

* :func:`materialize` applies the operator to the identity basis (ground truth
  for tests; only for small operators).
* :func:`conv_gram` assembles ``AᵀA`` (or ``AAᵀ``) of a convolution from the products of
  its taps, ``Σ_{t,t'} (S_tᵀS_{t'}) ⊗ (W_tᵀW_{t'})``, where ``S_t`` are the 0/1 spatial
  selection matrices of tap ``t`` (zero or circular padding, stride, dilation, crop): the
  cost is that of the Gram entries, not of ``D`` convolutions.
* :func:`cholesky_certificate` proves ``λ_max(G) ≤ μ``: ``μI − G`` is positive definite iff
  its Cholesky factorisation exists, and floating-point Cholesky that runs to completion
  on ``H`` factors ``H + E`` exactly with ``‖E‖₂ ≤ γ_{D+1}·tr(H)/(1−Dγ_{D+1})`` (Demmel 1989;
  Higham, *Accuracy and Stability of Numerical Algorithms*, Thm 10.5; Rump, BIT 2006,
  "Verification of positive definiteness"). Adding that term, the rounding error of
  forming ``G`` (``γ_K ‖A‖_F²``) and of the diagonal shift to ``μ`` makes the returned
  bound rigorous in float64 arithmetic.
"""
from __future__ import annotations

import math

import numpy as np
import torch

from ._spec import ConvSpec

U = 2.0 ** -53  # unit roundoff of float64


def materialize(matvec, in_shape, batch: int = 512) -> torch.Tensor:
    """Dense matrix ``(prod(out), prod(in))`` of a linear ``matvec`` (identity basis, float64)."""
    n = math.prod(in_shape)
    cols = []
    for start in range(0, n, batch):
        stop = min(n, start + batch)
        e = torch.zeros(stop - start, n, dtype=torch.float64)
        e[torch.arange(stop - start), torch.arange(start, stop)] = 1.0
        y = matvec(e.reshape(stop - start, *tuple(in_shape)[1:]))
        cols.append(y.reshape(stop - start, -1))
    return torch.cat(cols, 0).T.contiguous()


def _selection(n: int, m: int, k: int, s: int, d: int, p: int, circular: bool) -> torch.Tensor:
    """``S[t, o, i] = 1`` iff output ``o`` reads input ``i`` through tap ``t`` (one axis)."""
    o = torch.arange(m).view(1, m)
    t = torch.arange(k).view(k, 1)
    idx = s * o + d * t - p  # (k, m)
    if circular:
        idx, valid = idx % n, torch.ones_like(idx, dtype=torch.bool)
    else:
        valid = (idx >= 0) & (idx < n)
    sel = torch.zeros(k, m, n, dtype=torch.float64)
    tt, oo = torch.nonzero(valid, as_tuple=True)
    sel[tt, oo, idx[valid]] = 1.0
    return sel


def conv_gram(spec: ConvSpec, side: str, order: str = "chw") -> tuple[torch.Tensor, int, int]:
    """Dense ``AᵀA`` (``side="input"``) or ``AAᵀ`` (``side="output"``) of a single-group spec.

    ``order="chw"`` indexes like ``x.reshape(-1)`` of ``(c, h, w)`` tensors; ``order="hwc"``
    puts the spatial row first, which makes the matrix block banded for zero padding.
    Returns ``(G, block_size, block_bandwidth)``: blocks of one spatial row
    (``order="hwc"``), and the largest row distance with a non-zero block.
    """
    if spec.groups != 1:
        raise ValueError("conv_gram needs a single-group spec (use spec.split_groups())")
    circ = spec.padding_mode == "circular"
    (kh, kw), (mh, mw), (nh, nw) = spec.kernel, spec.out_hw, spec.in_hw
    sh = _selection(nh, mh, kh, spec.stride[0], spec.dilation[0], spec.padding[0], circ)
    sw = _selection(nw, mw, kw, spec.stride[1], spec.dilation[1], spec.padding[1], circ)
    w = spec.weight  # (co, ci, kh, kw)
    if side == "input":
        e_h = torch.einsum("aoi,boj->abij", sh, sh)  # S_aᵀ S_b
        e_w = torch.einsum("coi,doj->cdij", sw, sw)
        wt = w.permute(0, 2, 3, 1).reshape(w.shape[0], -1)  # (co, kh kw ci)
        c = w.shape[1]
    elif side == "output":
        e_h = torch.einsum("aio,bjo->abij", sh, sh)  # S_a S_bᵀ
        e_w = torch.einsum("cio,djo->cdij", sw, sw)
        wt = w.permute(1, 2, 3, 0).reshape(w.shape[1], -1)  # (ci, kh kw co)
        c = w.shape[0]
    else:
        raise ValueError(f"side must be 'input' or 'output', got {side!r}")
    m = (wt.T @ wt).reshape(kh, kw, c, kh, kw, c)  # [a, c, x, b, d, y]
    t1 = torch.einsum("abij,acxbdy->ijcxdy", e_h, m)
    if order == "chw":
        g = torch.einsum("cdkl,ijcxdy->xikyjl", e_w, t1)
    elif order == "hwc":
        g = torch.einsum("cdkl,ijcxdy->ikxjly", e_w, t1)
    else:
        raise ValueError(f"order must be 'chw' or 'hwc', got {order!r}")
    n = g.shape[0] * g.shape[1] * g.shape[2]
    rows = torch.nonzero(e_h.abs().sum((0, 1)), as_tuple=True)
    bandwidth = int((rows[0] - rows[1]).abs().max()) if rows[0].numel() else 0
    return g.reshape(n, n), n // e_h.shape[-1], bandwidth


def _block_banded_cholesky_ok(h: torch.Tensor, bs: int, bw: int) -> bool:
    """In-place blocked Cholesky of a block-banded SPD candidate; ``False`` if a pivot fails.

    Blocks are ``bs x bs``; blocks more than ``bw`` block rows off the diagonal are zero
    and stay zero in the factor (no fill outside a band), so they are never touched.
    """
    nb = h.shape[0] // bs

    def blk(i: int, j: int) -> torch.Tensor:
        return h[i * bs:(i + 1) * bs, j * bs:(j + 1) * bs]

    for j in range(nb):
        lo = max(0, j - bw)
        if lo < j:
            lj = h[j * bs:(j + 1) * bs, lo * bs:j * bs]
            blk(j, j).sub_(lj @ lj.T)
        lfac, info = torch.linalg.cholesky_ex(blk(j, j))
        if int(info) != 0:
            return False
        blk(j, j).copy_(lfac)
        for r in range(j + 1, min(nb, j + bw + 1)):
            i0 = max(0, r - bw)
            if i0 < j:
                blk(r, j).sub_(h[r * bs:(r + 1) * bs, i0 * bs:j * bs]
                               @ h[j * bs:(j + 1) * bs, i0 * bs:j * bs].T)
            blk(r, j).copy_(torch.linalg.solve_triangular(lfac.T, blk(r, j), upper=True, left=False))
    return True


def cholesky_certificate(gram: torch.Tensor, mu: float, frob2: float, terms: int,
                         block: int = 0, bandwidth: int = -1) -> float | None:
    """A rigorous bound ``λ_max(G_exact) ≤ returned value`` if ``μI − G`` factors, else ``None``.

    ``gram`` is the computed (rounded) Gram matrix (not modified), ``frob2`` an upper
    bound on ``‖A‖_F²`` and ``terms`` the number of products summed per Gram entry (for
    the ``γ_K`` term). With ``block > 0`` and ``0 ≤ bandwidth`` the matrix is block banded
    and a blocked banded Cholesky is used; its backward error obeys the same bound with
    a blocking constant, covered here by using ``γ_{4D}`` instead of ``γ_{D+1}``.
    """
    d = gram.shape[0]
    h = -gram
    h.diagonal().add_(mu)
    trace = float(h.diagonal().sum())
    max_diag = float(h.diagonal().abs().max())
    nb = d // block if block > 0 else 1
    if block > 0 and 0 <= bandwidth < nb - 1:
        ok = _block_banded_cholesky_ok(h, block, bandwidth)
    else:
        ok = int(torch.linalg.cholesky_ex(h)[1]) == 0
    del h
    if not ok:
        return None
    gam_d = 4 * d * U / (1 - 4 * d * U)
    gam_k = terms * U / (1 - terms * U)
    margin = gam_d / (1 - d * gam_d) * max(trace, 0.0) + gam_k * frob2 + U * max_diag
    return mu + margin
