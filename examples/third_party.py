"""A third-party method written against the public interface only: PyTorch's own
``torch.nn.utils.parametrizations.spectral_norm`` wrapped as a lipbench :class:`Method`.

It does not reuse any built-in method: it declares its claim as data (the spectral norm
of the reshaped weight ``Ŵ`` is 1, Miyato et al., ICLR 2018, docs/references.md#miyato2018,
§2.1 eq. (8)) and its tags, and registers torch's parametrization on every weight layer.
``lipbench check examples.third_party:TorchSpectralNorm`` runs the contract on it
(``harness.methods.contract``) and the suites beside the built-ins; it passes both.
"""
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm

from harness.layers import weight_layers
from harness.methods import Claim, Method, MethodTags


class TorchSpectralNorm(Method):
    """``W / σ(Ŵ)`` with torch's power iteration (15 steps at registration, then
    ``n_power_iterations`` per training-mode forward)."""

    name = "third_party_torch_sn"
    defaults = {"n_power_iterations": 1}
    claim = Claim("reshape_spectral", 1.0)
    tags = MethodTags(power_iteration=True, reparametrizes=True)

    def apply(self, model: nn.Module) -> nn.Module:
        # weight_layers raises, naming the layer, for any layer it cannot handle
        for _, layer in weight_layers(model):
            dim = 1 if isinstance(layer, nn.ConvTranspose2d) else 0  # output channels
            spectral_norm(layer, n_power_iterations=self.params["n_power_iterations"], dim=dim)
        return model
