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
  forming ``G`` (``γ_K ‖A‖_F²``), of the diagonal shift to ``μ`` and an absolute
  allowance for subnormal results (:data:`UNDERFLOW` per operation) makes the returned
  bound rigorous in float64 arithmetic.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from ._spec import ConvSpec

U = 2.0 ** -53  # unit roundoff of float64
#: Absolute error of one operation whose result is subnormal (half the smallest subnormal,
#: doubled): the normwise bounds above assume no underflow, so each certificate adds this
#: per operation it performs. Callers scale weights by powers of two first, so the terms it
#: covers are far below the normwise ones.
UNDERFLOW = 2.0 ** -1074


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


@dataclass
class BlockGram:
    """Lower block triangle of a symmetric Gram matrix in ``(h, w, c)`` order.

    ``blocks[(r, j)]`` (``r ≥ j``) is the ``bs x bs`` block coupling spatial rows ``r`` and
    ``j``; absent blocks are zero. ``bandwidth`` is the largest ``r − j`` with a block
    (zero padding makes the matrix block banded, so the factor has no fill outside it).
    """

    blocks: dict
    bs: int
    nb: int
    bandwidth: int

    @property
    def dim(self) -> int:
        return self.bs * self.nb

    def dense(self) -> torch.Tensor:
        g = torch.zeros(self.dim, self.dim, dtype=torch.float64)
        for (r, j), b in self.blocks.items():
            g[r * self.bs:(r + 1) * self.bs, j * self.bs:(j + 1) * self.bs] = b
            if r != j:
                g[j * self.bs:(j + 1) * self.bs, r * self.bs:(r + 1) * self.bs] = b.T
        return g


def _classes(need: torch.Tensor) -> torch.Tensor | None:
    """Labels of taps if "pair needed" is an equivalence relation (strided output side), else None."""
    labels = need.to(torch.int64).argmax(1)  # first partner of each tap
    same = labels.view(-1, 1) == labels.view(1, -1)
    return labels if bool((same == need).all()) else None


def _tap_products(wt: torch.Tensor, e_h: torch.Tensor, e_w: torch.Tensor, c: int) -> torch.Tensor:
    """``W_{a,c}ᵀ W_{b,d}`` for all tap pairs, shape ``(kh, kw, c, kh, kw, c)``.

    Pairs whose selection products ``e_h[a, b]``, ``e_w[c, d]`` vanish are never used; on
    the output side of a strided layer the used pairs are those with equal tap residues,
    so only those blocks are computed (zeros elsewhere).
    """
    kh, kw = e_h.shape[0], e_w.shape[0]
    need_h = e_h.flatten(2).any(-1)
    need_w = e_w.flatten(2).any(-1)
    lab_h, lab_w = _classes(need_h), _classes(need_w)
    if lab_h is None or lab_w is None or (bool(need_h.all()) and bool(need_w.all())):
        return (wt.T @ wt).reshape(kh, kw, c, kh, kw, c)
    m = wt.new_zeros(kh, kw, c, kh, kw, c)
    w3 = wt.reshape(wt.shape[0], kh, kw, c)
    for lh in lab_h.unique():
        ia = torch.nonzero(lab_h == lh, as_tuple=True)[0]
        for lw in lab_w.unique():
            ic = torch.nonzero(lab_w == lw, as_tuple=True)[0]
            x = w3[:, ia][:, :, ic].reshape(wt.shape[0], -1)
            blk = (x.T @ x).reshape(len(ia), len(ic), c, len(ia), len(ic), c)
            m[ia.view(-1, 1, 1, 1), ic.view(1, -1, 1, 1), :, ia.view(1, 1, -1, 1),
              ic.view(1, 1, 1, -1), :] = blk.permute(0, 1, 3, 4, 2, 5)
    return m


