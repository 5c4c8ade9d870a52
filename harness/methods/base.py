"""The one interface every Lipschitz method implements.

A method touches a discriminator in up to three places of a training step:

* :meth:`Method.apply` once, before training; it returns the model to use from then on
  (the same object, constrained in place, or a new one). Weight reparametrizations are
  registered with ``torch.nn.utils.parametrize`` so that ``layer.weight`` is always the
  effective (normalised) weight the forward pass uses;
* :meth:`Method.penalty` every discriminator step: an extra loss term (gradient
  penalty, orthonormal regularisation), zero by default;
* :meth:`Method.after_step` after every discriminator update: projections such as
  weight clipping, a no-op by default.

What a method promises is data (:attr:`Method.claim`, a :class:`~.claims.Claim`) that
the harness measures on the model ``apply`` returned; :attr:`Method.tags` say what it can
do (:class:`~.claims.MethodTags`). Parameters are checked against :attr:`Method.defaults`
and their types (:func:`.params.validate_params`) before anything else runs.
"""
from __future__ import annotations

import json
from typing import Any, ClassVar

import torch
from torch import nn

from .claims import Claim, MethodTags
from .params import validate_params


class Method:
    """Base class: a named, parametrised Lipschitz method (``none`` when used as is)."""

    #: Registry name; subclasses set it (``harness.methods.register`` checks it).
    name: ClassVar[str] = "none"
    #: Default parameters; keyword arguments to ``__init__`` override them (and must
    #: have the default's type, see :mod:`.params`).
    defaults: ClassVar[dict[str, Any]] = {}
    #: Explicit parameter types where the default does not say (e.g. a ``None`` default).
    param_types: ClassVar[dict[str, Any]] = {}
    #: What the method promises, as data (inherited; see :mod:`.claims`).
    claim: ClassVar[Claim] = Claim("none")
    #: What the method can do (inherited; override with ``dataclasses.replace``).
    tags: ClassVar[MethodTags] = MethodTags()
    #: The GAN loss the method is designed for (``"hinge"``, ``"nonsaturating"``,
    #: ``"wasserstein"``; inherited), or ``None``: training suites choose by its claim
    #: (``interpolate_gradient`` and ``entries_within``: Wasserstein), else their default.
    gan_loss: ClassVar[str | None] = None

    def __init__(self, **params: Any) -> None:
        self.params: dict[str, Any] = validate_params(self.name, self.defaults, params,
                                                      self.param_types)

    @property
    def claim_text(self) -> str:
        """The claim in words with this instance's parameters (shown in reports)."""
        return self.claim.describe(self.params)

    def apply(self, model: nn.Module) -> nn.Module:
        """Constrain ``model`` and return the model to use from now on.

        Built-in methods constrain ``model`` in place and return it; a method may instead
        return a new model or swap modules (tag ``replaces_layers``), so callers must
        always use the returned model.
        """
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
