"""``gradient_bounds``: Prop. 1 and Thm 1 of Lin et al. 2021 (§3; docs/references.md#lin2021)
on bias-free MLP discriminators.

For ``D = a_L ∘ l_{w_L} ∘ … ∘ a_1 ∘ l_{w_1}`` with 1-Lipschitz activations,
``||∇_{w_t} D(x)||_F <= ||x|| ∏_{i≠t} ||w_i||``: the gradient of a linear layer is the
outer product of the back-propagated signal and the layer's input, each bounded by
the spectral norms of the other layers. That holds for *any* weights (``bound_ratio``, a
sanity check of the arithmetic). What a method can break is the bound with the norms it
*claims* (``claimed_bound_ratio``, spectral claims only): with SN every layer's gradient
is at most ``||x||``; without it, layers' gradients can differ by orders of magnitude
(Lin et al. 2021, Figs. 2, 12, 13). Thm 1: with the product of the norms fixed, equal
norms minimise the whole-gradient bound (``thm1_ratio``: 1 exactly at equal norms).

Gradients are taken with respect to the *effective* weights (what the forward pass
uses), at initialisation and after a short training run of the discriminator alone:
real digits (scikit-learn, flattened) against Gaussian noise, non-saturating loss,
Adam, with the method's penalty and after-step hook. Before each measurement the method
settles on the fixed weights (zero-learning-rate training steps, its steady state). The
method runs in the case's defendant process, which reports each layer's effective weight
(or, for a layer it replaced, its whole linear map) and outputs; this process checks that
the reported weights give the model's outputs (``consistency_error``) and computes every
number on lipbench's MLP carrying them. Spectral norms are exact (float64 SVD).
"""
from __future__ import annotations

import copy
import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from harness.methods.claims import SPECTRAL_AT_MOST
from harness.observe.effective import observe_now, settle
from harness.observe.verify import (Unobservable, covered_layers, layer_differences, layer_map, make_plan,
                                    model_difference, settled, worst)
from harness.results import Measurement
from harness.suite import Case
from harness.training.data import digits

from .base import RunContext, Runner, register
from .spec import Declarations, Metric, Setting

def _stage_metrics(name: str, description: str, better: str | None = None, resolution: float = 0.0,
                   spectrum: bool = False):
    """The metric at initialisation (float32: no training yet) and after training (an outcome).

    Implementation-specific (``Metric.implementation_specific``: correct implementations of one
    claim differ in it by design) at initialisation, where the exact norms are the
    implementation's own, and after training when it depends on the weights' whole ``spectrum``,
    not only on the claimed norms (SN followed by Björck orthonormalisation keeps sn_w's claim
    with every singular value at 1)."""
    return {f"{name}_init": Metric("float32", f"{description}, at initialisation", better=better,
                                   implementation_specific=True),
            f"{name}_trained": Metric("outcome", f"{description}, after training", better=better,
                                      resolution=resolution, implementation_specific=spectrum)}


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


def thm1_ratio(norms: list[float]) -> float:
    """Prop. 1's whole-gradient bound with the layers' own norms over the same bound with equal
    norms of the same product (Lin et al. 2021, Thm 1: equal norms minimise it).

    ``‖x‖ ∏n · sqrt(Σ_t n_t⁻²)`` over ``‖x‖ ∏n · sqrt(L) / (∏n)^{1/L}``: the quadratic over the
    geometric mean of ``1/n_t``, at least 1, equal to 1 exactly when all norms are equal.
    """
    inverse = [1 / n for n in norms]
    quadratic = math.sqrt(sum(v * v for v in inverse) / len(inverse))
    geometric = math.exp(sum(math.log(v) for v in inverse) / len(inverse))
    return quadratic / geometric


def bound_measurements(model: nn.Sequential, x: torch.Tensor, stage: str,
                       claimed: float | None = None) -> list[Measurement]:
    """Prop. 1 with the layers' exact norms (a sanity check: it holds for any weights), with
    the norms the method *claims* (``claimed``, spectral claims only), and Thm 1's ratio."""
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
    out = [
        Measurement(f"bound_ratio_{stage}", max(ratios)),
        Measurement(f"layer_grad_over_x_{stage}", max(over_x)),
        Measurement(f"total_grad_over_sqrtL_x_{stage}", float((total / (x_norm * len(grads) ** 0.5)).max())),
        Measurement(f"grad_spread_{stage}", max(medians) / max(min(medians), 1e-300)),
        Measurement(f"max_weight_norm_{stage}", max(norms)),
        Measurement(f"thm1_ratio_{stage}", thm1_ratio(norms) if min(norms) > 0 else math.inf),
    ]
    if claimed is not None:
        others = claimed ** (len(grads) - 1)
        out.append(Measurement(f"claimed_bound_ratio_{stage}",
                               max(float((g / (x_norm * others)).max()) for g in grads)))
    return out


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


