"""A researcher's own data (``--data``): parsed, loaded once and checked before anything runs.

* ``npy:PATH``: an array saved with ``numpy.save``, ``(N, C, H, W)``, ``(N, H, W, C)`` or
  ``(N, H, W)`` images (``C`` 1 or 3) or ``(N, D)`` vectors; ``uint8`` in [0, 255], or
  floating point in [-1, 1] (the tanh range of lipbench's generators), or in the range
  ``--data-range LO,HI`` names (mapped linearly to [-1, 1]). ``--labels PATH``: an ``.npy``
  of ``N`` integer class labels (optional; they give the quality extractor its classes).
* ``folder:PATH``: image files in a folder (any depth; PNG, JPEG, ...), resized and
  centre-cropped to the input size, converted to the input's 1 or 3 channels; when every
  image lies in a direct sub-folder and there are at least two, the sub-folders are classes.
* ``mnist``, ``cifar10``, ``stl10``, ``celeba``: torchvision's folder layouts under
  ``--data-root`` (default ``$LIPBENCH_DATA_ROOT`` or ``./data``); nothing is downloaded.

A data set that is missing, unreadable, of the wrong shape for ``--input-shape`` or outside
its documented range is :class:`DataError` (exit code 2), one line naming the path. The
result is a :class:`DataChoice`: the loader's name and keyword arguments, plain data that
the suites' ``data`` parameter and ``data_args`` setting carry to every case.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from harness.errors import UserError
from harness.training.data import DatasetNotFoundError, default_root, load_data

#: The named data sets under ``--data-root``.
NAMED = ("mnist", "cifar10", "stl10", "celeba")
#: The documented range of floating-point images (lipbench's generators end in tanh).
FLOAT_RANGE = (-1.0, 1.0)


class DataError(UserError):
    """``--data`` that cannot be used; the message names the path."""


@dataclass(frozen=True)
class DataChoice:
    """A data set as the suites name it: the loader (``harness.training.data.LOADERS``) and its
    keyword arguments; ``text``: what the user wrote."""

    name: str
    args: dict[str, Any] = field(default_factory=dict)
    text: str = ""


def parse_data(text: str, input_shape: tuple[int, ...], *, root: str | None = None, labels: str | None = None,
               value_range: str | None = None) -> DataChoice:
    """The loader and arguments of ``--data TEXT`` for a model of ``input_shape`` (not yet loaded)."""
    kind, sep, rest = text.partition(":")
    image = len(input_shape) == 3
    if labels and kind != "npy":
        raise DataError(f"--labels {labels}: only for --data npy:PATH (folders take their classes from sub-folders)")
    if value_range and kind != "npy":
        raise DataError(f"--data-range {value_range}: only for --data npy:PATH")
    if sep and kind == "npy" and rest:
        args: dict[str, Any] = {"path": str(Path(rest).absolute())}
        if labels:
            args["labels"] = str(Path(labels).absolute())
        if value_range:
            args["value_range"] = list(_range(value_range))
        return DataChoice("npy", args, text)
    if sep and kind == "folder" and rest:
        if not image or input_shape[0] not in (1, 3) or input_shape[1] != input_shape[2]:
            raise DataError(f"--data {text}: image folders need --input-shape C,S,S with C 1 or 3")
        return DataChoice("folder", {"root": str(Path(rest).absolute()), "size": input_shape[-1],
                                     "channels": input_shape[0], "in_memory": True}, text)
    if not sep and kind in NAMED:
        where = str(Path(root).absolute()) if root else str(default_root().absolute())
        if not image:
            raise DataError(f"--data {kind}: an image data set needs --input-shape C,H,W")
        args = {"root": where}
        if kind in ("mnist", "stl10", "celeba"):
            args["size"] = input_shape[-1]
        return DataChoice(kind, args, text)
    raise DataError(f"--data {text!r}: expected npy:PATH, folder:PATH or one of {', '.join(NAMED)} "
                    "(under --data-root)")


def _range(text: str) -> tuple[float, float]:
    try:
        lo, hi = (float(v) for v in text.split(","))
    except ValueError:
        raise DataError(f"--data-range {text!r}: expected LO,HI (e.g. 0,1)") from None
    if not lo < hi:
        raise DataError(f"--data-range {text!r}: LO must be below HI")
    return lo, hi


def _where(choice: DataChoice) -> str:
    return str(choice.args.get("path") or choice.args.get("root") or choice.text)


def load_checked(choice: DataChoice, input_shape: tuple[int, ...]):
    """The data set loaded (lipbench's loaders: no user code) and checked against ``input_shape``
    and its documented range; :class:`DataError` naming the path otherwise."""
    where = _where(choice)
    try:
        source = load_data(choice.name, **{k: tuple(v) if isinstance(v, list) else v for k, v in choice.args.items()})
    except DatasetNotFoundError as exc:
        raise DataError(f"--data {choice.text}: {' '.join(str(exc).split())}") from None
    except (ValueError, OSError, RuntimeError, EOFError) as exc:
        raise DataError(f"--data {choice.text}: {where}: {' '.join(str(exc).split())}") from None
    shape = tuple(source.sample_shape)
    if shape != tuple(input_shape):
        raise DataError(f"--data {choice.text}: {where} holds samples of shape {','.join(map(str, shape))}, "
                        f"--input-shape is {','.join(map(str, input_shape))}")
    data = getattr(source, "data", None)
    if isinstance(data, torch.Tensor) and data.dtype != torch.uint8:
        lo, hi = float(data.min()), float(data.max())
        if not (FLOAT_RANGE[0] <= lo and hi <= FLOAT_RANGE[1]):
            raise DataError(f"--data {choice.text}: {where} has values in [{lo:.4g}, {hi:.4g}]; floating-point data "
                            "must lie in [-1, 1], or name its range with --data-range LO,HI, or be uint8")
    return source


def default_data(input_shape: tuple[int, ...]) -> DataChoice:
    """The data of a ``--model`` run without ``--data``: scikit-learn's bundled digits at the input
    size, grey values repeated over the input's channels (images only)."""
    if len(input_shape) != 3 or input_shape[1] != input_shape[2] or input_shape[1] < 4:
        raise DataError(f"--input-shape {','.join(map(str, input_shape))}: give --data (the default, scikit-learn's "
                        "digits, is for square images of side 4 or more)")
    return DataChoice("digits", {"size": input_shape[1], "channels": input_shape[0]}, "digits")
