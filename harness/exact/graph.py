"""Capture a model's real computation graph for the network Lipschitz bound.

Why ``torch.fx`` (``symbolic_trace`` with a custom :class:`LipschitzTracer`) and not
``torch.export``: fx keeps the module structure the bound is about. A weight layer stays
one ``call_module`` node named by its module path, whose *effective* weight is read
concretely as ``layer.weight`` (``torch.nn.utils.parametrize`` parametrizations and the
old ``spectral_norm`` pre-hook included) and whose operator norm is computed at the input
size the recorded forward gives it. ``torch.export`` lowers everything to ATen ops,
traces through parametrizations and hooks, turns parameters into graph inputs and
decomposes modules, so the rules would have to recognise convolutions, poolings and
normalisations from their decompositions; it is also much slower to run. What fx cannot
see is covered by checks on a real forward pass instead:

* shape propagation runs the graph on a seeded random input of the given shape, so every
  rule sees real sizes and values; the first node that rejects the input is named
  (:class:`InputShapeError`);
* the traced graph must reproduce the model's own output on that input, else the model
  is refused (data-dependent control flow, in-place aliasing that fx's trace of
  ``out += x`` as ``out + x`` would change, Python side effects);
* in-place ops are followed by the tensors' version counters: when a node mutates a
  tensor another node produced, later readers of that tensor see the mutated value's
  bound (:attr:`Capture.mutations`), and a mutation by an op that is not a known in-place
  op on its first argument is refused.

Leaves (never traced into): the allow-listed ``torch.nn`` classes (:mod:`.allowlist`) and
subclasses that do not override how they compute (``forward``, ``_conv_forward``,
``__call__``, ...; a subclass that does is traced into), modules with a declared Lipschitz
constant (:func:`.declared.register_lipschitz_constant` or a ``lipschitz_constant``
attribute), and every other ``torch.nn`` module except containers (so that an unsupported
one is refused by name).

Hooks: a module's forward pre-hooks and hooks change what it computes, so they are never
ignored. On a module that is traced into, fx traces them with its ``__call__``. On a leaf,
:class:`LipschitzTracer` traces them around the module's node, and the graph calls the
module's ``forward`` alone (:class:`_ForwardOnly`), so each hook becomes ordinary graph
nodes with rules of their own. Only the weight-computing pre-hooks of the old
``torch.nn.utils.spectral_norm`` and ``weight_norm`` are kept as they are: they set
``module.weight`` from parameters and never touch the input. Global module hooks
(``register_module_forward_hook``) are refused.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Sequence

import torch
import torch.fx as fx
from torch import nn

DTYPE_TOL = {torch.float64: 1e-10, torch.float32: 1e-4, torch.float16: 2e-2, torch.bfloat16: 5e-2}


class UnfollowableModelError(ValueError):
    """The model's computation cannot be bounded; the message names the node, op and module."""


class UnsupportedOperationError(UnfollowableModelError):
    """An input-dependent op without a Lipschitz rule (raised before any operator norm)."""


class InputShapeError(ValueError):
    """The input shape does not fit the model; names the shape and the first node rejecting it."""


def _weight_hook(hook: Any) -> bool:
    """The pre-hooks of ``torch.nn.utils.spectral_norm`` / ``weight_norm``: they set ``weight``."""
    from torch.nn.utils.spectral_norm import SpectralNorm
    from torch.nn.utils.weight_norm import WeightNorm
    return isinstance(hook, (SpectralNorm, WeightNorm))


def traced_hooks(module: nn.Module) -> tuple[list, list]:
    """``(pre_hooks, hooks)`` of ``module`` that change its computation, as ``(hook, with_kwargs)``."""
    pre = [(h, k in module._forward_pre_hooks_with_kwargs) for k, h in module._forward_pre_hooks.items()
           if not _weight_hook(h)]
    post = [(h, k in module._forward_hooks_with_kwargs) for k, h in module._forward_hooks.items()]
    return pre, post


def check_no_global_hooks() -> None:
    from torch.nn.modules import module as M
    if M._global_forward_hooks or M._global_forward_pre_hooks:
        raise UnfollowableModelError("global module forward hooks are registered "
                                     "(torch.nn.modules.module.register_module_forward_hook); "
                                     "the bound cannot follow them")


