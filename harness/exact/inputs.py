"""Bounds with respect to one input of a multi-input model, the other inputs held constant.

A conditional discriminator ``D(x, y)`` (e.g. the projection discriminator of Miyato &
Koyama 2018, ``D(x, y) = ψ(φ(x)) + ⟨embed(y), φ(x)⟩``) is Lipschitz in the image ``x`` for
each fixed class ``y``; ``y`` (an integer label) has no Lipschitz constant to speak of. So
the bound is that of ``x ↦ D(x, y)`` for one ``y`` (:func:`with_constants`), and over a set
of classes ``Y`` the bound of the family is ``max_{y∈Y} Lip(x ↦ D(x, y))``
(docs/certificates.md#inputs): every ``x ↦ D(x, y)`` is then bounded by it.

:func:`with_constants` returns a shallow copy of the model (the same submodules and
parameters) whose ``forward`` takes ``x`` alone and passes the constants for the other
arguments, expanded to ``x``'s batch size; the rest of :mod:`harness.exact` traces it as a
single-input model, so the constants are ``get_attr`` nodes that do not depend on ``x``.
"""
from __future__ import annotations

import copy
import inspect
import re
from typing import Mapping, Sequence

import torch
from torch import nn


class InputsError(ValueError):
    """The forward's arguments cannot be split into ``x`` and constants as asked (one line)."""


def forward_parameters(model: nn.Module) -> list[inspect.Parameter]:
    """The parameters of ``model.forward`` (``self`` excluded); ``*args``/``**kwargs`` refused."""
    params = list(inspect.signature(model.forward).parameters.values())
    for p in params:
        if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            raise InputsError(f"{type(model).__name__}.forward takes {'*' if p.kind == p.VAR_POSITIONAL else '**'}"
                              f"{p.name}: name its inputs so that x and the constants can be told apart")
        if p.kind == p.POSITIONAL_ONLY:
            raise InputsError(f"{type(model).__name__}.forward has positional-only argument {p.name!r}")
    return params


def required_others(model: nn.Module, wrt: str | None = None) -> tuple[str, list[str]]:
    """``(x's name, the other forward arguments without a default)``; ``wrt`` defaults to the first."""
    params = forward_parameters(model)
    if not params:
        raise InputsError(f"{type(model).__name__}.forward takes no input")
    names = [p.name for p in params]
    x = names[0] if wrt is None else wrt
    if x not in names:
        raise InputsError(f"--wrt {x!r}: {type(model).__name__}.forward has no argument {x!r} "
                          f"(it takes {', '.join(names)})")
    return x, [p.name for p in params if p.name != x and p.default is inspect.Parameter.empty]


def with_constants(model: nn.Module, wrt: str, constants: Mapping[str, torch.Tensor]) -> nn.Module:
    """``x ↦ model(**{wrt: x, **constants})`` as a module sharing ``model``'s submodules.

    Each constant holds one sample (batch dim 1) and is expanded to ``x``'s batch. Every
    forward argument without a default must be ``wrt`` or a constant.
    """
    x, required = required_others(model, wrt)
    names = [p.name for p in forward_parameters(model)]
    for name in constants:
        if name not in names:
            raise InputsError(f"{type(model).__name__}.forward has no argument {name!r} "
                              f"(it takes {', '.join(names)})")
        if name == x:
            raise InputsError(f"argument {name!r} is both the input and a constant")
    missing = [n for n in required if n not in constants]
    if missing:
        raise InputsError(f"{type(model).__name__}.forward also takes {', '.join(map(repr, missing))} without a "
                          "default: give class labels with --classes (and --label-arg to name the argument)")
    for name, value in constants.items():
        if not isinstance(value, torch.Tensor) or value.dim() == 0 or value.shape[0] != 1:
            raise InputsError(f"constant {name!r} must be a tensor with a batch dim of 1")
    base = type(model)

    def forward(self, inp):
        batch = inp.shape[0]
        kwargs = {k: v.expand(batch, *v.shape[1:]) for k, v in self._lipbench_constants.items()}
        kwargs[x] = inp
        return base.forward(self, **kwargs)

    cls = type(base.__name__, (base,), {"forward": forward, "__module__": base.__module__,
                                        "__qualname__": base.__qualname__})
    bound = copy.copy(model)
    bound.__class__ = cls
    object.__setattr__(bound, "_lipbench_constants", dict(constants))
    return bound


def rebind(bound: nn.Module, constants: Mapping[str, torch.Tensor]) -> nn.Module:
    """A module made by :func:`with_constants` (e.g. after a method was applied to it) with other
    values for the same constants: a shallow copy sharing every submodule."""
    if set(constants) != set(bound._lipbench_constants):
        raise InputsError(f"constants {sorted(constants)} differ from {sorted(bound._lipbench_constants)}")
    out = copy.copy(bound)
    object.__setattr__(out, "_lipbench_constants", dict(constants))
    return out


def class_label(k: int, device: torch.device | None = None) -> torch.Tensor:
    """Class ``k`` as the long tensor of batch 1 an ``nn.Embedding`` reads."""
    return torch.tensor([int(k)], dtype=torch.long, device=device)


def parse_classes(text: str) -> tuple[int, ...]:
    """``"3"``, ``"0-9"`` (inclusive) or ``"0,2,5"`` (ranges may be mixed in) as sorted classes."""
    out: set[int] = set()
    for part in (p.strip() for p in text.split(",")):
        match = re.fullmatch(r"(\d+)(?:-(\d+))?", part)
        if match is None or (match[2] is not None and int(match[2]) < int(match[1])):
            raise InputsError(f"--classes {text!r}: expected class numbers such as 3, 0-9 or 0,2,5")
        out.update(range(int(match[1]), int(match[2] or match[1]) + 1))
    return tuple(sorted(out))


def max_over(bounds: Sequence[tuple[int, float]]) -> tuple[int, float]:
    """The class whose bound is largest and that bound (the bound of the whole family)."""
    return max(bounds, key=lambda kb: kb[1])