def conv_gram_blocks(spec: ConvSpec, side: str) -> BlockGram:
    """``AᵀA`` (``side="input"``) or ``AAᵀ`` (``side="output"``) of a single-group spec, by blocks.

    ``A = Σ_t (S^h_{t_h} ⊗ S^w_{t_w}) ⊗ W_t`` (``S`` the 0/1 selection matrices of one axis),
    so ``AᵀA = Σ_{a,b} (S^hᵀ_a S^h_b) ⊗ Q_{ab}`` with ``Q_{ab} = Σ_{c,d} (S^wᵀ_c S^w_d) ⊗
    (W_{a,c}ᵀ W_{b,d})``: the ``k_h²`` matrices ``Q_{ab}`` of one spatial row are formed
    once and every block is a 0/1 combination of them.
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
    m = _tap_products(wt, e_h, e_w, c)  # [a, c, x, b, d, y]
    q = torch.einsum("cdkl,acxbdy->abkxly", e_w, m)
    nrow, ncol = e_w.shape[-1], c
    q = q.reshape(kh * kh, nrow * ncol, nrow * ncol)
    coef = e_h.reshape(kh * kh, e_h.shape[-2], e_h.shape[-1])
    nb, bs = e_h.shape[-1], nrow * ncol
    blocks, bandwidth = {}, 0
    for r in range(nb):
        for j in range(r + 1):
            cf = coef[:, r, j]
            nz = torch.nonzero(cf, as_tuple=True)[0]
            if nz.numel():
                blocks[(r, j)] = torch.tensordot(cf[nz], q[nz], dims=1)
                bandwidth = max(bandwidth, r - j)
    return BlockGram(blocks, bs, nb, bandwidth)


def conv_gram(spec: ConvSpec, side: str, order: str = "chw") -> torch.Tensor:
    """Dense ``AᵀA`` / ``AAᵀ``; ``order="chw"`` indexes like ``x.reshape(-1)`` (tests, small layers)."""
    bg = conv_gram_blocks(spec, side)
    g = bg.dense()
    if order == "hwc":
        return g
    if order != "chw":
        raise ValueError(f"order must be 'chw' or 'hwc', got {order!r}")
    c = spec.c_in if side == "input" else spec.c_out
    hw = spec.in_hw if side == "input" else spec.out_hw
    perm = torch.arange(bg.dim).reshape(*hw, c).permute(2, 0, 1).reshape(-1)
    return g[perm][:, perm]


def _block_cholesky_ok(bg: BlockGram, mu: float) -> bool:
    """Blocked Cholesky of ``μI − G`` (band-limited); ``False`` as soon as a pivot fails.

    Blocks more than ``bandwidth`` rows off the diagonal are zero and stay zero in the
    factor (no fill outside a band), so they are never formed.
    """
    bs, nb, bw = bg.bs, bg.nb, bg.bandwidth
    eye = torch.eye(bs, dtype=torch.float64)
    lo_blocks: dict = {}

    def h(r: int, j: int) -> torch.Tensor:
        b = bg.blocks.get((r, j))
        out = -b if b is not None else torch.zeros(bs, bs, dtype=torch.float64)
        if r == j:
            out += mu * eye
        return out

    for j in range(nb):
        lo = max(0, j - bw)
        d = h(j, j)
        for i in range(lo, j):
            d -= lo_blocks[(j, i)] @ lo_blocks[(j, i)].T
        lfac, info = torch.linalg.cholesky_ex(d)
        if int(info) != 0:
            return False
        lo_blocks[(j, j)] = lfac
        for r in range(j + 1, min(nb, j + bw + 1)):
            b = h(r, j)
            for i in range(max(0, r - bw), j):
                b -= lo_blocks[(r, i)] @ lo_blocks[(j, i)].T
            lo_blocks[(r, j)] = torch.linalg.solve_triangular(lfac.T, b, upper=True, left=False)
        for i in range(lo, j):  # row j - bw is no longer needed by later steps
            if j - i >= bw:
                lo_blocks.pop((j - bw, i), None)
    return True


def cholesky_certificate(gram: BlockGram, mu: float, frob2: float, terms: int) -> float | None:
    """A rigorous bound ``λ_max(G_exact) ≤ returned value`` if ``μI − G`` factors, else ``None``.

    ``gram`` is the computed (rounded) Gram matrix by blocks, ``frob2`` an upper bound on
    ``‖A‖_F²`` and ``terms`` the number of products summed per Gram entry (``γ_K`` term).
    Floating-point Cholesky that completes on ``H`` factors ``H + E`` exactly with
    ``‖E‖₂ ≤ γ·tr(H)/(1 − Dγ)``; for the blocked (Level-3 BLAS) algorithm we take
    ``γ = γ_{4D}`` instead of ``γ_{D+1}`` to cover the blocking constant (Higham, Thm 10.5
    and §13). The returned ``μ + margin`` adds that, ``γ_K‖A‖_F²`` for forming ``G`` and
    ``u·max|h_ii|`` for the diagonal shift.
    """
    d = gram.dim
    diag = torch.cat([gram.blocks[(j, j)].diagonal() if (j, j) in gram.blocks
                      else torch.zeros(gram.bs, dtype=torch.float64) for j in range(gram.nb)])
    h_diag = mu - diag
    trace = float(h_diag.sum())
    max_diag = float(h_diag.abs().max())
    if not _block_cholesky_ok(gram, mu):
        return None
    gam_d = 4 * d * U / (1 - 4 * d * U)
    gam_k = terms * U / (1 - terms * U)
    margin = gam_d / (1 - d * gam_d) * max(trace, 0.0) + gam_k * frob2 + U * max_diag + UNDERFLOW * d * (d + terms)
    return math.nextafter(mu + margin, math.inf)


def certified_gram_upper(gram: BlockGram, estimate: float, frob2: float, terms: int,
                         rel: float = 1e-13, attempts: int = 8) -> float | None:
    """Smallest certified ``λ_max(G) ≤ bound`` among ``μ = estimate·(1 + rel·16^j)``, or ``None``."""
    delta = rel
    for _ in range(attempts):
        bound = cholesky_certificate(gram, estimate * (1 + delta), frob2, terms)
        if bound is not None:
            return bound
        delta *= 16
    return None


def _top_eigenpair(g: torch.Tensor) -> tuple[float, torch.Tensor]:
    """Largest eigenvalue and eigenvector of a symmetric PSD float64 matrix (estimate)."""
    if g.shape[0] <= 1024:
        lam, vec = torch.linalg.eigh(g)
        return float(lam[-1]), vec[:, -1]
    from scipy.sparse.linalg import eigsh
    lam, vec = eigsh(g.numpy(), k=1, which="LA", tol=1e-12)
    return float(lam[-1]), torch.from_numpy(vec[:, -1].copy())


def gamma(n: int) -> float:
    """``γ_n = nu/(1 − nu)``: the relative error bound of ``n`` rounded float64 operations."""
    return n * U / (1 - n * U)


def certified_lower(av: torch.Tensor, v: torch.Tensor, frob: float, terms: int) -> float:
    """A lower bound on ``‖A‖₂`` from ``av``, the computed ``Av`` (``v ≠ 0``), that rounding
    cannot push above the truth: ``‖Av‖ ≥ ‖Âv‖ − γ_K‖A‖_F‖v‖`` (each entry of ``Âv`` is a
    rounded sum of at most ``K = terms`` products, Higham §3.1), each norm within
    ``γ_{n+2}`` of its computed value, and the quotient rounded down."""
    nv = float(torch.linalg.vector_norm(v))
    if nv == 0.0:
        return 0.0
    nav = float(torch.linalg.vector_norm(av))
    g_av, g_v = gamma(av.numel() + 2), gamma(v.numel() + 2)
    num = nav * (1 - g_av) - gamma(2 * terms) * frob * nv * (1 + g_v)
    return max(0.0, num / (nv * (1 + g_v)) * (1 - 2 * U))


def dense_matrix_norm(a: torch.Tensor) -> tuple[float, float]:
    """Rigorous ``(lower, upper)`` for ``σ₁`` of a dense float64 matrix.

    The matrix is first scaled by a power of two (:func:`._spec.power_of_two_scaled`), so no
    Gram entry under- or overflows. ``lower`` from the computed top singular vector
    (:func:`certified_lower`); ``upper`` by a Cholesky certificate of ``μI − G`` on the smaller
    Gram matrix ``G`` (:func:`cholesky_certificate`, rounding of forming ``G`` included).
    """
    from ._spec import flush_margin, power_of_two_scaled, scale_bracket
    a = a.to(torch.float64)
    if a.numel() == 0 or not bool(a.any()):
        return 0.0, 0.0
    scaled, e, exact = power_of_two_scaled(a)
    lower, upper = _scaled_dense_norm(scaled)
    margin = 0.0 if exact else flush_margin(1, a.numel())
    return scale_bracket(lower, upper, e, margin)


def _scaled_dense_norm(a: torch.Tensor) -> tuple[float, float]:
    m, n = a.shape
    on_input = n <= m
    g = a.T @ a if on_input else a @ a.T
    lam, vec = _top_eigenpair(g)
    v = vec if on_input else a.T @ vec
    frob2 = float((a * a).sum()) * (1 + gamma(a.numel() + 1))
    lower = certified_lower(a @ v, v, math.sqrt(frob2), n)
    gram = BlockGram({(0, 0): g}, g.shape[0], 1, 0)
    bound = certified_gram_upper(gram, max(lam, lower * lower, 2.0 ** -1000), frob2, max(m, n))
    if bound is None:  # the Frobenius norm is always an upper bound
        return lower, math.nextafter(math.sqrt(frob2), math.inf)
    return lower, math.nextafter(math.sqrt(bound), math.inf)