class LipschitzTracer(fx.Tracer):
    """fx tracer whose leaves are the modules the rules bound as a whole, with their hooks
    traced around them (module docstring). ``hooked`` maps their paths to the modules."""

    def __init__(self) -> None:
        super().__init__()
        self.hooked: dict[str, nn.Module] = {}

    def is_leaf_module(self, m: nn.Module, module_qualified_name: str) -> bool:
        from .allowlist import listed_class
        from .layer_rules import is_leaf
        return is_leaf(m, listed_class)

    def call_module(self, m: nn.Module, forward, args, kwargs):
        pre, post = traced_hooks(m)
        path = self.path_of_module(m)
        if not (pre or post) or not self.is_leaf_module(m, path):
            return super().call_module(m, forward, args, kwargs)
        self.hooked[path] = m
        for hook, with_kwargs in pre:  # as Module._call_impl does
            result = hook(m, args, kwargs) if with_kwargs else hook(m, args)
            if result is not None:
                if with_kwargs:
                    args, kwargs = result
                else:
                    args = result if isinstance(result, tuple) else (result,)
        out = super().call_module(m, forward, args, kwargs)
        for hook, with_kwargs in post:
            result = hook(m, args, kwargs, out) if with_kwargs else hook(m, args, out)
            if result is not None:
                out = result
        return out


class _ForwardOnly(nn.Module):
    """Runs a hooked leaf's ``forward`` without its (traced) hooks; weight pre-hooks still run."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner

    def forward(self, *args, **kwargs):
        for hook in self.inner._forward_pre_hooks.values():
            if _weight_hook(hook):
                hook(self.inner, args)
        return self.inner.forward(*args, **kwargs)


@dataclass
class Capture:
    """A traced model and what one forward pass at the given shape recorded.

    ``values`` maps each node to its output on the probe input (kept alive, so a rule can
    read constants and shapes); ``mutations[node]`` lists the earlier nodes whose tensors
    ``node`` changed in place.
    """

    model: nn.Module
    graph_module: fx.GraphModule
    input_shape: tuple[int, ...]
    probe: torch.Tensor
    values: dict[fx.Node, Any]
    mutations: dict[fx.Node, list[fx.Node]] = field(default_factory=dict)
    modules: dict[str, nn.Module] = field(default_factory=dict)
    mismatch: str | None = None  # the graph does not reproduce the model (capture(defer_check=True))

    @property
    def nodes(self) -> list[fx.Node]:
        return list(self.graph_module.graph.nodes)


def describe(node: fx.Node) -> str:
    """A readable name for a node: module path and type, or the op, its target and the
    module whose forward calls it."""
    if node.op == "call_module":
        return f"module {node.target!r}"
    stack = node.meta.get("nn_module_stack") or {}
    where = ""
    if stack:
        path, cls = list(stack.values())[-1]
        where = f" in module {path!r} ({getattr(cls, '__name__', cls)})"
    if node.op == "call_method":
        return f"node {node.name!r} (method .{node.target}()){where}"
    if node.op == "call_function":
        return f"node {node.name!r} (function {target_name(node.target)}){where}"
    return f"node {node.name!r} ({node.op})"


def target_name(target: Any) -> str:
    if isinstance(target, str):
        return target
    module = getattr(target, "__module__", None) or ""
    name = getattr(target, "__name__", repr(target))
    return f"{module}.{name}" if module and module != "builtins" else name


class _Whole(nn.Module):
    """Wraps a model that is itself a leaf (e.g. a bare ``Conv2d``) so it appears as one node."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x):
        return self.model(x)


