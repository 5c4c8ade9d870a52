"""Deliberately broken methods for the suite-level tests (importable as ``variants:Name``)."""
import torch
from torch import nn
from torch.nn.utils import parametrize

from harness.layers import weight_layers
from harness.methods.spectral import SNw


class _Times(nn.Module):
    def __init__(self, factor: float) -> None:
        super().__init__()
        self.factor = factor

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        return self.factor * weight


class ScaledSNw(SNw):
    """sn_w whose effective weight is secretly multiplied by 1.3 (claims ||W^|| = 1)."""

    name = "scaled_sn_w"

    def apply(self, model: nn.Module) -> nn.Module:
        model = super().apply(model)
        for _, layer in weight_layers(model):
            parametrize.register_parametrization(layer, "weight", _Times(1.3))
        return model


class Raises(SNw):
    """A variant whose apply raises: its cases must become errors, the run must go on."""

    name = "raises"

    def apply(self, model: nn.Module) -> nn.Module:
        raise RuntimeError("deliberately broken variant")


def small_discriminator() -> nn.Module:
    """Miyato's standard CNN discriminator for 16x16 inputs (a model factory for ``inspect``)."""
    from harness.training.models import StandardCNNDiscriminator
    return StandardCNNDiscriminator(16)
