"""Top singular value of a linear operator given only by matvecs (Lanczos / ARPACK).

``scipy.sparse.linalg.eigsh`` (implicitly restarted Lanczos, ARPACK; Lehoucq, Sorensen
& Yang 1998) on the symmetric PSD operator ``AᵀA`` (or ``AAᵀ``, whichever side is
smaller), in float64, through a ``LinearOperator`` whose matvecs are the operator and
its adjoint: no dense matrix is formed. ARPACK stops when the Ritz residual is below
``tol_eig · |λ|``; the eigenvalue error is then of order ``residual² / gap``, far below
``tol``. The returned *vector* is what makes the lower bound rigorous: any ``v ≠ 0``
gives ``‖Av‖/‖v‖ ≤ ‖A‖``, recomputed here from the vector (see :func:`rayleigh_lower`).
"""
from __future__ import annotations

import math
from typing import Callable, Sequence

import numpy as np
import torch
from scipy.sparse.linalg import ArpackNoConvergence, LinearOperator, eigsh

Matvec = Callable[[torch.Tensor], torch.Tensor]


def rayleigh_lower(matvec: Matvec, v: np.ndarray | torch.Tensor, in_shape: Sequence[int]) -> float:
    """``‖A v‖ / ‖v‖`` in float64: a rigorous lower bound on ``‖A‖₂`` for any ``v ≠ 0``."""
    x = torch.as_tensor(np.asarray(v), dtype=torch.float64).reshape(tuple(in_shape))
    nx = float(torch.linalg.vector_norm(x))
    if nx == 0.0:
        return 0.0
    return float(torch.linalg.vector_norm(matvec(x))) / nx


def top_singular_pair(matvec: Matvec, rmatvec: Matvec, in_shape: Sequence[int],
                      out_shape: Sequence[int], tol: float = 1e-6, seed: int = 0,
                      maxiter: int | None = None,
                      start: torch.Tensor | None = None) -> tuple[float, np.ndarray]:
    """``(σ₁ estimate, right singular vector v)`` of ``A`` by Lanczos on the smaller Gram.

    ``matvec`` maps a tensor of ``in_shape`` to ``out_shape``; ``rmatvec`` is its adjoint.
    Deterministic for a ``seed`` (the start vector is drawn from it unless ``start``, an
    input-shaped warm start, is given). ``tol`` is the
    target relative accuracy of σ; ARPACK is run at ``tol_eig = tol`` on ``λ = σ²``
    (Ritz residual ``≤ tol·λ`` bounds the eigenvalue error by ``tol·λ``, i.e. ``tol/2`` on σ). If the output side is smaller, Lanczos runs on ``AAᵀ`` with vector ``u`` and
    ``v = Aᵀu/‖Aᵀu‖`` is returned (then ``‖Av‖ ≥ ‖Aᵀu‖/‖u‖`` by Cauchy-Schwarz).
    """
    in_shape, out_shape = tuple(in_shape), tuple(out_shape)
    n_in, n_out = math.prod(in_shape), math.prod(out_shape)
    on_input = n_in <= n_out
    dim, shape = (n_in, in_shape) if on_input else (n_out, out_shape)
    first, second = (matvec, rmatvec) if on_input else (rmatvec, matvec)

    def gram(z: np.ndarray) -> np.ndarray:
        t = torch.from_numpy(np.ascontiguousarray(z, dtype=np.float64)).reshape(shape)
        return second(first(t)).reshape(-1).numpy()

    rng = np.random.default_rng(seed)
    v0 = rng.standard_normal(dim)
    if start is not None:
        s0 = start.to(torch.float64).reshape(in_shape)
        s0 = s0 if on_input else matvec(s0)
        s0 = s0.reshape(-1).numpy()
        if np.any(s0):  # a little noise keeps every direction in the Krylov space
            v0 = s0 / np.linalg.norm(s0) + 1e-3 * v0 / np.linalg.norm(v0)
    if dim <= 3:  # ARPACK needs k < n; tiny: build the Gram from matvecs
        g = np.stack([gram(e) for e in np.eye(dim)], axis=1)
        lam, vec = np.linalg.eigh((g + g.T) / 2)
        lam1, u = float(lam[-1]), vec[:, -1]
    elif not np.any(gram(v0)):  # a non-zero kernel that only ever reads padding: A = 0
        return 0.0, v0 if on_input else rng.standard_normal(n_in)
    else:
        op = LinearOperator((dim, dim), matvec=gram, dtype=np.float64)
        tol_eig = tol
        ncv = min(dim - 1, 24)
        try:
            lam, vec = eigsh(op, k=1, which="LA", v0=v0, tol=tol_eig, ncv=ncv,
                             maxiter=maxiter or max(1000, dim))
        except ArpackNoConvergence as err:  # keep the best Ritz pair; bracket stays honest
            if len(err.eigenvalues) == 0:
                raise
            lam, vec = err.eigenvalues, err.eigenvectors
        lam1, u = float(lam[-1]), vec[:, -1]
    sigma = math.sqrt(max(lam1, 0.0))
    if on_input:
        return sigma, u
    t = rmatvec(torch.from_numpy(np.ascontiguousarray(u)).reshape(out_shape)).reshape(-1)
    n = float(torch.linalg.vector_norm(t))
    v = (t / n).numpy() if n > 0 else rng.standard_normal(n_in)
    return sigma, v