def trace(model: nn.Module) -> tuple[fx.GraphModule, dict[str, nn.Module]]:
    """``fx.GraphModule`` of ``model`` with :class:`LipschitzTracer` (call in eval mode), and the
    hooked leaves by path (the graph calls them through :class:`_ForwardOnly`)."""
    from .allowlist import listed_class
    from .layer_rules import is_leaf
    check_no_global_hooks()
    tracer = LipschitzTracer()
    hooked_root = any(traced_hooks(model))
    root = _Whole(model) if is_leaf(model, listed_class) or hooked_root else model
    try:
        graph = tracer.trace(root)
    except Exception as exc:  # fx raises TraceError, TypeError, ... with its own message
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        where = f" (in module {tracer.scope.module_path!r})" if getattr(tracer, "scope", None) and \
            tracer.scope.module_path else ""
        raise UnfollowableModelError(
            f"torch.fx cannot trace {type(model).__name__}{where}: {type(exc).__name__}: {first} "
            "(data-dependent Python control flow cannot be followed)") from None
    _inline_default_tensors(graph)
    gm = fx.GraphModule(tracer.root, graph, type(model).__name__)
    for path, module in tracer.hooked.items():
        parent, _, name = path.rpartition(".")
        setattr(gm.get_submodule(parent) if parent else gm, name, _ForwardOnly(module))
    return gm, dict(tracer.hooked)


def _inline_default_tensors(graph: fx.Graph) -> None:
    """A further forward argument with a tensor default is a constant: read it directly (fx would
    emit code that cannot name the tensor)."""
    placeholders = [n for n in graph.nodes if n.op == "placeholder"]
    for node in placeholders[1:]:
        if node.args and isinstance(node.args[0], fx.Node):
            node.replace_all_uses_with(node.args[0])
            graph.erase_node(node)


def _tensors(value: Any) -> list[torch.Tensor]:
    if isinstance(value, torch.Tensor):
        return [value]
    if isinstance(value, (list, tuple)):
        return [t for v in value for t in _tensors(v)]
    if isinstance(value, dict):
        return [t for v in value.values() for t in _tensors(v)]
    return []


def inplace_target(node: fx.Node, modules: dict[str, nn.Module]) -> fx.Node | None:
    """The argument a known in-place op writes to (its first argument), else ``None``."""
    import operator

    first = node.args[0] if node.args and isinstance(node.args[0], fx.Node) else None
    if node.op == "call_method":
        name = str(node.target)
        inplace = name.endswith("_") and not name.startswith("_")
    elif node.op == "call_function":
        inplace = (node.target in (operator.iadd, operator.isub, operator.imul, operator.itruediv,
                                   operator.setitem) or bool(node.kwargs.get("inplace", False))
                   or getattr(node.target, "__name__", "").endswith("_"))
    elif node.op == "call_module":
        inplace = bool(getattr(modules.get(str(node.target)), "inplace", False))
    else:
        inplace = False
    return first if inplace else None


class _Recorder(fx.Interpreter):
    """Runs the graph on the probe input, keeping values and recording in-place mutations."""

    def __init__(self, gm: fx.GraphModule, shape: tuple[int, ...], hooked: dict[str, nn.Module]) -> None:
        super().__init__(gm, garbage_collect_values=False)
        self.extra_traceback = False  # our errors already name the node
        self.shape = shape
        self.modules = {**dict(gm.named_modules()), **hooked}  # rules see the modules themselves
        self.mutations: dict[fx.Node, list[fx.Node]] = {}
        self.produced: list[tuple[fx.Node, torch.Tensor]] = []
        self.seen_input = False

    def run_node(self, n: fx.Node) -> Any:
        before = [t._version for _, t in self.produced]
        try:
            out = super().run_node(n)
        except (RuntimeError, ValueError, IndexError, TypeError) as exc:
            shapes = [tuple(self.env[a].shape) for a in n.all_input_nodes
                      if isinstance(self.env.get(a), torch.Tensor)]
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise InputShapeError(
                f"input shape {self.shape} does not fit the model: {describe(n)} rejects its "
                f"input{'s' if len(shapes) > 1 else ''} of shape "
                f"{', '.join(map(str, shapes)) or '(none)'}: {first}") from None
        if any(t.is_floating_point() and not bool(torch.isfinite(t).all()) for t in _tensors(out)):
            raise UnfollowableModelError(
                f"{describe(n)} computes non-finite values on a random input of shape {self.shape} "
                "(overflow or NaN): the model's values exceed float64's range or are undefined")
        from .allowlist import runtime_check
        args, kwargs = self.fetch_args_kwargs_from_env(n)
        runtime_check(n, self.modules, args, kwargs, out)
        changed = [node for (node, t), v in zip(self.produced, before) if t._version != v]
        if changed:
            self.mutations[n] = changed
            target = inplace_target(n, self.modules)
            if target is None:
                raise UnfollowableModelError(
                    f"{describe(n)} changes the tensors of "
                    f"{', '.join(repr(c.name) for c in changed)} in place, and it is not a known "
                    "in-place op on its first argument; the bound cannot follow it")
        self.produced += [(n, t) for t in _tensors(out)]
        return out

    def placeholder(self, target, args, kwargs):
        if not self.seen_input:
            self.seen_input = True
            return super().placeholder(target, args, kwargs)
        if args:  # a further forward argument with a default value: a constant
            return args[0]
        raise UnfollowableModelError(f"the model's forward takes a second input {target!r} without a default: "
                                     "hold it constant (harness.exact.with_constants; lipbench inspect --classes)")


