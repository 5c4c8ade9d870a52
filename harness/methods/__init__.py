"""The Lipschitz methods under test, one interface (:class:`Method`) and a registry.

Built-ins (see each class's docstring for the rule and the paper): ``none``,
``weight_clip``, ``grad_penalty``, ``sn_w``, ``ssn``, ``bsn``, ``bssn``, ``sn_conv``,
``torch_sn``, ``weight_norm``, ``frobenius_norm``, ``orthonormal_reg``. Each declares
its :class:`Claim` and :class:`MethodTags`; :func:`measure_claim` measures a claim on
the model a method returned and :func:`run_contract` runs the invariants every method
must satisfy (``harness.methods.contract``). Loading ``module:attr`` imports that module
(see :mod:`.registry`). The 1-Lipschitz layer families of deel-torchlip and orthogonium
(optional extras) resolve by name too, importing their library only then (:mod:`.families`).
"""
from .base import Method
from .claims import Claim, MethodTags
from .params import MethodLoadError, MethodParameterError, validate_params
from .registry import ENTRY_POINT_GROUP, available, get, load, method_factory, register
from .reparam import ReparametrizationMethod
from .power import (SigmaParametrization, estimate_sigma, power_iterate, power_iteration,
                    sigma_parametrization)

# Built-in methods register themselves on import.
from . import none  # noqa: E402,F401
from . import normalization, operator, regularizers, spectral  # noqa: E402,F401
from .measure import ClaimMeasurement, ClaimMeasurementError, measure_claim  # noqa: E402
from .contract import InvariantResult, run_contract  # noqa: E402

__all__ = ["Claim", "ClaimMeasurement", "ClaimMeasurementError", "ENTRY_POINT_GROUP",
           "InvariantResult", "Method", "MethodLoadError", "MethodParameterError", "MethodTags",
           "ReparametrizationMethod", "SigmaParametrization", "available", "estimate_sigma",
           "get", "load", "measure_claim", "method_factory", "power_iterate", "power_iteration",
           "register", "run_contract", "sigma_parametrization", "validate_params"]
