"""Suite files: schema, validation with file:line errors, parameter matrices, presets, check expressions."""
from harness.expressions import Expression, ExpressionError, compile_expression
from .loader import check_types, load_suite, load_suites
from .matrix import case_id, expand
from .model import DEFAULT_MAX_CASES, Case, MethodSpec, Suite, SuiteError, SuiteLines

__all__ = ["DEFAULT_MAX_CASES", "SuiteLines", "check_types", "Case", "Expression", "ExpressionError", "MethodSpec", "Suite", "SuiteError",
           "case_id", "compile_expression", "expand", "load_suite", "load_suites"]
