"""GAN objectives as ``(d_loss(real_logits, fake_logits), g_loss(fake_logits))`` pairs.

All losses are minimised and averaged over every logit (``D`` returns ``(N, 1)``):

* ``nonsaturating`` (Goodfellow et al. 2014; Miyato et al. 2018 eq. 3 with the ``-log D(G(z))``
  generator loss): ``d = E[softplus(-D(x))] + E[softplus(D(G(z)))]``,
  ``g = E[softplus(-D(G(z)))]``;
* ``hinge`` (Miyato et al. 2018 eq. 17): ``d = E[relu(1 - D(x))] + E[relu(1 + D(G(z)))]``,
  ``g = -E[D(G(z))]``;
* ``wasserstein`` (Arjovsky et al. 2017; Donovan 2025 §2): ``d = E[D(G(z))] - E[D(x)]``,
  ``g = -E[D(G(z))]``.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterator

import torch
import torch.nn.functional as F

Tensor = torch.Tensor


def nonsaturating_d(real: Tensor, fake: Tensor) -> Tensor:
    return F.softplus(-real).mean() + F.softplus(fake).mean()


def nonsaturating_g(fake: Tensor) -> Tensor:
    return F.softplus(-fake).mean()


def hinge_d(real: Tensor, fake: Tensor) -> Tensor:
    return F.relu(1.0 - real).mean() + F.relu(1.0 + fake).mean()


def hinge_g(fake: Tensor) -> Tensor:
    return -fake.mean()


def wasserstein_d(real: Tensor, fake: Tensor) -> Tensor:
    return fake.mean() - real.mean()


def wasserstein_g(fake: Tensor) -> Tensor:
    return -fake.mean()


@dataclass(frozen=True)
class GANLoss:
    """A named pair of loss functions; unpacks as ``d_loss, g_loss = loss``."""

    name: str
    d_loss: Callable[[Tensor, Tensor], Tensor]
    g_loss: Callable[[Tensor], Tensor]

    def __iter__(self) -> Iterator[Callable]:
        return iter((self.d_loss, self.g_loss))


LOSSES: dict[str, GANLoss] = {
    "nonsaturating": GANLoss("nonsaturating", nonsaturating_d, nonsaturating_g),
    "hinge": GANLoss("hinge", hinge_d, hinge_g),
    "wasserstein": GANLoss("wasserstein", wasserstein_d, wasserstein_g),
}
ALIASES = {"ns": "nonsaturating", "standard": "nonsaturating", "dcgan": "nonsaturating",
           "wgan": "wasserstein", "w": "wasserstein"}


def get_loss(spec: str | GANLoss | tuple) -> GANLoss:
    """A :class:`GANLoss` by name (or alias), or the given one; a ``(d, g)`` tuple is wrapped."""
    if isinstance(spec, GANLoss):
        return spec
    if isinstance(spec, tuple) and len(spec) == 2 and all(map(callable, spec)):
        return GANLoss("custom", spec[0], spec[1])
    key = ALIASES.get(str(spec).lower(), str(spec).lower())
    if key not in LOSSES:
        raise KeyError(f"unknown loss {spec!r}; available: {', '.join(sorted(LOSSES))}")
    return LOSSES[key]
