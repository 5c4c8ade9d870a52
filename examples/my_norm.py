"""A third-party Lipschitz method in a dozen lines: spectral normalization with a gain.

``MyNorm`` is ``sn_w`` (Miyato et al., ICLR 2018, docs/references.md#miyato2018, §2.1)
whose normalised weight is multiplied by a fixed ``gain``: ``W_eff = gain · W / σ(Ŵ)``.
It reuses the built-in power iteration and parametrization; only the scale and the
claim's target change (the claim is data: ``‖Ŵ‖ = gain`` on every layer, which
``lipbench check`` measures on the effective weights).

Use it without installing anything (the repository root, or this folder's parent, on
``sys.path``)::

    from harness.methods import get
    method = get("examples.my_norm:MyNorm", gain=1.2)

or in a suite file as ``method: examples.my_norm:MyNorm``. To make it available by name
(``get("my_norm")``), declare an entry point in your package's ``pyproject.toml``::

    [project.entry-points."lipbench.methods"]
    my_norm = "examples.my_norm:MyNorm"
"""
from harness.methods import Claim
from harness.methods.spectral import SNw


class MyNorm(SNw):
    """``gain · W / σ(Ŵ)``: ``sn_w`` scaled by ``gain`` (default 1.2)."""

    name = "my_norm"
    defaults = {**SNw.defaults, "gain": 1.2}
    claim = Claim("reshape_spectral", "gain")

    def scale(self) -> float:
        return float(self.params["gain"])
