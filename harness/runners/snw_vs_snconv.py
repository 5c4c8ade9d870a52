"""``snw_vs_snconv``: ``‖W̃‖ / ‖Ŵ‖`` against the α lemma (Lin et al. 2021 §4, after Tsuzuku et al. 2018).

``‖Ŵ‖ ≤ ‖W̃‖ ≤ α‖Ŵ‖`` with ``α = sqrt(⌈k_h/s⌉⌈k_w/s⌉)``; the lower inequality needs an
output whose receptive field lies inside the unpadded input, which
:func:`harness.exact.alpha_bound` reports instead of assuming. Random kernels (i.i.d.
entries; the ratio is scale-free) across shapes, strides, paddings and input sizes, and
every layer of the standard CNN discriminator at its real input size (PyTorch's default
initialisation, seeded). ``‖W̃‖`` comes with a certified bracket, so the checks use its
rigorous ends: the lower end may not exceed ``α‖Ŵ‖``, the upper end may not fall below
``‖Ŵ‖`` where the precondition holds.
"""
from __future__ import annotations

from typing import Iterable

import torch

from harness.exact import alpha_bound, conv_operator_norm, lipschitz_upper_bound, reshaped_norm
from harness.results import Measurement
from harness.suite import Case
from harness.training.models import StandardCNNDiscriminator

from .base import RunContext, Runner, register
from .randomness import DISTRIBUTIONS, case_generator, random_entries
from .spec import Declarations, Metric, Setting

#: The standard CNN's kernels are PyTorch's float32 initialisation, whose last bits depend on
#: the CPU's kernels; ||W~|| comes from Lanczos converged to 1e-6 (harness.exact's tol). Both
#: sit well inside float32's tolerance (harness.runners.spec.FLOAT32_TOL).


def lemma_measurements(reshaped: float, op, ab, case: str | None = None) -> list[Measurement]:
    """The metrics of one layer: both norms, the bracket, the ratio, α and the precondition."""
    return [Measurement(name, value, case=case) for name, value in (
        ("reshaped_norm", reshaped), ("operator_norm", op.value), ("operator_lower", op.lower),
        ("operator_upper", op.upper), ("bracket_width", op.rel_width), ("ratio", op.value / reshaped),
        ("alpha", ab.alpha), ("precondition", float(ab.lower_holds_precondition)))]


def random_kernel_case(case: Case) -> list[Measurement]:
    p = case.params
    k, stride, padding, hw = int(p["k"]), int(p["stride"]), int(p["padding"]), int(p["hw"])
    weight = random_entries((int(p["c_out"]), int(p["c_in"]), k, k), p["distribution"],
                            case_generator(case.seed, case.case))
    op = conv_operator_norm(weight, (hw, hw), stride=stride, padding=padding)
    ab = alpha_bound((k, k), stride, padding=padding, input_hw=(hw, hw))
    return lemma_measurements(reshaped_norm(weight), op, ab)


def standard_cnn_case(case: Case) -> list[Measurement]:
    """Every weight layer of the standard CNN discriminator at its real input size."""
    torch.manual_seed(case.seed)
    size = int(case.params.get("size", 32))
    bound = lipschitz_upper_bound(StandardCNNDiscriminator(size), (3, size, size))
    out = []
    for record in bound.weight_layers():
        if record.kind == "linear":
            continue
        out += lemma_measurements(record.reshaped_norm, record.operator_norm, record.alpha,
                                  case=f"{case.case},layer={record.name}")
    return out


@register
class SnwVsSnconvRunner(Runner):
    kind = "snw_vs_snconv"
    uses_methods = False
    declarations = Declarations(
        params={"c_in": Setting(int, 0), "c_out": Setting(int, 0), "k": Setting(int, 0), "stride": Setting(int, 1),
                "padding": Setting(int, 0), "hw": Setting(int, 0, "input height and width"),
                "distribution": Setting(str, "gaussian", f"kernel entries: {', '.join(DISTRIBUTIONS)}"),
                "source": Setting(str, "random", "random kernels, or every layer of the standard_cnn"),
                "size": Setting(int, 32, "standard_cnn input size")},
        metrics={
            "reshaped_norm": Metric("float32", "||W^||, exact (SVD, float64)"),
            "operator_norm": Metric("float32", "||W~||, converged to 1e-6 relative"),
            "operator_lower": Metric("float32", "certified lower end of ||W~|| (||W~v||/||v|| of an actual vector)",
                                     better="higher"),
            "operator_upper": Metric("float32", "certified upper end of ||W~||", better="lower"),
            "bracket_width": Metric("info", "(upper - lower) / lower"),
            "ratio": Metric("float32", "||W~|| / ||W^||"),
            "alpha": Metric("exact", "alpha of the lemma for this kernel, stride and input"),
            "precondition": Metric("exact", "1 when the lower inequality's precondition holds, else 0"),
        })

    def run(self, case: Case, ctx: RunContext) -> Iterable[Measurement]:
        if case.params.get("source") == "standard_cnn":
            return standard_cnn_case(case)
        return random_kernel_case(case)
