"""Offline feature extractor: a small CNN classifier trained deterministically on local data.

InceptionV3 needs a weights file this repository cannot download; for CI-sized runs
(digits-like data) a small classifier trained here in seconds plays its role: FID/KID
on its penultimate-layer features, and classifier-based mode metrics (the "MNIST
score"/mode-count practice of e.g. Metz et al. 2017 and Srivastava et al. 2017, who
count modes of generated digits with a pretrained classifier).

Determinism: the model is initialised and trained on CPU under ``torch.manual_seed``
inside ``torch.random.fork_rng`` (the caller's RNG is untouched), with batches drawn
from a seeded ``torch.Generator`` and ``torch.use_deterministic_algorithms(True)``
and a single intra-op thread, so the reduction order does not depend on the core count
(all restored afterwards). The trained weights are cached on disk under
``$LIPBENCH_CACHE/extractors/<id>.pt`` (default ``~/.cache/lipbench``), where ``id`` =
``<name>-<sha256 of config and training data>[:10]``; a second call with the same
config and data loads the file instead of training. Bitwise reproducibility of
training across CPUs/torch builds is not guaranteed, so the cache entry also stores
``weights_sha256``: two machines with the same id but different weights produce
(slightly) different numbers -- compare ``weights_sha256`` when in doubt.

Data: scikit-learn ships the 8×8 handwritten digits (1797 images, values 0..16), so
:func:`load_digits_images` needs no download; it upsamples bilinearly to the size the
GAN uses (16, 28, 32, ...).
"""
from __future__ import annotations

import hashlib
import json
import os
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .features import FeatureExtractor, to_unit_range
from .inception import lipbench_cache_dir
from .sample_quality import inception_score

ARCH_VERSION = "v1"


# --------------------------------------------------------------------------- data
def load_digits_images(size: int = 16, split: str = "train", test_fraction: float = 0.3,
                       seed: int = 0, value_range: tuple[float, float] = (-1.0, 1.0),
                       ) -> tuple[torch.Tensor, torch.Tensor]:
    """scikit-learn's bundled 8×8 digits as ``(N, 1, size, size)`` float32 in ``value_range``.

    ``split`` is ``"train"``, ``"test"`` or ``"all"``; the split is a fixed permutation
    (``np.random.default_rng(seed)``), so it is the same on every machine.
    """
    from sklearn.datasets import load_digits
    d = load_digits()
    x = torch.from_numpy(d.images.astype(np.float32) / 16.0).unsqueeze(1)  # [0, 1]
    y = torch.from_numpy(d.target.astype(np.int64))
    perm = torch.from_numpy(np.random.default_rng(seed).permutation(len(y)))
    n_test = int(round(test_fraction * len(y)))
    idx = {"train": perm[n_test:], "test": perm[:n_test], "all": torch.arange(len(y))}[split]
    x, y = x[idx], y[idx]
    if size != 8:
        x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False).clamp_(0, 1)
    lo, hi = value_range
    return x * (hi - lo) + lo, y


# -------------------------------------------------------------------------- model
class SmallCNN(nn.Module):
    """conv3-ReLU-maxpool2-conv3-ReLU-avgpool(4×4)-fc(feat_dim) | ReLU-fc(classes).

    Features are the penultimate fully connected layer *before* its ReLU (post-ReLU
    units can be dead, which makes the feature covariance singular and the FID
    matrix square root ill-conditioned), multiplied by the fixed buffer
    ``feature_scale``. After training it is set so that real training features have
    ``E‖f‖²/d = 1``: KID's kernel ``(xᵀy/d + 1)³`` is then evaluated on O(1) inner
    products, as for Inception features. The scale is part of the weights.
    """

    def __init__(self, in_channels: int, num_classes: int, width: int = 32,
                 feat_dim: int = 64) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(in_channels, width, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(width, 2 * width, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(4),
            nn.Flatten(), nn.Linear(2 * width * 16, feat_dim))
        self.head = nn.Sequential(nn.ReLU(), nn.Linear(feat_dim, num_classes))
        self.register_buffer("feature_scale", torch.ones(()))

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x) * self.feature_scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x))


