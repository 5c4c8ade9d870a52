"""``claims``: each method's own claim, measured on the map the discriminator computes.

The claim (``harness.methods.Claim``: which norm of which map, and its target) is data the
method declares; under ``lipbench check --as NAME`` it is NAME's. The method runs in the
case's defendant process, which only reports effective weights and outputs at the judge's
inputs (:mod:`harness.observe`); every number below is computed here, with the exact
float64 references of :mod:`harness.methods.measure`, never from the method's own estimate
or declared scale:

* ``claim_error_fixed``: on the case's discriminator with fixed weights, once the method
  has settled (zero-learning-rate training steps, what any implementation does in
  training, until its outputs and effective weights stop changing; ``settled_fixed`` says
  whether they did within ``settle_budget`` steps): the largest relative error over layers
  (equality claims) or relative excess over the bound (bounds), in every train/eval ×
  autograd mode;
* ``claim_error_training``: during a real training run (the training loop, its optimiser,
  the method's own updates; digits or a 2-D mixture), as the next training step would see
  it (a deep copy in train mode with autograd), at every grid point after ``warmup``
  iterations and at ``random_points`` seeded random updates (bounds that hold after every
  step: after every iteration); the largest error over layers and time (Miyato et al. 2018,
  App. C.1, Fig. 9: spectral norms within ±0.05 of 1 with one power iteration per update);
* ``claim_error_settled``: at two consecutive random updates, the method settled on that
  update's fixed weights (a copy of the model and the method) and measured in every mode: a
  method exact only every ``k ≥ 2`` updates and wrong in between is caught here, whether it
  counts forwards, steps or updates (``settled_training``: the share of those updates where
  it settled);
* ``interpolate_grad_mean``: gradient claims (gradient penalty): the mean ``‖∇ₓD(x̂)‖`` at
  interpolates of real and generated samples after training (Gulrajani et al. 2017,
  Algorithm 1), on lipbench's discriminator and generator rebuilt from the observed weights;
* ``consistency_error``: the largest relative difference between the outputs the method's
  layers and model reported and those their reported weights give (recomputed here).

Only the metrics of the method's claim kind are reported, so suite checks select rows by
claim, never by method label. ``iterations_completed`` is always reported.
"""
from __future__ import annotations

import copy
import math
from typing import Any, Iterable

import numpy as np
import torch

from harness.methods.claims import INTERPOLATE
from harness.methods.measure import evaluating, interpolate_gradient_norms, interpolate_measurement
from harness.observe.effective import observe_modes, observe_now, settle
from harness.observe.schedule import consecutive_pair, grid_steps, random_steps
from harness.observe.verify import (Unobservable, graph_known, layer_differences, make_plan, measure_layers,
                                    model_difference, rebuild, settled, worst)
from harness.results import Measurement
from harness.suite import Case
from harness.training import load_data, train
from harness.training.loop import sample_z

from ._gan_common import (GAN_PARAMS, GAN_SETTINGS, adam_setting, build_models, iterations_for, judge_models, loss_for,
                          threads)
from .base import RunContext, Runner, register
from .spec import Declarations, Metric, Setting

#: Probe inputs: real samples the model is run at, for the consistency checks and settling.
PROBE_SAMPLES = 4


def _source(case: Case):
    data_name = str(case.params["data"])
    return load_data(data_name, **case.settings["data_args"].get(data_name, {}))


def _models(case: Case):
    """The case's data and models (a user's model: in the defendant only)."""
    return (_source(case), *build_models(case.params, case.settings, case.seed, str(case.params["data"])))


def _judge_models(case: Case):
    """The case's data and models as the judge builds them (:func:`._gan_common.judge_models`)."""
    return (_source(case), *judge_models(case.params, case.settings, case.seed, str(case.params["data"])))


def _per_layer(claim) -> bool:
    return claim.kind in ("equality", "bound")


