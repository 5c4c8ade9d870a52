"""What a case will cost, before it runs: from an earlier run's recorded seconds, or measured.

``lipbench plan`` asks for every case's seconds. Two sources:

* :func:`costs_from_results`: the ``seconds`` a results folder recorded for the same case
  key, else the median over the folder's cases of the same suite and case id (other seeds or
  methods), else over the same suite and method, else over the suite;
* :func:`measure_training_cost`: for GAN-training suites (``sample_quality``), a few training
  iterations of the case's own model, method, loss and batch on the current device, timed
  after one warm-up iteration: ``iterations x (n_dis x D update + G update)``. The D and G
  updates are timed once per (model, method, loss, batch), so Adam settings that differ only
  in learning rate or momentum share a measurement. Evaluation after training (sampling,
  feature extraction) is not included: it is one pass over a few thousand samples.

"Real" batches are uniform noise shaped like the generator's output: the cost depends on
tensor shapes, not on pixels, so no data set is needed.
"""
from __future__ import annotations

import statistics
import time
from dataclasses import dataclass
from typing import Callable, Sequence

import torch

from harness.observe import in_defendant
from harness.observe.describe import describe_method
from harness.results import ResultsDir
from harness.suite import Case
from harness.training import build, get_settings, prepare, sample_z

from ._gan_common import adam_setting, iterations_for, loss_for, model_spec, threads

#: Kinds whose cases are GAN trainings of ``iterations`` generator updates.
TRAINING_KINDS = ("sample_quality",)


@dataclass(frozen=True)
class Cost:
    """Seconds of one case and where the number comes from (``None``: no estimate)."""

    seconds: float | None
    source: str


def costs_from_results(cases: Sequence[Case], results: ResultsDir) -> dict[tuple, Cost]:
    """Each case's seconds from ``results`` (exact key first, then ever wider medians)."""
    recorded = [(tuple(r["key"]), float(r["seconds"])) for r in results.case_records()
                if r.get("seconds") is not None]
    exact = dict(recorded)
    groups: dict[tuple, list[float]] = {}
    for (suite, case, method, _seed), seconds in recorded:
        for group in (("case", suite, case), ("method", suite, method), ("suite", suite)):
            groups.setdefault(group, []).append(seconds)
    out = {}
    for c in cases:
        suite, case, method, _ = c.key
        if c.key in exact:
            out[c.key] = Cost(exact[c.key], "recorded")
            continue
        for group, label in ((("case", suite, case), "median of its case id"),
                             (("method", suite, method), "median of its method"),
                             (("suite", suite), "median of its suite")):
            if group in groups:
                out[c.key] = Cost(statistics.median(groups[group]), f"recorded, {label}")
                break
        else:
            out[c.key] = Cost(None, "not in the results folder")
    return out


class TrainingCosts:
    """Measured seconds of GAN-training cases on ``device`` (one measurement per model and method)."""

    def __init__(self, device: str = "cpu", repeats: int = 2,
                 on_measure: Callable[[str], None] | None = None) -> None:
        self.device, self.repeats, self.on_measure = torch.device(device), repeats, on_measure
        self._steps: dict[tuple, tuple[float, float]] = {}

    def cost(self, case: Case) -> Cost:
        if case.kind not in TRAINING_KINDS:
            return Cost(None, f"kind {case.kind} is not a training; use --from RESULTS")
        s, p = case.settings, case.params
        data = str(p["data"])
        n_dis = get_settings(adam_setting(p, s)).n_dis
        d_step, g_step = self.step_seconds(case)
        iterations = iterations_for(p, s, data)
        per_iteration = n_dis * d_step + g_step
        return Cost(iterations * per_iteration,
                    f"measured {per_iteration * 1e3:.3g} ms/iteration x {iterations} (training only)")

    def step_seconds(self, case: Case) -> tuple[float, float]:
        """Seconds of one D update and one G update of the case's model and method (measured once)."""
        s, p = case.settings, case.params
        name, kwargs = model_spec(p, s, str(p["data"]))
        label = case.method.label if case.method else "none"
        described = describe_method(case.method.name, dict(case.method.params)) if case.method else None
        loss = loss_for(s, described, case.method)
        batch = int(p.get("batch", s["batch"]))
        key = (name, tuple(sorted(kwargs.items())), label, loss, batch, s.get("threads"))
        if key not in self._steps:
            if self.on_measure:
                self.on_measure(f"measuring {name} {label} ({loss} loss, batch {batch}) on {self.device}")
            with threads(s.get("threads")):  # the method's code runs in a defendant process
                self._steps[key] = tuple(in_defendant(self._time_steps, case, name, kwargs, loss, batch))
        return self._steps[key]

    def _time_steps(self, case: Case, name: str, kwargs: dict, loss: str, batch: int) -> tuple[float, float]:
        G, D = build(name, seed=case.seed, **kwargs)
        with torch.no_grad():
            shape = G(sample_z(G, 2, torch.Generator().manual_seed(0), "cpu")).shape[1:]
        real = torch.rand(4 * batch, *shape) * 2 - 1
        method = case.method.build() if case.method else None
        session = prepare(G, D, method, loss, {"lr": 1e-4, "beta1": 0.5, "beta2": 0.9, "n_dis": 1}, real,
                          batch, case.seed, self.device)
        session.d_step()  # warm-up: lazily created state, allocator, kernels
        session.g_step()
        d_times, g_times = [], []
        for _ in range(self.repeats):
            d_times.append(self._timed(session.d_step))
            g_times.append(self._timed(session.g_step))
        return statistics.median(d_times), statistics.median(g_times)

    def _timed(self, step: Callable[[], object]) -> float:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        start = time.perf_counter()
        step()
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        return time.perf_counter() - start