def _probe(model: nn.Module, shape: tuple[int, ...], seed: int) -> torch.Tensor:
    """A seeded random input in the model's dtype (its first floating parameter or buffer's;
    float64, where rounding hides the least, for a model without any)."""
    param = next(model.parameters(), None)
    buffer = next(model.buffers(), None)
    ref = param if param is not None else buffer
    dtype = ref.dtype if ref is not None and ref.is_floating_point() else torch.float64
    device = ref.device if ref is not None else torch.device("cpu")
    gen = torch.Generator().manual_seed(seed)
    return torch.randn((1, *shape), generator=gen, dtype=torch.float64).to(device=device, dtype=dtype)


def _max_abs(values: Sequence[torch.Tensor]) -> float:
    return max((float(v.detach().abs().max()) for v in values if v.numel()), default=0.0)


def _check_reproduces(model: nn.Module, gm_out: Any, x: torch.Tensor) -> None:
    try:
        ref = model(x)
    except Exception as exc:  # the graph ran, the model did not: report it plainly
        raise InputShapeError(f"the model rejects an input of shape {tuple(x.shape[1:])}: "
                              f"{type(exc).__name__}: {str(exc).strip().splitlines()[0]}") from None
    a, b = _tensors(gm_out), _tensors(ref)
    if len(a) != len(b) or any(t.shape != r.shape for t, r in zip(a, b)):
        raise UnfollowableModelError("the traced graph's outputs do not have the model's output "
                                     "shapes; the model cannot be followed")
    tol = DTYPE_TOL.get(x.dtype, 1e-4) * max(_max_abs(b), 1e-30)
    diff = max((float((t.double() - r.double()).abs().max()) for t, r in zip(a, b) if t.numel()),
               default=0.0)
    if not diff <= tol:
        raise UnfollowableModelError(
            f"the traced graph does not reproduce the model's output on a random input (largest "
            f"difference {diff:.3g}); the forward probably relies on in-place aliasing (e.g. "
            "`out += x` where `out` is read elsewhere) or Python state torch.fx does not record")


def capture(model: nn.Module, input_shape: Sequence[int], seed: int = 0, defer_check: bool = False) -> Capture:
    """Trace ``model`` (already in eval mode) and run it once on a random input of ``input_shape``.

    ``defer_check``: a graph that does not reproduce the model's output is recorded in
    :attr:`Capture.mismatch` instead of raising, so that a rule refusing the op responsible
    (e.g. dropout with ``training=True``) can name it first.
    """
    shape = tuple(int(s) for s in input_shape)
    if not shape or any(s <= 0 for s in shape):
        raise InputShapeError(f"input shape must be positive integers, got {shape}")
    gm, hooked = trace(model)
    x = _probe(model, shape, seed)
    recorder = _Recorder(gm, shape, hooked)
    mismatch = None
    with torch.no_grad():
        out = recorder.run(x)
        try:
            _check_reproduces(model, out, x)
        except UnfollowableModelError as exc:
            if not defer_check:
                raise
            mismatch = str(exc)
    return Capture(model, gm, shape, x, recorder.env, recorder.mutations, recorder.modules, mismatch)


def numel(shape: Sequence[int]) -> int:
    return math.prod(int(s) for s in shape)
