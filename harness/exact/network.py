"""Certified network Lipschitz bounds over the model's real computation graph.

:func:`lipschitz_upper_bound` captures the graph (:mod:`.graph`, ``torch.fx`` plus one
forward pass at the given input shape), gives every input-dependent node a rule
(:mod:`.rules`) and propagates ``L(node)``, a certified bound on the Lipschitz constant
(ℓ₂ → ℓ₂) of *model input → node*, in execution order:
``L = factor · Σ wᵢ L(inputᵢ)`` (additions) or ``factor · √Σ (wᵢ L(inputᵢ))²``
(concatenations, tuples), in-place ops included. Weight layers contribute the certified
upper end of their operator norm ``‖W̃‖₂`` at their real input size
(:func:`.conv_norm.conv_operator_norm`). Composition multiplies bounds and the
triangle inequality adds them, so the propagated ``L(output)`` is a rigorous upper bound;
every float operation of the propagation rounds up.

The whole graph is validated before any operator norm is computed: an op that is not on the
allow-list (:mod:`.allowlist`), an argument its rule does not model, or an input-dependent
value that is not a real floating-point tensor (rounding, casts to integers or bool,
comparisons) raises :class:`~.graph.UnsupportedOperationError` at once, one line naming the
node, the op and the module. Every bound is for exact arithmetic on the model's parameters as
its dtype holds them (derivations: ``docs/certificates.md``). The bound is that of the
model's **eval-mode** map (BatchNorm with running statistics, dropout as the identity, no
power-iteration updates of spectral-norm parametrizations); modules were switched to eval
for the computation and restored afterwards, and a model that was in training mode is
reported (:attr:`NetworkBound.train_mode_modules`), never silently.
"""
from __future__ import annotations

import math
import time
import operator
from dataclasses import dataclass, field, replace
from typing import Callable, Mapping, Sequence

import torch
import torch.fx as fx
from torch import nn

from ._spec import as_float64
from .alpha import AlphaBound, alpha_bound
from .conv_norm import OperatorNorm, conv_operator_norm, linear_operator_norm
from .graph import Capture, UnfollowableModelError, UnsupportedOperationError, capture, describe, inplace_target
from .reshaped import reshaped_norm
from .allowlist import is_metadata, plan_node
from .plans import Plan, Site, WeightOp, scale_up, up

Progress = Callable[[int, int, "NodeRecord"], None]


@dataclass(frozen=True)
class NodeRecord:
    """One input-dependent node: its factor, the running bound ``L(node)`` and, for weight
    layers, the references (reshaped norm, operator-norm bracket, α, ratio)."""

    name: str  # module path (", call k" for repeated calls) or the fx node name
    op: str  # module type or op
    kind: str  # "linear", "conv2d", ... for weight layers, else the op
    input_shape: tuple[int, ...]  # per-sample shape of the first input-dependent argument
    output_shape: tuple[int, ...]
    factor: float
    bound: float  # L(node)
    inputs: tuple[str, ...] = ()
    mode: str = "sum"
    weights: tuple[float, ...] = ()
    reshaped_norm: float | None = None
    operator_norm: OperatorNorm | None = None
    alpha: AlphaBound | None = None
    ratio: float | None = None  # ‖W̃‖ / ‖Ŵ‖ (value / reshaped norm)
    alpha_guarantee: float | None = None  # α·‖R‖ ≥ ‖W̃‖, R the reshape the α lemma uses (Ŵ; dim 0 for
    #                                        ConvTranspose2d, whose W̃ is the adjoint of that conv)
    note: str = ""
    seconds: float = 0.0


@dataclass(frozen=True)
class _Step:
    key: str
    inputs: tuple[str, ...]
    weights: tuple[float, ...]
    mode: str
    updates: tuple[tuple[str, bool], ...]  # (node, exact replacement?) changed in place
    name: str = ""  # as shown in the records


