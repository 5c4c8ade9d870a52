"""``thm3_bsn_variance``: parameter variance of conv kernels under BSN and SNw (Lin et al. 2021, Thm 3).

For a kernel W (c_out, c_in, k_h, k_w) with i.i.d. symmetric entries, BSN divides by
``σ_w = (||Ŵ₁|| + ||Ŵ₂||)/2`` (the two reshapes, out- and in-channels first). Since
``||Ŵᵢ|| >= ||W||_F / sqrt(rᵢ)`` with ``rᵢ`` the rank bound of each reshape,
``Var(w/σ_w) <= 4 / (N (1/sqrt(r₁) + 1/sqrt(r₂))²)``, ``N = c_out c_in k_h k_w``
(docs/theory.md#thm3, derived like Thm 2): Xavier-like. SNw divides by ``||Ŵ₁||`` and
obeys Thm 2's ``1/max(c_out, c_in k_h k_w)``: LeCun-like. Both are measured side by side
with Xavier's ``2/((c_in + c_out) k_h k_w)`` and LeCun's ``1/(c_in k_h k_w)``.
"""
from __future__ import annotations

import math
from typing import Iterable

import torch

from harness.results import Measurement
from harness.suite import Case

from .base import RunContext, Runner, register
from .randomness import DISTRIBUTIONS, case_generator, random_entries
from .spec import Declarations, Metric, Setting
from .thm2_variance import mean_with_interval, standard_error, top_singular_values


def thm3_bound(c_out: int, c_in: int, k_h: int, k_w: int) -> float:
    """``4 / (N (1/sqrt r₁ + 1/sqrt r₂)²)`` with r₁ = min(c_out, c_in k k), r₂ = min(c_in, c_out k k)."""
    n = c_out * c_in * k_h * k_w
    r1, r2 = min(c_out, c_in * k_h * k_w), min(c_in, c_out * k_h * k_w)
    return 4 / (n * (r1 ** -0.5 + r2 ** -0.5) ** 2)


def bsn_rmt_prediction(c_out: int, c_in: int, k_h: int, k_w: int) -> float:
    """``E[w²]/σ_w²`` for unit-variance Gaussian entries with the Bai-Yin norms
    ``‖Ŵ₁‖ ≈ √c_out + √(c_in k_h k_w)`` and ``‖Ŵ₂‖ ≈ √c_in + √(c_out k_h k_w)`` (large dims)."""
    taps = k_h * k_w
    s1 = math.sqrt(c_out) + math.sqrt(c_in * taps)
    s2 = math.sqrt(c_in) + math.sqrt(c_out * taps)
    return 4 / (s1 + s2) ** 2


def normalized_moments(kernels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per kernel of a batch (B, c_out, c_in, k, k): mean of (w/σ_bsn)² and of (w/||Ŵ₁||)².

    The batched reshapes follow :func:`harness.layers.reshape_matrix` (Ŵ₁) and
    :func:`harness.layers.swapped_reshape_matrix` (Ŵ₂).
    """
    batch, c_out, c_in = kernels.shape[:3]
    s1 = top_singular_values(kernels.reshape(batch, c_out, -1))
    s2 = top_singular_values(kernels.transpose(1, 2).reshape(batch, c_in, -1))
    second = kernels.pow(2).mean(dim=(1, 2, 3, 4))
    return second / ((s1 + s2) / 2) ** 2, second / s1 ** 2


@register
class Thm3BsnVarianceRunner(Runner):
    kind = "thm3_bsn_variance"
    uses_methods = False
    declarations = Declarations(
        params={"c_in": Setting(int), "c_out": Setting(int), "k": Setting(int, description="kernel size k x k"),
                "distribution": Setting(str, description=f"entries: {', '.join(DISTRIBUTIONS)}")},
        settings={"kernels": Setting(int, description="kernels per shape (Monte Carlo samples)", sampling=True),
                  "confidence": Setting(float, 0.99, "two-sided level of the Student-t interval", sampling=True)},
        metrics={
            **{name: Metric("monte_carlo", text, standard_error=f"{name}_se") for name, text in {
                "variance_bsn": "Var(w / sigma_w) under BSN (mean over the kernels)",
                "variance_snw": "Var(w / ||W1||) under SNw (mean over the kernels)",
                "bsn_over_xavier": "variance_bsn / xavier: of order 1 if BSN is Xavier-like",
            }.items()},
            **{f"{name}_se": Metric("info", f"standard error of {name} over the kernels")
               for name in ("variance_bsn", "variance_snw", "bsn_over_xavier")},
            **{name: Metric("exact", text) for name, text in {
                "variance_bsn_ci_low": "lower end of its confidence interval",
                "bound_bsn": "4 / (N (1/sqrt r1 + 1/sqrt r2)^2), the Thm 3 bound (docs/theory.md)",
                "variance_snw_ci_low": "lower end of its confidence interval",
                "bound_snw": "1 / max(c_out, c_in k^2), Thm 2",
                "xavier": "Xavier's 2 / ((c_in + c_out) k^2)",
                "lecun": "LeCun's 1 / (c_in k^2)",
                "bsn_rmt_prediction": "4 / (sqrt c_out + sqrt(c_in k^2) + sqrt c_in + sqrt(c_out k^2))^2: the "
                                      "Gaussian random-matrix prediction (Bai-Yin norms of both reshapes)",
            }.items()}})

    def run(self, case: Case, ctx: RunContext) -> Iterable[Measurement]:
        p = case.params
        c_out, c_in, k = int(p["c_out"]), int(p["c_in"]), int(p["k"])
        count, confidence = case.settings["kernels"], case.settings["confidence"]
        kernels = random_entries((count, c_out, c_in, k, k), p["distribution"], case_generator(case.seed, case.case))
        bsn, snw = normalized_moments(kernels)
        bsn_mean, bsn_low, _ = mean_with_interval(bsn.numpy(), confidence)
        snw_mean, snw_low, _ = mean_with_interval(snw.numpy(), confidence)
        bsn_se, snw_se = standard_error(bsn.numpy()), standard_error(snw.numpy())
        xavier = 2 / ((c_in + c_out) * k * k)
        return [
            Measurement("variance_bsn", bsn_mean),
            Measurement("variance_bsn_se", bsn_se),
            Measurement("variance_bsn_ci_low", bsn_low),
            Measurement("bound_bsn", thm3_bound(c_out, c_in, k, k)),
            Measurement("variance_snw", snw_mean),
            Measurement("variance_snw_se", snw_se),
            Measurement("variance_snw_ci_low", snw_low),
            Measurement("bound_snw", 1 / max(c_out, c_in * k * k)),
            Measurement("xavier", xavier),
            Measurement("lecun", 1 / (c_in * k * k)),
            Measurement("bsn_over_xavier", bsn_mean / xavier),
            Measurement("bsn_over_xavier_se", bsn_se / xavier),
            Measurement("bsn_rmt_prediction", bsn_rmt_prediction(c_out, c_in, k, k)),
        ]
