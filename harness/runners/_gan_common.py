"""Shared helpers of the ``training_time`` and ``sample_quality`` runners (private).

* :func:`loss_for`: the GAN loss a method trains with, chosen by what the method is, never by
  its label: the suite's method entry (``{name: sn_w, label: sn_w_hinge, loss: hinge}``), else
  the method's own declaration (``Method.gan_loss``), else its claim
  (``settings.loss_by_claim``, by default the Wasserstein loss for ``interpolate_gradient`` and
  ``entries_within``), else ``settings.loss`` (default hinge).
* :func:`threads`: run a block with ``torch.set_num_threads(n)`` and restore the old value
  (``None``: leave torch's default). One intra-op thread makes CPU timings robust on a shared
  machine and makes the reduction order, hence training, independent of the core count.
* :func:`model_spec`: ``(name, kwargs)`` of the model a case trains, from the case parameter
  ``model`` or the settings' per-data-set mapping ``models: {ring8: {name: mlp2d}, ...}``.
* :func:`build_models`: the ``(G, D)`` a case trains: lipbench's pair by :func:`model_spec`, or,
  with ``settings.user_model`` (``lipbench check --model``), the user's discriminator beside
  lipbench's generator for its input shape (:mod:`harness.models.user`; the user's code runs
  only in a defendant); :func:`judge_models`: what the judge builds instead.
* :func:`adam_setting`: the Adam setting of a case: the case parameter ``setting`` or
  ``settings.adam`` (default ``A``), a Miyato letter ``A``..``F`` or a name defined in the
  suite's ``adam_settings: {fast2d: {lr: 2e-3, beta1: 0.0, beta2: 0.9, n_dis: 1}}``.
* :func:`synthetic_images`: the random tensor the timing runs draw their "real" batches from.
"""
from __future__ import annotations

from typing import Any, Iterator, Mapping

import torch

from harness.methods.claims import QUANTITIES, judged_claim
from harness.models.user import UserModel, check_user_model, layers_only, layout, load_discriminator, paired_generator
from harness.training import build
from harness.training.losses import ALIASES, LOSSES

from .case import intra_op_threads
from .spec import Setting

DEFAULT_LOSS = "hinge"
#: The objective a claim was designed with: WGAN's weight clipping (Arjovsky et al. 2017,
#: Algorithm 1) and WGAN-GP's gradient penalty (Gulrajani et al. 2017, Algorithm 1) bound or
#: pull the critic's Lipschitz constant because the Wasserstein loss needs a 1-Lipschitz
#: critic (docs/references.md#arjovsky2017, #gulrajani2017); Miyato et al. 2018 §4 train them so.
LOSS_BY_CLAIM = {"interpolate_gradient": "wasserstein", "entries_within": "wasserstein"}


def loss_problem(name: Any) -> str | None:
    """Why ``name`` is not a GAN loss (``None`` when it is one)."""
    if str(name).lower() in LOSSES or str(name).lower() in ALIASES:
        return None
    return f"unknown loss {name!r}; known: {', '.join(sorted(LOSSES))}"


def _loss_by_claim_problem(mapping: Mapping[str, Any]) -> str | None:
    for quantity, loss in mapping.items():
        if quantity not in QUANTITIES:
            return f"{quantity!r} is not a claim quantity; known: {', '.join(QUANTITIES)}"
        if (problem := loss_problem(loss)) is not None:
            return f"{quantity}: {problem}"
    return None

#: Settings every GAN-training runner reads through the helpers below.
GAN_SETTINGS = {
    "adam": Setting((str, dict), "A", "Adam setting: a Miyato letter A-F or a name in adam_settings"),
    "adam_settings": Setting(dict, {}, "named Adam settings {name: {lr, beta1, beta2, n_dis}}"),
    "loss": Setting(str, DEFAULT_LOSS, "GAN loss of methods whose entry, declaration and claim choose "
                                       "none: hinge, nonsaturating or wasserstein", check=loss_problem),
    "loss_by_claim": Setting(dict, LOSS_BY_CLAIM, "GAN loss per claim quantity {quantity: loss}, e.g. "
                                                  "{interpolate_gradient: wasserstein}", check=_loss_by_claim_problem),
    "models": Setting(dict, {}, "model per data set {data: name or {name, <kwargs>}}"),
    "model_args": Setting(dict, {}, "factory keyword arguments per model name"),
    "data_args": Setting(dict, {}, "loader keyword arguments per data set"),
    "batch": Setting(int, 64, "batch size"),
    "threads": Setting((int, type(None)), None, "torch intra-op threads for the case (null: torch's default)"),
    "user_model": Setting((dict, type(None)), None, "the user's discriminator {target, input_shape, num_classes} "
                                                    "(set by lipbench check --model; null: lipbench's models)"),
}
#: Case parameters of GAN-training runners.
GAN_PARAMS = {
    "data": Setting(str, "", "data set: ring8, grid25, digits, mnist, cifar10, stl10, ..."),
    "model": Setting(str, "", "model name (else settings.models[data])"),
    "size": Setting(int, 32, "model input size"),
    "setting": Setting(str, "", "Adam setting for this case (else settings.adam)"),
    "iterations": Setting(int, 0, "generator updates (else settings.iterations_for / iterations)"),
    "batch": Setting(int, 64, "batch size for this case (else settings.batch)"),
}