@dataclass(frozen=True)
class NetworkBound:
    """``upper``: a certified bound on ``Lip₂`` of the model's eval-mode map on inputs of
    ``input_shape`` (batch excluded); ``layers``: one record per input-dependent node."""

    upper: float
    layers: tuple[NodeRecord, ...]
    input_shape: tuple[int, ...]
    mode: str = "eval"
    train_mode_modules: tuple[str, ...] = ()
    _steps: tuple[_Step, ...] = field(default=(), repr=False)
    _output: tuple[tuple[str, ...], tuple[float, ...]] = field(default=((), ()), repr=False)
    _keys: tuple[str, ...] = field(default=(), repr=False)

    def weight_layers(self) -> list[NodeRecord]:
        """Records of weight layers (those with a reshaped norm), in execution order."""
        return [r for r in self.layers if r.reshaped_norm is not None]

    @property
    def mode_note(self) -> str:
        if not self.train_mode_modules:
            return "evaluated in eval mode"
        names = ", ".join(self.train_mode_modules[:6]) + (" ..." if len(self.train_mode_modules) > 6 else "")
        return (f"evaluated in eval mode; {len(self.train_mode_modules)} module(s) were in training mode "
                f"and behave differently there ({names}): the bound is for the eval-mode map")

    def propagate(self, factor: Callable[[NodeRecord], float] | Mapping[str, float]) -> float:
        """The same graph propagation with each record's factor replaced by ``factor(record)``.

        E.g. ``bound.propagate(lambda r: r.reshaped_norm or r.factor)`` is the product SNw's
        reshapes suggest; :meth:`alpha_guarantee` what they guarantee.
        """
        records = dict(zip(self._keys, self.layers))
        get = factor.get if isinstance(factor, Mapping) else None
        factors = {k: float(get(r.name, r.factor) if get else factor(r)) for k, r in records.items()}
        return _propagate(self._steps, self._output, factors)[1]

    def alpha_guarantee(self) -> float:
        """What normalising the reshapes guarantees: the propagation with every weight layer's
        ``‖W̃‖`` replaced by its α bound :attr:`NodeRecord.alpha_guarantee` (Lin et al. 2021 §4)."""
        return self.propagate(lambda r: r.factor if r.alpha_guarantee is None else r.alpha_guarantee)

    def to_frame(self):
        """A pandas DataFrame, one row per node (``attrs`` hold the mode and the upper bound)."""
        import pandas as pd
        rows = []
        for r in self.layers:
            op = r.operator_norm
            rows.append({
                "node": r.name, "op": r.op, "kind": r.kind,
                "input": "x".join(map(str, r.input_shape)), "output": "x".join(map(str, r.output_shape)),
                "inputs": ", ".join(r.inputs), "combine": r.mode if len(r.inputs) > 1 else "",
                "factor": r.factor, "bound": r.bound, "reshaped_norm": r.reshaped_norm,
                "operator_norm": op.value if op else None, "operator_lower": op.lower if op else None,
                "operator_upper": op.upper if op else None, "bracket_width": op.rel_width if op else None,
                "method": op.method if op else None,
                "alpha": r.alpha.alpha if r.alpha else None, "alpha_guarantee": r.alpha_guarantee,
                "ratio": r.ratio,
                "lower_lemma_holds": r.alpha.lower_holds_precondition if r.alpha else None,
                "seconds": r.seconds, "note": r.note})
        frame = pd.DataFrame(rows)
        frame.attrs.update(upper=self.upper, mode=self.mode, mode_note=self.mode_note,
                           input_shape=self.input_shape)
        return frame


# ---------------------------------------------------------------------------------------
# Propagation (rounding up)
# ---------------------------------------------------------------------------------------

def _combine(values: Sequence[float], mode: str) -> float:
    """``Σ v_i`` or ``√Σ v_i²`` rounded up; the squares are taken after scaling by a power of two
    (exact), so none under- or overflows."""
    if not values:
        return 0.0
    if mode == "sum" or len(values) == 1:
        return up(math.fsum(values), len(values))
    top = max(values)
    if top == 0.0 or top == math.inf:
        return top
    e = math.frexp(top)[1]
    squares = math.fsum(math.ldexp(v, -e) ** 2 for v in values) + len(values) * 2.0 ** -1070
    return scale_up(up(math.sqrt(up(squares, 2 * len(values))), 1), e)


def _propagate(steps: Sequence[_Step], output, factors: Mapping[str, float]) -> tuple[dict, float]:
    bound: dict[str, float] = {}  # nodes without a step are constants: 0
    for s in steps:
        inner = _combine([up(w * bound.get(i, 0.0)) for i, w in zip(s.inputs, s.weights)], s.mode) \
            if s.inputs else 1.0
        bound[s.key] = up(factors[s.key] * inner)
        if bound[s.key] == math.inf:
            raise ValueError(f"the Lipschitz bound at node {s.name or s.key!r} exceeds float64's range "
                             f"(factor {factors[s.key]:.3g} on a bound of {inner:.3g})")
        for target, exact in s.updates:
            bound[target] = bound[s.key] if exact else _combine([bound.get(target, 0.0), bound[s.key]], "root")
    names, weights = output
    return bound, _combine([up(w * bound.get(n, 0.0)) for n, w in zip(names, weights)], "root")


