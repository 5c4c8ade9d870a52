"""The soundness fuzzer (hypothesis): random graphs over every op of the allow-list, with and
without hooks, random module parameters and weights scaled by 2^-500..2^500; the certified
bound is at least the exact Jacobian norm (linear graphs) or the best of power iteration and
gradient ascent (the others). A refusal is an outcome too, and must be one line. Figures for the
docs/exact.md: ``python tests/exact_fuzz.py 300 0``."""
from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import exact_fuzz as X
from harness.exact import allowlist

pytestmark = pytest.mark.usefixtures("one_thread")

#: Graphs per test: enough that, with derandomized draws, every op family meets hooks, joins
#: and extreme scales (the script runs as many as wanted with fresh seeds).
EXAMPLES = 150


def check(graph: X.Graph) -> None:
    out = X.run_one(graph)
    if out.refusal is not None:
        assert "\n" not in out.refusal, out.refusal
        return
    if out.truth is not None:
        assert out.bound >= out.truth * (1 - X.tolerance(graph.ops)), (graph.ops, graph.exponent, out.bound, out.truth)


@settings(max_examples=EXAMPLES)
@given(st.data())
def test_random_graphs(data):
    check(X.random_graph(X.Rand(data), hooks=False))


@settings(max_examples=EXAMPLES)
@given(st.data())
def test_random_graphs_with_hooks(data):
    check(X.random_graph(X.Rand(data), hooks=True))


def test_every_op_in_a_graph_with_hooks():
    """Every allow-listed op at least once inside a hooked chain of three (fixed seeds)."""
    labels = sorted(e.op for e in allowlist.entries())
    rng = random.Random(18)
    rng.shuffle(labels)
    for i in range(0, len(labels), 3):
        graph = X.random_graph(X.Rand(random.Random(i)), ops=labels[i:i + 3], hooks=True)
        check(graph)
