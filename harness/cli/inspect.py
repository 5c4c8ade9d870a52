"""``lipbench inspect``: per-layer norms and network Lipschitz bounds of a user's model."""
from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from torch import nn

from harness.exact import lipschitz_lower_bound, lipschitz_upper_bound
from harness.imports import ReferenceLoadError, resolve
from harness.methods import get


class InspectError(ValueError):
    """A target, checkpoint or shape that cannot be inspected; the message says which and why."""


def parse_shape(text: str) -> tuple[int, ...]:
    try:
        shape = tuple(int(p) for p in text.replace("x", ",").split(",") if p.strip())
    except ValueError:
        raise InspectError(f"--input-shape {text!r}: expected integers such as 3,32,32") from None
    if not shape or any(s <= 0 for s in shape):
        raise InspectError(f"--input-shape {text!r}: sizes must be positive")
    return shape


def _call_factory(reference: str) -> nn.Module:
    factory = resolve(reference)
    if not callable(factory):
        raise InspectError(f"{reference!r} is {type(factory).__name__}, not a callable returning a module")
    model = factory()
    if isinstance(model, tuple):  # harness.training.build-style factories return (G, D)
        model = model[-1]
    if not isinstance(model, nn.Module):
        raise InspectError(f"{reference!r} returned {type(model).__name__}, not an nn.Module")
    return model


def load_target(target: str, factory: str | None) -> nn.Module:
    """A module from ``package.module:factory``, or a checkpoint file (module or state dict)."""
    path = Path(target)
    if not path.exists():
        if ":" not in target:
            raise InspectError(f"{target}: no such file, and not of the form package.module:factory")
        return _call_factory(target)
    if factory is None:
        raise InspectError(f"{target}: a checkpoint needs --factory package.module:factory to build the module")
    model = _call_factory(factory)
    state = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(state, dict) and "state_dict" in state:
        state = state["state_dict"]
    try:
        model.load_state_dict(state)
    except (RuntimeError, TypeError) as exc:
        raise InspectError(f"{target}: does not load into {factory}: {exc}") from None
    return model


def inspect_model(model: nn.Module, shape: tuple[int, ...], method: str | None = None,
                  seed: int = 0) -> tuple[list[dict[str, Any]], dict[str, float]]:
    """Per-layer records and the network's certified upper / empirical lower Lipschitz bounds."""
    if method:
        model = get(method).apply(model)
        model.train()
        with torch.no_grad():  # a training-mode forward: records input sizes, settles power iterations
            model(torch.zeros((1, *shape)))
    model.eval()
    bound = lipschitz_upper_bound(model, shape)
    generator = torch.Generator().manual_seed(seed)
    lower = lipschitz_lower_bound(model, torch.randn((4, *shape), generator=generator),
                                  n_random=2, steps=10, seed=seed)
    rows = []
    for r in bound.weight_layers():
        op, ab = r.operator_norm, r.alpha
        rows.append({"layer": r.name, "kind": r.kind, "input": "x".join(map(str, r.input_shape[1:])),
                     "reshaped_norm": r.reshaped_norm, "operator_norm": op.value, "operator_lower": op.lower,
                     "operator_upper": op.upper, "bracket_width": op.rel_width, "method": op.method,
                     "alpha": ab.alpha if ab else None, "ratio": r.ratio,
                     "lower_lemma_holds": ab.lower_holds_precondition if ab else None})
    return rows, {"lipschitz_upper": bound.upper, "lipschitz_lower": lower.value}


def inspect_target(args: argparse.Namespace) -> int:
    from .commands import UsageError
    try:
        shape = parse_shape(args.input_shape)
        model = load_target(args.target, args.factory)
        rows, network = inspect_model(model, shape, args.method)
    except (InspectError, ReferenceLoadError, ValueError) as exc:
        raise UsageError(str(exc)) from None
    if args.json:
        print(json.dumps({"layers": rows, "network": network}, indent=1))
        return 0
    with pd.option_context("display.width", 200, "display.max_columns", 20):
        print(pd.DataFrame(rows).drop(columns=["operator_lower", "operator_upper"]).to_string(
            index=False, float_format=lambda v: f"{v:.5g}"))
    print(f"network Lipschitz constant: certified upper bound {network['lipschitz_upper']:.6g}, "
          f"empirical lower bound {network['lipschitz_lower']:.6g}")
    return 0
