"""``claims``: each method's own claim, measured on the map the discriminator computes.

The claim (``harness.methods.Claim``: which norm of which map, and its target) is data the
method declares; under ``lipbench check --as NAME`` it is NAME's. It is measured with the
exact float64 references of :func:`harness.methods.measure_claim` on ``layer.weight`` (or
the layer's forward map), never on the method's own estimate or declared scale:

* ``claim_error_fixed``: on the case's discriminator with fixed weights, after the method
  has settled (training-mode forwards, and for power-iteration methods
  ``settle_iterations`` further steps): the largest relative error over layers (equality
  claims) or the largest relative excess over the bound (bound claims);
* ``claim_error_training``: during a real training run (the training loop, its optimiser,
  the method's own power iteration; digits or a 2-D mixture): equality claims at every
  trace point after ``warmup`` iterations, bound claims after every iteration; the largest
  error over layers and time (Miyato et al. 2018, App. C.1, Fig. 9: spectral norms within
  ±0.05 of 1 with one power iteration per update);
* ``interpolate_grad_mean``: penalty claims on input gradients (gradient penalty): the
  mean ``‖∇ₓD(x̂)‖`` at interpolates of real and generated samples after training
  (Gulrajani et al. 2017, Algorithm 1).

Only the metrics of the method's claim kind are reported, so suite checks select rows by
claim, never by method label. ``iterations_completed`` is always reported.
"""
from __future__ import annotations

import copy
import math
from typing import Iterable

import numpy as np
import torch

from harness.methods import measure_claim
from harness.methods.power import estimate_sigma, power_iterate, sigma_parametrization
from harness.results import Measurement
from harness.suite import Case
from harness.training import build, load_data, train

from ._gan_common import GAN_PARAMS, GAN_SETTINGS, adam_setting, iterations_for, loss_for, model_spec, threads
from .base import RunContext, Runner, register
from .spec import Declarations, Metric, Setting


def settle(model: torch.nn.Module, real: torch.Tensor, forwards: int, iterations: int,
           rtol: float = 1e-9, chunk: int = 50) -> None:
    """Let a method reach its steady state on fixed weights: training-mode forwards, then power
    iterations on every layer that has one, in chunks of ``chunk`` steps, until the estimate
    moves by less than ``rtol`` over a chunk or ``iterations`` steps are spent.

    (Convergence is geometric at rate (σ₂/σ₁)²: most layers settle in tens of steps, an
    operator with near-degenerate top singular values needs thousands.)"""
    model.train()
    with torch.no_grad():
        for _ in range(forwards):
            model(real)
    for module in model.modules():
        try:
            sigma_parametrization(module)
        except LookupError:
            continue
        before = estimate_sigma(module)
        for _ in range(0, iterations, chunk):
            after = power_iterate(module, chunk)
            if abs(after / before - 1) < rtol:
                break
            before = after


def worst(errors: Iterable[float]) -> float:
    values = list(errors)
    return max(values) if values else math.nan


