"""``none``: the unconstrained discriminator, the baseline every cost is measured against."""
from .base import Method
from .registry import register

register(Method)
