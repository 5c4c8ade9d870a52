"""``training_time``: what each method costs per GAN iteration, as a ratio to ``none``.

One case is one (model, batch, ...) combination and seed with *every* method of the suite
(``groups_methods``); ``none`` is always added as the reference when it is not listed. For
each method a fresh :class:`harness.training.Session` is prepared (the case's model built
with the case's seed, so every method starts from the same initial weights; method applied
to D; Adam with the suite's setting; the loss its entry, declaration or claim chooses,
:func:`._gan_common.loss_for`).

Timing (``harness.metrics.timing.interleaved``): one timed call is one *iteration* of the
training loop, ``n_dis`` discriminator updates then one generator update (Miyato et al. 2018,
Miyato et al. 2018 §4: "n_dis updates of D per update of G"; ``n_dis`` from the Adam setting, 5 for
setting A), exactly :meth:`Session.d_step` / :meth:`Session.g_step` as :func:`harness.training.train`
runs them. Methods run round-robin (``warmup`` untimed rounds, then ``repeats`` timed rounds),
so drifts of a shared machine hit every method alike. Inside each timed iteration the
boundaries of the D and G steps are marked (``time.perf_counter_ns`` on the CPU, CUDA events
without extra synchronisation on a GPU), giving per round:

* ``iteration_ms``: the whole iteration (the ``interleaved`` sample);
* ``d_step_ms``: the mean of that iteration's ``n_dis`` D steps; ``g_step_ms``: its G step;
* ``*_ratio``: method / ``none`` *in the same round* (pairwise); value = median over rounds,
  samples = the per-round ratios (the ``noisy`` comparison rule tests them);
* ``peak_mib``: working memory of one more iteration after timing: on CUDA
  ``max_memory_allocated`` over an iteration minus the memory allocated before it (the
  models of every method stay resident, so the absolute peak would not be the method's);
  on the CPU the increase of the resident set size over the iteration, sampled every 1 ms
  after returning freed heap memory to the OS (``malloc_trim``), so it can miss short spikes.

Absolute times depend on the machine and its load; they are recorded with the device label
but only ratios are meant for comparison. "Real" batches are synthetic uniform tensors of the
model's input shape (timing depends on shapes, not pixel values), so no data set is needed.
``threads`` (setting) pins torch's intra-op threads for the case: with one thread a busy
neighbour slows a step down instead of stalling a two-thread barrier.
"""
from __future__ import annotations

import ctypes
import statistics
import time
from typing import Any, Callable, Iterable

import torch

from harness.metrics.timing import interleaved, peak_memory_mib
from harness.results import Measurement
from harness.suite import Case, MethodSpec
from harness.training import prepare

from ._gan_common import (GAN_PARAMS, GAN_SETTINGS, adam_setting, build_models, loss_for, model_spec, synthetic_images,
                          threads, user_model)
from .base import RunContext, Runner, register
from .spec import Declarations, Metric, Setting

REFERENCE = "none"


def _is_cuda(device: torch.device) -> bool:
    return device.type == "cuda" and torch.cuda.is_available()


class StepMarks:
    """Timestamps at step boundaries inside a timed block; durations read after a sync."""

    def __init__(self, device: torch.device) -> None:
        self.cuda = _is_cuda(device)
        self.rounds: list[list[Any]] = []

    def start(self) -> None:
        self.rounds.append([])
        self.mark()

    def mark(self) -> None:
        if self.cuda:
            event = torch.cuda.Event(enable_timing=True)
            event.record()
            self.rounds[-1].append(event)
        else:
            self.rounds[-1].append(time.perf_counter_ns())

    def durations_ms(self, skip: int) -> list[list[float]]:
        """Per round after the first ``skip`` (warm-up) rounds: the step durations in ms."""
        out = []
        for marks in self.rounds[skip:]:
            if self.cuda:
                out.append([float(a.elapsed_time(b)) for a, b in zip(marks, marks[1:])])
            else:
                out.append([(b - a) / 1e6 for a, b in zip(marks, marks[1:])])
        return out


def _trim_heap() -> None:
    """Give freed heap memory back to the OS (glibc), so an RSS increase is the block's own.

    (No ``gc.collect()``: tensors are freed by reference counting, and a full collection of
    a large Python heap costs about half a second.)"""
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def method_specs_with_reference(specs: Iterable[MethodSpec]) -> list[MethodSpec]:
    """The case's methods with ``none`` first (added when absent)."""
    specs = list(specs)
    refs = [i for i, s in enumerate(specs) if s.name == REFERENCE and not s.params]
    if not refs:
        return [MethodSpec(REFERENCE, (), REFERENCE)] + specs
    return [specs[refs[0]]] + specs[:refs[0]] + specs[refs[0] + 1:]


def _median(values: list[float]) -> float:
    return float(statistics.median(values))


