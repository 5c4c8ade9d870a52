"""The real layers the ``bound_zoo`` suite judges estimators on.

Every ``Conv2d`` of a model, with the input size it sees in a forward pass, as an
:class:`harness.estimators.ConvLayer`: Miyato's standard CNN and ResNet discriminators
and the 28×28 DCGAN discriminator (``harness.training.models``), at PyTorch's default
initialisation or after a short GAN training run on the bundled digits (resized, and
repeated to three channels where the model reads colour), and torchvision's ResNet-18
and VGG-11 at their default initialisation (no weights are downloaded).
"""
from __future__ import annotations

from typing import Any, Mapping

import torch
from torch import nn

from harness.estimators import ConvLayer
from harness.training import build, train
from harness.training.data import TensorSource, digits

GAN_MODELS = ("standard_cnn", "resnet32", "dcgan28")
CLASSIFIERS = ("resnet18", "vgg11")
MODELS = GAN_MODELS + CLASSIFIERS
STAGES = ("init", "trained")


def _classifier(name: str) -> nn.Module:
    import torchvision  # imported here: the GAN-only cases never pay for it

    return getattr(torchvision.models, name)(weights=None)


def build_model(name: str, size: int, seed: int) -> tuple[nn.Module, nn.Module | None, tuple[int, int, int]]:
    """``(model, generator or None, input shape (c, h, w))``, initialised under ``seed``."""
    if name in GAN_MODELS:
        G, D = build(name, seed=seed, size=size)
        channels = 1 if name == "dcgan28" else 3
        return D, G, (channels, size, size)
    if name in CLASSIFIERS:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            return _classifier(name), None, (3, size, size)
    raise ValueError(f"unknown model {name!r}; the bound_zoo runner knows {', '.join(MODELS)}")


def training_data(shape: tuple[int, int, int]) -> TensorSource:
    """The bundled digits at the model's size, repeated to its channels (real images, no download)."""
    channels, size, _ = shape
    source = digits(size=size, pad=0)
    return TensorSource(source.data.repeat(1, channels, 1, 1).contiguous(), f"digits{size}x{channels}")


def train_briefly(G: nn.Module, D: nn.Module, shape: tuple[int, int, int], settings: Mapping[str, Any],
                  seed: int) -> None:
    """A short GAN run (hinge loss, no normalisation), G and D trained in place."""
    result = train(G, D, None, loss="hinge", settings=settings["adam"], data=training_data(shape),
                   iterations=int(settings["train_iterations"]), batch_size=int(settings["train_batch"]),
                   seed=seed)
    if result.diverged:
        raise RuntimeError(f"the short training run diverged: {result.message}")


def conv_layers(model: nn.Module, shape: tuple[int, int, int]) -> list[ConvLayer]:
    """Every ``Conv2d`` of ``model`` in forward order, with its input size (one eval-mode forward)."""
    seen: list[tuple[str, nn.Conv2d, tuple[int, ...]]] = []
    hooks = [module.register_forward_hook(
        lambda m, args, out, name=name: seen.append((name, m, tuple(args[0].shape))))
        for name, module in model.named_modules() if isinstance(module, nn.Conv2d)]
    was_training = model.training
    try:
        model.eval()
        with torch.no_grad():
            model(torch.zeros(1, *shape))
    finally:
        for h in hooks:
            h.remove()
        model.train(was_training)
    return [ConvLayer.from_module(name, module, in_shape) for name, module, in_shape in seen]


def select(layers: list[ConvLayer], names: list[str] | None, model: str) -> list[ConvLayer]:
    """The layers called ``names`` (all when ``None``); an unknown name is an error listing the known."""
    if names is None:
        return layers
    by_name = {layer.name: layer for layer in layers}
    unknown = [n for n in names if n not in by_name]
    if unknown:
        raise ValueError(f"settings.layers.{model}: no Conv2d called {', '.join(unknown)}; "
                         f"{model} has {', '.join(by_name)}")
    return [by_name[n] for n in names]
