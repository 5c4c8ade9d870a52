"""Real regressions injected by ``bench_verdicts.py`` to measure detection (not shipped methods).

Each is run under the label of the built-in it breaks, so it is judged against that
method's baselines and claim.
"""
from __future__ import annotations

import time

from torch import nn

from harness.methods.spectral import ReshapeSpectralNorm, SNw


class SleepsPerIteration:
    """Mixin: after each D update, sleep ``factor`` times the time since D's first forward after
    the previous update (one G step and one D step at ``n_dis = 1``: one training iteration),
    so every iteration takes ``1 + factor`` times as long."""

    factor = 0.25

    def apply(self, model: nn.Module) -> nn.Module:
        model = super().apply(model)
        self._started = None

        def mark(module, args):
            if self._started is None:
                self._started = time.perf_counter()
        model.register_forward_pre_hook(mark)
        return model

    def after_step(self, D: nn.Module) -> None:
        super().after_step(D)
        if self._started is not None:
            time.sleep(self.factor * (time.perf_counter() - self._started))
        self._started = None


class SlowerSNw(SleepsPerIteration, SNw):
    """``sn_w`` whose every training iteration takes 25% longer."""

    name = "slower_sn_w"
    factor = 0.25


class _Off2Percent(ReshapeSpectralNorm):
    def sigma(self, weight, state):
        return super().sigma(weight, state) * 0.98

    def iterate(self, weight, k):
        state, sigma = super().iterate(weight, k)
        return state, sigma * 0.98


class SNwOff2Percent(SNw):
    """``sn_w`` whose σ estimate is 2% low, so every layer's ‖Ŵ‖ ends near 1.02."""

    name = "sn_w_off_2_percent"

    def parametrization(self, name, layer, kind):
        return _Off2Percent(layer.weight, kind, n_power_iterations=self.params["n_power_iterations"],
                            eps=self.params["eps"], init_iterations=self.params["init_iterations"])