# ---------------------------------------------------------------------------------------
# Planning: every node gets a rule before any operator norm is computed
# ---------------------------------------------------------------------------------------

@dataclass
class _Planned:
    node: fx.Node
    name: str
    plan: Plan | None  # None: the model input


def _display_names(gm: fx.GraphModule) -> dict[fx.Node, str]:
    seen: dict[str, int] = {}
    names = {}
    for node in gm.graph.nodes:
        if node.op == "call_module":
            k = seen.get(node.target, 0) + 1
            seen[node.target] = k
            names[node] = node.target if k == 1 else f"{node.target} (call {k})"
        elif node.op == "placeholder" and "input" not in names.values():
            names[node] = "input"
        else:
            names[node] = node.name
    return names


def _tensor_leaves(value) -> bool:
    if isinstance(value, torch.Tensor):
        return True
    if isinstance(value, (tuple, list)) and value:
        return all(_tensor_leaves(v) for v in value)
    return False


def _real_floating(value) -> bool:
    """Every tensor in ``value`` holds real floating-point numbers (integer, bool and complex
    values computed from the input come from discontinuous or unmodelled ops)."""
    if isinstance(value, torch.Tensor):
        return value.is_floating_point()
    return all(_real_floating(v) for v in value)


def _flat_tensors(value) -> list[torch.Tensor]:
    return [value] if isinstance(value, torch.Tensor) else [t for v in value for t in _flat_tensors(v)]


def _setitem(site: Site) -> Plan:
    """``x[idx] = v``: disjoint parts, ``√(L_x² + (√m·L_v)²)`` (``m``: copies of ``v`` by broadcasting)."""
    from .plans import broadcast_scale
    x, idx, v = site.node.args[:3]
    if site.is_dependent(idx):
        raise site.unsupported("an index that depends on the input")
    inputs, weights = [], []
    if isinstance(x, fx.Node) and site.dependent(x):
        inputs.append(x)
        weights.append(1.0)
    if isinstance(v, fx.Node) and site.dependent(v):
        region = site.capture.values[x][site.value(idx)]
        inputs.append(v)
        weights.append(broadcast_scale(1.0, site.shape(v), tuple(region.shape)))
    return Plan("setitem", 1.0, "root", tuple(weights), inputs=tuple(inputs))


def _plan(cap: Capture) -> tuple[list[_Planned], dict[fx.Node, list[tuple[fx.Node, bool]]], list[fx.Node]]:
    """Rules for every input-dependent node, in order; raises before any expensive work."""
    dep: dict[fx.Node, bool] = {}
    names = _display_names(cap.graph_module)
    planned: list[_Planned] = []
    updates: dict[fx.Node, list[tuple[fx.Node, bool]]] = {}
    first_input = True
    outputs: list[fx.Node] = []
    for node in cap.nodes:
        if node.op == "placeholder":
            dep[node] = first_input
            if first_input:
                planned.append(_Planned(node, "input", None))
            first_input = False
        elif node.op == "get_attr":
            dep[node] = False
        elif node.op == "output":
            fx.node.map_arg(node.args, lambda n: outputs.append(n) if dep.get(n) else None)
        else:
            depends = any(dep.get(a, False) for a in node.all_input_nodes) and \
                not is_metadata(node, lambda n: dep.get(n, False))
            if depends:
                is_setitem = node.op == "call_function" and node.target is operator.setitem
                value = cap.values[node]
                if not is_setitem and not _tensor_leaves(value):
                    raise UnsupportedOperationError(
                        f"{describe(node)} turns the input into a {type(value).__name__}; "
                        "a Python value computed from the input cannot be followed")
                if not is_setitem and not _real_floating(value):
                    dtypes = sorted({str(t.dtype) for t in _flat_tensors(value)})
                    raise UnsupportedOperationError(
                        f"{describe(node)} turns the input into {', '.join(dtypes)} values: "
                        "rounding, casts to integers or bool and comparisons are discontinuous")
                site = Site(node, cap, lambda n: dep.get(n, False))
                planned.append(_Planned(node, names[node], _setitem(site) if is_setitem else plan_node(site)))
            dep[node] = depends
        changed = cap.mutations.get(node, [])
        if changed:
            target = inplace_target(node, cap.modules)
            updates[node] = [(c, c is target) for c in changed]
            for c in changed:
                dep[c] = dep.get(c, False) or dep[node]
    for o in outputs:
        if not _tensor_leaves(cap.values[o]):
            raise UnsupportedOperationError(f"the model returns a {type(cap.values[o]).__name__} "
                                            "computed from the input")
    return planned, updates, outputs


