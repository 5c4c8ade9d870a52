"""Spectral normalization of the reshaped weight: ``sn_w``, ``ssn``, ``bsn``, ``bssn``, ``torch_sn``.

All four of ours share :class:`ReshapeSpectralNorm` (one or two reshapes of the weight,
each with its own persistent power iteration from :func:`.power.power_iteration`).
Papers: docs/references.md ([Miyato2018], [Lin2021]).
"""
from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm as _torch_spectral_norm

from .claims import Claim, MethodTags
from ..layers import reshape_matrix, swapped_reshape_matrix, weight_layers
from .power import SigmaParametrization, power_iteration, random_unit
from .registry import register
from .base import Method
from .reparam import ReparametrizationMethod

#: Power-iteration steps run when a layer is registered, so that a fresh layer's ``σ`` is
#: already a good estimate (torch's ``spectral_norm`` uses the same 15). Measured on
#: freshly initialised 64→128 and 256→512 3×3 convolutions (5 seeds each, against the
#: float64 SVD norm): relative error 1e-2 to 2.4e-2 after the 15 steps; it keeps
#: improving by one step per training forward.
INIT_ITERATIONS = 15


class _Reshape:
    """One reshape of the weight to a matrix and the inverse layout of a rank-one update."""

    def __init__(self, kind: str, swapped: bool) -> None:
        self.kind, self.swapped = kind, swapped
        # Ŵ is a view of the weight (no copy) exactly for the unswapped non-transposed case.
        self.is_view = not swapped and kind != "conv_transpose2d"

    def matrix(self, weight: torch.Tensor) -> torch.Tensor:
        if self.swapped:
            return swapped_reshape_matrix(weight, self.kind)
        return reshape_matrix(weight, self.kind)

    def rank_one(self, u: torch.Tensor, v: torch.Tensor, shape: torch.Size) -> torch.Tensor:
        """``u vᵀ`` (in this reshape's matrix space) laid out like a weight of ``shape``."""
        ocf = list(shape)
        if self.kind == "conv_transpose2d":
            ocf[0], ocf[1] = ocf[1], ocf[0]
        outer = torch.outer(u, v)
        if self.swapped:
            ocf[0], ocf[1] = ocf[1], ocf[0]
            t = outer.view(ocf).transpose(0, 1)
        else:
            t = outer.view(ocf)
        return t.transpose(0, 1) if self.kind == "conv_transpose2d" else t


class ReshapeSpectralNorm(SigmaParametrization):
    """``W_eff = scale · W / σ`` with ``σ`` the mean of the spectral norms of one or two
    reshapes of ``W`` (``sn_w``/``ssn``: ``Ŵ``; ``bsn``/``bssn`` on convolutions: ``Ŵ₁``
    and the swapped ``Ŵ₂``), each estimated by its own persistent power iteration.

    Buffers ``_u``/``_v`` (and ``_u2``/``_v2`` for the swapped reshape) hold the left and
    right vectors on the weight's device and dtype; ``_u`` is drawn like torch's (normal,
    normalised) and ``init_iterations`` steps are run at construction.
    """

    def __init__(self, weight: torch.Tensor, kind: str, balanced: bool = False,
                 n_power_iterations: int = 1, scale: float = 1.0, eps: float = 1e-12,
                 init_iterations: int = INIT_ITERATIONS) -> None:
        super().__init__(n_power_iterations, scale, eps)
        self.kind = kind
        balanced = balanced and kind != "linear"  # BSN treats linear layers as SNw
        self.normalises = "balanced" if balanced else "reshape"
        self._views = [_Reshape(kind, False)] + ([_Reshape(kind, True)] if balanced else [])
        weight = weight.detach()
        for i, view in enumerate(self._views):
            rows, cols = view.matrix(weight).shape
            self.register_buffer(self._names(i)[0], random_unit(rows, weight))
            self.register_buffer(self._names(i)[1], random_unit(cols, weight))
        self.run(weight, init_iterations)

    @staticmethod
    def _names(i: int) -> tuple[str, str]:
        return ("_u", "_v") if i == 0 else (f"_u{i + 1}", f"_v{i + 1}")

    def current_state(self):
        return tuple((getattr(self, a), getattr(self, b))
                     for a, b in map(self._names, range(len(self._views))))

    def iterate(self, weight, k):
        weight = weight.detach()
        state, total = [], None
        for i, view in enumerate(self._views):
            mat = view.matrix(weight)
            names = self._names(i)
            u, v, sigma = power_iteration(lambda x: torch.mv(mat, x), lambda y: torch.mv(mat.t(), y),
                                          getattr(self, names[0]), k, self.eps)
            # Replace (not update in place): autograd may still hold the previous vectors.
            self._buffers[names[0]], self._buffers[names[1]] = u, v
            state.append((u, v))
            total = sigma if total is None else total + sigma
        return tuple(state), total / len(self._views)

    def sigma(self, weight, state):
        total = None
        for view, (u, v) in zip(self._views, state):
            s = torch.dot(u, torch.mv(view.matrix(weight), v))
            total = s if total is None else total + s
        return total / len(self._views)

    def add_sigma_grad(self, grad, beta, alpha, state):
        n = len(self._views)
        first = self._views[0]
        u, v = state[0]
        if first.is_view and grad.is_contiguous() and not grad.is_cuda:
            # one fused pass: beta·g + (alpha/n)·u vᵀ (python scalars are free on CPU)
            out = torch.addr(grad.view(u.numel(), -1), u, v, beta=float(beta),
                             alpha=float(alpha) / n).view(grad.shape)
        else:
            out = grad * beta + first.rank_one(u * (alpha / n), v, grad.shape)
        for view, (u, v) in zip(self._views[1:], state[1:]):
            out = out + view.rank_one(u * (alpha / n), v, grad.shape)
        return out

    def extra_repr(self) -> str:
        return f"kind={self.kind}, normalises={self.normalises}, " + super().extra_repr()


