"""The layer families against their claims: docs/methods.md's table, computed (not a test).

For each family of ``harness.methods.families`` (and the family mutants of
``tests/family_mutants.py``) on three plain discriminators: the contract's model (zero padding,
2×6×6, with a transposed convolution), a circular-padded one (2×8×8,
:func:`harness.methods.families.judge.circular_model`) and the claims suite's DCGAN digits
discriminator at 16×16 (zero padding). The family settles, is observed and judged
(:func:`harness.methods.families.judge.observe_and_judge`); per row: the claim, the certified
float64 bracket of the largest ``σ_max`` and of the smallest ``σ_min`` over the layers, the largest
claim error and the verdict (``pass`` when every layer's error is at most the contract's
``CLAIM_RTOL = 1e-4``), and the seconds taken.

    python benchmarks/bench_families.py        # about 2.5 minutes on the loaded 2-core box
"""
from __future__ import annotations

import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))  # family_mutants:Name

import torch  # noqa: E402

from harness.methods import get  # noqa: E402
from harness.methods.contract import CLAIM_RTOL  # noqa: E402
from harness.methods.contract.base import INPUT_SHAPE, contract_model  # noqa: E402
from harness.methods.families.judge import CIRCULAR_SHAPE, circular_model, observe_and_judge  # noqa: E402
from harness.training.models import build  # noqa: E402


def models():
    """``(label, plain model, input shape)`` of the three discriminators."""
    _, digits = build("dcgan_digits", seed=0, size=16)
    return [("contract 2x6x6 zeros", contract_model(0), INPUT_SHAPE),
            ("circular 2x8x8", circular_model(0), CIRCULAR_SHAPE),
            ("dcgan_digits 1x16x16 zeros", digits, (1, 16, 16))]


def methods():
    """``(label, factory)``: the families, the orthogonal AOC, the mutants."""
    import family_mutants as fm

    found = [("torchlip_spectral", lambda: get("torchlip_spectral")),
             ("orthogonium_aoc", lambda: get("orthogonium_aoc")),
             ("orthogonium_aoc orthogonal", lambda: get("orthogonium_aoc", orthogonal=True)),
             ("orthogonium_aol", lambda: get("orthogonium_aol"))]
    return found + [(f"mutant {cls.__name__}", cls) for cls in fm.MUTANTS]


def row(label: str, factory, model_label: str, plain, shape) -> str | None:
    method = factory()
    start = time.perf_counter()
    try:
        judged = observe_and_judge(method, plain, shape)
    except TypeError as exc:  # a layer the family refuses (its precondition), named in the message
        return f"| {label} | {model_label} | refused: {str(exc).split(':', 1)[0]} | | | | |"
    seconds = time.perf_counter() - start
    top = max(judged, key=lambda j: j.spectrum["sigma_max"]).spectrum
    low = min(judged, key=lambda j: j.spectrum["sigma_min"]).spectrum
    error = max(j.measurement.error for j in judged)
    verdict = "pass" if error <= CLAIM_RTOL else "violation"
    return (f"| {label} | {model_label} | {method.claim.quantity} {method.claim.target_value(method.params):g} | "
            f"[{top['sigma_max_lower']:.9f}, {top['sigma_max_upper']:.9f}] | "
            f"[{low['sigma_min_lower']:.9f}, {low['sigma_min_upper']:.9f}] | {error:.3g} {verdict} | {seconds:.1f} |")


def main() -> None:
    torch.set_num_threads(1)
    print("| family | model | claim | σ_max bracket (largest) | σ_min bracket (smallest) | error, verdict | s |")
    print("|---|---|---|---|---|---|---|")
    for model_label, plain, shape in models():
        for label, factory in methods():
            print(row(label, factory, model_label, plain, shape), flush=True)


if __name__ == "__main__":
    main()
