"""Invariants about state and mechanics: gradients flow, eval mode changes nothing, state
dicts and deep copies keep the effective weights, train and eval agree once settled, and
an unsupported layer is refused by name."""
from __future__ import annotations

import copy

import torch
from torch import nn

from ..base import Method
from ..measure import claim_layers, evaluating, record_input_shapes
from .base import (INPUT_SHAPE, NotApplicable, Subject, Violation, differences, effective, push_away,
                   settle, snapshot, state_changes, stored_weight, train_step, unsupported_models,
                   weight_layers)

#: Train- and eval-mode outputs once settled (see the package docstring).
TRAIN_EVAL_RTOL = 1e-4


def gradients_flow(s: Subject) -> str:
    """``gradcheck`` (float64, eval mode) of the map from each stored weight to the effective
    weight (parametrized layers) or from the layer's parameters to its output (layers
    measured through their forward); penalties: the penalty requires grad and its
    gradient reaches every weight layer."""
    method, model = s.applied(dtype=torch.float64)
    with torch.no_grad():
        model(s.x[:1].double())  # first-forward initialisations (e.g. sn_conv's input size)
    with evaluating(model):
        shapes = record_input_shapes(model, INPUT_SHAPE)
        layers = claim_layers(model)
    gen = torch.Generator().manual_seed(s.seed)
    checked = []
    with evaluating(model), torch.enable_grad():
        for name, layer, how in layers:
            plist = getattr(getattr(layer, "parametrizations", None), "weight", None)
            if how == "weight" and plist is not None:
                ok = gradcheck_effective_weight(layer)
            elif how == "forward":
                x = torch.randn((1, *shapes[name]), generator=gen, dtype=torch.float64)
                ok = _gradcheck_forward(layer, x)
            else:
                continue
            if ok is not True:
                raise Violation(f"{name}: gradcheck failed, the backward of the effective "
                                f"weight does not match finite differences ({ok})")
            checked.append(name)
    if type(method).penalty is not Method.penalty or s.claim.kind == "penalty":
        push_away(s, model)
        penalty = method.penalty(model, s.real.double(), s.fake.double())
        if not penalty.requires_grad:
            raise Violation("the penalty does not require grad (no create_graph?)")
        penalty.backward()
        dead = [name for name, layer in weight_layers(model)
                if (g := stored_weight(layer).grad) is None or not bool(torch.isfinite(g).all())
                or float(g.abs().max()) == 0.0]
        if dead:
            raise Violation(f"the penalty's gradient does not reach the weights of {', '.join(dead)}")
        checked.append("penalty")
    if not checked:
        raise NotApplicable("the method neither reparametrizes, replaces layers nor adds a penalty")
    return "gradcheck passed: " + ", ".join(checked)


def gradcheck_effective_weight(layer: nn.Module) -> bool | str:
    """``True`` if ``gradcheck`` (float64) passes for the map from a parametrized layer's
    stored weight to its effective weight in the parametrizations' current mode; else
    gradcheck's first line of complaint."""
    plist = layer.parametrizations.weight
    original = plist.original.detach().clone().requires_grad_(True)

    def effective(w):
        for p in plist:
            w = p(w)
        return w

    try:
        return torch.autograd.gradcheck(effective, (original,), raise_exception=True)
    except Exception as exc:  # noqa: BLE001 - gradcheck's report is the detail
        return f"{type(exc).__name__}: {str(exc).splitlines()[0]}"


def _gradcheck_forward(layer: nn.Module, x: torch.Tensor) -> bool | str:
    names = [n for n, p in layer.named_parameters()]
    params = tuple(p.detach().clone().requires_grad_(True) for _, p in layer.named_parameters())

    def output(*values):
        return torch.func.functional_call(layer, dict(zip(names, values)), (x,))

    try:
        return torch.autograd.gradcheck(output, params, raise_exception=True)
    except Exception as exc:  # noqa: BLE001
        return f"{type(exc).__name__}: {str(exc).splitlines()[0]}"


