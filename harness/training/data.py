"""Training data: 2-D mixtures, sklearn digits, real image sets from local files; never downloads.

Every loader returns a :class:`DataSource`; :class:`BatchSampler` turns one into an infinite,
seeded stream of batches whose state can be checkpointed. Images come out as float32
``(N, C, H, W)`` in ``[-1, 1]`` (the range of a tanh generator); 2-D points as ``(N, 2)``.

* ``ring8``: 8 Gaussians on a circle of radius 2, std 0.02 (Metz et al. 2017, "Unrolled GANs");
  ``grid25``: 25 Gaussians at ``{-4,-2,0,2,4}²``, std 0.05 (Srivastava et al. 2017, "VEEGAN").
  :data:`RING8` / :data:`GRID25` export centres and std (same ordering as ``harness.metrics.two_d``).
* ``digits``: scikit-learn's bundled 8x8 handwritten digits (1797 images, no download),
  optionally resized to 16x16 or to 20x20 padded to 28x28 (MNIST's layout).
* ``mnist``, ``cifar10``, ``stl10`` (unlabeled split by default, resized to 48x48 as in seed
  002 §4), ``celeba`` (aligned, centre crop 140, 64x64): torchvision readers, ``download=False``.
* ``folder``: any folder of images (recursive); ``npy``: an array saved with ``np.save``.

A missing data set raises :class:`DatasetNotFoundError` naming the files and where to put them.
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F

#: Environment variable naming the default root of the real data sets.
DATA_ROOT_ENV = "LIPBENCH_DATA_ROOT"


def default_root() -> Path:
    """``$LIPBENCH_DATA_ROOT`` or ``./data``."""
    return Path(os.environ.get(DATA_ROOT_ENV, "data"))


class DatasetNotFoundError(FileNotFoundError):
    """A data set is not on disk; the message says which files to put where."""

    def __init__(self, dataset: str, root: str | Path, missing: Sequence[str | Path], hint: str) -> None:
        self.dataset, self.root, self.missing = dataset, Path(root), [str(m) for m in missing]
        shown = ", ".join(self.missing[:8]) + (" ..." if len(self.missing) > 8 else "")
        super().__init__(f"{dataset} not found: {hint} (missing: {shown}). "
                         "lipbench never downloads data.")


class DatasetCorruptError(DatasetNotFoundError):
    """Files are present but fail torchvision's MD5 check (pass ``verify=False`` to skip it)."""

    def __init__(self, dataset: str, root: str | Path, bad: Sequence[str | Path]) -> None:
        self.dataset, self.root, self.missing = dataset, Path(root), [str(m) for m in bad]
        FileNotFoundError.__init__(self, f"{dataset} corrupted: MD5 mismatch for {', '.join(self.missing)} "
                                   "(re-extract the original archive, or pass verify=False)")


# --------------------------------------------------------------------------------------
# Sources
# --------------------------------------------------------------------------------------

class DataSource:
    """Base class. Finite sources index samples; infinite ones (``len is None``) draw them."""

    name: str = "data"
    kind: str = "image"  # "image" or "points"
    sample_shape: tuple[int, ...] = ()

    def __len__(self) -> int:  # pragma: no cover - overridden
        raise TypeError(f"{self.name} is an infinite source")

    @property
    def finite(self) -> bool:
        return True

    def get(self, index: torch.Tensor) -> torch.Tensor:
        """Samples at ``index`` (a 1-D LongTensor), float32; finite sources override it."""
        raise TypeError(f"{self.name} cannot be indexed: it is an infinite source (use draw)")

    def draw(self, n: int, generator: torch.Generator) -> torch.Tensor:
        """``n`` fresh samples; infinite sources override it."""
        raise TypeError(f"{self.name} is a finite source: use get or sample")

    def sample(self, n: int, seed: int = 0) -> torch.Tensor:
        """``n`` samples reproducible from ``seed`` (without replacement when ``n <= len``),
        e.g. the real images for FID."""
        g = torch.Generator().manual_seed(seed)
        if not self.finite:
            return self.draw(n, g)
        N = len(self)
        idx = torch.randperm(N, generator=g)[:n] if n <= N else torch.randint(N, (n,), generator=g)
        return self.get(idx)


