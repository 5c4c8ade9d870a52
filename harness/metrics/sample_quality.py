"""FID, KID and Inception Score on features from any :class:`FeatureExtractor`.

* FID (Heusel et al., NeurIPS 2017): ``‖μ_r − μ_f‖² + Tr(Σ_r + Σ_f − 2 (Σ_r Σ_f)^{1/2})``
  between Gaussians fitted to the two feature sets; computed by clean-fid's
  ``cleanfid.fid.frechet_distance`` (Parmar et al., CVPR 2022), with ``μ`` the sample
  mean and ``Σ`` the unbiased sample covariance (``np.cov(rowvar=False)``, as clean-fid).
* KID (Bińkowski et al., ICLR 2018): unbiased MMD² with the cubic polynomial kernel
  ``k(x, y) = (xᵀy / d + 1)³``, averaged over random subsets; computed by
  ``cleanfid.fid.kernel_distance``. That function draws its subsets from NumPy's
  *global* RNG, so :func:`kid` seeds it and restores the previous state: same inputs,
  same seed, same number.
* IS (Salimans et al., NeurIPS 2016): ``exp(E_x KL(p(y|x) ‖ p(y)))`` over ``splits``
  equal chunks, mean and standard deviation over chunks; 10 splits as in Miyato et al.
  2018 and the reference implementation (openai/improved-gan).

Every result records its extractor id; :func:`compare_sample_quality` refuses to
compare results from different extractors.
"""
from __future__ import annotations

import warnings
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch
from cleanfid.fid import frechet_distance, kernel_distance

from .features import FeatureExtractor, Features, require_same_extractor

def _unpack(real: Any, fake: Any) -> tuple[np.ndarray, np.ndarray, str | None]:
    ids = [f.extractor for f in (real, fake) if isinstance(f, Features)]
    ext = require_same_extractor(*ids) if ids else None
    r = real.values if isinstance(real, Features) else np.asarray(real, dtype=np.float64)
    f = fake.values if isinstance(fake, Features) else np.asarray(fake, dtype=np.float64)
    if r.ndim != 2 or f.ndim != 2 or r.shape[1] != f.shape[1]:
        raise ValueError(f"feature sets must be (N, D) with equal D, got {r.shape} and {f.shape}")
    return r, f, ext


def gaussian_stats(feats: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and unbiased covariance of an ``(N, D)`` feature matrix (N ≥ 2)."""
    if feats.shape[0] < 2:
        raise ValueError("FID needs at least 2 samples per set")
    return feats.mean(axis=0), np.atleast_2d(np.cov(feats, rowvar=False))


def fid(real_feats: Any, fake_feats: Any) -> float:
    """Fréchet distance between Gaussian fits of two feature sets (clean-fid formula).

    Accepts arrays or :class:`Features`; two :class:`Features` from different
    extractors raise :class:`~harness.metrics.features.ExtractorMismatchError`.
    """
    r, f, _ = _unpack(real_feats, fake_feats)
    mu1, s1 = gaussian_stats(r)
    mu2, s2 = gaussian_stats(f)
    if r.shape[1] == 1:
        # clean-fid 0.1.35 + SciPy 1.17: sqrtm(1×1, disp=False) returns no tuple and
        # frechet_distance fails to unpack it; the scalar formula is exact here.
        v1, v2 = float(s1[0, 0]), float(s2[0, 0])
        return float((mu1[0] - mu2[0]) ** 2 + v1 + v2 - 2.0 * np.sqrt(max(v1 * v2, 0.0)))
    with warnings.catch_warnings():
        # clean-fid passes sqrtm(..., disp=False), deprecated in SciPy 1.17 (removed in
        # 1.18, where frechet_distance will need a clean-fid fix).
        warnings.filterwarnings("ignore", message=".*`disp` argument is deprecated.*",
                                category=DeprecationWarning)
        return float(frechet_distance(mu1, s1, mu2, s2))


def kid(real_feats: Any, fake_feats: Any, num_subsets: int = 100,
        max_subset_size: int = 1000, seed: int = 0) -> float:
    """Kernel Inception Distance (clean-fid's estimator), deterministic given ``seed``."""
    r, f, _ = _unpack(real_feats, fake_feats)
    if min(len(r), len(f)) < 2:
        raise ValueError("KID needs at least 2 samples per set")
    state = np.random.get_state()
    try:
        np.random.seed(seed)
        return float(kernel_distance(r, f, num_subsets=num_subsets,
                                     max_subset_size=max_subset_size))
    finally:
        np.random.set_state(state)


def inception_score(probs: np.ndarray, splits: int = 10, eps: float = 1e-12) -> tuple[float, float]:
    """IS from class probabilities ``(N, K)``: mean and std of ``exp(E KL(p(y|x)‖p(y)))`` over splits.

    With InceptionV3 probabilities this is the Inception Score; with another classifier
    it is that classifier's score (e.g. the "MNIST score") and only comparable for the
    same classifier.
    """
    p = np.asarray(probs, dtype=np.float64)
    n = p.shape[0]
    if n < splits:
        raise ValueError(f"need at least {splits} samples for {splits} splits, got {n}")
    scores = []
    for i in range(splits):
        part = p[i * n // splits:(i + 1) * n // splits]
        py = part.mean(axis=0, keepdims=True)
        kl = (part * (np.log(part + eps) - np.log(py + eps))).sum(axis=1).mean()
        scores.append(np.exp(kl))
    return float(np.mean(scores)), float(np.std(scores))


@dataclass(frozen=True)
class SampleQuality:
    """FID and KID of one generated set against one real set, with provenance."""

    fid: float
    kid: float
    extractor: str
    n_real: int
    n_fake: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def sample_quality(real: Features, fake: Features, kid_seed: int = 0,
                   kid_subsets: int = 100, kid_subset_size: int = 1000) -> SampleQuality:
    """FID and KID of two :class:`Features` sets (same extractor required)."""
    ext = require_same_extractor(real.extractor, fake.extractor)
    return SampleQuality(fid=fid(real, fake),
                         kid=kid(real, fake, num_subsets=kid_subsets,
                                 max_subset_size=kid_subset_size, seed=kid_seed),
                         extractor=ext, n_real=len(real), n_fake=len(fake))


def compute_sample_quality(extractor: FeatureExtractor, real_images: torch.Tensor,
                           fake_images: torch.Tensor,
                           value_range: tuple[float, float] = (-1.0, 1.0),
                           kid_seed: int = 0) -> SampleQuality:
    """Extract features of both image sets with ``extractor`` and return FID/KID."""
    return sample_quality(extractor.features(real_images, value_range),
                          extractor.features(fake_images, value_range), kid_seed=kid_seed)


def compare_sample_quality(a: SampleQuality, b: SampleQuality) -> dict[str, float]:
    """``b − a`` for FID and KID; raises if the two used different extractors."""
    require_same_extractor(a.extractor, b.extractor)
    return {"fid_delta": b.fid - a.fid, "kid_delta": b.kid - a.kid}
