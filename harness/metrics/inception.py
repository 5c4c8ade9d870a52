"""clean-fid's InceptionV3 features (and class probabilities), strictly offline.

The weights are NVIDIA's TorchScript translation of the TF Inception graph
``inception-2015-12-05`` (used by StyleGAN2-ADA and clean-fid). clean-fid 0.1.35
fetches it from the network in ``cleanfid.inception_torchscript.InceptionV3W`` when its
``download`` flag is on, via ``downloads_helper.check_download_inception``, with ``path = "/tmp"`` on
Linux/macOS and ``"./"`` on Windows (``cleanfid.features.feature_extractor``).
This module never calls that download: it looks for the file itself and constructs
``InceptionV3W(folder, download=False)``; if no file is found it raises
:class:`InceptionUnavailableError` naming the places it looked.

Search order for ``inception-2015-12-05.pt``:

1. an explicit ``path`` argument (the file, or a folder holding it);
2. the environment variable ``LIPBENCH_INCEPTION`` (file or folder);
3. ``$LIPBENCH_CACHE/inception-2015-12-05.pt`` (default ``~/.cache/lipbench/``);
4. clean-fid's own folder (``/tmp``; ``./`` on Windows), where ``compute_fid`` would
   have put it.

Preprocessing follows clean-fid's ``mode="clean"``: images are mapped to [0, 255],
quantised to uint8 (as if written to PNG), grey images repeated to RGB, resized to
299×299 by PIL bicubic on float32 per channel (``cleanfid.resize.build_resizer``),
then features are the 2048-d pool3 activations (``InceptionV3W.forward``).

Class probabilities (for the Inception Score) come from the same TorchScript module
called as ``base(x, no_output_bias=True)``, which returns the 1008-way softmax; this is
how StyleGAN2-ADA's ``metrics/inception_score.py`` computes IS with this file ("match
the original implementation by not applying bias in the softmax layer"). It is not
exercised in this repository's tests with the real file (no weights are shipped);
the tests use a TorchScript stand-in with the same interface.

torch 2.14 marks ``torch.jit.load`` deprecated (FutureWarning); clean-fid's own loader
uses it too, and the file exists only as TorchScript, so the warning is expected.
"""
from __future__ import annotations

import os
import platform
from pathlib import Path

import numpy as np
import torch

from .features import FeatureExtractor, to_unit_range

WEIGHTS_NAME = "inception-2015-12-05.pt"
WEIGHTS_URL = ("https://nvlabs-fi-cdn.nvidia.com/stylegan2-ada-pytorch/pretrained/"
               "metrics/inception-2015-12-05.pt")
#: Folder clean-fid 0.1.35 itself reads/downloads the file to (cleanfid/features.py).
CLEANFID_DIR = "./" if platform.system() == "Windows" else "/tmp"
ENV_VAR = "LIPBENCH_INCEPTION"


class InceptionUnavailableError(FileNotFoundError):
    """The InceptionV3 weights file is not present locally (nothing is downloaded)."""


def lipbench_cache_dir() -> Path:
    """``$LIPBENCH_CACHE`` or ``~/.cache/lipbench``."""
    return Path(os.environ.get("LIPBENCH_CACHE", Path.home() / ".cache" / "lipbench"))


def candidate_paths(path: str | os.PathLike | None = None) -> list[Path]:
    """Where the weights file is looked for, in order."""
    out: list[Path] = []
    for p in (path, os.environ.get(ENV_VAR) or None):
        if p:
            p = Path(p).expanduser()
            out.append(p / WEIGHTS_NAME if p.is_dir() else p)
    out.append(lipbench_cache_dir() / WEIGHTS_NAME)
    out.append(Path(CLEANFID_DIR) / WEIGHTS_NAME)
    return out


def find_inception_weights(path: str | os.PathLike | None = None) -> Path | None:
    """First existing candidate file, or ``None``. Never touches the network."""
    for p in candidate_paths(path):
        if p.is_file():
            return p
    return None


class InceptionExtractor(FeatureExtractor):
    """clean-fid InceptionV3 pool3 features (id ``inception-v3-clean``), offline only."""

    id = "inception-v3-clean"

    @staticmethod
    def available(path: str | os.PathLike | None = None) -> bool:
        return find_inception_weights(path) is not None

    def __init__(self, path: str | os.PathLike | None = None,
                 device: str | torch.device | None = None) -> None:
        weights = find_inception_weights(path)
        if weights is None:
            looked = "\n  ".join(str(p) for p in candidate_paths(path))
            raise InceptionUnavailableError(
                f"InceptionV3 weights '{WEIGHTS_NAME}' not found; lipbench never downloads "
                f"them. Looked in:\n  {looked}\nFetch {WEIGHTS_URL} on a machine with network "
                f"access and put it in {lipbench_cache_dir()} (or point {ENV_VAR} at it).")
        self.weights = weights
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        if weights.name == WEIGHTS_NAME:
            from cleanfid.inception_torchscript import InceptionV3W
            model = InceptionV3W(str(weights.parent), download=False, resize_inside=False)
            # InceptionV3W.__init__ loads onto the saved device; move explicitly.
            self.model = model.to(self.device).eval()
            self.base = self.model.base
        else:  # any other file name: same module, loaded the same way
            self.base = torch.jit.load(str(weights), map_location=self.device).eval()
            self.model = None
        from cleanfid.resize import build_resizer
        self._resize = build_resizer("clean")

    def _prepare(self, images: torch.Tensor, value_range: tuple[float, float]) -> torch.Tensor:
        """Images → uint8 → RGB → 299×299 float in [0, 255], clean-fid ``clean`` mode."""
        x = (to_unit_range(images, value_range) * 255.0).round_().to(torch.uint8)
        if x.shape[1] == 1:
            x = x.repeat(1, 3, 1, 1)
        if x.shape[1] != 3:
            raise ValueError(f"Inception needs 1 or 3 channels, got {x.shape[1]}")
        arr = x.permute(0, 2, 3, 1).cpu().numpy()
        out = np.stack([self._resize(a).transpose(2, 0, 1) for a in arr])
        return torch.from_numpy(out.astype(np.float32)).to(self.device)

    @torch.no_grad()
    def _features(self, images: torch.Tensor, value_range: tuple[float, float]) -> np.ndarray:
        x = self._prepare(images, value_range)
        if self.model is not None:
            f = self.model(x)
        else:  # identical to InceptionV3W.forward with resize_inside=False
            f = self.base.layers.forward((x - 128) / 128)
        return f.reshape(x.shape[0], -1).double().cpu().numpy()

    @torch.no_grad()
    def _probs(self, images: torch.Tensor, value_range: tuple[float, float]) -> np.ndarray:
        x = self._prepare(images, value_range)
        p = self.base(x, no_output_bias=True)
        return p.double().cpu().numpy()