class TensorSource(DataSource):
    """Samples held in memory. ``uint8`` images are stored as is and mapped to ``[-1, 1]`` per
    batch (``x / 127.5 - 1``); float data are returned unchanged."""

    def __init__(self, data: torch.Tensor, name: str = "tensor", kind: str | None = None,
                 labels: torch.Tensor | None = None) -> None:
        if data.dim() < 2 or data.shape[0] == 0:
            raise ValueError(f"{name}: need a non-empty (N, ...) array, got shape {tuple(data.shape)}")
        self.data, self.name, self.labels = data, name, labels
        self.kind = kind or ("points" if data.dim() == 2 else "image")
        self.sample_shape = tuple(data.shape[1:])

    def __len__(self) -> int:
        return self.data.shape[0]

    def get(self, index: torch.Tensor) -> torch.Tensor:
        x = self.data[index]
        if x.dtype == torch.uint8:
            return x.float().div_(127.5).sub_(1.0)
        return x.float()


class ImageFileSource(DataSource):
    """Images read lazily from files (one PIL decode per sample per batch): CelebA, folders."""

    def __init__(self, paths: Sequence[Path], size: int | None, channels: int = 3,
                 crop: int | None = None, name: str = "images", labels: torch.Tensor | None = None) -> None:
        from torchvision import transforms as T
        self.paths, self.name, self.channels, self.labels = list(paths), name, channels, labels
        steps: list[Callable] = []
        if crop:
            steps.append(T.CenterCrop(crop))
        if size:
            steps += [T.Resize(size), T.CenterCrop(size)]
        steps.append(T.PILToTensor())
        self.transform = T.Compose(steps)
        first = self._load(0)
        self.sample_shape = tuple(first.shape)

    def _load(self, i: int) -> torch.Tensor:
        from PIL import Image
        with Image.open(self.paths[i]) as im:
            im = im.convert("L" if self.channels == 1 else "RGB")
            return self.transform(im)

    def __len__(self) -> int:
        return len(self.paths)

    def get(self, index: torch.Tensor) -> torch.Tensor:
        imgs = [self._load(int(i)) for i in index]
        shapes = {tuple(t.shape) for t in imgs}
        if len(shapes) > 1:
            raise ValueError(f"{self.name}: images of different sizes {sorted(shapes)}; pass size=")
        return torch.stack(imgs).float().div_(127.5).sub_(1.0)

    def to_memory(self) -> TensorSource:
        """All images decoded once into a uint8 :class:`TensorSource`."""
        data = torch.stack([self._load(i) for i in range(len(self))])
        return TensorSource(data, self.name, labels=self.labels)


@dataclass(frozen=True)
class Mixture:
    """Equal-weight isotropic Gaussian mixture in 2-D: ``centers (K, 2)`` (float64) and ``std``."""

    name: str
    centers: torch.Tensor
    std: float


def ring_centers(n_modes: int = 8, radius: float = 2.0) -> torch.Tensor:
    """Centres equally spaced on a circle, the first at ``(radius, 0)``."""
    a = torch.arange(n_modes, dtype=torch.float64) * (2 * math.pi / n_modes)
    return torch.stack([radius * torch.cos(a), radius * torch.sin(a)], dim=1)


def grid_centers(side: int = 5, spacing: float = 2.0) -> torch.Tensor:
    """``side x side`` centres on a grid centred at 0 (``{-4,-2,0,2,4}²`` by default), x-major."""
    c = (torch.arange(side, dtype=torch.float64) - (side - 1) / 2) * spacing
    gx, gy = torch.meshgrid(c, c, indexing="ij")
    return torch.stack([gx.reshape(-1), gy.reshape(-1)], dim=1)


RING8 = Mixture("ring8", ring_centers(8, 2.0), 0.02)
GRID25 = Mixture("grid25", grid_centers(5, 2.0), 0.05)
MIXTURES = {"ring8": RING8, "grid25": GRID25}


