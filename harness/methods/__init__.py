"""The Lipschitz methods under test, one interface (:class:`Method`) and a registry.

Built-ins (see each class's docstring for the rule and the paper): ``none``,
``weight_clip``, ``grad_penalty``, ``sn_w``, ``ssn``, ``bsn``, ``bssn``, ``sn_conv``,
``torch_sn``, ``weight_norm``, ``frobenius_norm``, ``orthonormal_reg``.
"""
from .base import Method
from .registry import ENTRY_POINT_GROUP, MethodLoadError, available, get, load, register
from .reparam import ReparametrizationMethod
from .power import (SigmaParametrization, estimate_sigma, power_iterate, power_iteration,
                    sigma_parametrization)

# Built-in methods register themselves on import.
from . import none  # noqa: E402,F401
from . import normalization, operator, regularizers, spectral  # noqa: E402,F401

__all__ = ["Method", "MethodLoadError", "ENTRY_POINT_GROUP", "available", "get", "load", "register",
           "ReparametrizationMethod", "SigmaParametrization", "estimate_sigma", "power_iterate",
           "power_iteration", "sigma_parametrization"]
