"""1-Lipschitz layer families of other libraries as lipbench methods (optional extras).

Each family is a :class:`~harness.methods.Method` whose ``apply`` constrains the
discriminator's weight layers the way the library's own layers do, and declares what the
library promises as a :class:`~harness.methods.Claim`, judged like any method at the layer's
real input size with certified float64 brackets of ``σ_max`` and ``σ_min``
(:mod:`harness.methods.measure`). Families resolve by name through the registry
(:func:`harness.methods.get`) but import their library only when named: one whose package is
missing raises :class:`~harness.methods.MethodLoadError` (exit 2) naming the extra to install.

=========================  ==================  ==================================================
name                       extra               layers
=========================  ==================  ==================================================
``torchlip_spectral``      ``torchlip``        deel-torchlip's SpectralConv2d / SpectralLinear /
                                               SpectralConvTranspose2d chain
``orthogonium_aoc``        ``orthogonium``     orthogonium's AdaptiveOrthoConv2d (BCOP, RKO) and
                                               OrthoLinear, Björck orthogonalizer
``orthogonium_aol``        ``orthogonium``     orthogonium's AOLConv2D (Prach & Lampert 2022)
=========================  ==================  ==================================================
"""
from __future__ import annotations

import importlib
import importlib.util
from dataclasses import dataclass

from ..params import MethodLoadError


@dataclass(frozen=True)
class Family:
    """A family: its module under this package and class, the package it needs (import name and
    distribution) and the lipbench extra that installs it."""

    module: str
    attr: str
    package: str
    distribution: str
    extra: str

    def installed(self) -> bool:
        try:
            return importlib.util.find_spec(self.package) is not None
        except (ModuleNotFoundError, ValueError):  # a missing parent package (``deel``), a blocked module
            return False


FAMILIES: dict[str, Family] = {
    "torchlip_spectral": Family("torchlip", "TorchlipSpectral", "deel.torchlip", "deel-torchlip", "torchlip"),
    "orthogonium_aoc": Family("orthogonium", "OrthogoniumAOC", "orthogonium", "orthogonium", "orthogonium"),
    "orthogonium_aol": Family("orthogonium", "OrthogoniumAOL", "orthogonium", "orthogonium", "orthogonium"),
}


def installed_families() -> list[str]:
    """Names of the families whose package is installed."""
    return [name for name, family in FAMILIES.items() if family.installed()]


def load_family(name: str):
    """The method class of family ``name``; :class:`MethodLoadError` naming the extra when its
    package is not installed."""
    family = FAMILIES[name]
    if not family.installed():
        raise MethodLoadError(f"method {name!r} needs the optional package {family.distribution}: "
                              f"pip install lipbench[{family.extra}]")
    module = importlib.import_module(f"{__name__}.{family.module}")
    return getattr(module, family.attr)


__all__ = ["FAMILIES", "Family", "installed_families", "load_family"]