class MixtureSource(DataSource):
    """Infinite stream from a :class:`Mixture`: a uniform component, plus ``std`` Gaussian noise."""

    kind = "points"

    def __init__(self, mixture: Mixture) -> None:
        self.mixture, self.name = mixture, mixture.name
        self.centers = mixture.centers.float()
        self.sample_shape = (self.centers.shape[1],)

    @property
    def finite(self) -> bool:
        return False

    def draw(self, n: int, generator: torch.Generator) -> torch.Tensor:
        k = torch.randint(self.centers.shape[0], (n,), generator=generator)
        noise = torch.randn(n, self.centers.shape[1], generator=generator)
        return self.centers[k] + self.mixture.std * noise


# --------------------------------------------------------------------------------------
# Batch sampler
# --------------------------------------------------------------------------------------

class BatchSampler:
    """Infinite seeded batches: finite sources are walked in random permutations (a new one
    per epoch, the incomplete tail dropped), infinite ones drawn. ``state_dict`` captures the
    position exactly, so a resumed run sees the same batches."""

    def __init__(self, source: DataSource, batch_size: int, seed: int) -> None:
        if batch_size < 1:
            raise ValueError("batch_size must be positive")
        if source.finite and batch_size > len(source):
            raise ValueError(f"batch_size {batch_size} exceeds the {len(source)} samples of {source.name}")
        self.source, self.batch_size = source, batch_size
        self.generator = torch.Generator().manual_seed(int(seed))
        self.perm: torch.Tensor | None = None
        self.pos = 0

    def __iter__(self) -> "BatchSampler":
        return self

    def __next__(self) -> torch.Tensor:
        if not self.source.finite:
            return self.source.draw(self.batch_size, self.generator)
        if self.perm is None or self.pos + self.batch_size > self.perm.numel():
            self.perm = torch.randperm(len(self.source), generator=self.generator)
            self.pos = 0
        idx = self.perm[self.pos:self.pos + self.batch_size]
        self.pos += self.batch_size
        return self.source.get(idx)

    def state_dict(self) -> dict[str, Any]:
        return {"generator": self.generator.get_state(), "perm": self.perm, "pos": self.pos}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.generator.set_state(state["generator"])
        self.perm, self.pos = state["perm"], int(state["pos"])


# --------------------------------------------------------------------------------------
# Loaders
# --------------------------------------------------------------------------------------

def mixture(name: str) -> MixtureSource:
    """``ring8`` or ``grid25`` as an infinite source."""
    if name not in MIXTURES:
        raise KeyError(f"unknown mixture {name!r}; available: {', '.join(MIXTURES)}")
    return MixtureSource(MIXTURES[name])


def _resize(x: torch.Tensor, size: int) -> torch.Tensor:
    """Bilinear resize of float images (antialiased when shrinking); keeps [-1, 1] (convex weights)."""
    if x.shape[-1] == size and x.shape[-2] == size:
        return x
    shrink = size < x.shape[-1]
    return F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=shrink)


def _resize_uint8(x: torch.Tensor, size: int | None, chunk: int = 2048) -> torch.Tensor:
    if size is None or (x.shape[-1] == size and x.shape[-2] == size):
        return x
    out = [(_resize(x[i:i + chunk].float(), size)).round_().clamp_(0, 255).to(torch.uint8)
           for i in range(0, x.shape[0], chunk)]
    return torch.cat(out)


def digits(size: int = 8, pad: int | None = None, channels: int = 1) -> TensorSource:
    """scikit-learn's 8x8 digits (``load_digits``), values 0..16 mapped to ``[-1, 1]``.

    ``size`` is the output side; the digit is resized to ``size - 2*pad`` and padded with -1
    (background). ``pad`` defaults to 4 for ``size=28`` (a 20x20 digit, MNIST's layout), else 0.
    ``channels`` > 1 repeats the grey image (the default data of a user's 3-channel model).
    """
    from sklearn.datasets import load_digits
    bunch = load_digits()
    x = torch.as_tensor(bunch.images, dtype=torch.float32).unsqueeze(1) / 8.0 - 1.0
    pad = (4 if size == 28 else 0) if pad is None else pad
    inner = size - 2 * pad
    if inner < 1:
        raise ValueError(f"pad {pad} leaves no room in size {size}")
    x = _resize(x, inner).clamp_(-1, 1)
    if pad:
        x = F.pad(x, (pad, pad, pad, pad), value=-1.0)
    if channels != 1:
        x = x.expand(-1, channels, -1, -1)
    return TensorSource(x.contiguous(), f"digits{size}" + (f"x{channels}" if channels != 1 else ""),
                        labels=torch.as_tensor(bunch.target))