def eval_leaves_state_unchanged(s: Subject) -> str:
    """After the first forward, eval-mode forwards (with and without grad) and reading the
    effective weights leave every parameter and buffer bit-identical."""
    _, model = s.applied()
    with torch.no_grad():
        model(s.x)
    before = snapshot(model)
    model.eval()
    for _ in range(2):
        model(s.x).sum().backward()
        with torch.no_grad():
            model(s.x)
            for _, layer in weight_layers(model):
                layer.weight  # noqa: B018 - reading the effective weight must not change state
    for p in model.parameters():
        p.grad = None
    changed = state_changes(before, snapshot(model))
    if changed:
        raise Violation("eval-mode forwards changed " + "; ".join(changed))
    return f"{len(before)} tensors unchanged"


def state_dict_round_trip(s: Subject) -> str:
    """A trained model's ``state_dict`` loaded into a fresh model (other seed) with the method
    applied gives bit-identical effective weights and outputs."""
    method, a = s.applied()
    for _ in range(2):
        train_step(method, a, s.x)
    with torch.no_grad():
        a.train()
        a(s.x)
    state = a.state_dict()
    _, b = s.applied(seed_offset=1)
    b.load_state_dict(state)
    diffs = differences(effective(a, s.x), effective(b, s.x))
    if diffs:
        raise Violation("after load_state_dict: " + "; ".join(diffs))
    return f"{len(state)} entries restored the same effective weights"


def deepcopy_keeps_weights(s: Subject) -> str:
    """``copy.deepcopy`` (an EMA copy) is independent and, once the model has run, exact.

    A copy taken right after ``apply``: training it leaves the original's parameters and
    buffers unchanged (state a method initialises at the first forward, such as
    ``sn_conv``'s input size and random vectors, is the copy's own). A copy taken after
    a training step: bit-identical effective weights, and training it leaves the
    original's state and effective weights unchanged.
    """
    method, a = s.applied()
    early = copy.deepcopy(a)
    before = snapshot(a)
    train_step(method, early, s.x)
    changed = state_changes(before, snapshot(a))
    if changed:
        raise Violation("training a deep copy taken right after apply changed the original: "
                        + "; ".join(changed))
    train_step(method, a, s.x)
    late = copy.deepcopy(a)
    diffs = differences(effective(a, s.x), effective(late, s.x))
    if diffs:
        raise Violation("a deep copy taken after a training step differs: " + "; ".join(diffs))
    weights = effective(a, s.x)
    before = snapshot(a)
    train_step(method, late, s.x)
    changed = state_changes(before, snapshot(a)) + differences(weights, effective(a, s.x))
    if changed:
        raise Violation("training a deep copy taken after a step changed the original: "
                        + "; ".join(changed))
    return "copies independent; a copy of a model that has run is identical"


def train_eval_agree(s: Subject) -> str:
    """Once settled, a training-mode forward and an eval-mode forward agree to
    :data:`TRAIN_EVAL_RTOL` (relative, on the outputs)."""
    _, model = s.applied()
    settle(model, s.x)
    model.train()
    with torch.no_grad():
        train = model(s.x)
    with evaluating(model):
        ev = model(s.x)
    rel = float((train - ev).norm() / ev.norm().clamp_min(1e-30))
    if not rel <= TRAIN_EVAL_RTOL:
        raise Violation(f"train and eval outputs differ by {rel:.3g} relative (> {TRAIN_EVAL_RTOL:g})")
    return f"relative difference {rel:.2g}"


def unsupported_layer_named(s: Subject) -> str:
    """``apply`` on a model holding a layer it cannot handle (``nn.Bilinear``; a custom
    module owning a ``weight``) raises an error naming that layer's path."""
    if not s.claim.per_layer:
        raise NotApplicable("the claim is not about layers")
    problems = []
    for path, model in unsupported_models().items():
        try:
            s.build().apply(model)
        except Exception as exc:  # noqa: BLE001 - any error type, as long as it names the layer
            if path not in str(exc):
                problems.append(f"the error for {path!r} does not name it: {type(exc).__name__}: {exc}")
            continue
        problems.append(f"apply accepted a model with the unsupported layer {path!r}")
    if problems:
        raise Violation("; ".join(problems))
    return "rejected, naming " + ", ".join(unsupported_models())
