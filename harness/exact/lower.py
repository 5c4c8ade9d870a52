"""Empirical lower bound on a model's Lipschitz constant: the largest input-gradient norm found.

Any differentiable point ``x`` gives ``‖∇D(x)‖₂ ≤ Lip₂(D)``, so the value returned is a
valid lower bound; a certified upper bound (:func:`.network.lipschitz_upper_bound`) must
be at least it.
"""
from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field

import torch
from torch import nn


@dataclass(frozen=True)
class LowerBound:
    """``value = max ‖∇ₓD(x)‖₂`` over the points visited; ``point`` attains it (batch of 1)."""

    value: float
    point: torch.Tensor = field(repr=False)
    per_start: tuple[float, ...] = ()


def _grad_norms(model: nn.Module, x: torch.Tensor, create_graph: bool):
    x = x.detach().requires_grad_(True)
    out = model(x)
    if out.numel() != x.shape[0]:
        raise ValueError(f"lipschitz_lower_bound needs one scalar output per sample, got output "
                         f"shape {tuple(out.shape)} for a batch of {x.shape[0]}")
    (g,) = torch.autograd.grad(out.sum(), x, create_graph=create_graph)
    return x, g.flatten(1).norm(dim=1)


def lipschitz_lower_bound(model: nn.Module, samples: torch.Tensor, n_random: int = 8,
                          steps: int = 30, seed: int = 0, step_size: float = 0.05) -> LowerBound:
    """Empirical lower bound on ``Lip₂(D)``: the largest ``‖∇ₓD(x)‖₂`` found.

    For a model with several outputs per sample, the largest Jacobian norm found by power
    iteration at the starts (:func:`jacobian_lower_bound`). Starts: the given ``samples`` (batch first) and ``n_random`` Gaussian points with the
    samples' mean and standard deviation. Each start takes ``steps`` ascent steps on
    ``‖∇ₓD(x)‖``: a normalised step along ``∇ₓ‖∇ₓD‖`` (double backprop) when that is
    non-zero, else (piecewise-linear nets, where it vanishes) a random step kept only
    if it increases the norm. Computed on a float64 copy of the model in eval mode;
    deterministic for ``seed``. Any differentiable point ``x`` gives ``‖∇D(x)‖ ≤ Lip(D)``,
    so the returned value is a valid lower bound; the upper bound must be ``≥`` it.
    """
    if samples.dim() < 2:
        raise ValueError("samples must have a batch dim")
    if not bool(torch.isfinite(samples).all()):
        raise ValueError("samples contain non-finite values")
    gen = torch.Generator().manual_seed(seed)
    net = copy.deepcopy(model).to(device="cpu", dtype=torch.float64).eval()
    for p in net.parameters():
        p.requires_grad_(False)
    s = samples.detach().to("cpu", torch.float64)
    scale = float(s.std()) if s.numel() > 1 and float(s.std()) > 0 else 1.0
    rand = s.mean() + scale * torch.randn((n_random, *s.shape[1:]), generator=gen, dtype=torch.float64)
    x = torch.cat([s, rand])
    with torch.no_grad():
        outputs = net(x[:1]).numel()
    if outputs != 1:
        return jacobian_lower_bound(net, x, steps, gen)
    _, best = _grad_norms(net, x, False)
    best_x = x.clone()
    step = step_size * scale * math.sqrt(x[0].numel())
    for _ in range(steps):
        xr, gn = _grad_norms(net, best_x, True)
        d = None
        if gn.requires_grad:
            (d,) = torch.autograd.grad(gn.sum(), xr, allow_unused=True)
        d = torch.zeros_like(best_x) if d is None else d.detach()
        dn = d.flatten(1).norm(dim=1).view(-1, *[1] * (x.dim() - 1))
        noise = torch.randn(best_x.shape, generator=gen, dtype=torch.float64)
        noise = noise / noise.flatten(1).norm(dim=1).view_as(dn)
        direction = torch.where(dn > 1e-12, d / dn.clamp_min(1e-300), noise)
        cand = best_x + step * direction
        _, val = _grad_norms(net, cand, False)
        better = val > best
        best = torch.where(better, val, best)
        best_x = torch.where(better.view_as(dn), cand, best_x)
    i = int(best.argmax())
    return LowerBound(float(best[i]), best_x[i:i + 1].clone(), tuple(float(b) for b in best))


def jacobian_lower_bound(net: nn.Module, points: torch.Tensor, steps: int,
                         gen: torch.Generator) -> LowerBound:
    """``max ‖J(x)v‖`` by power iteration on ``JᵀJ`` (``torch.func.jvp``/``vjp``) at each point:
    the lower bound for models with several outputs per sample (any ``‖Jv‖``, ``‖v‖ = 1``, is
    at most ``‖J(x)‖₂ ≤ Lip``)."""
    values = []
    for i in range(points.shape[0]):
        x = points[i:i + 1]
        v = torch.randn(x.shape, generator=gen, dtype=torch.float64)
        _, pullback = torch.func.vjp(net, x)
        best = 0.0
        for _ in range(max(1, steps)):
            v = v / v.norm().clamp_min(1e-300)
            _, jv = torch.func.jvp(net, (x,), (v,))
            best = max(best, float(jv.norm()))
            (v,) = pullback(jv)
        values.append(best)
    i = max(range(len(values)), key=values.__getitem__)
    return LowerBound(values[i], points[i:i + 1].clone(), tuple(values))
