"""The one interface every Lipschitz method implements.

A method touches a discriminator in up to three places of a training step:

* :meth:`Method.apply` once, before training: weight reparametrizations are registered
  with ``torch.nn.utils.parametrize`` so that ``layer.weight`` is always the effective
  (normalised) weight the forward pass uses;
* :meth:`Method.penalty` every discriminator step: an extra loss term (gradient
  penalty, orthonormal regularisation), zero by default;
* :meth:`Method.after_step` after every discriminator update: projections such as
  weight clipping, a no-op by default.
"""
from __future__ import annotations

import json
from typing import Any, ClassVar

import torch
from torch import nn


class Method:
    """Base class: a named, parametrised Lipschitz method (``none`` when used as is)."""

    #: Registry name; subclasses set it (``harness.methods.register`` checks it).
    name: ClassVar[str] = "none"
    #: Default parameters; keyword arguments to ``__init__`` override them.
    defaults: ClassVar[dict[str, Any]] = {}
    #: What the method promises about each layer, in words (shown in reports).
    claim: ClassVar[str] = "no constraint"

    def __init__(self, **params: Any) -> None:
        unknown = sorted(set(params) - set(self.defaults))
        if unknown:
            allowed = ", ".join(sorted(self.defaults)) or "none"
            raise TypeError(f"method {self.name!r} got unknown parameter(s) "
                            f"{', '.join(unknown)}; allowed: {allowed}")
        self.params: dict[str, Any] = {**self.defaults, **params}

    def apply(self, model: nn.Module) -> nn.Module:
        """Constrain ``model`` in place and return it."""
        return model

    def penalty(self, D: nn.Module, real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
        """Extra discriminator loss term; zero unless the method regularises."""
        return real.new_zeros(())

    def after_step(self, D: nn.Module) -> None:
        """Called after each discriminator optimiser step."""

    def describe(self) -> dict[str, Any]:
        """Name and parameters as plain, JSON-serialisable data."""
        return {"name": self.name, "params": dict(self.params)}

    def to_json(self) -> str:
        return json.dumps(self.describe(), sort_keys=True)

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in sorted(self.params.items()))
        return f"{self.name}({args})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Method) and self.describe() == other.describe()

    def __hash__(self) -> int:
        return hash(self.to_json())