def _require(dataset: str, root: Path, files: Sequence[Path], hint: str) -> None:
    missing = [f for f in files if not f.exists()]
    if missing:
        raise DatasetNotFoundError(dataset, root, missing, hint)


def _check_md5(dataset: str, root: Path, files_md5: Sequence[tuple[Path, str]]) -> None:
    from torchvision.datasets.utils import check_md5
    bad = [f for f, md5 in files_md5 if not check_md5(str(f), md5)]
    if bad:
        raise DatasetCorruptError(dataset, root, bad)


def mnist(root: str | Path | None = None, train: bool = True, size: int | None = None) -> TensorSource:
    """MNIST through ``torchvision.datasets.MNIST(root, download=False)``: the four gunzipped raw
    idx files under ``<root>/MNIST/raw/`` (torchvision needs train and t10k both)."""
    from torchvision.datasets import MNIST
    root = Path(root) if root is not None else default_root()
    raw = root / "MNIST" / "raw"
    names = ["train-images-idx3-ubyte", "train-labels-idx1-ubyte",
             "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"]
    _require("MNIST", root, [raw / n for n in names],
             f"put {', '.join(names)} (gunzip the .gz files from the MNIST site) under {raw}/")
    try:
        ds = MNIST(str(root), train=train, download=False)
    except (RuntimeError, AssertionError, TypeError, ValueError) as exc:
        raise DatasetNotFoundError("MNIST", root, [str(raw)], f"torchvision could not read {raw}: {exc}") from exc
    x = _resize_uint8(ds.data.unsqueeze(1).contiguous(), size)
    return TensorSource(x, "mnist", labels=ds.targets.clone())


def _unverified(cls: type, **extra: Any) -> type:
    """A torchvision dataset subclass whose file checks test existence only (MD5s set to None)."""
    attrs: dict[str, Any] = dict(extra)
    for a in ("train_list", "test_list"):
        if hasattr(cls, a):
            attrs[a] = [[f, None] for f, _ in getattr(cls, a)]
    if isinstance(getattr(cls, "meta", None), dict):
        attrs["meta"] = {**cls.meta, "md5": None}
    return type(cls.__name__, (cls,), attrs)


def cifar10(root: str | Path | None = None, train: bool = True, verify: bool = True) -> TensorSource:
    """CIFAR-10 through ``torchvision.datasets.CIFAR10(root, download=False)``:
    ``<root>/cifar-10-batches-py/`` extracted from ``cifar-10-python.tar.gz``.
    ``verify`` runs torchvision's MD5 checks (``False`` checks existence only)."""
    from torchvision.datasets import CIFAR10
    root = Path(root) if root is not None else default_root()
    base = root / CIFAR10.base_folder
    entries = CIFAR10.train_list + CIFAR10.test_list + [[CIFAR10.meta["filename"], CIFAR10.meta["md5"]]]
    _require("CIFAR-10", root, [base / f for f, _ in entries],
             f"put cifar-10-batches-py/ (from cifar-10-python.tar.gz) under {root}")
    if verify:
        _check_md5("CIFAR-10", root, [(base / f, md5) for f, md5 in entries])
    ds = _unverified(CIFAR10)(str(root), train=train, download=False)
    x = torch.from_numpy(np.ascontiguousarray(ds.data.transpose(0, 3, 1, 2)))
    return TensorSource(x, "cifar10", labels=torch.as_tensor(ds.targets))


_STL_FILES = {"unlabeled": ["unlabeled_X.bin"], "train": ["train_X.bin", "train_y.bin"],
              "test": ["test_X.bin", "test_y.bin"],
              "train+unlabeled": ["train_X.bin", "train_y.bin", "unlabeled_X.bin"]}


