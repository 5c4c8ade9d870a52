"""Import every shipped runner so it registers its kind."""
from . import thm2_variance  # noqa: F401
from . import thm3_bsn_variance  # noqa: F401
from . import gradient_bounds  # noqa: F401
from . import spectral_accuracy  # noqa: F401
from . import training_time  # noqa: F401
from . import sample_quality  # noqa: F401
from . import snw_vs_snconv  # noqa: F401
from . import lipschitz_certificate  # noqa: F401
from . import claims  # noqa: F401
from . import contract  # noqa: F401
from . import bound_zoo  # noqa: F401