def linear_weights(plain: nn.Sequential, plan: dict[str, Any], record: dict[str, Any]) -> nn.Sequential:
    """lipbench's MLP (float64) carrying the observed effective weights: a layer's weight, or the
    matrix of its observed map where the method replaced it."""
    model = copy.deepcopy(plain).to(torch.float64)
    layers = dict(covered_layers(model))
    for path in plan["paths"]:
        how, value = layer_map(path, layers[path], record["layers"].get(path, {}), tuple(plan["shapes"][path]))
        weight = value[0] if how == "weight" else value.matrix()
        layers[path].weight = nn.Parameter(weight.reshape(layers[path].weight.shape), requires_grad=False)
    return model


@register
class GradientBoundsRunner(Runner):
    kind = "gradient_bounds"
    declarations = Declarations(
        params={"depth": Setting(int, description="linear layers"), "width": Setting(int, description="hidden units")},
        settings={"slope": Setting(float, 0.2, "leaky ReLU slope (<= 1: 1-Lipschitz)"),
                  "probe_samples": Setting(int, description="digits the gradients are measured at"),
                  "train_steps": Setting(int, description="discriminator updates of the training run"),
                  "lr": Setting(float, description="Adam learning rate"),
                  "batch": Setting(int, description="batch size"),
                  "settle_budget": Setting(int, 3000, "most zero-learning-rate training steps before each "
                                                      "measurement (the method settles on fixed weights)")},
        metrics={
            **_stage_metrics("bound_ratio", "max over layers and samples of ||grad_t|| / (||x|| prod_{i!=t} ||w_i||)"),
            **_stage_metrics("layer_grad_over_x", "max over layers and samples of ||grad_t|| / ||x||"),
            **_stage_metrics("total_grad_over_sqrtL_x", "max over samples of ||grad|| / (sqrt(L) ||x||)"),
            **_stage_metrics("grad_spread", "largest over smallest per-layer median gradient norm", "lower",
                             resolution=0.5, spectrum=True),
            **_stage_metrics("max_weight_norm", "largest exact spectral norm of an effective weight", "lower",
                             resolution=0.01),
            **_stage_metrics("claimed_bound_ratio", "max over layers and samples of ||grad_t|| / (||x|| "
                             "prod_{i!=t} claimed ||w_i||), spectral claims only", "lower", resolution=0.01,
                             spectrum=True),
            **_stage_metrics("thm1_ratio", "Prop. 1's whole-gradient bound over its minimum at equal norms of "
                             "the same product (Thm 1)", "lower", resolution=0.01),
            "consistency_error": Metric("info", "largest relative difference between reported outputs (layers, "
                                        "model) and those of the reported weights, both stages"),
        })

    def _setup(self, case: Case):
        p, s = case.params, case.settings
        real = digits().data.flatten(1)
        gen = torch.Generator().manual_seed(case.seed)
        model = bias_free_mlp(real.shape[1], int(p["width"]), int(p["depth"]), s["slope"])
        probe = real[torch.randperm(real.shape[0], generator=gen)[: s["probe_samples"]]]
        return real, gen, model, probe

    def request(self, case: Case) -> dict[str, Any]:
        real, _, model, probe = self._setup(case)
        return {"state": model.state_dict(), "plan": make_plan(model, (real.shape[1],), case.seed, inputs=probe)}

    def observe(self, case: Case, ctx: RunContext, request: dict[str, Any]) -> dict[str, Any]:
        s = case.settings
        real, gen, model, _ = self._setup(case)
        model.load_state_dict(request["state"])
        model = ctx.method.apply(model)
        plan = request["plan"]

        def stage() -> dict[str, Any]:
            report = settle(model, ctx.method, real[:2], plan, budget=s["settle_budget"])
            copied = copy.deepcopy(model).eval()
            with torch.no_grad():
                return {"settle": report, "record": observe_now(copied, plan)}

        init = stage()
        train_discriminator(model, ctx.method, real, s["train_steps"], s["lr"], s["batch"], gen)
        return {"init": init, "trained": stage()}

    def judge(self, case: Case, ctx: RunContext, request: dict[str, Any], observed: dict[str, Any]) -> list[Measurement]:
        _, _, plain, probe = self._setup(case)
        plain.load_state_dict(request["state"])
        claim, params = ctx.claim()
        claimed = claim.target_value(params) if claim.quantity in SPECTRAL_AT_MOST else None
        out, consistency = [], []
        for name in ("init", "trained"):
            record = observed[name]["record"]
            try:
                model = linear_weights(plain, request["plan"], record)
            except Unobservable as exc:  # not a failure of the method: lipbench cannot read it
                return [Measurement(metric, math.nan, status="n/a", message=f"not observable: {exc}")
                        for metric in self.declarations.metrics]
            consistency += [*layer_differences(plain, request["plan"], record).values(),
                            model_difference(plain, request["plan"], record)]
            ok, change, steps = settled(observed[name]["settle"])
            note = "" if ok else f"the method never settled (change {change:.3g} after {steps} steps)"
            out += [Measurement(m.metric, m.value, message=note)
                    for m in bound_measurements(model, probe, name, claimed)]
        return out + [Measurement("consistency_error", worst(consistency), message="both stages")]