def stl10(root: str | Path | None = None, split: str = "unlabeled", size: int | None = 48,
          verify: bool = True) -> TensorSource:
    """STL-10 through ``torchvision.datasets.STL10(root, split, download=False)``:
    ``<root>/stl10_binary/`` from ``stl10_binary.tar.gz`` (only the split's files are needed).
    Resized to ``size`` (48, as in Miyato et al. 2018 §4; ``None`` keeps 96) and kept as uint8."""
    from torchvision.datasets import STL10
    if split not in _STL_FILES:
        raise ValueError(f"STL-10 split must be one of {', '.join(_STL_FILES)}, got {split!r}")
    root = Path(root) if root is not None else default_root()
    base = root / STL10.base_folder
    needed = _STL_FILES[split]
    _require("STL-10", root, [base / f for f in needed],
             f"put stl10_binary/{' and stl10_binary/'.join(needed)} (from stl10_binary.tar.gz) under {root}")
    if verify:
        md5s = dict(STL10.train_list + STL10.test_list)
        _check_md5("STL-10", root, [(base / f, md5s[f]) for f in needed])

    class _STL(STL10):
        def _check_integrity(self) -> bool:  # files were checked above
            return True

    ds = _STL(str(root), split=split, download=False)
    x = _resize_uint8(torch.from_numpy(np.ascontiguousarray(ds.data)), size)
    labels = torch.as_tensor(ds.labels) if ds.labels is not None else None
    return TensorSource(x, "stl10", labels=labels)


IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")


def celeba(root: str | Path | None = None, split: str = "all", size: int = 64, crop: int | None = 140,
           in_memory: bool = False) -> DataSource:
    """CelebA aligned images: ``<root>/celeba/img_align_celeba/*.jpg`` (torchvision's layout,
    from ``img_align_celeba.zip``), centre-cropped to ``crop`` and resized to ``size``.
    ``split`` ``train``/``valid``/``test`` also needs ``<root>/celeba/list_eval_partition.txt``.

    Read directly rather than through ``torchvision.datasets.CelebA``, which insists on five
    annotation files an unconditional GAN does not use.
    """
    root = Path(root) if root is not None else default_root()
    img_dir = root / "celeba" / "img_align_celeba"
    hint = f"put celeba/img_align_celeba/ (from img_align_celeba.zip) under {root}"
    _require("CelebA", root, [img_dir], hint)
    paths = sorted(p for p in img_dir.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS)
    if not paths:
        raise DatasetNotFoundError("CelebA", root, [img_dir / "*.jpg"], hint)
    if split != "all":
        codes = {"train": "0", "valid": "1", "test": "2"}
        if split not in codes:
            raise ValueError(f"CelebA split must be all, train, valid or test, got {split!r}")
        part = root / "celeba" / "list_eval_partition.txt"
        _require("CelebA", root, [part], f"put celeba/list_eval_partition.txt under {root} for split={split!r}")
        keep = {ln.split()[0] for ln in part.read_text().splitlines()
                if len(ln.split()) == 2 and ln.split()[1] == codes[split]}
        paths = [p for p in paths if p.name in keep]
    src = ImageFileSource(paths, size, 3, crop, "celeba")
    return src.to_memory() if in_memory else src


def image_folder(root: str | Path, size: int | None = None, channels: int = 3,
                 in_memory: bool = False) -> DataSource:
    """Every image under ``root`` (recursively, sorted by path), resized and centre-cropped to
    ``size`` when given (else all images must share one size), ``channels`` 1 or 3. When every
    image lies in a direct sub-folder of ``root`` and there are at least two, the sub-folders
    are the classes (labels in sorted folder order, as torchvision's ``ImageFolder``)."""
    root = Path(root)
    hint = f"put image files ({', '.join(IMAGE_EXTENSIONS)}) in {root}/ (sub-folders allowed)"
    _require("image folder", root, [root], hint)
    paths = sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)
    if not paths:
        raise DatasetNotFoundError("image folder", root, [root / "*.png"], hint)
    classes = sorted({p.parent.name for p in paths})
    labelled = len(classes) > 1 and all(p.parent.parent == root for p in paths)
    labels = torch.tensor([classes.index(p.parent.name) for p in paths]) if labelled else None
    src = ImageFileSource(paths, size, channels, None, f"folder:{root.name}", labels=labels)
    return src.to_memory() if in_memory else src


