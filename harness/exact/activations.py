"""Lipschitz constants of elementwise activations: ``sup |f'|`` over the real line.

An elementwise map ``y_i = f(x_i)`` with ``|f(a) − f(b)| ≤ c|a − b|`` has
``‖f(x) − f(y)‖₂ ≤ c‖x − y‖₂``, and ``c = sup|f'|`` is attained (two nearby points where
``|f'|`` is close to its supremum), so these constants are exact:

* ReLU, ReLU6, Hardtanh, clamp, abs, Tanh, Softsign, Tanhshrink (``tanh²``), LogSigmoid,
  CELU (``e^{x/α} ≤ 1``), Softplus (``σ(βx) ≤ 1``; torch switches to the identity above
  ``threshold``, a jump of ``log(1 + e^{−threshold})/β ≈ 2e-9/β`` that is ignored),
  dropout in eval mode: 1;
* Sigmoid ``1/4``; Hardsigmoid ``1/6``; Hardswish ``3/2`` (slope ``(2x+3)/6`` at ``x = 3``);
* LeakyReLU / RReLU (eval slope ``(l+u)/2``) / PReLU: ``max(1, |slope|)``; ELU ``max(1, |α|)``;
  SELU ``scale · max(1, α)``;
* Softmax: ``J = diag(p) − ppᵀ`` is symmetric with Gershgorin row sums
  ``2p_i(1 − p_i) ≤ 1/2``, so ``1/2`` bounds it (a bound, not the exact constant);
* GELU (exact): ``f' = Φ(x) + xφ(x)``, ``f'' = φ(x)(2 − x²)``: extremes at ``±√2``,
  ``sup|f'| = Φ(√2) + √2 φ(√2) ≈ 1.1289``;
* SiLU and tanh-GELU: ``f'`` rises to one maximum at the positive root of ``f''`` and the
  negative extreme is smaller in magnitude (``f'(x) + f'(−x) = 1`` for SiLU); the root is
  found by Brent's method to ``1e-13`` and ``1e-9`` is added for the remaining error
  (``≤ ½ sup|f'''| · 1e-26`` plus float rounding of ``f'``).

Every returned constant is rounded up by a few ulps so float rounding never lowers it.
"""
from __future__ import annotations

import math

import torch
from scipy.optimize import brentq

U = 2.0 ** -53


def round_up(value: float, ulps: int = 4) -> float:
    """``value`` moved up by ``ulps`` floating-point steps (covers a few roundings)."""
    for _ in range(ulps):
        value = math.nextafter(value, math.inf)
    return value


def _sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))


def _silu_slope(x: float) -> float:
    s = _sigmoid(x)
    return s * (1 + x * (1 - s))


def _silu_curvature(x: float) -> float:
    s = _sigmoid(x)
    return s * (1 - s) * (2 + x * (1 - 2 * s))


_C = math.sqrt(2 / math.pi)


def _gelu_tanh_slope(x: float) -> float:
    u = _C * (x + 0.044715 * x ** 3)
    t = math.tanh(u)
    return 0.5 * (1 + t) + 0.5 * x * (1 - t * t) * _C * (1 + 3 * 0.044715 * x * x)


def _gelu_tanh_curvature(x: float, h: float = 1e-5) -> float:
    return (_gelu_tanh_slope(x + h) - _gelu_tanh_slope(x - h)) / (2 * h)


def _peak(slope, curvature, lo: float, hi: float) -> float:
    x = brentq(curvature, lo, hi, xtol=1e-13)
    return round_up(slope(x) + 1e-9)


def silu() -> float:
    return _peak(_silu_slope, _silu_curvature, 1.0, 4.0)


def gelu(approximate: str = "none") -> float:
    if approximate == "tanh":
        return _peak(_gelu_tanh_slope, _gelu_tanh_curvature, 1.0, 2.5)
    r = math.sqrt(2.0)
    phi = math.exp(-1.0) / math.sqrt(2 * math.pi)
    return round_up(0.5 * (1 + math.erf(1.0)) + r * phi, 16)


def slope_max(slope: float) -> float:
    return max(1.0, abs(float(slope)))


CONSTANT_ONE = ("relu", "relu6", "hardtanh", "clamp", "clip", "abs", "absolute", "neg", "negative",
                "positive", "tanh", "softsign", "tanhshrink", "logsigmoid", "celu", "softplus")
FIXED = {"sigmoid": 0.25, "hardsigmoid": 1.0 / 6.0, "hardswish": 1.5, "softmax": 0.5}


def activation_constant(name: str, params: dict) -> float:
    """Exact (or, for softmax, bounding) constant of an elementwise activation (:mod:`.activations`)."""
    if name in CONSTANT_ONE:
        return 1.0
    if name in FIXED:
        return FIXED[name]
    if name == "leaky_relu":
        return slope_max(params.get("negative_slope", 0.01))
    if name == "rrelu":
        return slope_max((params.get("lower", 1 / 8) + params.get("upper", 1 / 3)) / 2)
    if name == "prelu":
        return slope_max(float(torch.as_tensor(params["weight"]).detach().abs().max()))
    if name == "elu":
        return slope_max(params.get("alpha", 1.0))
    if name == "selu":
        return round_up(1.0507009873554804934193349852946 * 1.6732632423543772848170429916717)
    if name == "gelu":
        return gelu(params.get("approximate", "none"))
    if name == "silu":
        return silu()
    raise KeyError(name)

