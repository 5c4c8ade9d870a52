"""``gradient_bounds``: Prop. 1 of Lin et al. 2021 (seed 001 §3) on bias-free MLP discriminators.

For ``D = a_L ∘ l_{w_L} ∘ … ∘ a_1 ∘ l_{w_1}`` with 1-Lipschitz activations,
``||∇_{w_t} D(x)||_F <= ||x|| ∏_{i≠t} ||w_i||``: the gradient of a linear layer is the
outer product of the back-propagated signal and the layer's input, each bounded by
the spectral norms of the other layers. With SN (every ``||w_i|| <= 1``) each layer's
gradient is at most ``||x||`` and the whole gradient at most ``sqrt(L) ||x||``; without
it, layers' gradients can differ by orders of magnitude (seed 001 Figs. 2, 12, 13).

Gradients are taken with respect to the *effective* weights (what the forward pass
uses), at initialisation and during a short training run of the discriminator alone:
real digits (scikit-learn, flattened) against Gaussian noise, non-saturating loss,
Adam, with the method's penalty and after-step hook. Spectral norms are exact (float64 SVD).
"""
from __future__ import annotations

import math
from typing import Iterable

import torch
import torch.nn.functional as F
from torch import nn

from harness.results import Measurement
from harness.suite import Case
from harness.training.data import digits

from .base import RunContext, Runner, register
from .spec import Declarations, Metric, Setting

def _stage_metrics(name: str, description: str, better: str | None = None, resolution: float = 0.0):
    """The metric at initialisation (float32: no training yet) and after training (an outcome)."""
    return {f"{name}_init": Metric("float32", f"{description}, at initialisation", better=better),
            f"{name}_trained": Metric("outcome", f"{description}, after training", better=better,
                                      resolution=resolution)}


def bias_free_mlp(in_features: int, width: int, depth: int, slope: float) -> nn.Sequential:
    """``depth`` bias-free linear layers with leaky ReLU (slope <= 1: 1-Lipschitz) between them."""
    layers: list[nn.Module] = []
    features = in_features
    for _ in range(depth - 1):
        layers += [nn.Linear(features, width, bias=False), nn.LeakyReLU(slope)]
        features = width
    layers.append(nn.Linear(features, 1, bias=False))
    return nn.Sequential(*layers)


def layer_gradients(model: nn.Sequential, x: torch.Tensor) -> tuple[list[torch.Tensor], list[float]]:
    """Per sample, the Frobenius norm of ∂D(x)/∂W_t for every linear layer, and the exact ||W_t||.

    Returns ``(grads, norms)``: ``grads[t]`` has one entry per sample (float64).
    """
    weights = [m.weight.detach().double().requires_grad_() for m in model if isinstance(m, nn.Linear)]
    norms = [float(torch.linalg.matrix_norm(w.detach(), 2)) for w in weights]
    per_sample = [[] for _ in weights]
    for sample in x.double():
        h, index = sample.unsqueeze(0), 0
        for module in model:
            if isinstance(module, nn.Linear):
                h = F.linear(h, weights[index])
                index += 1
            else:
                h = module(h)
        grads = torch.autograd.grad(h.sum(), weights)
        for t, g in enumerate(grads):
            per_sample[t].append(g.norm())
    return [torch.stack(g) for g in per_sample], norms


def bound_measurements(model: nn.Sequential, x: torch.Tensor, stage: str) -> list[Measurement]:
    grads, norms = layer_gradients(model, x)
    x_norm = x.double().flatten(1).norm(dim=1)
    prod = math.prod(norms)
    ratios, over_x = [], []
    for t, g in enumerate(grads):
        others = prod / norms[t] if norms[t] > 0 else math.prod(n for i, n in enumerate(norms) if i != t)
        ratios.append(float((g / (x_norm * others)).max()))
        over_x.append(float((g / x_norm).max()))
    total = torch.stack(grads).pow(2).sum(0).sqrt()
    medians = [float(g.median()) for g in grads]
    return [
        Measurement(f"bound_ratio_{stage}", max(ratios)),
        Measurement(f"layer_grad_over_x_{stage}", max(over_x)),
        Measurement(f"total_grad_over_sqrtL_x_{stage}", float((total / (x_norm * len(grads) ** 0.5)).max())),
        Measurement(f"grad_spread_{stage}", max(medians) / max(min(medians), 1e-300)),
        Measurement(f"max_weight_norm_{stage}", max(norms)),
    ]


def train_discriminator(model: nn.Module, method, real: torch.Tensor, steps: int, lr: float,
                        batch: int, gen: torch.Generator) -> None:
    """A short D-only run: real samples against N(0, I) noise, non-saturating loss, Adam."""
    opt = torch.optim.Adam(model.parameters(), lr=lr, betas=(0.5, 0.999))
    for _ in range(steps):
        idx = torch.randint(real.shape[0], (batch,), generator=gen)
        x_real, x_fake = real[idx], torch.randn(batch, real.shape[1], generator=gen)
        loss = F.softplus(-model(x_real)).mean() + F.softplus(model(x_fake)).mean()
        loss = loss + method.penalty(model, x_real, x_fake)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        method.after_step(model)


@register
class GradientBoundsRunner(Runner):
    kind = "gradient_bounds"
    declarations = Declarations(
        params={"depth": Setting(int, description="linear layers"), "width": Setting(int, description="hidden units")},
        settings={"slope": Setting(float, 0.2, "leaky ReLU slope (<= 1: 1-Lipschitz)"),
                  "probe_samples": Setting(int, description="digits the gradients are measured at"),
                  "train_steps": Setting(int, description="discriminator updates of the training run"),
                  "lr": Setting(float, description="Adam learning rate"),
                  "batch": Setting(int, description="batch size")},
        metrics={
            **_stage_metrics("bound_ratio", "max over layers and samples of ||grad_t|| / (||x|| prod_{i!=t} ||w_i||)"),
            **_stage_metrics("layer_grad_over_x", "max over layers and samples of ||grad_t|| / ||x||"),
            **_stage_metrics("total_grad_over_sqrtL_x", "max over samples of ||grad|| / (sqrt(L) ||x||)"),
            **_stage_metrics("grad_spread", "largest over smallest per-layer median gradient norm", "lower",
                             resolution=0.5),
            **_stage_metrics("max_weight_norm", "largest exact spectral norm of an effective weight", "lower",
                             resolution=0.01),
        })

    def run(self, case: Case, ctx: RunContext) -> Iterable[Measurement]:
        p, s = case.params, case.settings
        real = digits().data.flatten(1)
        gen = torch.Generator().manual_seed(case.seed)
        model = bias_free_mlp(real.shape[1], int(p["width"]), int(p["depth"]), s["slope"])
        model = ctx.method.apply(model)
        model.train()
        with torch.no_grad():  # a training-mode forward settles persistent power iterations
            model(real[:2])
        probe = real[torch.randperm(real.shape[0], generator=gen)[: s["probe_samples"]]]
        out = bound_measurements(model, probe, "init")
        train_discriminator(model, ctx.method, real, s["train_steps"], s["lr"], s["batch"], gen)
        return out + bound_measurements(model, probe, "trained")