def _rows(label: str, per_round: dict[str, list[float]], ref: dict[str, list[float]],
          peak: float, peak_kind: str) -> list[Measurement]:
    out = []
    for part in ("d_step", "g_step", "iteration"):
        ms = per_round[part]
        out.append(Measurement(f"{part}_ms", _median(ms), "ms", samples=ms, method=label))
        ratios = [a / b for a, b in zip(ms, ref[part])]
        out.append(Measurement(f"{part}_ratio", _median(ratios), "1", samples=ratios, method=label))
    out.append(Measurement("peak_mib", peak, "MiB", method=label, message=peak_kind))
    return out


@register
class TrainingTimeRunner(Runner):
    kind = "training_time"
    groups_methods = True
    declarations = Declarations(
        on_device=True,
        params=GAN_PARAMS,
        settings={**GAN_SETTINGS,
                  "warmup": Setting(int, 1, "untimed rounds first"),
                  "repeats": Setting(int, 5, "timed rounds", sampling=True),
                  "data_batches": Setting(int, 4, "batches in the synthetic tensor the sampler cycles through")},
        metrics={
            "d_step_ms": Metric("info", "median over rounds of the mean discriminator update (absolute: this "
                                        "machine only)", "ms"),
            "g_step_ms": Metric("info", "median over rounds of the generator update (absolute)", "ms"),
            "iteration_ms": Metric("info", "median over rounds of one iteration, n_dis D + 1 G updates "
                                           "(absolute)", "ms"),
            "d_step_ratio": Metric("timing", "median over rounds of d_step / none's d_step in the same round; "
                                             "samples = per-round ratios", better="lower"),
            "g_step_ratio": Metric("timing", "the same for the G update", better="lower"),
            "iteration_ratio": Metric("timing", "the same for the whole iteration", better="lower"),
            "peak_mib": Metric("info", "working memory of one iteration (CUDA max_memory_allocated; CPU: "
                                       "sampled RSS increase)", "MiB"),
        })

    def run(self, case: Case, ctx: RunContext) -> list[Measurement]:
        s, p = case.settings, case.params
        batch = int(p.get("batch", s["batch"]))
        setting = adam_setting(p, s)
        specs = method_specs_with_reference(case.methods)
        built = dict(ctx.methods)
        with threads(s["threads"]):
            sessions = {}
            for spec in specs:
                method = built.get(spec.label) or spec.build()
                sessions[spec.label] = self._session(case, spec, method, batch, setting, ctx.device)
            n_dis = next(iter(sessions.values())).settings.n_dis
            marks = {label: StepMarks(ctx.device) for label in sessions}
            calls = {label: self._iteration(sess, marks[label]) for label, sess in sessions.items()}
            warmup, repeats = s["warmup"], s["repeats"]
            timing = interleaved(calls, warmup=warmup, repeats=repeats, device=ctx.device)
            if _is_cuda(ctx.device):
                torch.cuda.synchronize(ctx.device)
            per_round: dict[str, dict[str, list[float]]] = {}
            for label in sessions:
                steps = marks[label].durations_ms(skip=warmup)
                per_round[label] = {
                    "d_step": [statistics.fmean(r[:n_dis]) for r in steps],
                    "g_step": [r[n_dis] for r in steps],
                    "iteration": list(timing.samples[label]),
                }
            peaks = {}
            for label, sess in sessions.items():
                plain = self._iteration(sess, None)
                _trim_heap()
                mem = peak_memory_mib(plain, ctx.device)
                peaks[label] = (mem["delta_mib"], str(mem["kind"]))
        ref = per_round[specs[0].label]
        out: list[Measurement] = []
        for label in sessions:
            out += _rows(label, per_round[label], ref, *peaks[label])
        return out

    @staticmethod
    def _session(case: Case, spec: MethodSpec, method: Any, batch: int, setting: Any,
                 device: torch.device):
        s, p = case.settings, case.params
        G, D = build_models(p, s, case.seed, p.get("data"))
        model = user_model(s)
        if model is not None:
            shape = model.input_shape
        else:
            _, kwargs = model_spec(p, s, p.get("data"))
            size = int(kwargs.get("size", 32))
            shape = (int(kwargs.get("channels", 3)), size, size)
        data = synthetic_images(s["data_batches"] * batch, shape, case.seed)
        loss = loss_for(s, method, spec)
        return prepare(G, D, method, loss, setting, data, batch, case.seed, device)

    @staticmethod
    def _iteration(sess, marks: StepMarks | None) -> Callable[[], None]:
        n_dis = sess.settings.n_dis

        def iteration() -> None:
            if marks is not None:
                marks.start()
            for _ in range(n_dis):
                sess.d_step()
                if marks is not None:
                    marks.mark()
            sess.g_step()
            if marks is not None:
                marks.mark()
        return iteration
