"""Deliberately broken methods for the suite-level tests (importable as ``variants:Name``).

The method-level zoo (every invariant of the contract) is ``tests/mutants.py``; these break
what only a suite can see: training behaviour, gradients, cost.
"""
import torch
from torch import nn
from torch.nn.utils import parametrize

from benchmarks.injected import SleepsPerIteration
from harness.layers import weight_layers
from harness.methods.regularizers import GradPenalty
from harness.methods.spectral import SNw


class _Times(nn.Module):
    def __init__(self, factor: float) -> None:
        super().__init__()
        self.factor = factor

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        return self.factor * weight


class ScaledSNw(SNw):
    """sn_w whose effective weight is secretly multiplied by ``factor`` (claims ||W^|| = 1)."""

    name = "scaled_sn_w"
    factor = 1.3

    def apply(self, model: nn.Module) -> nn.Module:
        model = super().apply(model)
        for _, layer in weight_layers(model):
            parametrize.register_parametrization(layer, "weight", _Times(self.factor))
        return model


class SNwTimes4(ScaledSNw):
    """sn_w whose effective weight is secretly multiplied by 4."""

    name = "sn_w_times_4"
    factor = 4.0


class SNwUnequalLayers(SNw):
    """sn_w, but the first layer's effective weight is doubled: norms 2, 1, 1, ..."""

    name = "sn_w_unequal_layers"

    def apply(self, model: nn.Module) -> nn.Module:
        model = super().apply(model)
        first = weight_layers(model)[0][1]
        parametrize.register_parametrization(first, "weight", _Times(2.0))
        return model


class SNwNaN(SNw):
    """sn_w whose penalty is NaN: the D loss is NaN at once and training diverges."""

    name = "sn_w_nan"

    def penalty(self, D, real, fake):
        return real.new_tensor(float("nan"))


class GPWithoutPenalty(GradPenalty):
    """Claims a gradient penalty but computes none (no second backward, no cost)."""

    name = "gp_without_penalty"

    def penalty(self, D, real, fake):
        return real.new_zeros(())


class SlowSNw(SleepsPerIteration, SNw):
    """sn_w that makes every training iteration about 1.5 times as long."""

    name = "slow_sn_w"
    factor = 0.5


class Raises(SNw):
    """A variant whose apply raises: its cases must become errors, the run must go on."""

    name = "raises"

    def apply(self, model: nn.Module) -> nn.Module:
        raise RuntimeError("deliberately broken variant")


def small_discriminator() -> nn.Module:
    """Miyato's standard CNN discriminator for 16x16 inputs (a model factory for ``inspect``)."""
    from harness.training.models import StandardCNNDiscriminator
    return StandardCNNDiscriminator(16)
