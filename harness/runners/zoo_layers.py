"""The real layers the ``bound_zoo`` suite judges estimators on.

Every ``Conv2d`` of a model, with the input size it sees in a forward pass, as an
:class:`harness.estimators.ConvLayer`: Miyato's standard CNN and ResNet discriminators
and the 28×28 DCGAN discriminator (``harness.training.models``), at PyTorch's default
initialisation or after a short GAN training run on the bundled digits (resized, and
repeated to three channels where the model reads colour), and torchvision's ResNet-18
and VGG-11 at their default initialisation (no weights are downloaded).

Models are initialised, and trained, in float64 and rounded to float32 at the end, so
every CPU judges the same float32 layers. Initialised and trained in float32 the weights
differed between CPU kernels (``ATEN_CPU_CAPABILITY=default`` against AVX2) by one
rounding at initialisation and by up to 1e-4 after 20 updates of the DCGAN (the float32
resize of the digits, the hinge loss and Adam amplify rounding); in float64 they differ
by at most 1.4e-15 after the same run, and their float32 roundings are identical.
"""
from __future__ import annotations

import contextlib
from typing import Any, Iterator, Mapping

import torch
import torch.nn.functional as F
from torch import nn

from harness.estimators import ConvLayer
from harness.training import build, train
from harness.training.data import TensorSource

GAN_MODELS = ("standard_cnn", "resnet32", "dcgan28")
CLASSIFIERS = ("resnet18", "vgg11")
MODELS = GAN_MODELS + CLASSIFIERS
STAGES = ("init", "trained")


@contextlib.contextmanager
def float64_default() -> Iterator[None]:
    """New tensors (weights at construction, latent codes, optimiser states) in float64 inside the block."""
    before = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        yield
    finally:
        torch.set_default_dtype(before)


def _classifier(name: str) -> nn.Module:
    import torchvision  # imported here: the GAN-only cases never pay for it

    return getattr(torchvision.models, name)(weights=None)


def build_model(name: str, size: int, seed: int) -> tuple[nn.Module, nn.Module | None, tuple[int, int, int]]:
    """``(model, generator or None, input shape (c, h, w))``, initialised under ``seed`` in float64."""
    with float64_default():
        if name in GAN_MODELS:
            G, D = build(name, seed=seed, size=size)
            return D, G, (1 if name == "dcgan28" else 3, size, size)
        if name in CLASSIFIERS:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(seed)
                return _classifier(name), None, (3, size, size)
    raise ValueError(f"unknown model {name!r}; the bound_zoo runner knows {', '.join(MODELS)}")


class Float64Source(TensorSource):
    """Samples in float64 (the short training run's arithmetic)."""

    def get(self, index: torch.Tensor) -> torch.Tensor:
        return super().get(index).double()


def training_data(shape: tuple[int, int, int]) -> Float64Source:
    """scikit-learn's 8x8 digits (0..16 mapped to [-1, 1]) upsampled in float64 to the model's
    size (bilinear) and repeated to its channels: real images, no download."""
    from sklearn.datasets import load_digits

    channels, size, _ = shape
    x = torch.as_tensor(load_digits().images, dtype=torch.float64).unsqueeze(1) / 8.0 - 1.0
    x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False).clamp_(-1, 1)
    return Float64Source(x.repeat(1, channels, 1, 1).contiguous(), f"digits{size}x{channels}")


def train_briefly(G: nn.Module, D: nn.Module, shape: tuple[int, int, int], settings: Mapping[str, Any],
                  seed: int) -> None:
    """A short GAN run (hinge loss, no normalisation) of the float64 models, trained in place."""
    with float64_default():
        result = train(G, D, None, loss="hinge", settings=settings["adam"], data=training_data(shape),
                       iterations=int(settings["train_iterations"]), batch_size=int(settings["train_batch"]),
                       seed=seed)
    if result.diverged:
        raise RuntimeError(f"the short training run diverged: {result.message}")


def model_at_stage(name: str, size: int, stage: str, seed: int,
                   settings: Mapping[str, Any]) -> tuple[nn.Module, tuple[int, int, int]]:
    """The float32 model at ``stage`` (``init``, or ``trained`` for the GAN discriminators) and its input shape."""
    if stage not in STAGES:
        raise ValueError(f"stage must be one of {STAGES}, got {stage!r}")
    if stage == "trained" and name in CLASSIFIERS:
        raise ValueError(f"stage 'trained' is for the GAN discriminators, not {name}")
    net, generator, shape = build_model(name, size, seed)
    if stage == "trained":
        train_briefly(generator, net, shape, settings, seed)
    return net.float(), shape


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
