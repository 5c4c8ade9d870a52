"""The allow-list: every op's rule reads every argument torch accepts, and every op is sound.

For each allow-listed function, tensor method and module type, torch's own signature (its
Python signature, the ATen schemas of a builtin, or a method's documented signature) must be
covered by the declared one, so no argument can be passed that the rule never sees; and one
random call of each op (:mod:`exact_fuzz`) is bounded with every argument read (the bound
refuses a rule that leaves one unread) and at least its true constant.
"""
from __future__ import annotations

import inspect
import random
import re

import pytest
import torch

import exact_fuzz as X
from harness.exact import allowlist, lipschitz_upper_bound
from harness.exact.signatures import ALIASES

pytestmark = pytest.mark.usefixtures("one_thread")

#: Overloads for named tensors (Dimname) and for Python scalars are not tensor ops.
_NOT_TENSOR_OVERLOAD = re.compile(r"Dimname|names|dimname")
#: Constructor arguments that only choose where and in which dtype parameters live.
_PLACEMENT = ("self", "device", "dtype")
#: Deprecated constructor aliases torch stores under another attribute name.
_CTOR_ATTRIBUTE = {"min_value": "min_val", "max_value": "max_val"}


def _schema_names(name: str, method: bool) -> set[str]:
    names: set[str] = set()
    for schema in torch._C._jit_get_schemas_for_operator("aten::" + name):
        args = schema.arguments
        if not args or "Tensor" not in str(args[0].type) or _NOT_TENSOR_OVERLOAD.search(schema.overload_name) \
                or any("Dimname" in str(a.type) for a in args):
            continue
        names |= {"input" if a.name == "self" else a.name for a in args if not (method and a.name == "out")}
    return names


def _doc_names(fn, name: str) -> set[str]:
    """Names from the ``name(args) -> ...`` lines of a builtin's docstring."""
    names: set[str] = set()
    for line in (fn.__doc__ or "").splitlines():
        m = re.match(rf"\s*{re.escape(name)}\((.*)\)\s*->", line)
        if m:
            for part in m.group(1).split(","):
                part = part.strip().split("=")[0].strip()
                if part and not part.startswith("*"):
                    names.add(part)
    return names


def _python_names(fn) -> set[str] | None:
    try:
        sig = inspect.signature(fn)
    except (TypeError, ValueError):
        return None
    params = [p for p in sig.parameters.values() if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]
    if not params:  # a dispatcher such as F.max_pool2d: the functions it chooses between
        inner = [c.cell_contents for c in getattr(fn, "__closure__", None) or () if callable(c.cell_contents)]
        return set().union(*(_python_names(f) or set() for f in inner)) if inner else None
    if all(p.kind == p.POSITIONAL_ONLY for p in params):  # operator.*: by position only
        return {f"position {i}" for i in range(len(params))}
    return {"input" if p.name == "self" else p.name for p in params}


def torch_names(key) -> set[str]:
    """The argument names torch accepts for an allow-list key."""
    if isinstance(key, type):
        ctor = inspect.signature(key.__init__).parameters.values()
        names = {_CTOR_ATTRIBUTE.get(p.name, p.name) for p in ctor if p.name not in _PLACEMENT
                 and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)}
        forward = inspect.signature(key.forward).parameters.values()
        return names | {p.name for p in forward if p.name != "self" and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)}
    if isinstance(key, str):  # ATen schemas name what the binding accepts; docstrings only without one
        attr = getattr(torch.Tensor, key)
        return _python_names(attr) or _schema_names(key, True) or _doc_names(attr, key)
    names = _python_names(key)
    return names if names is not None else _schema_names(key.__name__, False)


def _keys():
    for table in (allowlist.FUNCTIONS, allowlist.METHODS, allowlist.MODULES):
        yield from table.items()


@pytest.mark.parametrize("key, entry", list(_keys()), ids=lambda v: getattr(v, "op", None) or "")
def test_declared_signature_covers_torchs(key, entry):
    """Every argument torch accepts has a name the rule is given (aliases included), so none can
    reach the op unread; an argument torch does not have is refused at binding."""
    declared = set(entry.signature.all_names) | set(entry.attributes)
    declared |= {f"position {i}" for i in range(len(entry.signature.names))}
    first = entry.signature.names[0]
    names = torch_names(key)
    assert names, f"no signature found for {entry.op}"
    missing = {n for n in names if n not in declared and not (n == "input" and first in ("x", "tensor", "tensors"))
               and ALIASES.get(n) not in declared}
    assert not missing, f"{entry.op}: torch accepts {sorted(missing)}, the allow-list does not declare them"


@pytest.mark.parametrize("label", sorted(e.op for e in allowlist.entries()))
def test_each_op_is_bounded_with_every_argument_read(label):
    """One random call of each op, its arguments drawn by its maker: the bound reads every
    argument (``plan_node`` refuses otherwise) and is at least the true constant."""
    for seed in range(3):
        graph = X.random_graph(X.Rand(random.Random(seed)), ops=[label], hooks=False)
        assert graph.ops == [label]
        bound = lipschitz_upper_bound(graph.model, graph.shape, max_rel_width=0.5)
        truth = X.truth(graph)
        if truth is not None:
            assert bound.upper >= truth * (1 - X.tolerance([label])), (label, seed, bound.upper, truth)


def test_docs_list_the_allow_list():
    """docs/exact.md's table is the one :func:`allowlist.markdown_table` renders (regenerate it
    with ``python -c "from harness.exact.allowlist import markdown_table; print(markdown_table())"``)."""
    from pathlib import Path
    text = (Path(__file__).resolve().parents[1] / "docs" / "exact.md").read_text(encoding="utf-8")
    start, end = text.index("<!-- allow-list:begin -->\n"), text.index("\n<!-- allow-list:end -->")
    assert text[start + len("<!-- allow-list:begin -->\n"):end] == allowlist.markdown_table()
