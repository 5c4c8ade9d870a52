"""An independent soundness fuzzer for :func:`harness.exact.lipschitz_upper_bound`.

For every entry of the allow-list (:mod:`harness.exact.allowlist`) :data:`MAKERS` holds a maker
that builds a small module calling that op with random arguments (positional or keyword,
aliases, in-place forms) on a ``(1, C, H, W)`` float64 input. :func:`random_graph` chains a
few of them, with residual additions, concatenations, forward hooks and pre-hooks, random
module parameters and weights scaled by ``2^e``, ``e`` in ``[-500, 500]``. The truth is
computed here, without the code under test: the exact Jacobian norm (dense SVD of
``torch.func.jacrev``) for linear graphs, the best of power iteration and gradient ascent on
``‖J(x)v‖`` for the others (:func:`truth`). Run as a script for the figures docs/exact.md
quotes::

    python tests/exact_fuzz.py 300 0     # graphs, seed
"""
from __future__ import annotations

import math
import operator
import random
import sys
import time
from dataclasses import dataclass
from typing import Any, Callable

import torch
import torch.nn.functional as F
from torch import nn

DTYPE = torch.float64
#: Rounding allowed between the certified bound and the truth: float64 Jacobians and SVDs
#: (about 1e-15 relative) and torch's backward kernels, some of which use float32 constants
#: (hardsigmoid's 1/6: 3e-8 relative).
RTOL = 1e-7
#: A cast to a lower precision is the identity in the bound (exact arithmetic), but torch's
#: backward rounds the gradient through that dtype, so the autograd truth carries its rounding.
CAST_RTOL = {"Tensor.half": 2.0 ** -10, "Tensor.bfloat16": 2.0 ** -7, "Tensor.float": 2.0 ** -23}


def tolerance(ops) -> float:
    """Relative slack between the bound and the truth for a graph of these ops."""
    return max([RTOL] + [CAST_RTOL[o] for o in ops if o in CAST_RTOL])
#: Weight exponents: each weight layer is scaled by 2^e with the running sum kept in this range,
#: so the model's own float64 values stay far from over- and underflow.
SCALE_RANGE = 500


class Rand:
    """Random choices from hypothesis (``data.draw``) or from ``random.Random`` (the script)."""

    def __init__(self, source: Any) -> None:
        self.source = source

    def int(self, a: int, b: int) -> int:
        if isinstance(self.source, random.Random):
            return self.source.randint(a, b)
        from hypothesis import strategies as st
        return self.source.draw(st.integers(a, b))

    def pick(self, seq):
        return seq[self.int(0, len(seq) - 1)]

    def bool(self) -> bool:
        return bool(self.int(0, 1))

    def float(self, a: float, b: float) -> float:
        return a + (b - a) * self.int(0, 1000) / 1000

    def tensor(self, *shape) -> torch.Tensor:
        g = torch.Generator().manual_seed(self.int(0, 2 ** 31 - 1))
        return torch.randn(*shape, generator=g, dtype=DTYPE)


class Call(nn.Module):
    """``fn(x, *constants)``; the constants are buffers, so the graph reads them as constants."""

    def __init__(self, fn: Callable, *constants: torch.Tensor) -> None:
        super().__init__()
        self.fn = fn
        self.n = len(constants)
        for i, c in enumerate(constants):
            self.register_buffer(f"c{i}", c)

    def forward(self, x):
        return self.fn(x, *[getattr(self, f"c{i}") for i in range(self.n)])


class Chain(nn.Module):
    """Blocks in order. ``joins[i]``: how block ``i`` meets its input (``None``, ``"add"``,
    ``"cat"``); ``outs[i] = (parts, shape)``: a tuple output's length (else 0) and the 4-D shape
    it is reshaped to (``None``: already 4-D). Both are fixed when the graph is built, so the
    forward has no control flow on tensors."""

    def __init__(self, blocks: list[nn.Module], joins: list[str | None], outs: list[tuple]) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(blocks)
        self.joins = joins
        self.outs = outs

    def forward(self, x):
        for block, join, (parts, shape) in zip(self.blocks, self.joins, self.outs):
            y = block(x)
            if parts:
                y = torch.cat([y[i].reshape(1, -1) for i in range(parts)], 1)
            if join == "add":
                y = x + y
            elif join == "cat":
                y = torch.cat([x, y], 1)
            x = y if shape is None else y.reshape(shape)
        return x