@dataclass(frozen=True)
class ClassifierConfig:
    """Everything that determines the trained weights (hashed into the extractor id)."""

    name: str
    in_channels: int
    image_size: int
    num_classes: int
    width: int = 32
    feat_dim: int = 64
    epochs: int = 15
    batch_size: int = 64
    lr: float = 2e-3
    seed: int = 0
    arch: str = ARCH_VERSION


def _data_digest(images: torch.Tensor, labels: torch.Tensor) -> str:
    h = hashlib.sha256()
    h.update(str(tuple(images.shape)).encode())
    h.update(images.detach().to(torch.float32).contiguous().numpy().tobytes())
    h.update(labels.detach().to(torch.int64).contiguous().numpy().tobytes())
    return h.hexdigest()


def config_key(cfg: ClassifierConfig, data_digest: str) -> str:
    blob = json.dumps({"config": asdict(cfg), "data": data_digest}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:10]


def _weights_digest(state: dict[str, torch.Tensor]) -> str:
    h = hashlib.sha256()
    for k in sorted(state):
        h.update(k.encode())
        h.update(state[k].detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def _train(model: SmallCNN, x: torch.Tensor, y: torch.Tensor, cfg: ClassifierConfig) -> None:
    g = torch.Generator().manual_seed(cfg.seed)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    model.train()
    for _ in range(cfg.epochs):
        perm = torch.randperm(len(y), generator=g)
        for i in range(0, len(y), cfg.batch_size):
            b = perm[i:i + cfg.batch_size]
            opt.zero_grad(set_to_none=True)
            F.cross_entropy(model(x[b]), y[b]).backward()
            opt.step()
    model.eval()


def _atomic_save(obj: Any, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
    os.close(fd)
    try:
        torch.save(obj, tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


# ---------------------------------------------------------------------- extractor
class ClassifierExtractor(FeatureExtractor):
    """Penultimate-layer features and softmax probabilities of a trained :class:`SmallCNN`.

    Inputs are mapped to [0, 1] (the training range) and resized bilinearly to the
    training size if needed.
    """

    def __init__(self, model: SmallCNN, config: ClassifierConfig, id: str,
                 meta: dict[str, Any] | None = None, loaded_from_cache: bool = False,
                 cache_path: Path | None = None) -> None:
        self.model = model.eval()
        self.config = config
        self.id = id
        self.meta = dict(meta or {})
        self.loaded_from_cache = loaded_from_cache
        self.cache_path = cache_path

    @property
    def weights_sha256(self) -> str:
        return self.meta.get("weights_sha256", "")

    def _input(self, images: torch.Tensor, value_range: tuple[float, float]) -> torch.Tensor:
        x = to_unit_range(images.cpu(), value_range)
        if x.shape[1] != self.config.in_channels:
            raise ValueError(f"extractor {self.id} expects {self.config.in_channels} channels, "
                             f"got {x.shape[1]}")
        s = self.config.image_size
        if x.shape[-2:] != (s, s):
            x = F.interpolate(x, size=(s, s), mode="bilinear", align_corners=False)
        return x

    @torch.no_grad()
    def _features(self, images: torch.Tensor, value_range: tuple[float, float]) -> np.ndarray:
        return self.model.features(self._input(images, value_range)).double().numpy()

    @torch.no_grad()
    def _probs(self, images: torch.Tensor, value_range: tuple[float, float]) -> np.ndarray:
        return torch.softmax(self.model(self._input(images, value_range)).double(), 1).numpy()


def train_classifier_extractor(images: torch.Tensor, labels: torch.Tensor, name: str, *,
                               value_range: tuple[float, float] = (-1.0, 1.0),
                               cache_dir: str | os.PathLike | None = None,
                               num_classes: int | None = None, width: int = 32,
                               feat_dim: int = 64, epochs: int = 15, batch_size: int = 64,
                               lr: float = 2e-3, seed: int = 0,
                               eval_data: tuple[torch.Tensor, torch.Tensor] | None = None,
                               ) -> ClassifierExtractor:
    """Train (or load from cache) a :class:`SmallCNN` on ``(images, labels)``.

    ``images``: ``(N, C, H, W)`` with ``H == W`` in ``value_range``; ``labels``: ints in
    ``[0, num_classes)``. Returns an extractor whose id is ``<name>-<config hash>``.
    ``eval_data`` (held-out images, labels) only adds ``eval_accuracy`` to the metadata
    of a freshly trained model.
    """
    x = to_unit_range(images.cpu(), value_range)
    y = labels.cpu().to(torch.int64)
    if x.ndim != 4 or x.shape[-1] != x.shape[-2] or len(x) != len(y):
        raise ValueError("images must be (N, C, S, S) with one label per image")
    cfg = ClassifierConfig(name=name, in_channels=x.shape[1], image_size=x.shape[-1],
                           num_classes=int(num_classes or int(y.max()) + 1), width=width,
                           feat_dim=feat_dim, epochs=epochs, batch_size=batch_size, lr=lr,
                           seed=seed)
    digest = _data_digest(x, y)
    ext_id = f"{name}-{config_key(cfg, digest)}"
    path = Path(cache_dir) if cache_dir is not None else lipbench_cache_dir() / "extractors"
    path = path / f"{ext_id}.pt"
    if path.is_file():
        with torch.random.fork_rng(devices=[]):  # init is overwritten; keep caller's RNG
            model = SmallCNN(cfg.in_channels, cfg.num_classes, cfg.width, cfg.feat_dim)
        blob = torch.load(path, map_location="cpu", weights_only=True)
        if blob.get("config") != asdict(cfg):
            raise ValueError(f"cache entry {path} holds a different config; delete it")
        model.load_state_dict(blob["state_dict"])
        return ClassifierExtractor(model, cfg, ext_id, blob["meta"], True, path)

    det, warn_only = (torch.are_deterministic_algorithms_enabled(),
                      torch.is_deterministic_algorithms_warn_only_enabled())
    threads = torch.get_num_threads()
    torch.use_deterministic_algorithms(True, warn_only=True)
    torch.set_num_threads(1)  # same reduction order whatever the core count
    try:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model = SmallCNN(cfg.in_channels, cfg.num_classes, cfg.width, cfg.feat_dim)
            _train(model, x, y, cfg)
            with torch.no_grad():
                f = model.body(x)
                model.feature_scale.fill_(float(f.pow(2).sum(1).mean() / f.shape[1]) ** -0.5)
    finally:
        torch.use_deterministic_algorithms(det, warn_only=warn_only)
        torch.set_num_threads(threads)
    state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    with torch.no_grad():
        meta: dict[str, Any] = {
            "weights_sha256": _weights_digest(state), "data_sha256": digest, "torch": str(torch.__version__),
            "train_accuracy": float((model(x).argmax(1) == y).float().mean())}
        if eval_data is not None:
            ex = to_unit_range(eval_data[0].cpu(), value_range)
            meta["eval_accuracy"] = float((model(ex).argmax(1) == eval_data[1]).float().mean())
    _atomic_save({"state_dict": state, "config": asdict(cfg), "meta": meta}, path)
    return ClassifierExtractor(model, cfg, ext_id, meta, False, path)


def digits_extractor(size: int = 16, cache_dir: str | os.PathLike | None = None,
                     **kwargs: Any) -> ClassifierExtractor:
    """The default offline extractor: :class:`SmallCNN` on the digits train split, id ``digits-cnn-v1-<hash>``."""
    x, y = load_digits_images(size, "train")
    held_out = load_digits_images(size, "test")
    return train_classifier_extractor(x, y, f"digits-cnn-{ARCH_VERSION}", cache_dir=cache_dir,
                                      num_classes=10, eval_data=held_out, **kwargs)


#: The extractor of a user's data set trains on a fixed share of it (the rest is held out for
#: its accuracy), at most this many images (a CPU budget of about a minute; cached on disk).
DATA_TRAIN_SHARE = 0.8
MAX_DATA_TRAIN_IMAGES = 10_000


def rotations(images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Each (square) image turned by 0, 90, 180 and 270 degrees, labelled 0..3: a pretext task
    whose features need no labels (Gidaris et al. 2018, docs/references.md#gidaris2018)."""
    turned = [torch.rot90(images, k, dims=(-2, -1)) for k in range(4)]
    return torch.cat(turned), torch.arange(4).repeat_interleave(len(images))


def data_extractor(images: torch.Tensor, labels: torch.Tensor | None = None,
                   cache_dir: str | os.PathLike | None = None, **kwargs: Any) -> ClassifierExtractor:
    """The extractor of a user's own data set (``(N, C, S, S)`` in [-1, 1]): :class:`SmallCNN`
    trained as the digits one (:func:`train_classifier_extractor`) on a fixed
    :data:`DATA_TRAIN_SHARE` of the images (a seeded permutation, at most
    :data:`MAX_DATA_TRAIN_IMAGES`), the rest held out for ``eval_accuracy``. With labels it
    classifies them (id ``data-cnn-v1-<hash>``); without, it tells which of four rotations was
    applied (:func:`rotations`; id ``data-rot-cnn-v1-<hash>``)."""
    order = torch.from_numpy(np.random.default_rng(0).permutation(len(images)))
    cut = max(1, int(len(images) * DATA_TRAIN_SHARE))
    train, held = order[:cut][:MAX_DATA_TRAIN_IMAGES], order[cut:]
    if labels is not None:
        x, y = images[train], labels[train]
        held_out = (images[held], labels[held]) if len(held) else None
        return train_classifier_extractor(x, y, f"data-cnn-{ARCH_VERSION}", cache_dir=cache_dir,
                                          num_classes=int(labels.max()) + 1, eval_data=held_out, **kwargs)
    x, y = rotations(images[train])
    held_out = rotations(images[held]) if len(held) else None
    return train_classifier_extractor(x, y, f"data-rot-cnn-{ARCH_VERSION}", cache_dir=cache_dir, num_classes=4,
                                      eval_data=held_out, **kwargs)


# ------------------------------------------------------------------------ metrics
@dataclass(frozen=True)
class ClassifierMetrics:
    """Mode metrics of generated samples under a classifier (e.g. digits CNN)."""

    modes_covered: int        # classes predicted for at least ``min_count`` samples
    num_classes: int
    confident_share: float    # share of samples whose top probability ≥ ``confidence``
    class_kl_uniform: float   # KL(predicted-class histogram ‖ uniform), nats; 0 = balanced
    classifier_score: float   # IS formula with this classifier's probabilities (10 splits)
    extractor: str
    n: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def classifier_metrics_from_probs(probs: np.ndarray, extractor: str, confidence: float = 0.9,
                                  min_count: int = 1, splits: int = 10) -> ClassifierMetrics:
    p = np.asarray(probs, dtype=np.float64)
    k = p.shape[1]
    counts = np.bincount(p.argmax(1), minlength=k)
    hist = counts / counts.sum()
    nz = hist > 0
    kl = float(np.sum(hist[nz] * np.log(hist[nz] * k)))
    score = inception_score(p, splits=splits)[0] if len(p) >= splits else float("nan")
    return ClassifierMetrics(modes_covered=int((counts >= min_count).sum()), num_classes=k,
                             confident_share=float((p.max(1) >= confidence).mean()),
                             class_kl_uniform=kl, classifier_score=score,
                             extractor=extractor, n=len(p))


def classifier_metrics(extractor: FeatureExtractor, images: torch.Tensor,
                       value_range: tuple[float, float] = (-1.0, 1.0), confidence: float = 0.9,
                       min_count: int = 1) -> ClassifierMetrics:
    """Modes covered, confident share, class balance and classifier score of ``images``."""
    return classifier_metrics_from_probs(extractor.probs(images, value_range), extractor.id,
                                         confidence=confidence, min_count=min_count)
