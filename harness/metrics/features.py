"""Feature sets tagged with the extractor that produced them.

FID and KID are distances between *feature* distributions, so their value depends on
the network that produced the features: an FID computed with InceptionV3 and one
computed with a small digits classifier are different quantities (Heusel et al. 2017
define FID on Inception pool3 features; Bińkowski et al. 2018 define KID likewise).
Every feature array and every number derived from it therefore carries an
``extractor`` id string, and :func:`require_same_extractor` refuses to mix them.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Iterable

import numpy as np
import torch


class ExtractorMismatchError(ValueError):
    """Raised when numbers or features from different feature extractors are combined."""


def require_same_extractor(*ids: str) -> str:
    """Return the common extractor id of ``ids``; raise :class:`ExtractorMismatchError` if they differ."""
    distinct = sorted(set(ids))
    if not distinct:
        raise ValueError("no extractor ids given")
    if len(distinct) > 1:
        raise ExtractorMismatchError(
            "refusing to compare sample-quality numbers computed with different feature "
            f"extractors: {', '.join(distinct)}. FID/KID/IS values are only comparable when "
            "the same network (and weights) produced the features.")
    return distinct[0]


@dataclass(frozen=True)
class Features:
    """An ``(N, D)`` float64 feature matrix plus the id of the extractor that made it."""

    values: np.ndarray
    extractor: str

    def __post_init__(self) -> None:
        v = np.asarray(self.values, dtype=np.float64)
        if v.ndim != 2:
            raise ValueError(f"features must be 2-D (N, D), got shape {v.shape}")
        object.__setattr__(self, "values", v)

    def __len__(self) -> int:
        return self.values.shape[0]


class FeatureExtractor(ABC):
    """Interface: maps a batch of images to :class:`Features`.

    Images are ``(N, C, H, W)`` float tensors whose values lie in ``value_range``
    (``(-1, 1)`` for a tanh generator, the convention of ``harness.training``).
    Subclasses set :attr:`id` and implement :meth:`_features` (and optionally
    :meth:`_probs`, class probabilities, for Inception Score / classifier metrics).
    """

    id: str = "abstract"

    def features(self, images: torch.Tensor, value_range: tuple[float, float] = (-1.0, 1.0),
                 batch_size: int = 256) -> Features:
        out = [self._features(b, value_range) for b in _batches(images, batch_size)]
        return Features(np.concatenate(out, axis=0) if out else np.zeros((0, 0)), self.id)

    def probs(self, images: torch.Tensor, value_range: tuple[float, float] = (-1.0, 1.0),
              batch_size: int = 256) -> np.ndarray:
        """Class probabilities ``(N, K)`` (rows sum to 1)."""
        out = [self._probs(b, value_range) for b in _batches(images, batch_size)]
        return np.concatenate(out, axis=0)

    @abstractmethod
    def _features(self, images: torch.Tensor, value_range: tuple[float, float]) -> np.ndarray:
        """Features ``(N, D)`` of one batch."""

    def _probs(self, images: torch.Tensor, value_range: tuple[float, float]) -> np.ndarray:
        raise TypeError(f"extractor {self.id!r} gives no class probabilities")

    def __repr__(self) -> str:
        return f"{type(self).__name__}(id={self.id!r})"


def _batches(images: torch.Tensor, batch_size: int) -> Iterable[torch.Tensor]:
    if images.ndim != 4:
        raise ValueError(f"images must be (N, C, H, W), got shape {tuple(images.shape)}")
    for i in range(0, images.shape[0], batch_size):
        yield images[i:i + batch_size]


def to_unit_range(images: torch.Tensor, value_range: tuple[float, float]) -> torch.Tensor:
    """Map images from ``value_range`` to ``[0, 1]`` (clamped), as float32."""
    lo, hi = value_range
    return ((images.detach().to(torch.float32) - lo) / (hi - lo)).clamp_(0.0, 1.0)