@register
class ClaimsRunner(Runner):
    kind = "claims"
    declarations = Declarations(
        on_device=True,
        params=GAN_PARAMS,
        settings={**GAN_SETTINGS,
                  "iterations": Setting(int, description="generator updates of the training run"),
                  "iterations_for": Setting(dict, {}, "generator updates per data set"),
                  "warmup": Setting(int, 0, "iterations before equality claims are traced"),
                  "trace_points": Setting(int, 10, "grid points after the warm-up"),
                  "random_points": Setting(int, 6, "updates observed at random (seeded per case), two of them "
                                                   "consecutive and also settled on their fixed weights"),
                  "settle_budget": Setting(int, 5000, "most zero-learning-rate training steps to settle on "
                                                      "fixed weights"),
                  "interpolate_samples": Setting(int, 256, "real and generated samples for the gradient "
                                                          "at interpolates")},
        metrics={
            "claim_error_fixed": Metric("float32", "largest relative error (equality claims) or relative "
                                        "excess (bounds) over layers and modes, fixed weights, method settled",
                                        better="lower", implementation_specific=True),  # settled to its own precision
            "settled_fixed": Metric("exact", "1 when the method settled on fixed weights within the budget",
                                    better="higher"),
            "claim_error_training": Metric("outcome", "largest relative error (equality) or excess (bound) over "
                                           "layers and observed updates during training", better="lower",
                                           resolution=0.01),
            "claim_error_training_median": Metric("outcome", "median over observed updates of the largest error "
                                                  "over layers during training", better="lower", resolution=0.01),
            "claim_error_settled": Metric("outcome", "largest error over layers, modes and the random updates, the "
                                          "method settled on each update's fixed weights", better="lower",
                                          resolution=0.01),
            "settled_training": Metric("outcome", "share of the random updates at which the method settled",
                                       better="higher", resolution=0.01),
            "consistency_error": Metric("info", "largest relative difference between reported outputs (layers, "
                                        "model) and those of the reported weights"),
            "interpolate_grad_mean": Metric("outcome", "mean input-gradient norm at interpolates after training "
                                            "(gradient claims)", resolution=0.05),
            "iterations_completed": Metric("outcome", "generator updates completed", better="higher",
                                           resolution=1.0),
        })

    # --- lipbench's process: what to observe ----------------------------------------------------
    def request(self, case: Case) -> dict[str, Any]:
        s = case.settings
        source, G, D, layout = _judge_models(case)
        real = source.sample(64, seed=case.seed)
        shape = tuple(source.sample_shape)
        iterations = iterations_for(case.params, s, str(case.params["data"]))
        first = min(s["warmup"], iterations)
        chosen = random_steps(case.seed, case.case, first + 1, iterations, s["random_points"])
        n = s["interpolate_samples"]
        return {"plan": make_plan(D, shape, case.seed, inputs=real[:PROBE_SAMPLES], layout=layout),
                "grid": grid_steps(first, iterations, s["trace_points"]), "random": chosen,
                "settle_at": consecutive_pair(chosen),
                "interpolate_real": source.sample(n, seed=case.seed + 1),
                "interpolate_z": sample_z(G, n, torch.Generator().manual_seed(10_000 + case.seed), "cpu")}

    # --- the defendant's process -----------------------------------------------------------------
    def observe(self, case: Case, ctx: RunContext, request: dict[str, Any]) -> dict[str, Any]:
        with threads(case.settings["threads"]):
            return self._observe(case, ctx, request)

    def _observe(self, case: Case, ctx: RunContext, request: dict[str, Any]) -> dict[str, Any]:
        s = case.settings
        claim, _ = ctx.claim()
        plan = request["plan"]
        source, G, D = _models(case)

        def settled_copy(model, method) -> dict[str, Any]:
            model, method = copy.deepcopy((model, method))
            report = settle(model, method, plan["inputs"][:2], plan, budget=s["settle_budget"])
            return {"settle": report, "modes": observe_modes(model, plan)}

        out: dict[str, Any] = {"raw": [], "settled": []}
        if _per_layer(claim):
            with torch.random.fork_rng(devices=[]):
                out["fixed"] = settled_copy(ctx.method.apply(copy.deepcopy(D)), ctx.method)
        every_step = claim.every_step
        raw = set(request["grid"]) | set(request["random"])
        chosen = set(request["settle_at"])

        def watch(info):
            """A callback (not a trace collector: the tracer's hooks would make every layer look
            like one with a custom forward); it observes deep copies, in a forked RNG."""
            if not _per_layer(claim) or not (every_step or info.step in raw or info.step in chosen):
                return
            with torch.random.fork_rng(devices=[]):
                if every_step or info.step in raw:
                    model = copy.deepcopy(info.session.D).train()
                    with torch.enable_grad():
                        out["raw"].append({"step": info.step, "record": observe_now(model, plan, output=False)})
                if info.step in chosen:
                    out["settled"].append({"step": info.step, **settled_copy(info.session.D, ctx.method)})

        result = train(G, D, ctx.method, loss_for(s, ctx.method, case.method), adam_setting(case.params, s),
                       source, iterations=iterations_for(case.params, s, str(case.params["data"])),
                       batch_size=s["batch"], seed=case.seed, device=ctx.device, callbacks=[watch])
        out.update(iterations=result.iterations, diverged=result.diverged, message=result.message)
        if claim.quantity in INTERPOLATE and not result.diverged:
            final = copy.deepcopy(result.D).eval()
            with torch.no_grad():
                out["final"] = observe_now(final, plan)
            out["G"] = result.G.state_dict()
        return out

    # --- lipbench's process: the numbers ---------------------------------------------------------
    def judge(self, case: Case, ctx: RunContext, request: dict[str, Any], observed: dict[str, Any]) -> list[Measurement]:
        claim, params = ctx.claim()
        target = claim.target_value(params) if claim.kind != "none" else math.nan
        _, G, D, _ = _judge_models(case)
        plan = request["plan"]
        out: list[Measurement] = []
        consistency: list[float] = []

        def modes_error(modes: dict[str, Any]) -> tuple[float, str]:
            found = [(m, name) for name, record in modes.items() for m in measure_layers(claim, target, D, plan, record)]
            for record in modes.values():
                consistency.extend(layer_differences(D, plan, record).values())
                if graph_known(D):
                    consistency.append(model_difference(D, plan, record))
            m, mode = max(found, key=lambda f: f[0].error if not math.isnan(f[0].error) else math.inf)
            return m.error, f"{m.describe()} in {mode}"

        try:
            if _per_layer(claim):
                ok, change, steps = settled(observed["fixed"]["settle"])
                error, where = modes_error(observed["fixed"]["modes"])
                note = f"settled after {steps} steps" if ok else (
                    f"never settled: still changing by {change:.3g} after {steps} steps (the budget)")
                out += [Measurement("claim_error_fixed", error, message=f"{where}; {note}"),
                        Measurement("settled_fixed", float(ok), message=note)]
            out.append(Measurement("iterations_completed", float(observed["iterations"])))
            if observed["diverged"]:
                return out + [Measurement(m, math.nan, status="diverged", message=str(observed["message"]))
                              for m in self._training_metrics(claim)]
            if _per_layer(claim):
                out += self._training(claim, target, D, plan, observed, consistency, modes_error)
            if claim.quantity in INTERPOLATE:
                out.append(self._interpolates(case, claim, target, G, D, request, observed, consistency))
        except Unobservable as exc:
            return out + [Measurement(m, math.nan, status="n/a", message=f"not observable: {exc}")
                          for m in self._metrics(claim) if m not in {o.metric for o in out}]
        if consistency:
            out.append(Measurement("consistency_error", worst(consistency),
                                   message=f"{len(consistency)} layer and model outputs recomputed" if graph_known(D)
                                   else f"{len(consistency)} layer outputs recomputed (the model's own outputs "
                                        f"are not: {D.reason})"))
        return out

    def _training(self, claim, target, D, plan, observed, consistency, modes_error) -> list[Measurement]:
        errors = []
        for item in observed["raw"]:
            errors.append(worst(m.error for m in measure_layers(claim, target, D, plan, item["record"])))
            consistency.extend(layer_differences(D, plan, item["record"]).values())
        which = "after every iteration" if claim.every_step else "at the grid and the random updates"
        note = f"{len(errors)} observation(s) {which}"
        out = [Measurement("claim_error_training", worst(errors), message=note),
               Measurement("claim_error_training_median", float(np.median(errors)) if errors else math.nan,
                           message=note)]
        settled_errors, settled_count, steps = [], 0, []
        for item in observed["settled"]:
            ok, _, _ = settled(item["settle"])
            error, where = modes_error(item["modes"])
            settled_errors.append((error, f"update {item['step']}: {where}"))
            settled_count += ok
            steps.append(str(item["step"]))
        if settled_errors:
            error, where = max(settled_errors, key=lambda e: e[0] if not math.isnan(e[0]) else math.inf)
            out += [Measurement("claim_error_settled", error, message=where),
                    Measurement("settled_training", settled_count / len(settled_errors),
                                message=f"settled at {settled_count} of the updates {', '.join(steps)}")]
        return out

    def _interpolates(self, case, claim, target, G, D, request, observed, consistency) -> Measurement:
        if not graph_known(D):
            return Measurement("interpolate_grad_mean", math.nan, status="n/a", message=f"not observable: {D.reason}")
        record = observed["final"]
        consistency.extend(layer_differences(D, request["plan"], record).values())
        consistency.append(model_difference(D, request["plan"], record))
        critic = rebuild(D, request["plan"], record)
        generator = copy.deepcopy(G)
        generator.load_state_dict(observed["G"])
        generator.eval()
        with torch.no_grad():
            fake = generator(request["interpolate_z"]).double()
        with evaluating(critic):
            norms = interpolate_gradient_norms(critic, request["interpolate_real"].double(), fake, case.seed)
        found = interpolate_measurement(claim, target, norms)
        return Measurement("interpolate_grad_mean", found.measured,
                           message=", ".join(f"{k} {v:.4g}" for k, v in found.summary.items()))

    @staticmethod
    def _training_metrics(claim) -> list[str]:
        if _per_layer(claim):
            return ["claim_error_training", "claim_error_training_median", "claim_error_settled", "settled_training"]
        return ["interpolate_grad_mean"] if claim.quantity in INTERPOLATE else []

    def _metrics(self, claim) -> Iterable[str]:
        return (["claim_error_fixed", "settled_fixed"] if _per_layer(claim) else []) + self._training_metrics(claim)
