"""A researcher's own discriminator (``lipbench check V --model pkg.mod:make_d --input-shape 3,32,32``)."""
from .user import (UserModel, UserModelError, check_user_model, layers_only, load_discriminator, paired_generator,
                   parse_input_shape)

__all__ = ["UserModel", "UserModelError", "check_user_model", "layers_only", "load_discriminator",
           "paired_generator", "parse_input_shape"]