def npy_array(path: str | Path, layout: str = "auto", value_range: tuple[float, float] | None = None,
              labels: str | Path | None = None) -> TensorSource:
    """An array saved with ``np.save``: images ``(N, H, W)``, ``(N, H, W, C)`` or ``(N, C, H, W)``
    with ``C`` in {1, 3} (``layout`` ``auto``/``nhwc``/``nchw``), or points ``(N, D)``.

    ``uint8`` images are mapped from [0, 255] to [-1, 1]; float data are used as is unless
    ``value_range=(lo, hi)`` says to map that range linearly to [-1, 1]. ``labels``: an
    ``.npy`` file of ``N`` non-negative integer class labels.
    """
    path = Path(path)
    _require("npy array", path.parent, [path],
             f"save an (N, H, W[, C]), (N, C, H, W) or (N, D) array with numpy.save to {path}")
    arr = np.load(path, allow_pickle=False)
    if arr.ndim == 3:
        arr = arr[:, None]
    elif arr.ndim == 4:
        if layout == "auto":
            layout = "nhwc" if arr.shape[3] in (1, 3) and arr.shape[1] not in (1, 3) else \
                "nchw" if arr.shape[1] in (1, 3) else ""
            if not layout:
                raise ValueError(f"{path}: cannot tell channels in shape {arr.shape}; pass layout=")
        if layout == "nhwc":
            arr = arr.transpose(0, 3, 1, 2)
        elif layout != "nchw":
            raise ValueError(f"layout must be auto, nhwc or nchw, got {layout!r}")
    elif arr.ndim != 2:
        raise ValueError(f"{path}: expected 2, 3 or 4 dimensions, got shape {arr.shape}")
    if arr.dtype != np.uint8 and not np.issubdtype(arr.dtype, np.floating):
        raise ValueError(f"{path}: expected uint8 or floating-point values, got {arr.dtype}")
    x = torch.from_numpy(np.ascontiguousarray(arr))
    if value_range is not None:
        lo, hi = value_range
        x = (x.double() - lo) / (hi - lo) * 2 - 1
        x = x.float()
    elif x.dtype != torch.uint8:
        x = x.float()
    return TensorSource(x, f"npy:{path.stem}", kind="points" if arr.ndim == 2 else "image",
                        labels=None if labels is None else _npy_labels(Path(labels), len(x)))


def _npy_labels(path: Path, n: int) -> torch.Tensor:
    """``n`` class labels saved with ``np.save`` (integers from 0)."""
    _require("npy labels", path.parent, [path], f"save {n} integer class labels with numpy.save to {path}")
    arr = np.load(path, allow_pickle=False)
    if arr.shape != (n,) or not np.issubdtype(arr.dtype, np.integer) or (n and arr.min() < 0):
        raise ValueError(f"{path}: expected {n} non-negative integer labels (one per sample), got "
                         f"{arr.dtype} of shape {arr.shape}")
    return torch.from_numpy(arr.astype(np.int64))


LOADERS: dict[str, Callable[..., DataSource]] = {
    "ring8": lambda: mixture("ring8"),
    "grid25": lambda: mixture("grid25"),
    "digits": digits,
    "mnist": mnist,
    "cifar10": cifar10,
    "stl10": stl10,
    "celeba": celeba,
    "folder": image_folder,
    "npy": npy_array,
}


def load_data(name: str, **kw: Any) -> DataSource:
    """A :class:`DataSource` by name (``ring8``, ``grid25``, ``digits``, ``mnist``, ``cifar10``,
    ``stl10``, ``celeba``, ``folder``, ``npy``); keyword arguments go to the loader."""
    if name not in LOADERS:
        raise KeyError(f"unknown data set {name!r}; available: {', '.join(LOADERS)}")
    return LOADERS[name](**kw)


def as_source(data: DataSource | torch.Tensor | np.ndarray | str) -> DataSource:
    """Wrap a tensor/array in a :class:`TensorSource`, resolve a name, or pass a source through."""
    if isinstance(data, DataSource):
        return data
    if isinstance(data, np.ndarray):
        data = torch.from_numpy(data)
    if isinstance(data, torch.Tensor):
        return TensorSource(data)
    if isinstance(data, str):
        return load_data(data)
    raise TypeError(f"cannot use {type(data).__name__} as training data")
