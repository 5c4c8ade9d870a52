"""Shared helpers of the ``training_time`` and ``sample_quality`` runners (private).

* :func:`loss_for`: the GAN loss of a method, declared in the suite's settings as
  ``loss: hinge`` (the default) plus a per-method mapping ``loss_for: {weight_clip: wasserstein,
  grad_penalty: wasserstein}`` (keys are method labels or registry names; the label wins).
* :func:`threads`: run a block with ``torch.set_num_threads(n)`` and restore the old value
  (``None``: leave torch's default). One intra-op thread makes CPU timings robust on a shared
  machine and makes the reduction order, hence training, independent of the core count.
* :func:`model_spec`: ``(name, kwargs)`` of the model a case trains, from the case parameter
  ``model`` or the settings' per-data-set mapping ``models: {ring8: {name: mlp2d}, ...}``.
* :func:`adam_setting`: the Adam setting of a case: the case parameter ``setting`` or
  ``settings.adam`` (default ``A``), a Miyato letter ``A``..``F`` or a name defined in the
  suite's ``adam_settings: {fast2d: {lr: 2e-3, beta1: 0.0, beta2: 0.9, n_dis: 1}}``.
* :func:`synthetic_images`: the random tensor the timing runs draw their "real" batches from.
"""
from __future__ import annotations

import contextlib
from typing import Any, Iterator, Mapping

import torch

from .spec import Setting

DEFAULT_LOSS = "hinge"

#: Settings every GAN-training runner reads through the helpers below.
GAN_SETTINGS = {
    "adam": Setting((str, dict), "A", "Adam setting: a Miyato letter A-F or a name in adam_settings"),
    "adam_settings": Setting(dict, {}, "named Adam settings {name: {lr, beta1, beta2, n_dis}}"),
    "loss": Setting(str, DEFAULT_LOSS, "GAN loss: hinge, nonsaturating or wasserstein"),
    "loss_for": Setting(dict, {}, "per-method loss {method label or name: loss}"),
    "models": Setting(dict, {}, "model per data set {data: name or {name, <kwargs>}}"),
    "model_args": Setting(dict, {}, "factory keyword arguments per model name"),
    "data_args": Setting(dict, {}, "loader keyword arguments per data set"),
    "batch": Setting(int, 64, "batch size"),
    "threads": Setting((int, type(None)), None, "torch intra-op threads for the case (null: torch's default)"),
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


def loss_for(settings: Mapping[str, Any], label: str, name: str) -> str:
    """The loss for a method: ``settings['loss_for'][label or name]``, else ``settings['loss']``."""
    mapping = settings["loss_for"]
    if label in mapping:
        return str(mapping[label])
    if name in mapping:
        return str(mapping[name])
    return str(settings["loss"])


@contextlib.contextmanager
def threads(n: int | None) -> Iterator[None]:
    """``torch.set_num_threads(n)`` inside the block (no change when ``n`` is falsy)."""
    if not n:
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(int(n))
    try:
        yield
    finally:
        torch.set_num_threads(before)


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


def synthetic_images(n: int, channels: int, size: int, seed: int) -> torch.Tensor:
    """``n`` images ``(channels, size, size)`` uniform in ``[-1, 1]`` (the tanh range).

    Timing depends only on tensor shapes, not on the pixel values, so the timing suite needs
    no data set on disk; a fixed seed keeps the runs identical.
    """
    g = torch.Generator().manual_seed(int(seed))
    return torch.rand(n, channels, size, size, generator=g) * 2 - 1
