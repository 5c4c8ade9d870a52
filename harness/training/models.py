"""GAN models from the seed papers, and a registry ``build(name) -> (G, D)``.

Every generator has a ``z_dim`` attribute (the loop samples ``z ~ N(0, I)`` of that size);
every discriminator maps a batch to ``(N, 1)`` logits and has ``features`` + ``head``.

The standard CNN pair follows Miyato et al. 2018, Table 3: a discriminator
of seven convolutions with leaky ReLU (slope 0.1) and a dense output, and a DCGAN-like
generator with batch normalisation. Padding is 1 for every convolution (the
authors' Chainer code), so a 32x32 input goes 32, 32, 16, 16, 8, 8, 4, 4.
The ResNet pair follows Miyato et al. 2018, App. B.4, Table 4 (Gulrajani et al. 2017's architecture);
the DCGAN and MLP pairs are small models for MNIST-like images, sklearn digits and 2-D
mixtures. Weights keep PyTorch's default initialisation everywhere.
"""
from __future__ import annotations

from typing import Any, Callable

import torch
from torch import nn

#: (out_channels, kernel, stride) of the seven discriminator convolutions (Miyato et al. 2018, Table 3b).
STANDARD_CNN_D_LAYERS = ((64, 3, 1), (64, 4, 2), (128, 3, 1), (128, 4, 2),
                         (256, 3, 1), (256, 4, 2), (512, 3, 1))


