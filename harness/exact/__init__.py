"""Exact references in float64, whatever the model's dtype or device.

* :func:`reshaped_norm`, :func:`reshaped_norms`: ``‖Ŵ‖₂`` of Miyato's reshape (SVD);
* :func:`conv_operator_norm`, :func:`layer_operator_norm`: ``‖W̃‖₂`` of a layer on inputs of
  a given size with a certified bracket (:class:`OperatorNorm`);
  :func:`materialize_operator` for tests;
* :func:`conv_smallest_singular_value`: ``σ_min(W̃)`` with a certified bracket
  (:class:`SmallestSingularValue`);
* :func:`alpha`, :func:`alpha_bound`: the lemma ``‖Ŵ‖ ≤ ‖W̃‖ ≤ α‖Ŵ‖`` and its precondition;
* :func:`lipschitz_upper_bound`: a certified network bound over the real computation
  graph (:class:`NetworkBound`, one :class:`NodeRecord` per node), accepting exactly the ops
  of :mod:`.allowlist` (every argument read, everything else refused);
  :func:`register_lipschitz_constant` for custom modules; :func:`lipschitz_lower_bound`;
  :func:`with_constants` for multi-input models (the bound with respect to one input).
"""
from .alpha import AlphaBound, alpha, alpha_bound
from .compare import BracketCheck, adjoint_mismatch, check_bracket, lanczos_operator_norm
from .conv_fft import circular_conv_norm, frequency_matrices
from .conv_norm import (OperatorNorm, conv_operator_norm, layer_operator_norm, linear_operator_norm,
                        materialize_operator)
from .inputs import InputsError, with_constants
from .graph import InputShapeError, UnfollowableModelError, UnsupportedOperationError
from .lower import LowerBound, lipschitz_lower_bound
from .network import NetworkBound, NodeRecord, lipschitz_upper_bound
from .reshaped import reshaped_norm, reshaped_norms
from .sigma_min import SmallestSingularValue, conv_smallest_singular_value
from .declared import register_lipschitz_constant, unregister_lipschitz_constant

__all__ = [
    "AlphaBound", "BracketCheck", "InputShapeError", "InputsError", "LowerBound", "NetworkBound", "NodeRecord",
    "OperatorNorm", "SmallestSingularValue", "UnfollowableModelError", "UnsupportedOperationError",
    "adjoint_mismatch", "alpha", "alpha_bound", "check_bracket", "circular_conv_norm", "conv_operator_norm",
    "conv_smallest_singular_value", "frequency_matrices", "lanczos_operator_norm", "layer_operator_norm",
    "linear_operator_norm", "lipschitz_lower_bound", "lipschitz_upper_bound", "materialize_operator",
    "register_lipschitz_constant", "reshaped_norm", "reshaped_norms", "unregister_lipschitz_constant",
    "with_constants",
]
