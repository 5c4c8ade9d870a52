"""Checks that catch a wrong operator: bracket vs truth, adjoint (dot-product) test.

A broken adjoint (e.g. one that skips the transpose) makes Lanczos on ``AᵀA`` converge to
the wrong number: :func:`check_bracket` against the dense SVD flags it, and
:func:`adjoint_mismatch` (``|⟨Ax, y⟩ − ⟨x, Aᵀy⟩| / (‖Ax‖‖y‖ + ‖x‖‖Aᵀy‖)``, which is
``O(u)`` for a true adjoint; Claerbout's dot-product test) flags it without any SVD.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Sequence

import torch

from .conv_norm import OperatorNorm
from .lanczos import rayleigh_lower, top_singular_pair


@dataclass(frozen=True)
class BracketCheck:
    ok: bool
    message: str


def check_bracket(result: OperatorNorm, truth: float, rtol: float = 1e-6,
                  bracket_rtol: float = 1e-9) -> BracketCheck:
    """``ok`` iff ``lower ≤ truth ≤ upper`` (to ``bracket_rtol``) and ``|value − truth| ≤ rtol·truth``."""
    problems = []
    if not result.contains(truth, bracket_rtol):
        problems.append(f"truth {truth:.12g} outside the bracket [{result.lower:.12g}, {result.upper:.12g}]")
    if abs(result.value - truth) > rtol * abs(truth) + 1e-300:
        problems.append(f"value {result.value:.12g} differs from truth {truth:.12g} by "
                        f"{abs(result.value - truth) / max(abs(truth), 1e-300):.3g} relative (> {rtol:g})")
    return BracketCheck(not problems, "; ".join(problems) or "ok")


def adjoint_mismatch(matvec: Callable, rmatvec: Callable, in_shape: Sequence[int],
                     out_shape: Sequence[int], seed: int = 0) -> float:
    """Relative dot-product-test error of ``rmatvec`` as the adjoint of ``matvec`` (float64)."""
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(tuple(in_shape), generator=gen, dtype=torch.float64)
    y = torch.randn(tuple(out_shape), generator=gen, dtype=torch.float64)
    ax, aty = matvec(x), rmatvec(y)
    if tuple(ax.shape) != tuple(out_shape) or tuple(aty.shape) != tuple(in_shape):
        return math.inf
    lhs, rhs = float((ax * y).sum()), float((x * aty).sum())
    scale = float(ax.norm() * y.norm() + x.norm() * aty.norm())
    return abs(lhs - rhs) / scale if scale > 0 else 0.0


def lanczos_operator_norm(matvec: Callable, rmatvec: Callable, in_shape: Sequence[int],
                          out_shape: Sequence[int], tol: float = 1e-6, seed: int = 0,
                          upper: float = math.inf) -> OperatorNorm:
    """Lanczos estimate for any operator given by matvecs; ``lower`` from the returned vector.

    ``upper`` is whatever rigorous bound the caller has (``inf`` if none).
    """
    sigma, v = top_singular_pair(matvec, rmatvec, in_shape, out_shape, tol=tol, seed=seed)
    lower = rayleigh_lower(matvec, v, in_shape)
    return OperatorNorm(max(sigma, lower) if upper == math.inf else min(max(sigma, lower), upper),
                        lower, max(upper, lower), "lanczos", detail="matvecs supplied by the caller")
