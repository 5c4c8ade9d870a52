"""Lipschitz constants of elementwise activations: ``sup |f'|`` over the real line.

An elementwise map ``y_i = f(x_i)`` with ``|f(a) − f(b)| ≤ c|a − b|`` has
``‖f(x) − f(y)‖₂ ≤ c‖x − y‖₂``, and ``c = sup|f'|`` is attained (two nearby points where
``|f'|`` is close to its supremum), so these constants are exact. Each holds on a domain of
the parameters; outside it :func:`activation_constant` raises :class:`DomainError` and the
op is refused:

* ReLU, ReLU6, Hardtanh (any ``min_val``, ``max_val``), clamp, abs, Tanh, Softsign,
  Tanhshrink (``tanh²``), LogSigmoid, dropout in eval mode: 1;
* CELU: slope ``e^{x/α} ≤ 1`` below 0, so 1 for ``α > 0``; for ``α < 0`` the slope grows
  without bound (refused); Softshrink (``λ ≥ 0``): 1;
* Softplus: slope ``σ(βx) ≤ 1`` for ``β > 0``, but torch returns ``x`` once ``βx > t``
  (``threshold``), a jump of ``J = log(1 + e^{−t})/β`` (``log 2/β`` for ``t = 0``): no finite
  constant holds across it. It is accepted only where the jump does not exist in the
  computed map: ``J`` below half an ulp of ``t/β`` in the output's dtype, so the rounded
  outputs on both sides of the threshold agree (default ``β = 1, t = 20``: ``J ≈ 2.1e-9``,
  accepted in float32, refused in float64, where a threshold of 40 is accepted);
* Sigmoid ``1/4``; Hardsigmoid ``1/6``; Hardswish ``3/2`` (slope ``(2x+3)/6`` at ``x = 3``);
* LeakyReLU / RReLU (eval slope ``(l+u)/2``) / PReLU (a constant weight; the largest
  ``|w|``): ``max(1, |slope|)``; ELU with ``scale s`` and ``input_scale q ≥ 0``:
  ``max(|s|, |sαq|)`` (``max(1, |α|)`` for the defaults); SELU ``scale · max(1, α)``;
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


class DomainError(ValueError):
    """Parameters outside the domain where the activation's constant holds (says why)."""


CONSTANT_ONE = ("relu", "relu6", "hardtanh", "clamp", "abs", "tanh", "softsign", "tanhshrink",
                "logsigmoid")
#: Hardsigmoid: 1/6 rounded up to float32, the constant torch's kernels use in some dtypes.
FIXED = {"sigmoid": 0.25, "hardsigmoid": 0.16666667163372040, "hardswish": 1.5, "softmax": 0.5}


def softplus_jump(beta: float, threshold: float) -> float:
    """``log(1 + e^{−t})/β``: by how much torch's Softplus jumps where ``βx`` crosses ``t``
    (it returns ``x`` above, ``log(1 + e^{βx})/β`` below), rounded up."""
    return round_up(math.log1p(math.exp(-threshold)) / beta, 8) if threshold > -700 else math.inf


def softplus(beta: float, threshold: float, dtype: torch.dtype) -> float:
    """1 where the computed Softplus is continuous: ``β > 0`` and the jump at ``βx = t`` below
    half an ulp of ``t/β`` in ``dtype`` (module docstring)."""
    if not beta > 0:
        raise DomainError(f"Softplus with beta={beta:g}: only beta > 0 is modelled")
    jump, edge = softplus_jump(beta, threshold), abs(threshold / beta)
    half_ulp = torch.finfo(dtype).eps * 2.0 ** (math.floor(math.log2(edge)) - 2) if edge > 0 else 0.0  # below the binade too
    if not jump < half_ulp:
        raise DomainError(f"Softplus(beta={beta:g}, threshold={threshold:g}) jumps by {jump:.3g} where "
                          f"beta*x crosses the threshold, more than {dtype} resolves there: not "
                          "Lipschitz (a larger threshold makes the jump vanish)")
    return 1.0


def _magnitude(value: float, dtype: torch.dtype | None) -> float:
    """``|value|`` as a kernel in ``dtype`` may hold it: the larger of it and its rounding."""
    if dtype is None or not dtype.is_floating_point or dtype == torch.float64:
        return abs(value)
    return max(abs(value), abs(float(torch.tensor(value, dtype=torch.float64).to(dtype))))


#: Relative allowance for kernels that hold their constants in float32 (hardswish's 1/6,
#: SELU's scale and alpha) when the model computes in a lower precision than float64.
KERNEL_ROUNDING = 2.0 ** -22


def activation_constant(name: str, params: dict) -> float:
    """Exact (or, for softmax, bounding) constant of an elementwise activation (module docstring);
    :class:`DomainError` when ``params`` leave the domain where it holds. Parameters are taken
    as the kernel holds them in the model's dtype (the larger magnitude of the value and its
    rounding), and float32 kernel constants are covered (:data:`KERNEL_ROUNDING`)."""
    dtype = params.get("dtype")
    low = dtype is not None and dtype != torch.float64
    if name in CONSTANT_ONE:
        return 1.0
    if name in FIXED:
        return round_up(FIXED[name] * (1 + KERNEL_ROUNDING)) if low and name in ("hardswish",) else FIXED[name]
    if name == "softplus":
        return softplus(params["beta"], params["threshold"], params["dtype"])
    if name == "celu":
        if not params["alpha"] > 0:
            raise DomainError(f"CELU with alpha={params['alpha']:g}: its slope e^(x/alpha) is bounded "
                              "only for alpha > 0")
        return 1.0
    if name == "softshrink":
        if not params["lambd"] >= 0:
            raise DomainError(f"Softshrink with lambd={params['lambd']:g} < 0 is not modelled")
        return 1.0
    if name == "leaky_relu":
        return slope_max(_magnitude(params["negative_slope"], dtype))
    if name == "rrelu":
        return slope_max(_magnitude((params["lower"] + params["upper"]) / 2, dtype))
    if name == "prelu":
        return slope_max(float(torch.as_tensor(params["weight"]).detach().double().abs().max()))
    if name == "elu":  # s·x above 0, s·α(e^{qx} − 1) below: slopes s and sαq·e^{qx}, q ≥ 0
        scale, q = params.get("scale", 1.0), params.get("input_scale", 1.0)
        if q < 0:
            raise DomainError(f"ELU with input_scale={q:g} < 0 grows without bound")
        s, a, q = (_magnitude(v, dtype) for v in (scale, params["alpha"], q))
        return round_up(max(s, s * a * q))
    if name == "selu":
        selu = round_up(1.0507009873554804934193349852946 * 1.6732632423543772848170429916717)
        return round_up(selu * (1 + KERNEL_ROUNDING)) if low else selu
    if name == "gelu":
        if params["approximate"] not in ("none", "tanh"):
            raise DomainError(f"GELU approximate={params['approximate']!r} is not modelled")
        return gelu(params["approximate"])
    if name == "silu":
        return silu()
    raise KeyError(name)