@register
class ClaimsRunner(Runner):
    kind = "claims"
    declarations = Declarations(
        params=GAN_PARAMS,
        settings={**GAN_SETTINGS,
                  "iterations": Setting(int, description="generator updates of the training run"),
                  "iterations_for": Setting(dict, {}, "generator updates per data set"),
                  "warmup": Setting(int, 0, "iterations before equality claims are traced"),
                  "trace_points": Setting(int, 10, "trace points after the warm-up"),
                  "settle_forwards": Setting(int, 3, "training-mode forwards before the fixed-weight check"),
                  "settle_iterations": Setting(int, 5000, "most power-iteration steps before the fixed-weight "
                                                          "check (power-iteration methods; stops when settled)"),
                  "interpolate_samples": Setting(int, 256, "real and generated samples for the gradient "
                                                          "at interpolates")},
        metrics={
            "claim_error_fixed": Metric("float32", "largest relative error (equality claims) or relative "
                                        "excess (bound claims) over layers, fixed weights, method settled",
                                        better="lower", implementation_specific=True),  # settled to its own precision
            "claim_error_training": Metric("outcome", "largest relative error (equality) or excess (bound) over "
                                           "layers and trace points during training", better="lower",
                                           resolution=0.01),
            "claim_error_training_median": Metric("outcome", "median over trace points of the largest error over "
                                                  "layers during training", better="lower", resolution=0.01),
            "interpolate_grad_mean": Metric("outcome", "mean input-gradient norm at interpolates after training "
                                            "(gradient-penalty claims)", resolution=0.05),
            "iterations_completed": Metric("outcome", "generator updates completed", better="higher",
                                           resolution=1.0),
        })

    def run(self, case: Case, ctx: RunContext) -> list[Measurement]:
        with threads(case.settings["threads"]):
            return self._run(case, ctx)

    def _run(self, case: Case, ctx: RunContext) -> list[Measurement]:
        s, p = case.settings, case.params
        claim, params = ctx.claim()
        data_name = str(p["data"])
        source = load_data(data_name, **s["data_args"].get(data_name, {}))
        model_name, model_kwargs = model_spec(p, s, data_name)
        G, D = build(model_name, seed=case.seed, **model_kwargs)
        shape = tuple(source.sample_shape)
        real = source.sample(64, seed=case.seed)
        out: list[Measurement] = []
        if claim.kind in ("equality", "bound"):
            fixed = ctx.method.apply(copy.deepcopy(D))
            settle(fixed, real, s["settle_forwards"], s["settle_iterations"])
            found = measure_claim(ctx.method, fixed, shape, claim=claim, params=params)
            out.append(Measurement("claim_error_fixed", worst(m.error for m in found),
                                   message=_worst_layer(found)))
        iterations = iterations_for(p, s, data_name)
        every = max(1, (iterations - s["warmup"]) // max(1, s["trace_points"]))
        errors: list[float] = []

        def measure(info):
            """Bounds after every iteration; equality claims every ``every`` after the warm-up.
            (A callback, not a trace collector: the tracer's forward hooks would make every layer
            look like one with a custom forward.)"""
            due = claim.kind == "bound" or (claim.kind == "equality" and info.step > s["warmup"]
                                            and (info.step - s["warmup"]) % every == 0)
            if due:
                found = measure_claim(ctx.method, info.session.D, shape, claim=claim, params=params)
                errors.append(worst(m.error for m in found))

        result = train(G, D, ctx.method, loss_for(s, ctx.method, case.method), adam_setting(p, s),
                       source, iterations=iterations, batch_size=s["batch"], seed=case.seed, device=ctx.device,
                       callbacks=[measure])
        out.append(Measurement("iterations_completed", float(result.iterations)))
        if result.diverged:
            return out + [Measurement(m, math.nan, status="diverged", message=result.message)
                          for m in self._training_metrics(claim)]
        if claim.kind in ("equality", "bound"):
            note = f"{len(errors)} measurement(s)" + (f" after {s['warmup']} warm-up iterations"
                                                      if claim.kind == "equality" else ", one per iteration")
            out.append(Measurement("claim_error_training", worst(errors), message=note))
            out.append(Measurement("claim_error_training_median", float(np.median(errors)) if errors else math.nan,
                                   message=note))
        if claim.quantity == "interpolate_gradient":
            n = s["interpolate_samples"]
            fake = _generate(result.G, n, case.seed, ctx.device)
            found = measure_claim(ctx.method, result.D, shape, claim=claim, params=params,
                                  real=source.sample(n, seed=case.seed + 1).to(ctx.device), fake=fake)
            out.append(Measurement("interpolate_grad_mean", found[0].measured,
                                   message=", ".join(f"{k} {v:.4g}" for k, v in found[0].summary.items())))
        return out

    @staticmethod
    def _training_metrics(claim) -> list[str]:
        if claim.kind in ("equality", "bound"):
            return ["claim_error_training", "claim_error_training_median"]
        return ["interpolate_grad_mean"] if claim.quantity == "interpolate_gradient" else []


def _worst_layer(found) -> str:
    if not found:
        return ""
    return max(found, key=lambda m: m.error if math.isfinite(m.error) else math.inf).describe()


def _generate(G: torch.nn.Module, n: int, seed: int, device: torch.device) -> torch.Tensor:
    from harness.training.loop import sample_z
    mode = G.training
    G.eval()
    try:
        with torch.no_grad():
            return G(sample_z(G, n, torch.Generator().manual_seed(10_000 + seed), device))
    finally:
        G.train(mode)
