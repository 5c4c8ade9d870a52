"""Base class of the weight-reparametrization methods.

:class:`ReparametrizationMethod` registers, with :mod:`torch.nn.utils.parametrize`, one
parametrization module per weight layer of the model (``harness.layers.weight_layers``,
which raises :class:`~harness.layers.UnsupportedLayerError` naming any layer it cannot
handle), so ``layer.weight`` is always the effective weight. A subclass only writes
:meth:`ReparametrizationMethod.parametrization`, the module for one layer.
"""
from __future__ import annotations

from abc import ABC, abstractmethod

from torch import nn
from torch.nn.utils import parametrize

from ..layers import layer_kind, weight_layers
from .base import Method


class ReparametrizationMethod(Method, ABC):
    """``apply`` parametrizes every weight layer with ``self.parametrization(...)``."""

    @abstractmethod
    def parametrization(self, name: str, layer: nn.Module, kind: str) -> nn.Module:
        """The parametrization module for ``layer`` (``kind`` from ``harness.layers.layer_kind``)."""

    def registered(self, name: str, layer: nn.Module, module: nn.Module) -> None:
        """Called after ``module`` was registered on ``layer`` (hooks, state); no-op here."""

    def apply(self, model: nn.Module) -> nn.Module:
        layers = weight_layers(model)  # raises, naming the layer, before anything changes
        for name, layer in layers:
            module = self.parametrization(name, layer, layer_kind(layer, name))
            # unsafe=True skips parametrize's consistency check, which would evaluate the
            # module once more (and, for power iterations, advance their state).
            parametrize.register_parametrization(layer, "weight", module, unsafe=True)
            self.registered(name, layer, module)
        return model