def loss_for(settings: Mapping[str, Any], method: Any, spec: Any = None) -> str:
    """The GAN loss ``method`` (a built Method, its :func:`~harness.methods.claims.description`,
    or ``None`` for no constraint) trains with.

    Chosen by what the method is, never by its label, most specific first: the suite's method
    entry (``spec.loss``), the method's own declaration (``Method.gan_loss``, inherited by
    subclasses), its claim (``settings['loss_by_claim']``; under ``lipbench check --as NAME``
    NAME's claim, so the variant trains as NAME's baselines did), else ``settings['loss']``.
    """
    if spec is not None and getattr(spec, "loss", ""):
        return str(spec.loss)
    if method is None:
        return str(settings["loss"])
    declared = method.get("gan_loss") if isinstance(method, Mapping) else getattr(method, "gan_loss", None)
    if declared:
        return str(declared)
    claim, _ = judged_claim(method, getattr(spec, "judged_as", "") if spec is not None else "")
    return str(settings["loss_by_claim"].get(claim.quantity, settings["loss"]))


#: ``torch.set_num_threads(n)`` inside the block (no change when ``n`` is falsy).
threads = intra_op_threads


def model_spec(params: Mapping[str, Any], settings: Mapping[str, Any],
               data: str | None = None) -> tuple[str, dict[str, Any]]:
    """``(model name, factory kwargs)``: the case parameter ``model`` (with ``size`` when given),
    else ``settings['models'][data]`` (a name or ``{name: ..., <kwargs>}``)."""
    if "model" in params:
        kwargs = {k: params[k] for k in ("size",) if k in params}
        extra = settings["model_args"].get(params["model"], {})
        return str(params["model"]), {**extra, **kwargs}
    models = settings["models"]
    if data is None or data not in models:
        raise KeyError(f"no model for data set {data!r}: give a case parameter 'model' or "
                       f"settings.models.{data}")
    spec = models[data]
    if isinstance(spec, str):
        return spec, {}
    spec = dict(spec)
    return str(spec.pop("name")), spec


def user_model(settings: Mapping[str, Any]) -> UserModel | None:
    """The user's discriminator of a case (``settings.user_model``), if any."""
    value = settings.get("user_model")
    return UserModel.from_setting(value) if value else None


def build_models(params: Mapping[str, Any], settings: Mapping[str, Any], seed: int,
                 data: str | None = None) -> tuple[Any, Any]:
    """``(G, D)`` of a case, weights initialised from ``seed``. With a user's model this runs the
    user's code: call it in a defendant only."""
    model = user_model(settings)
    if model is not None:
        return paired_generator(model.input_shape, seed), load_discriminator(model, seed)
    name, kwargs = model_spec(params, settings, data)
    return build(name, seed=seed, **kwargs)


def judge_models(params: Mapping[str, Any], settings: Mapping[str, Any], seed: int,
                 data: str | None = None) -> tuple[Any, Any, dict[str, Any] | None]:
    """``(G, D, layout)`` as the judge builds them: lipbench's own pair (``layout`` ``None``), or
    for a user's model lipbench's generator and a layers-only D from the description a
    defendant reported (``layout``: for :func:`harness.observe.verify.make_plan`)."""
    model = user_model(settings)
    if model is None:
        return (*build_models(params, settings, seed, data), None)
    described = check_user_model(model, seed)
    return paired_generator(model.input_shape, seed), layers_only(described), layout(described)


def adam_setting(params: Mapping[str, Any], settings: Mapping[str, Any]) -> Any:
    """A setting name or mapping for :func:`harness.training.get_settings`."""
    name = params.get("setting", settings["adam"])
    custom = settings["adam_settings"]
    if isinstance(name, str) and name in custom:
        return {"name": name, **custom[name]}
    return name


def iterations_for(params: Mapping[str, Any], settings: Mapping[str, Any], data: str) -> int:
    """``params.iterations``, else ``settings.iterations_for[data]``, else ``settings.iterations``."""
    if "iterations" in params:
        return int(params["iterations"])
    return int(settings["iterations_for"].get(data, settings["iterations"]))


def synthetic_images(n: int, shape: tuple[int, ...], seed: int) -> torch.Tensor:
    """``n`` samples of ``shape`` (``(channels, size, size)`` images, or vectors) uniform in
    ``[-1, 1]`` (the tanh range).

    Timing depends only on tensor shapes, not on the values, so the timing suite needs
    no data set on disk; a fixed seed keeps the runs identical.
    """
    g = torch.Generator().manual_seed(int(seed))
    return torch.rand(n, *shape, generator=g) * 2 - 1
