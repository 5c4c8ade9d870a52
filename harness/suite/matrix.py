"""Parameter matrices: the cartesian product of a suite's ``matrix`` with include/exclude."""
from __future__ import annotations

import itertools
from typing import Any, Mapping, Sequence


def expand(matrix: Mapping[str, Sequence[Any]], include: Sequence[Mapping[str, Any]] = (),
           exclude: Sequence[Mapping[str, Any]] = ()) -> list[dict[str, Any]]:
    """All combinations of ``matrix``, minus those matching an ``exclude`` entry, plus ``include``.

    An ``exclude`` entry matches a combination when every key it names has that value
    (so ``{stride: 2, padding: 0}`` drops all stride-2, unpadded cases). ``include``
    entries are appended as given (after de-duplication), as in GitHub Actions matrices.
    """
    keys = list(matrix)
    combos = [dict(zip(keys, values)) for values in itertools.product(*(matrix[k] for k in keys))]
    kept = [c for c in combos if not any(_matches(c, ex) for ex in exclude)]
    for extra in include:
        if dict(extra) not in kept:
            kept.append(dict(extra))
    return kept


def _matches(combo: Mapping[str, Any], pattern: Mapping[str, Any]) -> bool:
    return all(k in combo and combo[k] == v for k, v in pattern.items())


def case_id(params: Mapping[str, Any]) -> str:
    """A stable, readable id such as ``m=8,n=64,distribution=gaussian``."""
    return ",".join(f"{k}={_fmt(v)}" for k, v in params.items()) or "default"


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return repr(value)
    return str(value)
