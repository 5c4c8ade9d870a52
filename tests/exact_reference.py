"""Independent references for the network-bound tests: Jacobian norms by torch.func, in float64."""
from __future__ import annotations

import copy

import torch
from torch import nn


def float64_eval(model: nn.Module) -> nn.Module:
    net = copy.deepcopy(model).to(torch.float64).eval()
    for p in net.parameters():
        p.requires_grad_(False)
    return net


def jacobian_norm(model: nn.Module, shape, points: int = 3, iters: int = 30, seed: int = 0) -> float:
    """Largest ``‖J(x)v‖`` (``‖v‖ = 1``) found by power iteration on ``JᵀJ`` at random points.

    ``jvp`` gives ``Jv`` and ``vjp`` gives ``Jᵀ(Jv)``; every ``‖Jv‖`` is at most
    ``‖J(x)‖₂ ≤ Lip(model)``, so the result is a valid lower bound whatever the convergence.
    The model is evaluated as a float64 copy in eval mode.
    """
    net = float64_eval(model)
    gen = torch.Generator().manual_seed(seed)
    best = 0.0
    for _ in range(points):
        x = torch.randn((1, *shape), generator=gen, dtype=torch.float64)
        v = torch.randn((1, *shape), generator=gen, dtype=torch.float64)
        _, pullback = torch.func.vjp(net, x)
        for _ in range(iters):
            v = v / v.norm()
            _, jv = torch.func.jvp(net, (x,), (v,))
            best = max(best, float(jv.norm()))
            (v,) = pullback(jv)
            if float(v.norm()) == 0.0:
                break
    return best


def exact_linear_norm(model: nn.Module, shape) -> float:
    """``σ₁`` of the dense Jacobian of a linear (or affine) model: its exact Lipschitz constant."""
    net = float64_eval(model)
    x = torch.zeros((1, *shape), dtype=torch.float64)
    jac = torch.func.jacrev(net)(x)
    out = jac.shape[: jac.dim() - len(shape) - 1]
    mat = jac.reshape(int(torch.tensor(out).prod()) if out else 1, -1)
    return float(torch.linalg.matrix_norm(mat, ord=2)) if mat.numel() else 0.0
