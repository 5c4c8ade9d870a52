"""When training is observed: a grid, and a seeded random set of updates per case.

A method that is exact only every ``k`` updates and wrong between them is seen right after
its refresh by any grid whose spacing is a multiple of ``k``. The random set
(:func:`random_steps`) is drawn per case from its seed and id, not from a step counter the
method could read, and always holds two consecutive updates, so for every period ``k ≥ 2``
at least one observation falls between two refreshes.
"""
from __future__ import annotations

import zlib

import torch


def random_steps(seed: int, case: str, first: int, last: int, n: int) -> list[int]:
    """``n`` distinct updates in ``[first, last]`` (all of them when there are fewer), drawn
    from a generator seeded by the case's seed and id, two of them consecutive; sorted."""
    span = list(range(max(1, first), last + 1))
    if len(span) <= n:
        return span
    gen = torch.Generator().manual_seed((int(seed) * 7_368_787 + zlib.crc32(f"observe:{case}".encode())) % 2**62)
    start = span[int(torch.randint(len(span) - 1, (1,), generator=gen))]
    chosen = {start, start + 1}
    for i in torch.randperm(len(span), generator=gen).tolist():
        if len(chosen) >= n:
            break
        chosen.add(span[i])
    return sorted(chosen)


def consecutive_pair(steps: list[int]) -> list[int]:
    """The first two consecutive updates of ``steps`` (for every period ``k ≥ 2`` one of them
    is not a multiple of ``k``); the last update alone when there are none."""
    for a, b in zip(steps, steps[1:]):
        if b == a + 1:
            return [a, b]
    return steps[-1:]


def grid_steps(first: int, last: int, points: int) -> list[int]:
    """``points`` evenly spaced updates after ``first`` up to ``last`` (every ``(last − first) //
    points``-th)."""
    every = max(1, (last - first) // max(1, points))
    return [step for step in range(first + 1, last + 1) if (step - first) % every == 0]


__all__ = ["consecutive_pair", "grid_steps", "random_steps"]