# ---------------------------------------------------------------------------------------
# Weight layers
# ---------------------------------------------------------------------------------------

def _two(v) -> tuple[int, int]:
    v = (v,) if isinstance(v, int) else tuple(v)
    return (1, v[0]) if len(v) == 1 else v


def weight_references(op: WeightOp, name: str, norm_kwargs: dict) -> tuple[OperatorNorm, float, AlphaBound | None, float]:
    """Certified ``‖W̃‖`` at the real input size, ``‖Ŵ‖``, the α bound of one weight map and
    ``α·‖R‖`` with ``R`` the reshape the α lemma bounds ``‖W̃‖`` by (docs/theory.md#alpha)."""
    w = as_float64(op.weight, f"{name}.weight")
    if op.kind == "linear":  # Ŵ = W: the reshaped norm is the operator norm (no second SVD)
        norm = linear_operator_norm(w)
        return norm, norm.value, None, norm.value
    norm = conv_operator_norm(w, op.spatial, stride=op.stride, padding=op.padding,
                              padding_mode=op.padding_mode, dilation=op.dilation, kind=op.kind,
                              groups=op.groups, output_padding=op.output_padding, **norm_kwargs)
    k = tuple(w.shape[2:])
    stride, dilation = _two(op.stride), _two(op.dilation)
    hat = reshaped_norm(w, op.kind)
    if op.kind == "conv_transpose2d":  # W̃ is the adjoint of the conv whose rows are weight dim 0
        alpha = AlphaBound(alpha_bound(_two(k), stride, dilation).alpha, False,
                           "ConvTranspose2d: the lemma bounds W̃ by the dim-0 reshape (the conv it "
                           "is the adjoint of), not by SNw's dim-1 Ŵ")
        lemma_norm = reshaped_norm(w, "conv2d")  # w.reshape(w.shape[0], -1)
    else:
        alpha = alpha_bound(_two(k), stride, dilation, _two(op.padding), _two(op.spatial),
                            op.padding_mode, op.groups)
        lemma_norm = hat
    return norm, hat, alpha, up(alpha.alpha * lemma_norm, 4)


class eval_mode:
    """Switch every module to eval for the computation; restore each module's flag afterwards."""

    def __init__(self, model: nn.Module) -> None:
        self.model = model
        self.flags = {m: m.training for m in model.modules()}

    def __enter__(self):
        self.model.eval()

    def __exit__(self, *exc):
        for m, flag in self.flags.items():
            m.training = flag


def _mode_dependent(module: nn.Module) -> bool:
    """Modules whose forward differs between training and eval mode."""
    kinds = (nn.modules.batchnorm._NormBase, nn.modules.dropout._DropoutNd, nn.RReLU)
    return (isinstance(module, kinds) or hasattr(module, "parametrizations")
            or any(hasattr(module, f"{n}_u") for n in ("weight",)))


def _record(pl: _Planned, cap: Capture, plan: Plan, factor: float, bound: float, names: dict,
            refs=None, seconds: float = 0.0) -> NodeRecord:
    shape_of = lambda n: tuple(cap.values[n].shape[1:]) if isinstance(cap.values[n], torch.Tensor) else ()  # noqa: E731
    out = cap.values[pl.node]
    out_shape = tuple(out.shape[1:]) if isinstance(out, torch.Tensor) else ()
    inputs = plan.inputs if plan else ()
    in_shape = shape_of(inputs[0]) if inputs else out_shape
    kw = {}
    if refs is not None:
        norm, rn, alpha, guarantee = refs
        kw = dict(reshaped_norm=rn, operator_norm=norm, alpha=alpha, alpha_guarantee=guarantee,
                  ratio=norm.value / rn if rn > 0 else math.nan)
    elif plan is not None and plan.bracket is not None:
        lo, hi = plan.bracket
        kw = dict(operator_norm=OperatorNorm(lo, lo, hi, "exact", detail=plan.note))
    return NodeRecord(pl.name, _op_label(pl.node, cap), plan.kind if plan else "input", in_shape, out_shape,
                      factor, bound, tuple(names[i] for i in inputs), plan.mode if plan else "sum",
                      tuple(plan.weights) if plan else (), note=plan.note if plan else "",
                      seconds=seconds, **kw)


def _op_label(node: fx.Node, cap: Capture) -> str:
    if node.op == "call_module":
        return type(cap.modules[str(node.target)]).__name__
    if node.op == "placeholder":
        return "input"
    t = node.target
    return f".{t}()" if isinstance(t, str) else getattr(t, "__name__", str(t))


