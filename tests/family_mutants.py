"""Broken variants of the layer families (mutants) and the circular model orthogonality is judged
on, for tests/test_families.py.

Importable as ``family_mutants:Name`` when ``tests/`` is on ``sys.path`` (like ``mutants.py``).
Each mutant subclasses a family and inherits or declares its claim; :data:`MUTANTS` maps it to
where it is judged (``"contract"``: :func:`harness.methods.run_contract` on the contract's
zero-padded model; ``"circular"``: the observation/judge split on
:func:`harness.methods.families.judge.circular_model`) and the
claim that must be named in its violation. :data:`CORRECT` lists families that must pass there.
"""
from __future__ import annotations

import torch
from torch.nn.utils import parametrize

from harness.methods.families.orthogonium import OrthogoniumAOC, OrthogoniumAOL
from harness.methods.families.torchlip import TorchlipSpectral
from harness.methods.families.judge import CIRCULAR_SHAPE, circular_model, observe_and_judge

def judge_circular(method, seed: int = 0):
    """The claim of ``method`` on every layer of :func:`circular_model`, by the observation/judge
    split (:func:`harness.methods.families.judge.observe_and_judge`)."""
    return [j.measurement for j in observe_and_judge(method, circular_model(seed), CIRCULAR_SHAPE, seed,
                                                     spectrum=False)]


# --- mutants ---------------------------------------------------------------------------------------

class TorchlipWithoutCorrection(TorchlipSpectral):
    """torchlip's chain without ``lconv_norm``, its correction coefficient: ``‖Ŵ‖ = 1`` but the
    operator's norm reaches ``√(⌈k/s⌉²)`` times that."""

    name = "mutant_torchlip_without_correction"

    def constrain(self, layer, kind):
        super().constrain(layer, "linear")  # the chain as for a linear layer: no coefficient


class AOLWithoutRescaling(OrthogoniumAOL):
    """AOL's layers with their rescaling parametrization removed (the kernel used as initialised)."""

    name = "mutant_aol_without_rescaling"

    def build(self, name, layer, kind):
        new = super().build(name, layer, kind)
        parametrize.remove_parametrizations(new, "weight", leave_parametrized=False)
        with torch.no_grad():
            new.weight.mul_(3.0)  # orthogonium's orthogonal init is near 1; unscaled kernels are not
        return new


class AOCZeroPaddingOrthogonal(OrthogoniumAOC):
    """AOC on zero padding claiming orthogonality (the Cayley/AOC kernel is orthogonal as a
    circular convolution only): the precondition is skipped."""

    name = "mutant_aoc_zero_padding_orthogonal"
    defaults = {**OrthogoniumAOC.defaults, "orthogonal": True}

    def build(self, name, layer, kind):
        params = self.params
        self.params = {**params, "orthogonal": False}  # builds the same layers without the check
        try:
            return super().build(name, layer, kind)
        finally:
            self.params = params


class AOCBjorckStoppedEarly(OrthogoniumAOC):
    """AOC claiming orthogonality with its Björck iteration stopped after one step."""

    name = "mutant_aoc_bjorck_stopped_early"
    defaults = {**OrthogoniumAOC.defaults, "orthogonal": True, "bjorck_iterations": 1}


#: mutant -> (where it is judged, the claim its violation names)
MUTANTS = {
    TorchlipWithoutCorrection: ("contract", "operator_spectral_at_most"),
    AOLWithoutRescaling: ("contract", "operator_spectral_at_most"),
    AOCZeroPaddingOrthogonal: ("contract", "operator_orthogonal"),
    AOCBjorckStoppedEarly: ("circular", "operator_orthogonal"),
}

#: (family, parameters, where) that must pass their claim there.
CORRECT = [
    (TorchlipSpectral, {}, "contract"),
    (OrthogoniumAOC, {}, "contract"),
    (OrthogoniumAOL, {}, "contract"),
    (OrthogoniumAOC, {"orthogonal": True}, "circular"),
    (TorchlipSpectral, {}, "circular"),
]
