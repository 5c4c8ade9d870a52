"""Suite files: schema, validation with file:line errors, parameter matrices, presets, check expressions."""
from .expressions import Expression, ExpressionError, compile_expression
from .loader import SuiteError, load_suite, load_suites
from .matrix import case_id, expand
from .model import Case, MethodSpec, Suite

__all__ = ["Case", "Expression", "ExpressionError", "MethodSpec", "Suite", "SuiteError",
           "case_id", "compile_expression", "expand", "load_suite", "load_suites"]