def lipschitz_upper_bound(model: nn.Module, input_shape: Sequence[int], tol: float = 1e-6, *,
                          method: str = "auto", max_rel_width: float = 0.01, seed: int = 0,
                          progress: Progress | None = None, norm_cache: dict | None = None) -> NetworkBound:
    """Certified ``Lip₂`` upper bound of ``model`` (eval mode) on inputs of ``input_shape``.

    ``input_shape`` excludes the batch dim (``(3, 32, 32)``, ``(C, H, W)``, ``(features,)``).
    ``tol``, ``method`` and ``max_rel_width`` are passed to
    :func:`.conv_norm.conv_operator_norm` for every convolution. ``progress(done, total,
    record)`` is called once with ``(0, total, None)`` when the graph is validated, then after
    each weight layer's operator norm. Raises
    :class:`~.graph.InputShapeError` for a shape the model rejects (naming the first node
    that does), :class:`~.graph.UnfollowableModelError` /
    :class:`~.graph.UnsupportedOperationError` for a model that cannot be bounded (before
    any operator norm), ``ValueError`` for bad arguments. ``norm_cache``: a dict shared by calls
    on the same weights (e.g. one per class of a conditional model, :mod:`.inputs`), so each
    weight layer's operator norm is computed once; an entry is reused only for an equal weight.
    """
    norm_kwargs = dict(tol=tol, method=method, max_rel_width=max_rel_width, seed=seed)
    train_mode = tuple(name for name, m in model.named_modules() if m.training and _mode_dependent(m))
    with eval_mode(model):
        cap = capture(model, input_shape, seed=seed, defer_check=True)
        planned, updates, outputs = _plan(cap)
        if cap.mismatch:
            raise UnfollowableModelError(cap.mismatch)
        records = _evaluate(cap, planned, norm_kwargs, progress, {} if norm_cache is None else norm_cache)
    keys = {node: node.name for node in cap.nodes}
    steps = tuple(_Step(keys[pl.node], tuple(keys[i] for i in (pl.plan.inputs if pl.plan else ())),
                        tuple(pl.plan.weights) if pl.plan else (), pl.plan.mode if pl.plan else "sum",
                        tuple((keys[c], exact) for c, exact in updates.get(pl.node, [])), pl.name)
                  for pl in planned)
    out_weights = tuple(1.0 for _ in outputs)
    factors = {keys[pl.node]: rec.factor for pl, rec in zip(planned, records)}
    bounds, upper = _propagate(steps, (tuple(keys[o] for o in outputs), out_weights), factors)
    final = tuple(replace(rec, bound=bounds[keys[pl.node]]) for pl, rec in zip(planned, records))
    return NetworkBound(upper, final, cap.input_shape, "eval", train_mode, steps,
                        (tuple(keys[o] for o in outputs), out_weights), tuple(keys[pl.node] for pl in planned))


def _evaluate(cap: Capture, planned: list[_Planned], norm_kwargs: dict,
              progress: Progress | None, cache: dict) -> list[NodeRecord]:
    names = _display_names(cap.graph_module)
    total = sum(1 for pl in planned if pl.plan is not None and pl.plan.weight_op is not None)
    done, records = 0, []
    if progress is not None:
        progress(0, total, None)
    for pl in planned:
        plan = pl.plan
        if plan is None:
            records.append(_record(pl, cap, None, 1.0, 1.0, names))
            continue
        if plan.weight_op is None:
            records.append(_record(pl, cap, plan, plan.factor, 0.0, names))
            continue
        op = plan.weight_op
        key = (tuple(op.weight.shape), op.weight.dtype, op.kind, op.spatial, str(op.stride), str(op.padding),
               str(op.dilation), op.groups, op.padding_mode, str(op.output_padding),
               tuple(sorted(norm_kwargs.items())))
        start = time.perf_counter()
        entries = cache.setdefault(key, [])  # (weight, references): reused for an equal weight only
        refs = next((r for w, r in entries if torch.equal(w, op.weight)), None)
        if refs is None:
            try:
                refs = weight_references(op, pl.name, norm_kwargs)
            except ValueError as exc:
                raise ValueError(f"{describe(pl.node)}: {exc}") from None
            entries.append((op.weight, refs))
        rec = _record(pl, cap, plan, refs[0].upper, 0.0, names, refs, time.perf_counter() - start)
        records.append(rec)
        done += 1
        if progress is not None:
            progress(done, total, rec)
    return records
