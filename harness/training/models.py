"""GAN models from the seed papers.

The standard CNN pair follows Miyato et al. 2018 (seed 002), Table 3: a discriminator
of seven convolutions with leaky ReLU (slope 0.1) and a dense output, and a DCGAN-like
generator with batch normalisation. Padding is 1 for every convolution (the
authors' Chainer code), so a 32x32 input goes 32, 32, 16, 16, 8, 8, 4, 4.
"""
from __future__ import annotations

import torch
from torch import nn

#: (out_channels, kernel, stride) of the seven discriminator convolutions (seed 002, Table 3b).
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
    """Miyato's standard CNN generator (seed 002, Table 3a): z -> 4x4x512 -> size x size x 3."""

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
