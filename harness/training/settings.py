"""Adam settings of Miyato et al. 2018 (Miyato et al. 2018, Table 1) by name, and custom ones.

``(lr, beta1, beta2, n_dis)``: A ``(1e-4, 0.5, 0.9, 5)``, B ``(1e-4, 0.5, 0.999, 1)``,
C ``(2e-4, 0.5, 0.999, 1)``, D ``(1e-3, 0.5, 0.9, 5)``, E ``(1e-3, 0.5, 0.999, 5)``,
F ``(1e-3, 0.9, 0.999, 5)``. ``n_dis`` is the number of discriminator updates per
generator update. One extra named setting, ``gulrajani`` ``(2e-4, 0.0, 0.9, 5)``, is the
WGAN-GP ResNet setting Miyato reuses for ResNets (Miyato et al. 2018, App. B.2; Gulrajani et al. 2017).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import Any, Mapping

import torch
from torch import nn


@dataclass(frozen=True)
class AdamSettings:
    """Adam hyper-parameters shared by G and D (``lr_g`` overrides G's learning rate)."""

    lr: float
    beta1: float
    beta2: float
    n_dis: int
    name: str = "custom"
    lr_g: float | None = None

    def __post_init__(self) -> None:
        if self.lr <= 0 or (self.lr_g is not None and self.lr_g <= 0):
            raise ValueError(f"learning rate must be positive: {self}")
        if not (0 <= self.beta1 < 1 and 0 <= self.beta2 < 1):
            raise ValueError(f"Adam betas must lie in [0, 1): {self}")
        if int(self.n_dis) != self.n_dis or self.n_dis < 1:
            raise ValueError(f"n_dis must be a positive integer: {self}")

    def describe(self) -> dict[str, Any]:
        return asdict(self)


SETTINGS: dict[str, AdamSettings] = {
    "A": AdamSettings(1e-4, 0.5, 0.9, 5, "A"),
    "B": AdamSettings(1e-4, 0.5, 0.999, 1, "B"),
    "C": AdamSettings(2e-4, 0.5, 0.999, 1, "C"),
    "D": AdamSettings(1e-3, 0.5, 0.9, 5, "D"),
    "E": AdamSettings(1e-3, 0.5, 0.999, 5, "E"),
    "F": AdamSettings(1e-3, 0.9, 0.999, 5, "F"),
    "gulrajani": AdamSettings(2e-4, 0.0, 0.9, 5, "gulrajani"),
}


def get_settings(spec: str | Mapping[str, Any] | AdamSettings, **overrides: Any) -> AdamSettings:
    """Settings by name (``"A"``..``"F"``, ``"gulrajani"``, case-insensitive for letters),
    from a mapping (``{"lr": ..., "beta1": ..., "beta2": ..., "n_dis": ...}``, optionally
    ``"base": "A"`` to start from a named setting), or as given; ``overrides`` replace fields."""
    if isinstance(spec, AdamSettings):
        base = spec
    elif isinstance(spec, str):
        key = spec.upper() if len(spec) == 1 else spec.lower()
        if key not in SETTINGS:
            raise KeyError(f"unknown setting {spec!r}; available: {', '.join(SETTINGS)}")
        base = SETTINGS[key]
    elif isinstance(spec, Mapping):
        spec = dict(spec)
        if "base" in spec:
            merged = {**spec, **overrides}
            merged.setdefault("name", "custom")
            return get_settings(merged.pop("base"), **merged)
        unknown = set(spec) - set(AdamSettings.__dataclass_fields__)
        if unknown:
            raise TypeError(f"unknown setting field(s) {sorted(unknown)}")
        base = AdamSettings(**spec)
    else:
        raise TypeError(f"cannot make Adam settings from {type(spec).__name__}")
    if overrides:
        if "name" not in overrides and base.name != "custom":
            overrides["name"] = "custom"
        base = replace(base, **overrides)
    return base


def make_optimizers(G: nn.Module, D: nn.Module, settings: AdamSettings
                    ) -> tuple[torch.optim.Adam, torch.optim.Adam]:
    """``(opt_G, opt_D)``: Adam over all trainable parameters (after the method was applied to D)."""
    betas = (settings.beta1, settings.beta2)
    opt_g = torch.optim.Adam([p for p in G.parameters() if p.requires_grad],
                             lr=settings.lr_g if settings.lr_g is not None else settings.lr, betas=betas)
    opt_d = torch.optim.Adam([p for p in D.parameters() if p.requires_grad], lr=settings.lr, betas=betas)
    return opt_g, opt_d
