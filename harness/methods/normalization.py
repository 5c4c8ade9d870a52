"""Norm-based reparametrizations without power iteration: ``weight_norm``, ``frobenius_norm``."""
from __future__ import annotations

import torch
from torch import nn

from .claims import Claim, MethodTags
from .registry import register
from .reparam import ReparametrizationMethod


class RowNormalization(nn.Module):
    """Each row of ``Ŵ`` (an output channel; dim 1 of a ``ConvTranspose`` weight) divided
    by its Euclidean norm."""

    def __init__(self, kind: str, eps: float = 1e-12) -> None:
        super().__init__()
        self.dim = 1 if kind == "conv_transpose2d" else 0
        self.eps = eps

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        dims = [d for d in range(weight.dim()) if d != self.dim]
        norms = torch.linalg.vector_norm(weight, dim=dims, keepdim=True)
        return weight / norms.clamp_min(self.eps)

    def right_inverse(self, value: torch.Tensor) -> torch.Tensor:
        return value


class FrobeniusNormalization(nn.Module):
    """``W / ‖Ŵ‖_F`` (the Frobenius norm does not depend on the reshape)."""

    def __init__(self, eps: float = 1e-12) -> None:
        super().__init__()
        self.eps = eps

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        return weight / torch.linalg.vector_norm(weight).clamp_min(self.eps)

    def right_inverse(self, value: torch.Tensor) -> torch.Tensor:
        return value


@register
class WeightNorm(ReparametrizationMethod):
    """Weight normalization without the learned multiplier (``γ = 1``): every row of
    ``Ŵ`` has unit norm, ``W̄_i = W_i / ‖W_i‖``.

    Salimans & Kingma, NeurIPS 2016 (docs/references.md#salimanskingma2016) as analysed by
    Miyato et al., ICLR 2018 (docs/references.md#miyato2018), App. D.1, eq. (25); the
    multiplier is dropped "to prevent the methods from overtly violating the Lipschitz
    condition" (Miyato et al. §4).
    """

    name = "weight_norm"
    defaults = {"eps": 1e-12}
    claim = Claim("row_norms", 1.0)
    tags = MethodTags(reparametrizes=True)

    def parametrization(self, name, layer, kind):
        return RowNormalization(kind, self.params["eps"])


@register
class FrobeniusNorm(ReparametrizationMethod):
    """Frobenius normalization ``W / ‖Ŵ‖_F`` (Miyato et al., ICLR 2018,
    docs/references.md#miyato2018, App. D.1, eq. (26)); it implies ``‖Ŵ‖ ≤ 1``."""

    name = "frobenius_norm"
    defaults = {"eps": 1e-12}
    claim = Claim("frobenius", 1.0)
    tags = MethodTags(reparametrizes=True)

    def parametrization(self, name, layer, kind):
        return FrobeniusNormalization(self.params["eps"])