class StandardCNNDiscriminator(nn.Module):
    """Miyato's standard CNN discriminator for ``size x size`` images (size divisible by 8)."""

    def __init__(self, size: int = 32, in_channels: int = 3, slope: float = 0.1) -> None:
        super().__init__()
        if size % 8:
            raise ValueError(f"standard CNN discriminator needs size divisible by 8, got {size}")
        layers: list[nn.Module] = []
        channels = in_channels
        for out, kernel, stride in STANDARD_CNN_D_LAYERS:
            layers += [nn.Conv2d(channels, out, kernel, stride, padding=1), nn.LeakyReLU(slope)]
            channels = out
        self.features = nn.Sequential(*layers)
        self.head = nn.Linear(channels * (size // 8) ** 2, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x).flatten(1))


class StandardCNNGenerator(nn.Module):
    """Miyato's standard CNN generator (Miyato et al. 2018, Table 3a): z -> 4x4x512 -> size x size x 3."""

    def __init__(self, size: int = 32, z_dim: int = 128, out_channels: int = 3) -> None:
        super().__init__()
        if size % 8:
            raise ValueError(f"standard CNN generator needs size divisible by 8, got {size}")
        self.z_dim = z_dim
        self.base = size // 8
        self.fc = nn.Linear(z_dim, self.base * self.base * 512)
        blocks: list[nn.Module] = [nn.BatchNorm2d(512), nn.ReLU()]
        channels = 512
        for out in (256, 128, 64):
            blocks += [nn.ConvTranspose2d(channels, out, 4, 2, padding=1), nn.BatchNorm2d(out), nn.ReLU()]
            channels = out
        blocks += [nn.Conv2d(channels, out_channels, 3, 1, padding=1), nn.Tanh()]
        self.net = nn.Sequential(*blocks)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(self.fc(z).view(-1, 512, self.base, self.base))


# --------------------------------------------------------------------------------------
# Residual building blocks (kept plain so a network Lipschitz bound can follow them)
# --------------------------------------------------------------------------------------

class Residual(nn.Module):
    """``y = shortcut(x) + residual(x)``; both are ``nn.Sequential`` (an empty one is the identity).

    A Lipschitz bound of the block is ``Lip(shortcut) + Lip(residual)``, each the product of
    its layers' bounds, so a bound computed by walking ``Sequential``s can follow it.
    """

    def __init__(self, residual: nn.Sequential, shortcut: nn.Sequential | None = None) -> None:
        super().__init__()
        self.residual = residual
        self.shortcut = shortcut if shortcut is not None else nn.Sequential()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.shortcut(x) + self.residual(x)


class GlobalSumPool(nn.Module):
    """Sum over all spatial positions, ``(N, C, H, W) -> (N, C)`` (Miyato et al. 2018, Table 4b).

    Linear; its operator norm on an ``H x W`` input is ``sqrt(H * W)``.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.sum(dim=(2, 3))


def d_resblock(in_ch: int, out_ch: int, downsample: bool, first: bool = False) -> Residual:
    """Discriminator ResBlock of Gulrajani et al. 2017 / Miyato et al. 2018 (Miyato et al. 2018, Table 4b).

    ``first=True`` is the "optimized" first block (no leading ReLU, shortcut pools before its
    1x1 conv); otherwise ``ReLU, conv3x3, ReLU, conv3x3[, avgpool2]`` with a 1x1-conv shortcut
    when the channels change or the block downsamples. ReLUs are not in-place: ``x`` is reused.
    """
    if first:
        residual = nn.Sequential(nn.Conv2d(in_ch, out_ch, 3, 1, 1), nn.ReLU(),
                                 nn.Conv2d(out_ch, out_ch, 3, 1, 1), nn.AvgPool2d(2))
        shortcut = nn.Sequential(nn.AvgPool2d(2), nn.Conv2d(in_ch, out_ch, 1, 1, 0))
        return Residual(residual, shortcut)
    layers: list[nn.Module] = [nn.ReLU(), nn.Conv2d(in_ch, out_ch, 3, 1, 1), nn.ReLU(),
                               nn.Conv2d(out_ch, out_ch, 3, 1, 1)]
    short: list[nn.Module] = []
    if in_ch != out_ch or downsample:
        short.append(nn.Conv2d(in_ch, out_ch, 1, 1, 0))
    if downsample:
        layers.append(nn.AvgPool2d(2))
        short.append(nn.AvgPool2d(2))
    return Residual(nn.Sequential(*layers), nn.Sequential(*short))


def g_resblock(in_ch: int, out_ch: int) -> Residual:
    """Generator ResBlock up (Miyato et al. 2018, Table 4a): ``BN, ReLU, up2, conv3x3, BN, ReLU, conv3x3``
    with an ``up2, conv1x1`` shortcut (nearest-neighbour upsampling)."""
    residual = nn.Sequential(nn.BatchNorm2d(in_ch), nn.ReLU(), nn.Upsample(scale_factor=2),
                             nn.Conv2d(in_ch, out_ch, 3, 1, 1), nn.BatchNorm2d(out_ch), nn.ReLU(),
                             nn.Conv2d(out_ch, out_ch, 3, 1, 1))
    shortcut = nn.Sequential(nn.Upsample(scale_factor=2), nn.Conv2d(in_ch, out_ch, 1, 1, 0))
    return Residual(residual, shortcut)


class ResNetGenerator(nn.Module):
    """ResNet generator for 32x32 (Miyato et al. 2018, App. B.4, Table 4a; Gulrajani et al. 2017):
    ``z -> dense -> (size/8)^2 x ch -> 3 x ResBlock up ch -> BN, ReLU, conv3x3, tanh``.

    ``ch=256`` is Miyato's doubled generator width ("we doubled the feature map", App. B.2).
    """

    def __init__(self, size: int = 32, z_dim: int = 128, ch: int = 256, out_channels: int = 3) -> None:
        super().__init__()
        if size % 8:
            raise ValueError(f"ResNet generator needs size divisible by 8, got {size}")
        self.z_dim, self.ch, self.base = z_dim, ch, size // 8
        self.fc = nn.Linear(z_dim, self.base * self.base * ch)
        self.net = nn.Sequential(g_resblock(ch, ch), g_resblock(ch, ch), g_resblock(ch, ch),
                                 nn.BatchNorm2d(ch), nn.ReLU(),
                                 nn.Conv2d(ch, out_channels, 3, 1, 1), nn.Tanh())

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(self.fc(z).view(-1, self.ch, self.base, self.base))


class ResNetDiscriminator(nn.Module):
    """ResNet discriminator for 32x32 (Miyato et al. 2018, Table 4b): optimized ResBlock down ch,
    ResBlock down ch, ResBlock ch, ResBlock ch, ReLU, global sum pooling, dense 1."""

    def __init__(self, size: int = 32, in_channels: int = 3, ch: int = 128) -> None:
        super().__init__()
        if size % 4:
            raise ValueError(f"ResNet discriminator needs size divisible by 4, got {size}")
        self.features = nn.Sequential(
            d_resblock(in_channels, ch, downsample=True, first=True),
            d_resblock(ch, ch, downsample=True),
            d_resblock(ch, ch, downsample=False),
            d_resblock(ch, ch, downsample=False),
            nn.ReLU(), GlobalSumPool())
        self.head = nn.Linear(ch, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


# --------------------------------------------------------------------------------------
# Small DCGAN pairs (28x28 MNIST-like, 8x8 / 16x16 digits) and MLPs for 2-D data
# --------------------------------------------------------------------------------------

class DCGANGenerator(nn.Module):
    """Small DCGAN generator (Radford et al. 2016 layout, two up-convolutions):
    ``z -> dense -> (size/4)^2 x 2ch -> convT4s2 ch -> convT4s2 channels -> tanh``, BN + ReLU between."""

    def __init__(self, size: int = 28, z_dim: int = 64, ch: int = 64, out_channels: int = 1) -> None:
        super().__init__()
        if size % 4:
            raise ValueError(f"DCGAN generator needs size divisible by 4, got {size}")
        self.z_dim, self.ch, self.base = z_dim, ch, size // 4
        self.fc = nn.Linear(z_dim, 2 * ch * self.base * self.base)
        self.net = nn.Sequential(
            nn.BatchNorm2d(2 * ch), nn.ReLU(),
            nn.ConvTranspose2d(2 * ch, ch, 4, 2, 1), nn.BatchNorm2d(ch), nn.ReLU(),
            nn.ConvTranspose2d(ch, out_channels, 4, 2, 1), nn.Tanh())

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(self.fc(z).view(-1, 2 * self.ch, self.base, self.base))


class DCGANDiscriminator(nn.Module):
    """Small DCGAN discriminator without batch norm (BN would break per-layer Lipschitz
    accounting): ``conv4s2 ch, LReLU(0.2), conv4s2 2ch, LReLU(0.2), dense 1``."""

    def __init__(self, size: int = 28, in_channels: int = 1, ch: int = 64, slope: float = 0.2) -> None:
        super().__init__()
        if size % 4:
            raise ValueError(f"DCGAN discriminator needs size divisible by 4, got {size}")
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, ch, 4, 2, 1), nn.LeakyReLU(slope),
            nn.Conv2d(ch, 2 * ch, 4, 2, 1), nn.LeakyReLU(slope), nn.Flatten())
        self.head = nn.Linear(2 * ch * (size // 4) ** 2, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


class MLPGenerator(nn.Module):
    """MLP generator for low-dimensional data (2-D mixtures): ``depth`` ReLU hidden layers."""

    def __init__(self, z_dim: int = 16, hidden: int = 128, depth: int = 3, out_dim: int = 2) -> None:
        super().__init__()
        self.z_dim = z_dim
        layers: list[nn.Module] = []
        width = z_dim
        for _ in range(depth):
            layers += [nn.Linear(width, hidden), nn.ReLU()]
            width = hidden
        layers.append(nn.Linear(width, out_dim))
        self.net = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z)


class MLPDiscriminator(nn.Module):
    """MLP discriminator for low-dimensional data: ``depth`` ReLU hidden layers, dense 1."""

    def __init__(self, in_dim: int = 2, hidden: int = 128, depth: int = 3) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        width = in_dim
        for _ in range(depth):
            layers += [nn.Linear(width, hidden), nn.ReLU()]
            width = hidden
        self.features = nn.Sequential(*layers)
        self.head = nn.Linear(width, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


# --------------------------------------------------------------------------------------
# Registry
# --------------------------------------------------------------------------------------

ModelFactory = Callable[..., tuple[nn.Module, nn.Module]]
_MODELS: dict[str, ModelFactory] = {}


def register_model(name: str) -> Callable[[ModelFactory], ModelFactory]:
    """Decorator adding a ``(G, D)`` factory under ``name``."""
    def deco(fn: ModelFactory) -> ModelFactory:
        if name in _MODELS and _MODELS[name] is not fn:
            raise ValueError(f"model {name!r} is registered twice")
        _MODELS[name] = fn
        return fn
    return deco


def available_models() -> list[str]:
    return sorted(_MODELS)


def build(name: str, seed: int | None = None, **kw: Any) -> tuple[nn.Module, nn.Module]:
    """``(G, D)`` for the registered model ``name``; keyword arguments go to its factory.

    With ``seed``, the weights are initialised under ``torch.manual_seed(seed)`` inside a
    forked RNG, so the global RNG state is left untouched and the init is reproducible.
    """
    if name not in _MODELS:
        raise KeyError(f"unknown model {name!r}; available: {', '.join(available_models())}")
    if seed is None:
        return _MODELS[name](**kw)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return _MODELS[name](**kw)


@register_model("standard_cnn")
def _standard_cnn(size: int = 32, channels: int = 3, z_dim: int = 128) -> tuple[nn.Module, nn.Module]:
    return (StandardCNNGenerator(size, z_dim, channels), StandardCNNDiscriminator(size, channels))


@register_model("resnet32")
def _resnet32(size: int = 32, channels: int = 3, z_dim: int = 128, g_ch: int = 256,
              d_ch: int = 128) -> tuple[nn.Module, nn.Module]:
    return (ResNetGenerator(size, z_dim, g_ch, channels), ResNetDiscriminator(size, channels, d_ch))


@register_model("dcgan28")
def _dcgan28(size: int = 28, channels: int = 1, z_dim: int = 64, ch: int = 64) -> tuple[nn.Module, nn.Module]:
    return (DCGANGenerator(size, z_dim, ch, channels), DCGANDiscriminator(size, channels, ch))


@register_model("dcgan_digits")
def _dcgan_digits(size: int = 8, channels: int = 1, z_dim: int = 32, ch: int = 32) -> tuple[nn.Module, nn.Module]:
    if size not in (8, 16):
        raise ValueError(f"dcgan_digits is for 8x8 or 16x16 digits, got size {size}")
    return (DCGANGenerator(size, z_dim, ch, channels), DCGANDiscriminator(size, channels, ch))


@register_model("mlp2d")
def _mlp2d(z_dim: int = 16, hidden: int = 128, depth: int = 3, dim: int = 2) -> tuple[nn.Module, nn.Module]:
    return (MLPGenerator(z_dim, hidden, depth, dim), MLPDiscriminator(dim, hidden, depth))