#: Tags of every power-iteration spectral normalisation.
SPECTRAL_TAGS = MethodTags(power_iteration=True, reparametrizes=True)


class _SpectralBase(ReparametrizationMethod):
    balanced = False
    tags = SPECTRAL_TAGS
    defaults = {"n_power_iterations": 1, "init_iterations": INIT_ITERATIONS, "eps": 1e-12}

    def scale(self) -> float:
        return 1.0

    def parametrization(self, name, layer, kind):
        return ReshapeSpectralNorm(layer.weight, kind, balanced=self.balanced,
                                   n_power_iterations=self.params["n_power_iterations"],
                                   scale=self.scale(), eps=self.params["eps"],
                                   init_iterations=self.params["init_iterations"])


@register
class SNw(_SpectralBase):
    """Miyato's spectral normalization (SNw): ``W_eff = W / σ(Ŵ)``.

    Miyato et al., ICLR 2018 (docs/references.md#miyato2018), §2.1 eq. (8) and App. A,
    Algorithm 1: ``Ŵ`` is
    the ``(c_out, c_in·k_h·k_w)`` reshape (``ConvTranspose``: output channels are dim 1,
    ``harness.layers.reshape_matrix``), ``σ = uᵀŴv`` after one power-iteration step per
    training-mode forward (``v ← Ŵᵀu/‖Ŵᵀu‖``, ``u ← Ŵv/‖Ŵv‖``), ``u``/``v`` persistent
    and detached. ``init_iterations`` steps at registration (15, as torch). Eval mode
    uses the stored vectors unchanged.
    """

    name = "sn_w"
    claim = Claim("reshape_spectral", 1.0)


@register
class SSN(SNw):
    """Scaled spectral normalization: ``W_eff = s · W / σ(Ŵ)`` (Lin et al., NeurIPS 2021,
    docs/references.md#lin2021, §5.2); ``σ`` as in ``sn_w``. The authors swept
    ``s ∈ {0.7, …, 4.0}``."""

    name = "ssn"
    defaults = {**SNw.defaults, "s": 1.0}
    claim = Claim("reshape_spectral", "s")

    def scale(self) -> float:
        return float(self.params["s"])


@register
class BSN(_SpectralBase):
    """Bidirectional spectral normalization (Lin et al., NeurIPS 2021,
    docs/references.md#lin2021, §5.1).

    Convolutions: ``W_eff = W / ((‖Ŵ₁‖ + ‖Ŵ₂‖)/2)`` with ``Ŵ₁`` the ``(c_out, c_in·k·k)``
    reshape and ``Ŵ₂`` the ``(c_in, c_out·k·k)`` swapped reshape, each estimated by its
    own persistent power iteration (the authors' code averages the two estimates);
    linear layers as ``sn_w``.
    """

    name = "bsn"
    balanced = True
    claim = Claim("balanced_spectral", 1.0)


@register
class BSSN(BSN):
    """Bidirectional scaled spectral normalization: ``bsn`` times ``s`` (Lin et al.,
    NeurIPS 2021, docs/references.md#lin2021, §5.2)."""

    name = "bssn"
    defaults = {**BSN.defaults, "s": 1.0}
    claim = Claim("balanced_spectral", "s")

    def scale(self) -> float:
        return float(self.params["s"])


@register
class TorchSN(Method):
    """PyTorch's ``torch.nn.utils.parametrizations.spectral_norm`` on every weight layer.

    The reference implementation of SNw (Miyato et al., ICLR 2018,
    docs/references.md#miyato2018, §2.1 eq. (8)): 15
    power-iteration steps at registration, ``n_power_iterations`` per training forward,
    ``dim=1`` for ``ConvTranspose`` (output channels). Registered through torch's own
    function, so :meth:`parametrization` is not used.
    """

    name = "torch_sn"
    defaults = {"n_power_iterations": 1, "eps": 1e-12}
    claim = Claim("reshape_spectral", 1.0)
    tags = SPECTRAL_TAGS

    def apply(self, model: nn.Module) -> nn.Module:
        for name, layer in weight_layers(model):
            dim = 1 if isinstance(layer, nn.ConvTranspose2d) else 0
            _torch_spectral_norm(layer, n_power_iterations=self.params["n_power_iterations"],
                                 eps=self.params["eps"], dim=dim)
        return model


__all__ = ["ReshapeSpectralNorm", "SNw", "SSN", "BSN", "BSSN", "TorchSN", "INIT_ITERATIONS",
           "SPECTRAL_TAGS"]
