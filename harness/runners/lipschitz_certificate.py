"""``lipschitz_certificate``: certified upper vs empirical lower Lipschitz bound, per method.

After a short training run of a GAN on the default data with the method applied to D:

* ``lipschitz_upper``: a rigorous bound propagated over the model's computation graph
  from the layers' certified operator norms ``‖W̃_i‖`` and the exact constants of the
  other nodes (:func:`harness.exact.lipschitz_upper_bound`);
* ``lipschitz_lower``: the largest input-gradient norm found by gradient ascent from real
  samples and random starts (:func:`harness.exact.lipschitz_lower_bound`);
* ``alpha_guarantee``: what normalising the reshapes guarantees: the same graph
  propagation with ``α_i ‖Ŵ_i‖`` in place of each weight layer's ``‖W̃_i‖`` (for a chain,
  ``∏ α_i ‖Ŵ_i‖`` times the activation constants; Lin et al. §4); ``reshaped_product``:
  the propagation with ``‖Ŵ_i‖``, the bound SNw's normalisation suggests but does not certify.

SNConv makes ``lipschitz_upper`` about 1; SNw leaves a gap up to ``∏ α_i``; clipping and
gradient penalty certify nothing: the side-by-side numbers make that visible.

The training runs in the case's defendant process, which reports the trained
discriminator's effective weights (a layer it replaced: that layer's whole linear map) and
outputs; both bounds are computed here, on lipbench's discriminator carrying them, after
checking that it computes the reported outputs (``consistency_error``). A user's model
(``lipbench check --model``) is known to the judge layer by layer only: its cases are ``n/a``
with the reason, and nothing trains.
"""
from __future__ import annotations

import math
import copy
from typing import Any

import torch

from harness.exact import lipschitz_lower_bound, lipschitz_upper_bound
from harness.models.user import GRAPH_UNKNOWN
from harness.observe.effective import observe_now
from harness.observe.verify import Unobservable, layer_differences, make_plan, model_difference, rebuild, worst
from harness.results import Measurement
from harness.suite import Case
from harness.training import build, load_data, train

from ._gan_common import GAN_PARAMS, GAN_SETTINGS, adam_setting, loss_for, user_model
from .base import RunContext, Runner, register
from .spec import Declarations, Metric, Setting

METRICS = ("lipschitz_upper", "lipschitz_lower", "gap", "alpha_guarantee", "reshaped_product",
           "max_operator_norm")


def certificate(D, input_shape, samples, settings) -> list[Measurement]:
    bound = lipschitz_upper_bound(D, input_shape)
    lower = lipschitz_lower_bound(D, samples, n_random=settings["lower_random_starts"],
                                  steps=settings["lower_steps"], seed=0).value

    guarantee = bound.alpha_guarantee()  # α·‖dim-0 reshape‖ for ConvTranspose2d (docs/theory.md#alpha)
    suggested = bound.propagate(lambda r: r.factor if r.reshaped_norm is None else r.reshaped_norm)
    layers = bound.weight_layers()
    return [Measurement("lipschitz_upper", bound.upper), Measurement("lipschitz_lower", lower),
            Measurement("gap", bound.upper / lower if lower > 0 else math.inf),
            Measurement("alpha_guarantee", guarantee), Measurement("reshaped_product", suggested),
            Measurement("max_operator_norm", max(r.operator_norm.value for r in layers)),
            Measurement("weight_layers", float(len(layers)))]


@register
class LipschitzCertificateRunner(Runner):
    kind = "lipschitz_certificate"
    declarations = Declarations(
        on_device=True,
        params=GAN_PARAMS,
        settings={**GAN_SETTINGS,
                  "lower_samples": Setting(int, 8, "data samples the lower bound's ascent starts from"),
                  "lower_random_starts": Setting(int, 4, "random starts of the ascent"),
                  "lower_steps": Setting(int, 20, "ascent steps per start")},
        metrics={
            "lipschitz_upper": Metric("outcome", "certified upper bound of the discriminator's Lipschitz constant",
                                      better="lower", resolution=0.01),
            "lipschitz_lower": Metric("outcome", "largest input-gradient norm found (empirical lower bound)"),
            "gap": Metric("outcome", "upper / lower", better="lower", resolution=0.05),
            "alpha_guarantee": Metric("outcome", "prod alpha_i ||W^_i|| times activation constants: what "
                                                 "normalising the reshapes guarantees"),
            "reshaped_product": Metric("outcome", "prod ||W^_i|| times activation constants: SNw's suggested "
                                                  "(uncertified) bound"),
            "max_operator_norm": Metric("outcome", "largest per-layer operator norm", better="lower",
                                        resolution=0.01),
            "weight_layers": Metric("exact", "number of weight layers"),
            "consistency_error": Metric("info", "largest relative difference between the trained discriminator's "
                                        "reported outputs (layers, model) and those of its reported weights"),
        })

    def _setup(self, case: Case):
        p, s = case.params, case.settings
        data = load_data(p["data"], **s["data_args"].get(p["data"], {}))
        G, D = build(p["model"], seed=case.seed, **s["model_args"].get(p["model"], {}))
        return data, G, D

    def request(self, case: Case) -> dict[str, Any]:
        if user_model(case.settings) is not None:  # the certificate needs the graph: never trained for nothing
            return {"unavailable": GRAPH_UNKNOWN}
        data, _, D = self._setup(case)
        return {"plan": make_plan(D, tuple(data.sample_shape), case.seed, inputs=data.sample(4, seed=case.seed + 1)),
                "samples": data.sample(case.settings["lower_samples"], seed=case.seed)}

    def observe(self, case: Case, ctx: RunContext, request: dict[str, Any]) -> dict[str, Any]:
        if "unavailable" in request:
            return {}
        p, s = case.params, case.settings
        data, G, D = self._setup(case)
        result = train(G, D, ctx.method, loss=loss_for(s, ctx.method, case.method),
                       settings=adam_setting(p, s), data=data, iterations=int(p["iterations"]),
                       batch_size=s["batch"], seed=case.seed, device=ctx.device)
        if result.diverged:
            return {"diverged": str(result.message)}
        model = copy.deepcopy(result.D).to("cpu").eval()
        with torch.no_grad():
            return {"record": observe_now(model, request["plan"])}

    def judge(self, case: Case, ctx: RunContext, request: dict[str, Any], observed: dict[str, Any]) -> list[Measurement]:
        if "unavailable" in request:
            return [Measurement(m, math.nan, status="n/a", message=f"not observable: {request['unavailable']}")
                    for m in METRICS + ("weight_layers", "consistency_error")]
        if "diverged" in observed:
            return [Measurement(m, math.nan, status="diverged", message=observed["diverged"]) for m in METRICS]
        data, _, D = self._setup(case)
        plan, record = request["plan"], observed["record"]
        consistency = [*layer_differences(D, plan, record).values(), model_difference(D, plan, record)]
        try:
            model = rebuild(D, plan, record)
        except Unobservable as exc:  # not a failure of the method: lipbench cannot read it
            return [Measurement(m, math.nan, status="n/a", message=f"not observable: {exc}")
                    for m in METRICS + ("weight_layers", "consistency_error")]
        return certificate(model, tuple(data.sample_shape), request["samples"].double(), case.settings) + [
            Measurement("consistency_error", worst(consistency), message="the trained discriminator")]
