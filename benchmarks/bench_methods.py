"""asv benchmarks: cost of one discriminator update per method.

One update = forward on real and on fake (two calls, as a GAN training loop makes them),
hinge loss, the method's penalty, backward, Adam step (Miyato setting C), ``after_step``;
Miyato's standard CNN discriminator at 32×32, batch 64, float32, CPU, torch's default
thread count.

* ``MethodStep.time_step``: asv's own timing of one update, per method.
* ``Ratios.track_ratio``: all methods measured *interleaved in one process* (round-robin over
  methods, order reversed every other round, warm-up rounds, ``ROUNDS`` timed rounds)
  and reported as the median step time divided by ``none``'s median from the same run;
  ratios taken from separate asv runs would mostly measure machine noise.
  ``Ratios.track_ratio_cpu`` is the same from process CPU time, which is far less disturbed by
  other processes on a shared machine.

Run as a script for a table::

    python benchmarks/bench_methods.py [rounds] [all | m1,m2,...] [threads]

On a shared machine wall times are disturbed by other processes; with ``threads=1`` the
CPU-time column counts this process's work alone (no OpenMP spin-waiting) and is the
most robust estimate of a method's relative cost.
"""
from __future__ import annotations

import contextlib
import statistics
import sys
import time

import torch

from harness.methods import available, get
from harness.training.models import StandardCNNDiscriminator

BATCH = 64
SIZE = 32
WARMUP = 3
ROUNDS = 15


def methods() -> list[str]:
    """Built-in methods (entry-point plug-ins are left out)."""
    return [m for m in available() if m in _BUILTINS]


_BUILTINS = ("none", "weight_clip", "grad_penalty", "sn_w", "torch_sn", "sn_conv", "ssn", "bsn",
             "bssn", "weight_norm", "frobenius_norm", "orthonormal_reg")


class Step:
    """A discriminator, its optimiser, fixed real/fake batches and one-update closure.

    ``device`` and ``batch`` are for benchmarks/gpu/amp_compile.py, which also sets
    ``autocast`` (a context manager factory, e.g. ``torch.autocast``) around the forward
    passes and the loss, and replaces ``D`` by its ``torch.compile``-d module."""

    def __init__(self, method: str, seed: int = 0, device: str = "cpu", batch: int = BATCH) -> None:
        torch.manual_seed(seed)
        self.method = get(method)
        self.D = self.method.apply(StandardCNNDiscriminator(SIZE).to(device)).train()
        self.opt = torch.optim.Adam(self.D.parameters(), lr=2e-4, betas=(0.5, 0.999))
        self.autocast = contextlib.nullcontext
        g = torch.Generator().manual_seed(seed + 1)
        self.real = torch.randn(batch, 3, SIZE, SIZE, generator=g).to(device)
        self.fake = torch.randn(batch, 3, SIZE, SIZE, generator=g).to(device)
        self()  # first call: sn_conv records input sizes, allocators warm up

    def __call__(self) -> torch.Tensor:
        """One update; returns its loss (detached)."""
        self.opt.zero_grad(set_to_none=True)
        with self.autocast():
            loss = (torch.relu(1 - self.D(self.real)).mean() + torch.relu(1 + self.D(self.fake)).mean()
                    + self.method.penalty(self.D, self.real, self.fake))
        loss.backward()
        self.opt.step()
        self.method.after_step(self.D)
        return loss.detach()


def interleaved(names: list[str] | None = None, rounds: int = ROUNDS, warmup: int = WARMUP
                ) -> dict[str, dict[str, float]]:
    """Median/min/max ms per step for each method, measured round-robin in one process,
    and the ratio of medians to ``none``."""
    names = list(names or methods())
    if "none" not in names:
        names.insert(0, "none")
    steps = {n: Step(n) for n in names}
    times: dict[str, list[float]] = {n: [] for n in names}
    cpu: dict[str, list[float]] = {n: [] for n in names}
    for r in range(warmup + rounds):
        order = names if r % 2 == 0 else names[::-1]  # alternate to cancel drift
        for n in order:
            c0, t0 = time.process_time(), time.perf_counter()
            steps[n]()
            dt, dc = time.perf_counter() - t0, time.process_time() - c0
            if r >= warmup:
                times[n].append(dt * 1e3)
                cpu[n].append(dc * 1e3)
    base = statistics.median(times["none"])
    base_min = min(times["none"])
    base_cpu = statistics.median(cpu["none"])
    return {n: {"median_ms": statistics.median(t), "min_ms": min(t), "max_ms": max(t),
                "ratio": statistics.median(t) / base, "ratio_min": min(t) / base_min,
                "cpu_ms": statistics.median(cpu[n]), "ratio_cpu": statistics.median(cpu[n]) / base_cpu}
            for n, t in times.items()}


class MethodStep:
    """asv: wall time of one discriminator update."""

    params = methods()
    param_names = ["method"]
    timeout = 300
    number = 1
    repeat = (3, 10, 60.0)
    warmup_time = 0.0

    def setup(self, method: str) -> None:
        self.step = Step(method)
        self.step()

    def time_step(self, method: str) -> None:
        self.step()


class Ratios:
    """asv: step time / ``none``'s from one interleaved run shared by every parameter
    (``setup_cache`` runs once; see the module docstring)."""

    params = methods()
    param_names = ["method"]
    timeout = 1800

    def setup_cache(self) -> dict[str, dict[str, float]]:
        return interleaved()

    def track_ratio(self, cache, method: str) -> float:
        return cache[method]["ratio"]

    track_ratio.unit = "x none"

    def track_ratio_cpu(self, cache, method: str) -> float:
        """From process CPU time (less disturbed by other processes)."""
        return cache[method]["ratio_cpu"]

    track_ratio_cpu.unit = "x none"

    def track_ms(self, cache, method: str) -> float:
        return cache[method]["median_ms"]

    track_ms.unit = "ms"


def main(argv: list[str]) -> None:
    rounds = int(argv[1]) if len(argv) > 1 else ROUNDS
    names = argv[2].split(",") if len(argv) > 2 and argv[2] != "all" else None
    if len(argv) > 3:  # thread count (the asv benchmarks use torch's default)
        torch.set_num_threads(int(argv[3]))
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, batch {BATCH}, "
          f"{rounds} rounds")
    res = interleaved(names, rounds=rounds)
    print("| method | median ms / step | min | max | × none (median) | × none (min) "
          "| CPU ms / step | × none (CPU) |\n| --- | --- | --- | --- | --- | --- | --- | --- |")
    for n, r in res.items():
        print(f"| {n} | {r['median_ms']:.1f} | {r['min_ms']:.1f} | {r['max_ms']:.1f} | "
              f"{r['ratio']:.3f} | {r['ratio_min']:.3f} | {r['cpu_ms']:.1f} | {r['ratio_cpu']:.3f} |")


if __name__ == "__main__":
    main(sys.argv)
