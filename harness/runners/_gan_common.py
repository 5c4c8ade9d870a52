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
  ``settings.settings`` (default ``A``), a Miyato letter ``A``..``F`` or a name defined in the
  suite's ``adam_settings: {fast2d: {lr: 2e-3, beta1: 0.0, beta2: 0.9, n_dis: 1}}``.
* :func:`synthetic_images`: the random tensor the timing runs draw their "real" batches from.
"""
from __future__ import annotations

import contextlib
from typing import Any, Iterator, Mapping

import torch

DEFAULT_LOSS = "hinge"


def loss_for(settings: Mapping[str, Any], label: str, name: str) -> str:
    """The loss for a method: ``settings['loss_for'][label or name]``, else ``settings['loss']``."""
    mapping = settings.get("loss_for") or {}
    if label in mapping:
        return str(mapping[label])
    if name in mapping:
        return str(mapping[name])
    return str(settings.get("loss", DEFAULT_LOSS))


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
        extra = (settings.get("model_args") or {}).get(params["model"], {})
        return str(params["model"]), {**extra, **kwargs}
    models = settings.get("models") or {}
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
    name = params.get("setting", settings.get("settings", "A"))
    custom = settings.get("adam_settings") or {}
    if isinstance(name, str) and name in custom:
        return {"name": name, **custom[name]}
    return name


def iterations_for(params: Mapping[str, Any], settings: Mapping[str, Any], data: str) -> int:
    """``params.iterations``, else ``settings.iterations_for[data]``, else ``settings.iterations``."""
    if "iterations" in params:
        return int(params["iterations"])
    per_data = settings.get("iterations_for") or {}
    return int(per_data.get(data, settings["iterations"]))


def synthetic_images(n: int, channels: int, size: int, seed: int) -> torch.Tensor:
    """``n`` images ``(channels, size, size)`` uniform in ``[-1, 1]`` (the tanh range).

    Timing depends only on tensor shapes, not on the pixel values, so the timing suite needs
    no data set on disk; a fixed seed keeps the runs identical.
    """
    g = torch.Generator().manual_seed(int(seed))
    return torch.rand(n, channels, size, size, generator=g) * 2 - 1
