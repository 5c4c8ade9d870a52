"""The α lemma ``‖Ŵ‖ ≤ ‖W̃‖ ≤ α‖Ŵ‖`` (Lin, Sekar & Fanti, NeurIPS 2021, §4; after Tsuzuku,
Sato & Sugiyama, NeurIPS 2018).

Upper inequality: ``‖W̃x‖² = Σ_o ‖Ŵ x_o‖² ≤ ‖Ŵ‖² Σ_o ‖x_o‖² ≤ ‖Ŵ‖² · r · ‖x‖²`` where ``x_o`` is
the (zero-padded) patch read by output ``o`` and ``r`` the largest number of patches an
input pixel lies in. Per axis, with stride ``s``, dilation ``d`` and ``k`` taps, pixel ``i``
is read by tap ``t`` of output ``o`` iff ``s·o = i + p − d·t``: the admissible ``t`` satisfy
``d·t ≡ i + p (mod s)``, an arithmetic progression of step ``s / gcd(s, d)``, so at most
``⌈k·gcd(s, d)/s⌉`` of the ``k`` taps. Hence

    ``α = sqrt(Π_axes ⌈k·gcd(s, d)/s⌉)``  (``= sqrt(⌈k_h/s⌉⌈k_w/s⌉)`` without dilation).

With circular padding a pixel can also be read through the wrapped border; given the
input size, :func:`alpha_bound` then counts the multiplicity exactly. For groups the
upper inequality still holds (each group's rows are a submatrix of ``Ŵ``).

Lower inequality: put the top right singular vector of ``Ŵ`` as the patch of an output
position whose receptive field lies wholly inside the unpadded input (its pixels are
distinct); that output alone has norm ``‖Ŵ‖``. So it needs such a position (the input at
least as large as the dilated kernel, the padding not forcing every patch off the
border), and ``groups == 1`` (with groups, ``Ŵ`` stacks the groups' rows on shared
columns and can exceed every group's operator norm). :func:`alpha_bound` reports whether
the precondition holds and why; it is never assumed silently. For ``ConvTranspose2d``,
``W̃`` is the adjoint of the conv whose rows are weight dim 0, so the lemma holds for that
reshape (``harness.layers.swapped_reshape_matrix``), not for the dim-1 ``Ŵ`` SNw uses.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class AlphaBound:
    """``α`` of the lemma and whether the lower inequality's precondition holds (with why)."""

    alpha: float
    lower_holds_precondition: bool
    reason: str


def _tuple(v, n: int = 2) -> tuple[int, ...]:
    out = (int(v),) * n if isinstance(v, (int, np.integer)) else tuple(int(x) for x in v)
    if len(out) != n:
        raise ValueError(f"expected an int or a {n}-tuple, got {v!r}")
    return out


def axis_multiplicity(k: int, s: int, d: int = 1) -> int:
    """Most taps of one axis that can read the same input pixel: ``⌈k·gcd(s, d)/s⌉`` (≤ k)."""
    if k <= 0 or s <= 0 or d <= 0:
        raise ValueError(f"kernel, stride and dilation must be positive, got k={k}, s={s}, d={d}")
    return min(k, -(-k * math.gcd(s, d) // s))


def alpha(k_h: int, k_w: int, stride=1, dilation=1) -> float:
    """``α = sqrt(⌈k_h g_h/s_h⌉ · ⌈k_w g_w/s_w⌉)``, ``g = gcd(s, d)`` (``g = 1`` without dilation)."""
    (sh, sw), (dh, dw) = _tuple(stride), _tuple(dilation)
    return math.sqrt(axis_multiplicity(k_h, sh, dh) * axis_multiplicity(k_w, sw, dw))


def _counted_multiplicity(n: int, k: int, s: int, d: int, p: int, circular: bool) -> int:
    """Exact largest number of (output, tap) pairs reading one input pixel on this axis."""
    e = d * (k - 1) + 1
    m = (n + 2 * p - e) // s + 1
    if m <= 0:
        return 0
    idx = (s * np.arange(m)[:, None] + d * np.arange(k)[None, :] - p).ravel()
    idx = idx % n if circular else idx[(idx >= 0) & (idx < n)]
    return int(np.bincount(idx, minlength=n).max()) if idx.size else 0


def alpha_bound(kernel, stride=1, dilation=1, padding=0, input_hw=None,
                padding_mode: str = "zeros", groups: int = 1) -> AlphaBound:
    """α for a conv layer (2-D; pass 1 for the unused axis of a conv1d) and the lower precondition.

    Without ``input_hw`` the generic ``α`` of :func:`alpha` is returned and the lower
    inequality is reported as not established. With it, ``α`` is the exact multiplicity
    count (never above the generic one for zero padding; it includes the wrapped border
    for circular padding).
    """
    (kh, kw), (sh, sw), (dh, dw), (ph, pw) = (_tuple(kernel), _tuple(stride), _tuple(dilation),
                                              _tuple(padding))
    a = alpha(kh, kw, (sh, sw), (dh, dw))
    if input_hw is None:
        return AlphaBound(a, False, "input size not given: the lower inequality needs an output "
                                    "whose receptive field lies inside the input")
    nh, nw = _tuple(input_hw)
    circ = padding_mode == "circular"
    counts = [_counted_multiplicity(n, k, s, d, p, circ) for n, k, s, d, p in
              ((nh, kh, sh, dh, ph), (nw, kw, sw, dw, pw))]
    if circ or all(c > 0 for c in counts):
        a = math.sqrt(max(counts[0], 1) * max(counts[1], 1)) if circ else min(a, math.sqrt(counts[0] * counts[1]))
    if groups != 1:
        return AlphaBound(a, False, f"groups={groups}: Ŵ stacks the groups' rows on shared columns, "
                                    "so ‖Ŵ‖ ≤ ‖W̃‖ can fail")
    for axis, n, k, s, d, p in (("height", nh, kh, sh, dh, ph), ("width", nw, kw, sw, dw, pw)):
        e = d * (k - 1) + 1
        if e > n:
            return AlphaBound(a, False, f"{axis}: input {n} smaller than the dilated kernel {e}")
        if circ:
            continue
        m = (n + 2 * p - e) // s + 1
        o = -(-p // s)  # first output whose patch starts inside the input
        if o >= m or s * o - p + e > n:
            return AlphaBound(a, False, f"{axis}: no output's receptive field lies wholly inside "
                                        f"the unpadded input (n={n}, k={k}, s={s}, d={d}, p={p})")
    return AlphaBound(a, True, "an output's receptive field lies wholly inside the input")