def out_spec(y) -> tuple:
    """``(parts, shape)`` for :class:`Chain`: any output as ``(1, 1, a, b)`` unless already 4-D."""
    parts = len(y) if isinstance(y, (tuple, list)) else 0
    n = sum(t.numel() for t in y) if parts else y.numel()
    if not parts and y.dim() == 4 and y.shape[0] == 1:
        return 0, None
    a = max(d for d in range(1, int(math.isqrt(n)) + 1) if n % d == 0)
    return parts, (1, 1, a, n // a)


@dataclass
class Op:
    """A built op: the module, whether it is linear (affine), and how many weight layers it scaled."""

    module: nn.Module
    linear: bool
    exponent: int = 0  # log2 of the scale applied to its weights (their product)


def scaled(r: Rand, budget: list[int], t: torch.Tensor) -> tuple[torch.Tensor, int]:
    """``t·2^e`` with ``e`` random in ``[-500, 500]`` and the running sum kept within it."""
    lo, hi = -SCALE_RANGE - budget[0], SCALE_RANGE - budget[0]
    e = r.int(max(-SCALE_RANGE, lo), min(SCALE_RANGE, hi)) if r.int(0, 3) == 0 else 0
    budget[0] += e
    budget.append(e)  # each layer's exponent, after the running sum
    return t * 2.0 ** e, e


# ---------------------------------------------------------------------------------------
# Makers: (r, shape, budget) -> Op, shape = (1, C, H, W) of the input
# ---------------------------------------------------------------------------------------

def _kw(r: Rand, names_values: dict) -> dict:
    """Keyword arguments, each passed or left at its default at random."""
    return {k: v for k, v in names_values.items() if r.bool()}


def _act_params(r: Rand, kind: str, inplace: bool = False) -> dict:
    """In-domain parameters of an activation by name (the rule's domain, see activations.py);
    in-place forms get non-negative slopes (torch cannot differentiate them otherwise)."""
    low = 0.0 if inplace else -3.0
    if kind in ("leaky_relu",):
        return {"negative_slope": r.float(low, 3)}
    if kind in ("elu",):
        return {"alpha": r.float(low, 3)}
    if kind == "celu":
        return {"alpha": r.float(0.1, 3)}
    if kind == "softplus":
        return {"beta": r.float(0.5, 4), "threshold": r.float(45, 60)}
    if kind == "softshrink":
        return {"lambd": r.float(0, 2)}
    if kind == "hardtanh":  # min_val ≤ -1 < max_val: valid with either one left at its default
        return {"min_val": r.float(-3, -1), "max_val": r.float(-0.9, 3)}
    if kind == "rrelu":
        lo = r.float(0, 2)
        return {"lower": lo, "upper": lo + r.float(0, 2)}
    if kind == "gelu":
        return {"approximate": r.pick(["none", "tanh"])}
    return {}


ACT_FUNCTIONS = {  # label -> (function, kind, takes inplace)
    "F.relu": (F.relu, "relu", True), "F.relu6": (F.relu6, "relu6", True), "F.hardtanh": (F.hardtanh, "hardtanh", True),
    "F.celu": (F.celu, "celu", True), "F.softplus": (F.softplus, "softplus", False),
    "F.softshrink": (F.softshrink, "softshrink", False), "F.hardsigmoid": (F.hardsigmoid, "", True),
    "F.hardswish": (F.hardswish, "", True), "F.leaky_relu": (F.leaky_relu, "leaky_relu", True),
    "F.elu": (F.elu, "elu", True), "F.selu": (F.selu, "", True), "F.gelu": (F.gelu, "gelu", False),
    "F.silu": (F.silu, "", True), "F.rrelu": (F.rrelu, "rrelu", True), "F.tanh": (F.tanh, "", False),
    "F.softsign": (F.softsign, "", False), "F.tanhshrink": (F.tanhshrink, "", False),
    "F.log_sigmoid": (F.logsigmoid, "", False), "F.sigmoid": (F.sigmoid, "", False),
    "torch.relu": (torch.relu, "", False), "torch.tanh": (torch.tanh, "", False),
    "torch.sigmoid": (torch.sigmoid, "", False), "torch.abs": (torch.abs, "", False),
    "torch.absolute": (torch.absolute, "", False), "operator.abs": (operator.abs, "", False),
    "torch.celu": (torch.celu, "celu", False), "torch.selu": (torch.selu, "", False),
    "torch.rrelu": (torch.rrelu, "rrelu", False),
}
ACT_INPLACE_FUNCTIONS = {  # label -> (in-place function, kind): applied to a clone
    "torch.relu_": (torch.relu_, ""), "F.hardtanh_": (F.hardtanh_, "hardtanh"), "torch.celu_": (torch.celu_, "celu"),
    "F.leaky_relu_": (F.leaky_relu_, "leaky_relu"), "F.elu_": (F.elu_, "elu"), "torch.selu_": (torch.selu_, ""),
    "torch.rrelu_": (torch.rrelu_, "rrelu"),
}
ACT_METHODS = {"relu": "", "relu_": "", "tanh": "", "tanh_": "", "sigmoid": "", "sigmoid_": "", "abs": "",
               "abs_": "", "absolute": "", "absolute_": ""}
ACT_MODULES = {nn.ReLU: "", nn.ReLU6: "", nn.Hardtanh: "hardtanh", nn.Tanh: "", nn.Softsign: "", nn.Tanhshrink: "",
               nn.LogSigmoid: "", nn.CELU: "celu", nn.Softplus: "softplus", nn.Softshrink: "softshrink",
               nn.Sigmoid: "", nn.Hardsigmoid: "", nn.Hardswish: "", nn.LeakyReLU: "leaky_relu", nn.ELU: "elu",
               nn.SELU: "", nn.GELU: "gelu", nn.SiLU: "", nn.RReLU: "rrelu"}


def _activation_function(label: str) -> Callable:
    fn, kind, inplace = ACT_FUNCTIONS[label]

    def make(r: Rand, shape, budget) -> Op:
        if inplace and r.bool():
            params = _kw(r, _act_params(r, kind, True))
            return Op(Call(lambda x: fn(x.clone(), inplace=True, **params)), False)
        params = _kw(r, _act_params(r, kind))
        values = _act_params_in_order(kind, params)
        if params and values is not None and r.bool():  # positionally
            return Op(Call(lambda x: fn(x, *values)), False)
        return Op(Call(lambda x: fn(x, **params)), False)
    return make


def _act_params_in_order(kind: str, params: dict):
    order = {"hardtanh": ("min_val", "max_val"), "rrelu": ("lower", "upper"), "softplus": ("beta", "threshold"),
             "leaky_relu": ("negative_slope",), "elu": ("alpha",), "celu": ("alpha",), "softshrink": ("lambd",)}
    names = order.get(kind, ())
    if not names or any(n not in params for n in names[:len(params)]) or set(params) - set(names):
        return None
    return [params[n] for n in names if n in params]


def _activation_inplace(label: str) -> Callable:
    fn, kind = ACT_INPLACE_FUNCTIONS[label]

    def make(r: Rand, shape, budget) -> Op:
        params = _kw(r, _act_params(r, kind, True))
        return Op(Call(lambda x: fn(x.clone(), **params)), False)
    return make


def _activation_method(name: str) -> Callable:
    return lambda r, shape, budget: Op(Call(lambda x: getattr(x.clone() if name.endswith("_") else x, name)()), False)


def _activation_module(cls: type) -> Callable:
    kind = ACT_MODULES[cls]

    def make(r: Rand, shape, budget) -> Op:
        inplace = "inplace" in cls.__init__.__code__.co_varnames and r.bool()
        kw = _kw(r, _act_params(r, kind, inplace))
        if inplace:
            kw["inplace"] = True
            return Op(nn.Sequential(Call(lambda x: x.clone()), cls(**kw)), False)
        return Op(cls(**kw), False)
    return make


def _clamp(label: str) -> Callable:
    def make(r: Rand, shape, budget) -> Op:
        lo = r.float(-2, 0.5)
        hi = lo + r.float(0, 2)
        kw = r.pick([dict(min=lo), dict(max=hi), dict(min=lo, max=hi)])
        if label.startswith("Tensor."):
            name = label.split(".")[1]
            return Op(Call(lambda x: getattr(x.clone() if name.endswith("_") else x, name)(**kw)), False)
        fn = {"torch.clamp": torch.clamp, "torch.clip": torch.clip, "torch.clamp_": torch.clamp_,
              "torch.clip_": torch.clip_}[label]
        if r.bool():  # constant tensor bounds
            c, d = torch.full(shape[1:], lo, dtype=DTYPE), torch.full(shape[1:], hi, dtype=DTYPE)
            return Op(Call(lambda x, c, d: fn(x.clone(), min=c, max=d) if "max" in kw else fn(x.clone(), c), c, d), False)
        return Op(Call(lambda x: fn(x.clone() if label.endswith("_") else x, **kw)), False)
    return make


def _softmax(label: str) -> Callable:
    def make(r: Rand, shape, budget) -> Op:
        dim = r.int(1, 3)
        key = r.pick(["dim", "axis"]) if label != "F.softmax" else "dim"
        kw = {key: dim}
        if r.bool():
            kw["dtype"] = DTYPE
        if label == "F.softmax":
            return Op(Call(lambda x: F.softmax(x, **kw)), False)
        if label == "torch.softmax":
            return Op(Call(lambda x: torch.softmax(x, **kw)), False)
        if label == "Tensor.softmax":
            return Op(Call(lambda x: x.softmax(**kw)), False)
        return Op(nn.Softmax(dim) if label == "nn.Softmax" else nn.Softmax2d(), False)
    return make


def _prelu(label: str) -> Callable:
    def make(r: Rand, shape, budget) -> Op:
        w = r.tensor(shape[1] if r.bool() else 1) * 2
        if label == "nn.PReLU":
            m = nn.PReLU(w.numel(), init=0.25).to(DTYPE)
            with torch.no_grad():
                m.weight.copy_(w)
            return Op(m, False)
        if label == "Tensor.prelu":
            return Op(Call(lambda x, w: x.prelu(w), w), False)
        return Op(Call(lambda x, w: torch.prelu(x, w), w), False)
    return make


def _dropout(label: str) -> Callable:
    fns = {"F.dropout": F.dropout, "F.alpha_dropout": F.alpha_dropout, "F.feature_alpha_dropout": F.feature_alpha_dropout,
           "F.dropout1d": F.dropout1d, "F.dropout2d": F.dropout2d, "F.dropout3d": F.dropout3d}
    mods = {"nn.Dropout": nn.Dropout, "nn.Dropout1d": nn.Dropout1d, "nn.Dropout2d": nn.Dropout2d,
            "nn.Dropout3d": nn.Dropout3d, "nn.AlphaDropout": nn.AlphaDropout,
            "nn.FeatureAlphaDropout": nn.FeatureAlphaDropout}

    def make(r: Rand, shape, budget) -> Op:
        p = r.float(0, 0.9)
        if label in mods:
            m = mods[label](p)
            if label == "nn.Dropout1d":
                return Op(nn.Sequential(Call(lambda x: x.flatten(2)), m), True)
            return Op(m, True)
        fn = fns[label]
        if label == "F.dropout1d":
            return Op(Call(lambda x: fn(x.flatten(2), p, training=False)), True)
        positional = r.bool()
        return Op(Call(lambda x: fn(x, p, False) if positional else fn(x, p=p, training=False)), True)
    return make


# --- arithmetic -------------------------------------------------------------------------

def _branch(r: Rand) -> Callable:
    """A second, input-dependent operand of the same shape (linear)."""
    return r.pick([lambda x: x.flip(-1), lambda x: 0.5 * x, lambda x: x.roll(1, 2)])


def _add(label: str) -> Callable:
    def make(r: Rand, shape, budget) -> Op:
        g = _branch(r)
        c = r.tensor(*[s if r.bool() else 1 for s in shape[1:]])
        alpha = r.float(-3, 3)
        two = r.bool()
        if label in ("operator.add", "operator.sub"):
            op = operator.add if label == "operator.add" else operator.sub
            flip = r.bool()
            return Op(Call(lambda x, c: op(x, g(x)) if two else op(c, x) if flip else op(x, c), c), True)
        if label in ("operator.iadd", "operator.isub"):
            op = operator.iadd if label == "operator.iadd" else operator.isub
            return Op(Call(lambda x: op(x.clone(), g(x))), True)
        if label.startswith("Tensor."):
            name = label.split(".")[1]
            return Op(Call(lambda x: getattr(x.clone(), name)(g(x), alpha=alpha) if two else
                           getattr(x.clone(), name)(g(x))), True)
        fn = {"torch.add": torch.add, "torch.sub": torch.sub, "torch.subtract": torch.subtract}[label]
        return Op(Call(lambda x, c: fn(x, g(x), alpha=alpha) if two else fn(c, x, alpha=alpha), c), True)
    return make


def _scale(label: str) -> Callable:
    def make(r: Rand, shape, budget) -> Op:
        c = r.tensor(*[s if r.bool() else 1 for s in shape[1:]])
        if "div" in label:
            c = c.sign() * (c.abs() + 0.3)
        c, _ = scaled(r, budget, c)
        scalar = r.float(0.5, 3) * r.pick([-1, 1])
        use_scalar = r.bool()
        if label.startswith("operator."):
            op = getattr(operator, label.split(".")[1])
            if label in ("operator.imul", "operator.itruediv"):
                return Op(Call(lambda x, c: op(x.clone(), c), c), True)
            if label == "operator.mul" and r.bool():
                return Op(Call(lambda x, c: op(c, x), c), True)
            return Op(Call(lambda x, c: op(x, scalar if use_scalar else c), c), True)
        if label.startswith("Tensor."):
            name = label.split(".")[1]
            kw = {"rounding_mode": None} if name.startswith("div") and r.bool() else {}
            return Op(Call(lambda x, c: getattr(x.clone(), name)(c, **kw), c), True)
        fn = {"torch.mul": torch.mul, "torch.multiply": torch.multiply, "torch.div": torch.div,
              "torch.divide": torch.divide, "torch.true_divide": torch.true_divide}[label]
        kw = {"rounding_mode": None} if label in ("torch.div", "torch.divide") and r.bool() else {}
        return Op(Call(lambda x, c: fn(x, c, **kw), c), True)
    return make


def _neg(label: str) -> Callable:
    fn = {"operator.neg": operator.neg, "operator.pos": operator.pos, "torch.neg": torch.neg,
          "torch.negative": torch.negative, "torch.positive": torch.positive}.get(label)
    if fn is None:
        name = label.split(".")[1]
        return lambda r, shape, budget: Op(Call(lambda x: getattr(x.clone(), name)()), True)
    return lambda r, shape, budget: Op(Call(lambda x: fn(x)), True)


def _matmul(label: str) -> Callable:
    def make(r: Rand, shape, budget) -> Op:
        n = shape[-1]
        k = r.int(1, 4)
        w, e = scaled(r, budget, r.tensor(n, k))
        if label in ("torch.mm", "Tensor.mm"):
            w2 = torch.randn(shape[1] * shape[2] * n, k, dtype=DTYPE) * 2.0 ** e
            if label == "torch.mm":
                return Op(Call(lambda x, w2: torch.mm(x.flatten(1), w2), w2), True, e)
            return Op(Call(lambda x, w2: x.flatten(1).mm(w2), w2), True, e)
        left = r.bool()
        if left:  # W @ x on the second-to-last dim
            w = r.tensor(k, shape[2]) * 2.0 ** e
        if label == "Tensor.matmul":
            return Op(Call(lambda x, w: w.matmul(x) if left else x.matmul(w), w), True, e)
        fn = {"operator.matmul": operator.matmul, "torch.matmul": torch.matmul}[label]
        return Op(Call(lambda x, w: fn(w, x) if left else fn(x, w), w), True, e)
    return make


def _cat(label: str) -> Callable:
    fn = {"torch.cat": torch.cat, "torch.concat": torch.concat, "torch.concatenate": torch.concatenate,
          "torch.stack": torch.stack, "torch.hstack": torch.hstack, "torch.vstack": torch.vstack}[label]

    def make(r: Rand, shape, budget) -> Op:
        g = _branch(r)
        if label in ("torch.hstack", "torch.vstack"):
            return Op(Call(lambda x: fn([x, g(x)])), True)
        dim = r.int(0 if label == "torch.stack" else 1, 3)
        key = r.pick(["dim", "axis"])
        three = r.bool()
        return Op(Call(lambda x: fn((x, g(x), x), **{key: dim}) if three else fn([x, g(x)], dim)), True)
    return make


# --- reductions -------------------------------------------------------------------------

def _dims(r: Rand):
    return r.pick([1, 2, 3, -1, (1, 2), (2, 3), (1, 2, 3), None, []])


def _reduction(label: str) -> Callable:
    name = label.split(".")[-1]
    linear = name in ("sum", "mean")

    def make(r: Rand, shape, budget) -> Op:
        dims = _dims(r)
        if name in ("amax", "amin") and dims is None:
            dims = ()
        kw = {}
        if dims is not None and not (isinstance(dims, list) and not dims and name in ("amax", "amin")):
            kw[r.pick(["dim", "axis"])] = dims
        if r.bool():
            kw[r.pick(["keepdim", "keepdims"])] = r.bool()
        if name in ("sum", "mean") and r.bool():
            kw["dtype"] = DTYPE
        if label.startswith("torch."):
            fn = getattr(torch, name)
            return Op(Call(lambda x: fn(x, **kw)), linear)
        if "dim" in kw and r.bool():
            d = kw.pop("dim")  # positionally
            return Op(Call(lambda x: getattr(x, name)(d, **kw)), linear)
        return Op(Call(lambda x: getattr(x, name)(**kw)), linear)
    return make


def _norm(label: str) -> Callable:
    def make(r: Rand, shape, budget) -> Op:
        p = r.pick([2, 2.0, 1, 1.5, 3, float("inf"), -float("inf"), "fro", None])
        dims = r.pick([1, 2, (2, 3), None, -1])
        keep = r.bool()
        if label == "torch.linalg.vector_norm":
            p = 2 if p in ("fro", None) else p
            return Op(Call(lambda x: torch.linalg.vector_norm(x, p, dims, keep)), False)
        if p is None and label == "torch.norm":
            p = "fro"
        if p == "fro" and dims is not None and not isinstance(dims, tuple):
            dims = (dims,)
        if label == "torch.norm":
            return Op(Call(lambda x: torch.norm(x, p=p, dim=dims, keepdim=keep)), False)
        positional = r.bool()
        return Op(Call(lambda x: x.norm(p, dims, keep) if positional else x.norm(p=p, dim=dims, keepdim=keep)), False)
    return make


# --- data movement ----------------------------------------------------------------------

def _movement(fn: Callable) -> Callable:
    """``fn(r, shape) -> callable(x)``: a linear rearrangement."""
    return lambda r, shape, budget: Op(Call(fn(r, shape)), True)


def _perm(r: Rand) -> tuple[int, ...]:
    rest = [1, 2, 3]
    out = [rest.pop(r.int(0, len(rest) - 1)) for _ in range(3)]
    return (0, *out)


MOVEMENT = {
    "torch.flatten": lambda r, s: (lambda a: (lambda x, b=r.int(a, 3): torch.flatten(x, a, b)))(r.int(0, 2)),
    "Tensor.flatten": lambda r, s: (lambda x, a=r.int(1, 2): x.flatten(start_dim=a)),
    "torch.unflatten": lambda r, s: (lambda x: torch.unflatten(x.flatten(2), 2, (s[2], s[3]))),
    "Tensor.unflatten": lambda r, s: (lambda x: x.flatten(1).unflatten(1, (s[1], s[2] * s[3]))),
    "torch.reshape": lambda r, s: (lambda x: torch.reshape(x, (1, s[1] * s[2], s[3], 1))),
    "Tensor.reshape": lambda r, s: (lambda x, b=r.bool(): x.reshape(1, -1, s[3], 1) if b else x.reshape((1, s[1], -1))),
    "Tensor.view": lambda r, s: (lambda x: x.view(1, s[1], s[2] * s[3])),
    "Tensor.view_as": lambda r, s: (lambda x: x.flatten(2).view_as(x.flatten(1).unsqueeze(-1).expand(-1, -1, 1))),
    "Tensor.reshape_as": lambda r, s: (lambda x: x.flip(-1).reshape_as(x)),
    "torch.permute": lambda r, s: (lambda x, p=_perm(r): torch.permute(x, p)),
    "Tensor.permute": lambda r, s: (lambda x, p=_perm(r), b=r.bool(): x.permute(*p) if b else x.permute(p)),
    "torch.transpose": lambda r, s: (lambda x: torch.transpose(x, 2, 3)),
    "Tensor.transpose": lambda r, s: (lambda x: x.transpose(1, -1)),
    "torch.swapdims": lambda r, s: (lambda x: torch.swapdims(x, 1, 2)),
    "Tensor.swapdims": lambda r, s: (lambda x: x.swapdims(3, 1)),
    "torch.swapaxes": lambda r, s: (lambda x: torch.swapaxes(x, 1, 3)),
    "Tensor.swapaxes": lambda r, s: (lambda x: x.swapaxes(2, 1)),
    "torch.movedim": lambda r, s: (lambda x: torch.movedim(x, 1, 3)),
    "Tensor.movedim": lambda r, s: (lambda x: x.movedim((1, 2), (3, 1))),
    "torch.moveaxis": lambda r, s: (lambda x: torch.moveaxis(x, 3, 1)),
    "Tensor.moveaxis": lambda r, s: (lambda x: x.moveaxis(2, 3)),
    "torch.squeeze": lambda r, s: (lambda x: torch.squeeze(x.unsqueeze(2), 2)),
    "Tensor.squeeze": lambda r, s: (lambda x, b=r.bool(): x.unsqueeze(-1).squeeze(dim=-1) if b else x.squeeze()),
    "torch.unsqueeze": lambda r, s: (lambda x, d=r.int(0, 4): torch.unsqueeze(x, d)),
    "Tensor.unsqueeze": lambda r, s: (lambda x: x.unsqueeze(dim=1)),
    "torch.t": lambda r, s: (lambda x: torch.t(x.flatten(1))),
    "Tensor.t": lambda r, s: (lambda x: x.flatten(1).t()),
    "torch.fliplr": lambda r, s: (lambda x: torch.fliplr(x.flatten(2)[0])),
    "Tensor.fliplr": lambda r, s: (lambda x: x.flatten(2)[0].fliplr()),
    "torch.flipud": lambda r, s: (lambda x: torch.flipud(x)),
    "Tensor.flipud": lambda r, s: (lambda x: x.flatten(2)[0].flipud()),
    "torch.narrow": lambda r, s: (lambda x, a=r.int(0, s[3] - 1): torch.narrow(x, 3, a, s[3] - a)),
    "Tensor.narrow": lambda r, s: (lambda x, a=r.int(0, s[2] - 1): x.narrow(2, 0, a + 1)),
    "torch.select": lambda r, s: (lambda x, a=r.int(0, s[3] - 1): torch.select(x, 3, a)),
    "Tensor.select": lambda r, s: (lambda x, a=r.int(0, s[2] - 1): x.select(2, a)),
    "torch.flip": lambda r, s: (lambda x: torch.flip(x, (2, 3))),
    "Tensor.flip": lambda r, s: (lambda x, b=r.bool(): x.flip(1, 3) if b else x.flip([2])),
    "torch.roll": lambda r, s: (lambda x, k=r.int(-3, 3), b=r.bool(): torch.roll(x, k, 3) if b else torch.roll(x, k)),
    "Tensor.roll": lambda r, s: (lambda x: x.roll((1, -1), (2, 3))),
    "torch.tile": lambda r, s: (lambda x, k=r.int(1, 2): torch.tile(x, (1, 1, k, 1))),
    "Tensor.tile": lambda r, s: (lambda x: x.tile(1, 2, 1, 1)),
    "Tensor.repeat": lambda r, s: (lambda x, a=r.int(1, 2), b=r.int(1, 2): x.repeat(1, a, 1, b)),
    "Tensor.expand": lambda r, s: (lambda x, k=r.int(1, 3): x[:, :1].expand(1, k, s[2], s[3])),
    "Tensor.expand_as": lambda r, s: (lambda x: x[:, :, :1].expand_as(x)),
    "torch.broadcast_to": lambda r, s: (lambda x: torch.broadcast_to(x[:, :1], (1, 2, s[2], s[3]))),
    "Tensor.broadcast_to": lambda r, s: (lambda x: x[..., :1].broadcast_to(1, s[1], s[2], 2)),
    "torch.chunk": lambda r, s: (lambda x, k=r.int(1, 3), d=r.int(1, 3): torch.chunk(x, k, d)),
    "Tensor.chunk": lambda r, s: (lambda x: x.chunk(2, dim=-1)[0]),
    "torch.split": lambda r, s: (lambda x: torch.split(x, 1, 2)),
    "Tensor.split": lambda r, s: (lambda x: x.split(1, 3)[-1]),
    "torch.tensor_split": lambda r, s: (lambda x: torch.tensor_split(x, 2, 3)),
    "Tensor.tensor_split": lambda r, s: (lambda x: x.tensor_split((1,), dim=2)),
    "torch.unbind": lambda r, s: (lambda x: torch.stack(torch.unbind(x, 2) + torch.unbind(x, 2))),
    "Tensor.unbind": lambda r, s: (lambda x: x.unbind(3)[0]),
    "Tensor.unfold": lambda r, s: (lambda x, k=r.int(1, min(s[3], 3)), t=r.int(1, 2): x.unfold(3, k, t)),
    "torch.diagonal": lambda r, s: (lambda x: torch.diagonal(x, 0, 2, 3)),
    "Tensor.diagonal": lambda r, s: (lambda x, o=r.int(-1, 1) if min(s[2:]) > 1 else 0: x.diagonal(offset=o, dim1=-2,
                                                                                        dim2=-1)),
    "torch.repeat_interleave": lambda r, s: (lambda x, k=r.int(1, 3): torch.repeat_interleave(x, k, dim=2)),
    "Tensor.repeat_interleave": lambda r, s: (lambda x: x.repeat_interleave(2)),
    "operator.getitem": lambda r, s: (lambda x, b=r.bool(): x[:, :, ::2] if b else x[..., [0, 0, -1]]),
    "torch.pixel_shuffle": lambda r, s: (lambda x: torch.pixel_shuffle(x.repeat(1, 4, 1, 1), 2)),
    "torch.pixel_unshuffle": lambda r, s: (lambda x: torch.pixel_unshuffle(x.repeat(1, 1, 2, 2), 2)),
    "torch.channel_shuffle": lambda r, s: (lambda x: torch.channel_shuffle(x.repeat(1, 2, 1, 1), 2)),
    "F.unfold": lambda r, s: (lambda x, p=r.int(0, 1): F.unfold(x, (min(2, s[2]), min(2, s[3])), padding=p)),
}
MOVEMENT_MODULES = {
    "nn.Flatten": lambda r, s: nn.Flatten(r.int(1, 2)), "nn.Unflatten": lambda r, s: nn.Sequential(
        nn.Flatten(2), nn.Unflatten(2, (s[2], s[3]))),
    "nn.PixelShuffle": lambda r, s: nn.Sequential(Call(lambda x: x.repeat(1, 4, 1, 1)), nn.PixelShuffle(2)),
    "nn.PixelUnshuffle": lambda r, s: nn.Sequential(Call(lambda x: x.repeat(1, 1, 2, 2)), nn.PixelUnshuffle(2)),
    "nn.ChannelShuffle": lambda r, s: nn.Sequential(Call(lambda x: x.repeat(1, 3, 1, 1)), nn.ChannelShuffle(3)),
    "nn.ReflectionPad1d": lambda r, s: nn.Sequential(nn.Flatten(2), nn.ReflectionPad1d(r.int(0, 2))),
    "nn.ReflectionPad2d": lambda r, s: nn.ReflectionPad2d((r.int(0, s[3] - 1), 0, r.int(0, s[2] - 1), 0)),
    "nn.ReplicationPad1d": lambda r, s: nn.Sequential(nn.Flatten(2), nn.ReplicationPad1d(r.int(0, 3))),
    "nn.ReplicationPad2d": lambda r, s: nn.ReplicationPad2d(r.int(0, 2)),
    "nn.CircularPad1d": lambda r, s: nn.Sequential(nn.Flatten(2), nn.CircularPad1d(r.int(0, 2))),
    "nn.CircularPad2d": lambda r, s: nn.CircularPad2d((1, r.int(0, s[3]), 0, 1)),
    "nn.UpsamplingNearest2d": lambda r, s: nn.UpsamplingNearest2d(scale_factor=r.int(1, 2)),
    "nn.Upsample": lambda r, s: nn.Upsample(scale_factor=(r.int(1, 2), r.int(1, 3)), **_resize_kwargs(r)),
    "nn.ReflectionPad3d": lambda r, s: _as_3d(nn.ReflectionPad3d((r.int(0, s[3] - 1), 0, 0, r.int(0, s[2] - 1),
                                                                  r.int(0, s[1] - 1), 0))),
    "nn.ReplicationPad3d": lambda r, s: _as_3d(nn.ReplicationPad3d(r.int(0, 2))),
    "nn.CircularPad3d": lambda r, s: _as_3d(nn.CircularPad3d((0, 1, r.int(0, s[2]), 0, 1, r.int(0, s[1])))),
    "nn.ZeroPad1d": lambda r, s: nn.Sequential(nn.Flatten(2), nn.ZeroPad1d((r.int(0, 2), r.int(-1, 2)))),
    "nn.ZeroPad2d": lambda r, s: nn.ZeroPad2d(r.int(0, 2)),
    "nn.ConstantPad1d": lambda r, s: nn.Sequential(nn.Flatten(2), nn.ConstantPad1d(r.int(0, 2), r.float(-2, 2))),
    "nn.ConstantPad2d": lambda r, s: nn.ConstantPad2d((1, 0, r.int(0, 2), 1), r.float(-2, 2)),
    "nn.Identity": lambda r, s: nn.Identity(),
}


def _as_3d(pad: nn.Module) -> nn.Module:
    """A 3-D padding on (B, C, H, W): channels become the depth axis of one channel, and back."""
    return nn.Sequential(nn.Unflatten(1, (1, -1)), pad, nn.Flatten(1, 2))


def _pad(r: Rand, shape, budget) -> Op:
    mode = r.pick(["constant", "reflect", "replicate", "circular"])
    h, w = shape[2], shape[3]
    pads = (r.int(0, w - 1), r.int(0, w - 1), r.int(0, h - 1), r.int(0, h - 1))
    if mode == "constant":
        value = r.pick([None, r.float(-2, 2)])
        return Op(Call(lambda x: F.pad(x, pads, value=value) if value is not None else F.pad(x, pads)), True)
    return Op(Call(lambda x: F.pad(x, pads, mode)), True)


def _resize_kwargs(r: Rand) -> dict:
    """A random mode (nearest or separable linear/cubic) with its ``align_corners``."""
    mode = r.pick(["nearest", "nearest-exact", "bilinear", "bicubic"])
    return {"mode": mode} if mode.startswith("nearest") else {"mode": mode, "align_corners": r.pick([None, False, True])}


def _interpolate(r: Rand, shape, budget) -> Op:
    kwargs = _resize_kwargs(r)
    if r.bool():
        k = r.pick([1, 2, 1.5])
        recompute = r.pick([None, True])
        return Op(Call(lambda x: F.interpolate(x, scale_factor=k, recompute_scale_factor=recompute, **kwargs)), True)
    size = (r.int(1, 7), r.int(1, 7))
    return Op(Call(lambda x: F.interpolate(x, size=size, **kwargs)), True)


def _cast(label: str) -> Callable:
    name = label.split(".")[1]
    calls = {
        "torch.clone": lambda x: torch.clone(x), "torch.detach": lambda x: torch.detach(x),
        "contiguous": lambda x: x.transpose(2, 3).contiguous(), "float": lambda x: x.float().double(),
        "double": lambda x: x.double(), "half": lambda x: x.half().double(), "bfloat16": lambda x: x.bfloat16().double(),
        "cpu": lambda x: x.cpu(), "clone": lambda x: x.clone(memory_format=torch.preserve_format),
        "detach": lambda x: x.detach(), "type": lambda x: x.type(DTYPE),
        "requires_grad_": lambda x: x.clone().requires_grad_(False), "to": lambda x: x.to(DTYPE),
        "type_as": lambda x: x.type_as(x.flip(1)),
    }
    fn = calls.get(label if label.startswith("torch.") else name)
    if name == "to":
        return lambda r, shape, budget: Op(Call(r.pick([fn, lambda x: x.to("cpu", dtype=DTYPE, copy=True),
                                                        lambda x: x.to(x.flip(1))])), True)
    return (lambda r, shape, budget: Op(Call(fn), True)) if fn and name != "cuda" else None


# --- weight layers, pooling, normalisation ----------------------------------------------

def _set_weight(r: Rand, budget, module: nn.Module) -> int:
    with torch.no_grad():
        w, e = scaled(r, budget, module.weight.detach().clone())
        module.weight.copy_(w)
    return e


def _conv_geometry(r: Rand, shape, transposed: bool = False) -> dict:
    h, w = shape[2], shape[3]
    k = (r.int(1, min(3, h + 2)), r.int(1, min(3, w + 2)))
    geo = dict(kernel_size=k, stride=(r.int(1, 2), r.int(1, 2)), padding=(r.int(0, 1), r.int(0, 1)),
               dilation=(r.int(1, 2), r.int(1, 2)))
    if transposed:
        geo["output_padding"] = tuple(r.int(0, max(s, d) - 1) for s, d in zip(geo["stride"], geo["dilation"]))
    return geo


def _weight_module(label: str) -> Callable:
    def make(r: Rand, shape, budget) -> Op:
        c = shape[1]
        groups = r.pick([1, c]) if c > 1 else 1
        out = groups * r.int(1, 3)
        for _ in range(20):
            if label == "nn.Linear":
                m, pre = nn.Linear(c * shape[2] * shape[3], r.int(1, 6), bias=r.bool()), lambda x: x.flatten(1)
            elif label == "nn.Conv1d":
                g = _conv_geometry(r, (1, c, 1, shape[2] * shape[3]))
                g = {k: v[1] for k, v in g.items()}
                m = nn.Conv1d(c, out, groups=groups, bias=r.bool(), padding_mode=r.pick(["zeros", "circular"]), **g)
                pre = lambda x: x.flatten(2)  # noqa: E731
            elif label == "nn.Conv2d":
                m = nn.Conv2d(c, out, groups=groups, bias=r.bool(), padding_mode=r.pick(["zeros", "circular"]),
                              **_conv_geometry(r, shape))
                pre = None
            else:
                m = nn.ConvTranspose2d(c, out, groups=groups, bias=r.bool(), **_conv_geometry(r, shape, True))
                pre = None
            m = m.to(DTYPE)
            try:
                with torch.no_grad():
                    m((pre or (lambda x: x))(torch.zeros(shape, dtype=DTYPE)))
            except RuntimeError:
                continue
            e = _set_weight(r, budget, m)
            return Op(nn.Sequential(Call(pre), m) if pre else m, True, e)
        raise AssertionError("no valid geometry")
    return make


def _weight_function(label: str) -> Callable:
    def make(r: Rand, shape, budget) -> Op:
        c = shape[1]
        if label == "F.linear":
            wt, e = scaled(r, budget, r.tensor(r.int(1, 5), c * shape[2] * shape[3]))
            b = r.tensor(wt.shape[0])
            use_b = r.bool()
            return Op(Call(lambda x, w, b: F.linear(x.flatten(1), w, b if use_b else None), wt, b), True, e)
        for _ in range(20):
            if label == "torch.conv1d":
                g = {k: v[1] for k, v in _conv_geometry(r, (1, c, 1, shape[2] * shape[3])).items()}
                wt = r.tensor(r.int(1, 3), c, g["kernel_size"])
                f = lambda x, w: F.conv1d(x.flatten(2), w, None, g["stride"], g["padding"], g["dilation"])  # noqa: E731
            elif label == "torch.conv2d":
                g = _conv_geometry(r, shape)
                wt = r.tensor(r.int(1, 3), c, *g["kernel_size"])
                f = lambda x, w: F.conv2d(x, w, stride=g["stride"], padding=g["padding"], dilation=g["dilation"])  # noqa: E731
            else:
                g = _conv_geometry(r, shape, True)
                wt = r.tensor(c, r.int(1, 3), *g["kernel_size"])
                f = lambda x, w: F.conv_transpose2d(x, w, None, g["stride"], g["padding"], g["output_padding"], 1,  # noqa: E731
                                                     g["dilation"])
            try:
                f(torch.zeros(shape, dtype=DTYPE), wt)
            except RuntimeError:
                continue
            wt, e = scaled(r, budget, wt)
            return Op(Call(f, wt), True, e)
        raise AssertionError("no valid geometry")
    return make


def _pool(label: str) -> Callable:
    def make(r: Rand, shape, budget) -> Op:
        h, w = shape[2], shape[3]
        one = "1d" in label
        n = h * w if one else min(h, w)
        k = r.int(1, min(3, n))
        s = r.pick([None, 1, 2])
        kw: dict = {}
        if "adaptive" in label.lower():
            size = r.int(1, 6) if one else (r.int(1, 6), r.pick([None, r.int(1, 6)]))
            kw["output_size"] = size
        else:
            kw = dict(kernel_size=k, stride=s, padding=r.int(0, k // 2), ceil_mode=r.bool())
            if "avg" in label.lower():
                kw["count_include_pad"] = r.bool()
                if not one:
                    kw["divisor_override"] = r.pick([None, 3])
            else:
                kw["dilation"] = r.int(1, 2) if (k - 1) * 2 + 1 <= n else 1
        pre = (lambda x: x.flatten(2)) if one else (lambda x: x)
        linear = "avg" in label.lower()
        if label.startswith("nn."):
            m = getattr(nn, label[3:])(**kw)
            return Op(nn.Sequential(Call(pre), m), linear)
        fn = {"torch.avg_pool1d": F.avg_pool1d, "F.avg_pool2d": F.avg_pool2d, "F.max_pool1d": F.max_pool1d,
              "F.max_pool2d": F.max_pool2d, "torch.adaptive_avg_pool1d": F.adaptive_avg_pool1d,
              "F.adaptive_avg_pool2d": F.adaptive_avg_pool2d, "F.adaptive_max_pool1d": F.adaptive_max_pool1d,
              "F.adaptive_max_pool2d": F.adaptive_max_pool2d}[label]
        return Op(Call(lambda x: fn(pre(x), **kw)), linear)
    return make


def _norm_layer(label: str) -> Callable:
    def make(r: Rand, shape, budget) -> Op:
        c, h, w = shape[1:]
        gamma, beta = r.tensor(c) * r.float(0.1, 3), r.tensor(c)
        mean, var = r.tensor(c), r.tensor(c).abs() + r.float(0.01, 2)
        eps = r.pick([1e-5, 1e-3, 0.1])
        if label in ("nn.BatchNorm1d", "nn.BatchNorm2d", "nn.BatchNorm3d", "nn.SyncBatchNorm"):
            m = (nn.BatchNorm2d if label in ("nn.BatchNorm2d", "nn.SyncBatchNorm") else getattr(nn, label[3:]))(
                c, eps=eps, affine=r.bool(), momentum=r.pick([None, 0.1])).to(DTYPE)
            if label == "nn.SyncBatchNorm":
                m = nn.SyncBatchNorm.convert_sync_batchnorm(m)
            with torch.no_grad():
                m.running_mean.copy_(mean)
                m.running_var.copy_(var)
                if m.affine:
                    m.weight.copy_(gamma)
            pre = {"nn.BatchNorm1d": lambda x: x.flatten(2), "nn.BatchNorm3d": lambda x: x.unsqueeze(2)}.get(label)
            return Op(nn.Sequential(Call(pre), m) if pre else m, True)
        if label.startswith("nn.InstanceNorm"):
            track = r.bool()
            m = getattr(nn, label[3:])(c, eps=eps, affine=r.bool(), track_running_stats=track).to(DTYPE)
            if track:
                with torch.no_grad():
                    m.running_var.copy_(var)
            pre = {"nn.InstanceNorm1d": lambda x: x.flatten(2), "nn.InstanceNorm3d": lambda x: x.unsqueeze(2)}.get(label)
            return Op(nn.Sequential(Call(pre), m) if pre else m, track)
        if label == "nn.LayerNorm":
            return Op(nn.LayerNorm((h, w) if r.bool() else w, eps=eps, elementwise_affine=r.bool(), bias=r.bool()).to(DTYPE), False)
        if label == "nn.GroupNorm":
            return Op(nn.GroupNorm(r.pick([g for g in range(1, c + 1) if c % g == 0]), c, eps=eps, affine=r.bool()).to(DTYPE), False)
        if label == "nn.RMSNorm":
            return Op(nn.RMSNorm(w, eps=r.pick([None, eps]), elementwise_affine=r.bool()).to(DTYPE), False)
        affine = r.bool()
        if label == "F.batch_norm":
            return Op(Call(lambda x, m, v, g: F.batch_norm(x, m, v, g if affine else None, None, False, 0.1, eps),
                           mean, var, gamma), True)
        if label == "F.instance_norm":
            if affine:
                return Op(Call(lambda x, m, v: F.instance_norm(x, m, v, use_input_stats=False, eps=eps), mean, var), True)
            return Op(Call(lambda x, g: F.instance_norm(x, weight=g, eps=eps), gamma), False)
        if label == "F.layer_norm":
            return Op(Call(lambda x: F.layer_norm(x, (w,), eps=eps)), False)
        if label == "F.group_norm":
            return Op(Call(lambda x, g: F.group_norm(x, 1, g, eps=eps), gamma), False)
        rms_eps = r.pick([None, eps])
        return Op(Call(lambda x: F.rms_norm(x, (h, w), eps=rms_eps)), False)
    return make


def _makers() -> dict[str, Callable]:
    from harness.exact import allowlist
    makers: dict[str, Callable] = {}
    for label in ACT_FUNCTIONS:
        makers[label] = _activation_function(label)
    for label in ACT_INPLACE_FUNCTIONS:
        makers[label] = _activation_inplace(label)
    for name in ACT_METHODS:
        makers[f"Tensor.{name}"] = _activation_method(name)
    for cls in ACT_MODULES:
        makers[f"nn.{cls.__name__}"] = _activation_module(cls)
    for label in ("torch.clamp", "torch.clip", "torch.clamp_", "torch.clip_", "Tensor.clamp", "Tensor.clamp_",
                  "Tensor.clip", "Tensor.clip_"):
        makers[label] = _clamp(label)
    for label in ("F.softmax", "torch.softmax", "Tensor.softmax", "nn.Softmax", "nn.Softmax2d"):
        makers[label] = _softmax(label)
    for label in ("torch.prelu", "Tensor.prelu", "nn.PReLU"):
        makers[label] = _prelu(label)
    for label in ("F.dropout", "F.alpha_dropout", "F.feature_alpha_dropout", "F.dropout1d", "F.dropout2d",
                  "F.dropout3d", "nn.Dropout", "nn.Dropout1d", "nn.Dropout2d", "nn.Dropout3d", "nn.AlphaDropout",
                  "nn.FeatureAlphaDropout"):
        makers[label] = _dropout(label)
    for label in ("operator.add", "operator.iadd", "operator.sub", "operator.isub", "torch.add", "torch.sub",
                  "torch.subtract", "Tensor.add", "Tensor.add_", "Tensor.sub", "Tensor.sub_", "Tensor.subtract",
                  "Tensor.subtract_"):
        makers[label] = _add(label)
    for label in ("operator.mul", "operator.imul", "torch.mul", "torch.multiply", "Tensor.mul", "Tensor.mul_",
                  "Tensor.multiply", "Tensor.multiply_", "operator.truediv", "operator.itruediv", "torch.div",
                  "torch.divide", "torch.true_divide", "Tensor.div", "Tensor.div_", "Tensor.divide", "Tensor.divide_",
                  "Tensor.true_divide", "Tensor.true_divide_"):
        makers[label] = _scale(label)
    for label in ("operator.neg", "operator.pos", "torch.neg", "torch.negative", "torch.positive", "Tensor.neg",
                  "Tensor.neg_", "Tensor.negative", "Tensor.negative_", "Tensor.positive"):
        makers[label] = _neg(label)
    for label in ("operator.matmul", "torch.matmul", "torch.mm", "Tensor.matmul", "Tensor.mm"):
        makers[label] = _matmul(label)
    for label in ("torch.cat", "torch.concat", "torch.concatenate", "torch.stack", "torch.hstack", "torch.vstack"):
        makers[label] = _cat(label)
    for label in ("torch.sum", "torch.mean", "torch.amax", "torch.amin", "Tensor.sum", "Tensor.mean", "Tensor.amax",
                  "Tensor.amin"):
        makers[label] = _reduction(label)
    for label in ("torch.linalg.vector_norm", "torch.norm", "Tensor.norm"):
        makers[label] = _norm(label)
    for label, fn in MOVEMENT.items():
        makers[label] = _movement(fn)
    for label, fn in MOVEMENT_MODULES.items():
        makers[label] = (lambda fn: lambda r, shape, budget: Op(fn(r, shape), True))(fn)
    makers["F.pad"] = _pad
    makers["F.interpolate"] = _interpolate
    for entry in allowlist.entries():
        if entry.rule.__qualname__.startswith("cast"):
            maker = _cast(entry.op)
            if maker is not None:
                makers[entry.op] = maker
    for label in ("nn.Linear", "nn.Conv1d", "nn.Conv2d", "nn.ConvTranspose2d"):
        makers[label] = _weight_module(label)
    for label in ("F.linear", "torch.conv1d", "torch.conv2d", "torch.conv_transpose2d"):
        makers[label] = _weight_function(label)
    for label in ("torch.avg_pool1d", "F.avg_pool2d", "F.max_pool1d", "F.max_pool2d", "torch.adaptive_avg_pool1d",
                  "F.adaptive_avg_pool2d", "F.adaptive_max_pool1d", "F.adaptive_max_pool2d", "nn.AvgPool1d",
                  "nn.AvgPool2d", "nn.MaxPool1d", "nn.MaxPool2d", "nn.AdaptiveAvgPool1d", "nn.AdaptiveAvgPool2d",
                  "nn.AdaptiveMaxPool1d", "nn.AdaptiveMaxPool2d"):
        makers[label] = _pool(label)
    for label in ("nn.BatchNorm1d", "nn.BatchNorm2d", "nn.BatchNorm3d", "nn.SyncBatchNorm", "nn.InstanceNorm1d",
                  "nn.InstanceNorm2d", "nn.InstanceNorm3d", "nn.LayerNorm", "nn.GroupNorm", "nn.RMSNorm",
                  "F.batch_norm", "F.instance_norm", "F.layer_norm", "F.group_norm", "F.rms_norm"):
        makers[label] = _norm_layer(label)
    return makers


MAKERS = _makers()
#: Ops no CPU-only test can call (none: ``Tensor.cuda`` is not allow-listed).
UNTESTABLE: dict[str, str] = {}


# ---------------------------------------------------------------------------------------
# Hooks, graphs, truth
# ---------------------------------------------------------------------------------------

def add_hooks(r: Rand, module: nn.Module, x: torch.Tensor) -> int:
    """Random forward hooks and pre-hooks on the module and its leaves; returns how many. Output
    hooks go on modules with a tensor output, a residual hook (``out + args[0]/2``) only where
    the shapes agree (both probed on ``x``)."""
    seen: dict[nn.Module, tuple[bool, bool]] = {}

    def probe(mod, args, out):
        tensor_in = bool(args) and isinstance(args[0], torch.Tensor)
        tensor_out = isinstance(out, torch.Tensor)
        seen[mod] = (tensor_in and tensor_out, tensor_in and tensor_out and out.shape == args[0].shape)

    handles = [m.register_forward_hook(probe) for m in module.modules()]
    with torch.no_grad():
        module(x)
    for handle in handles:
        handle.remove()
    count = 0
    for m in [module, *[c for c in module.modules() if not list(c.children())]]:
        if r.int(0, 3) or m not in seen or not seen[m][0]:
            continue
        kind = r.int(0, 3 if seen[m][1] else 2)
        c = r.float(-4, 4)
        if kind == 0:
            m.register_forward_hook(lambda mod, args, out, c=c: out * c)
        elif kind == 1:
            m.register_forward_pre_hook(lambda mod, args, c=c: (args[0] * c,) + tuple(args[1:]))
        elif kind == 2:
            m.register_forward_hook(lambda mod, args, kwargs, out, c=c: out * c, with_kwargs=True)
        else:
            m.register_forward_hook(lambda mod, args, out: out + 0.5 * args[0])
        count += 1
    return count


@dataclass
class Graph:
    model: nn.Module
    shape: tuple[int, ...]  # per-sample input shape
    ops: list[str]
    linear: bool
    hooks: int
    exponent: int = 0  # log2 of the product of the weight scales
    scales: tuple[int, ...] = ()  # each scaled layer's exponent


def random_graph(r: Rand, ops: list[str] | None = None, hooks: bool | None = None, max_len: int = 4) -> Graph:
    """A chain of random blocks over the allow-list (or the given ``ops``), with random joins and hooks."""
    labels = sorted(MAKERS)
    shape = (1, r.int(1, 3), r.int(2, 5), r.int(2, 5))
    in_shape = shape[1:]
    budget = [0]
    blocks, joins, outs, used, linear, n_hooks = [], [], [], [], True, 0
    chosen = ops if ops is not None else [r.pick(labels) for _ in range(r.int(1, max_len))]
    x = torch.randn(shape, generator=torch.Generator().manual_seed(0), dtype=DTYPE)
    for label in chosen:
        op = MAKERS[label](r, shape, budget)
        module = op.module.to(DTYPE).eval()
        try:
            with torch.no_grad():
                y = module(x)
        except (RuntimeError, ValueError, TypeError):  # arguments this op cannot take here: skip it
            continue
        if hooks if hooks is not None else r.int(0, 2) == 0:
            n_hooks += add_hooks(r, module, x)
            with torch.no_grad():
                y = module(x)
        parts, target = out_spec(y)
        flat = torch.cat([t.reshape(1, -1) for t in y], 1) if parts else y
        join = None
        if flat.shape == x.shape and r.int(0, 2) == 0:
            join = "add"
        elif flat.dim() == 4 and flat.shape[0] == 1 and flat.shape[2:] == x.shape[2:] and r.int(0, 3) == 0:
            join = "cat"
        if join is not None:
            parts, target = out_spec(torch.cat([x, flat], 1) if join == "cat" else flat)
            parts = len(y) if isinstance(y, (tuple, list)) else 0
        blocks.append(module)
        joins.append(join)
        outs.append((parts, target))
        used.append(label)
        linear = linear and op.linear
        with torch.no_grad():
            x = Chain([module], [join], [(parts, target)])(x)
        if x.numel() > 300:  # keep the exact Jacobian small
            blocks.append(Call(lambda t: F.avg_pool2d(t, 2, ceil_mode=True)))
            joins.append(None)
            outs.append((0, None))
            with torch.no_grad():
                x = blocks[-1](x)
        shape = tuple(x.shape)
    model = Chain(blocks, joins, outs).to(DTYPE).eval()
    return Graph(model, in_shape, used, linear, n_hooks, budget[0], tuple(budget[1:]))


def jacobian(net: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The Jacobian of ``net`` at ``x`` as an ``(outputs, inputs)`` matrix (reverse mode; a loop
    over outputs where ``vmap`` does not support an op)."""
    try:
        jac = torch.func.jacrev(net)(x)
    except (RuntimeError, NotImplementedError):
        jac = torch.autograd.functional.jacobian(net, x, vectorize=False)
    return jac.reshape(-1, x.numel())


def matrix_norm(mat: torch.Tensor) -> tuple[float, torch.Tensor, torch.Tensor]:
    """``σ₁`` and its singular vectors, computed on a power-of-two scaled copy (any magnitude)."""
    top = float(mat.abs().max()) if mat.numel() else 0.0
    if top == 0.0 or not math.isfinite(top):
        return (0.0 if top == 0.0 else math.inf), torch.zeros(mat.shape[0], dtype=DTYPE), torch.zeros(mat.shape[1], dtype=DTYPE)
    e = math.frexp(top)[1]
    u, s, vh = torch.linalg.svd(torch.ldexp(mat, torch.tensor(-e)), full_matrices=False)
    return math.ldexp(float(s[0]), e), u[:, 0], vh[0]


def exact_linear_norm(net: nn.Module, shape) -> float:
    """``σ₁`` of the (constant) Jacobian of an affine model: its exact Lipschitz constant."""
    return matrix_norm(jacobian(net, torch.zeros((1, *shape), dtype=DTYPE)))[0]


def ascent_norm(net: nn.Module, shape, starts: int = 4, steps: int = 10, seed: int = 0) -> float:
    """The largest ``‖J(x)‖₂`` found (exact Jacobians): random points at several scales, then
    gradient ascent of ``uᵀJ(x)v`` in ``x`` (random steps where that gradient vanishes or is not
    available). Every value is a lower bound on the Lipschitz constant."""
    gen = torch.Generator().manual_seed(seed)
    best = 0.0
    for i in range(starts):
        x = (0.01, 1.0, 10.0, 100.0)[i % 4] * torch.randn((1, *shape), generator=gen, dtype=DTYPE)
        val, u, v = matrix_norm(jacobian(net, x))
        best = max(best, val)
        for _ in range(steps):
            g = _ascent_direction(net, x, u, v)
            if g is None:
                g = torch.randn(x.shape, generator=gen, dtype=DTYPE)
            step = 0.1 * (float(x.norm()) / math.sqrt(x.numel()) + 1e-3)
            cand = (x + step * g / g.norm()).detach()
            cval, cu, cv = matrix_norm(jacobian(net, cand))
            if cval > val:
                x, val, u, v = cand, cval, cu, cv
                best = max(best, val)
    return best


def _ascent_direction(net: nn.Module, x: torch.Tensor, u: torch.Tensor, v: torch.Tensor) -> torch.Tensor | None:
    """``∇_x uᵀJ(x)v`` by double backward, or ``None``."""
    try:
        x1 = x.detach().requires_grad_(True)
        with torch.enable_grad():
            out = net(x1).reshape(-1)
            (gx,) = torch.autograd.grad(out @ u, x1, create_graph=True)
            (g,) = torch.autograd.grad((gx.reshape(-1) * v).sum(), x1, allow_unused=True)
    except (RuntimeError, NotImplementedError):
        return None
    if g is None or not bool(torch.isfinite(g).all()) or float(g.norm()) == 0.0:
        return None
    return g


def truth(graph: Graph) -> float | None:
    """The exact constant for linear graphs, else a lower bound from exact Jacobians at points
    found by random starts and gradient ascent; ``None`` where torch cannot differentiate the
    model (``requires_grad_`` inside a ``torch.func`` transform)."""
    net = graph.model
    for p in net.parameters():
        p.requires_grad_(False)
    try:
        if graph.linear:
            return exact_linear_norm(net, graph.shape)
        return ascent_norm(net, graph.shape)
    except RuntimeError as exc:
        if "requires_grad" in str(exc):
            return None
        raise


@dataclass
class Outcome:
    graph: Graph
    bound: float | None
    truth: float | None
    refusal: str | None
    seconds: float


def run_one(graph: Graph) -> Outcome:
    """Bound one graph (refusals are outcomes: they must be one line) and compute its truth."""
    from harness.exact import UnfollowableModelError, lipschitz_upper_bound
    start = time.perf_counter()
    try:
        bound = lipschitz_upper_bound(graph.model, graph.shape, max_rel_width=0.5).upper
    except (UnfollowableModelError, ValueError) as exc:
        return Outcome(graph, None, None, str(exc), time.perf_counter() - start)
    seconds = time.perf_counter() - start
    return Outcome(graph, bound, truth(graph), None, seconds)


def main(graphs: int, seed: int) -> None:
    """The fuzzer's figures: graphs tried, accepted, refused, ops covered, worst bound/truth."""
    from harness.exact import allowlist
    rng = random.Random(seed)
    labels = sorted(e.op for e in allowlist.entries() if e.op not in UNTESTABLE)
    covered: set[str] = set()
    ratios, refusals, hooks, slowest, exponents = [], {}, 0, 0.0, []
    start = time.perf_counter()
    for i in range(graphs):
        graph = random_graph(Rand(rng))
        while not graph.ops:  # every block skipped (sizes its ops cannot take): draw again
            graph = random_graph(Rand(rng))
        out = run_one(graph)
        slowest = max(slowest, out.seconds)
        hooks += graph.hooks > 0
        exponents += list(graph.scales) or [0]
        if out.refusal is not None:
            assert "\n" not in out.refusal, out.refusal
            key = out.refusal.split(":")[-1].strip()[:60]
            refusals[key] = refusals.get(key, 0) + 1
            continue
        covered |= set(graph.ops)
        if out.truth:
            ratios.append((out.bound / out.truth, graph.ops, graph.linear))
            assert out.bound >= out.truth * (1 - tolerance(graph.ops)), (graph.ops, out.bound, out.truth)
    exact = [r for r in ratios if not set(r[1]) & set(CAST_RTOL)]
    casts = [r for r in ratios if set(r[1]) & set(CAST_RTOL)]
    print(f"graphs tried {graphs} (seed {seed}), with hooks {hooks}, layer weight scales 2^{min(exponents)}.."
          f"2^{max(exponents)}; accepted {graphs - sum(refusals.values())}, refused {sum(refusals.values())}")
    print(f"ops covered by accepted graphs {len(covered & set(labels))} of {len(labels)} "
          f"(missing: {', '.join(sorted(set(labels) - covered)) or 'none'})")
    for title, group in (("linear graphs (exact Jacobian norm)", [r for r in exact if r[2]]),
                         ("nonlinear graphs (power iteration and ascent)", [r for r in exact if not r[2]]),
                         ("graphs with a cast to half, bfloat16 or float32 (autograd rounds through it)", casts)):
        if group:
            worst = min(group, key=lambda r: r[0])
            print(f"{title}: {len(group)}, worst bound/truth 1 {worst[0] - 1:+.2e} ({' -> '.join(worst[1])})")
    print(f"slowest bound {slowest:.2f} s; total {time.perf_counter() - start:.0f} s; refusals by reason:")
    for key, count in sorted(refusals.items(), key=lambda kv: -kv[1])[:12]:
        print(f"  {count:4d}  {key}")


if __name__ == "__main__":
    sys.path.insert(0, str(__import__("pathlib").Path(__file__).resolve().parents[1]))
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 200, int(sys.argv[2]) if len(sys.argv) > 2 else 0)
