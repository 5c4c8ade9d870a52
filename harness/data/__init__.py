"""A researcher's own data set (``--data``) for ``lipbench check --model``."""
from .user import NAMED, DataChoice, DataError, default_data, load_checked, parse_data

__all__ = ["NAMED", "DataChoice", "DataError", "default_data", "load_checked", "parse_data"]
