"""Per-iteration timing and peak memory, written for fair method comparisons.

* :class:`Timer` measures one block: on CUDA with CUDA events (``torch.cuda.Event``,
  ``enable_timing=True``) after a ``torch.cuda.synchronize`` so queued work from before
  is not counted, and an event synchronize at the end (kernel launches are
  asynchronous: a host clock alone would time the launch, not the work); on CPU with
  ``time.perf_counter_ns`` (monotonic, ns resolution). The clock is injectable.
* :func:`interleaved` runs methods round-robin (A B C A B C ...), so slow drifts of the
  machine (thermal throttling, other load, a noisy neighbour) hit every method alike;
  :meth:`TimingSamples.ratio_to` divides per *round* (A_r / REF_r) and reports the
  median of those ratios with their min/max, which is more robust than a ratio of
  medians.
* Peak memory: CUDA ``torch.cuda.max_memory_allocated`` after
  ``reset_peak_memory_stats`` (tensors allocated by the caching allocator, not the
  reserved pool). CPU: ``resource.getrusage(RUSAGE_SELF).ru_maxrss`` is the process's
  *lifetime* high-water mark (it never goes down), so it is only meaningful when each
  method runs in its own fresh process; :class:`RssSampler` instead polls the current
  RSS (``/proc/self/statm``, Linux) in a thread and reports the peak increase over the
  starting RSS during a block (can miss spikes shorter than the poll interval).
"""
from __future__ import annotations

import os
import resource
import statistics
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import Callable

import torch

Clock = Callable[[], int]  # returns nanoseconds

MIB = 1024.0 * 1024.0


def _is_cuda(device: str | torch.device | None) -> bool:
    return (device is not None and torch.device(device).type == "cuda"
            and torch.cuda.is_available())


class Timer:
    """Context manager; ``.ms`` holds the elapsed milliseconds after the block.

    ``device`` selects CUDA events when it is a CUDA device and CUDA is available;
    otherwise ``clock`` (default ``time.perf_counter_ns``) is used.
    """

    def __init__(self, device: str | torch.device | None = None, clock: Clock | None = None):
        self.cuda = _is_cuda(device)
        self.device = torch.device(device) if self.cuda else None
        self.clock = clock or time.perf_counter_ns
        self.ms = float("nan")

    def __enter__(self) -> "Timer":
        if self.cuda:
            torch.cuda.synchronize(self.device)
            self._start = torch.cuda.Event(enable_timing=True)
            self._end = torch.cuda.Event(enable_timing=True)
            self._start.record(torch.cuda.current_stream(self.device))
        else:
            self._t0 = self.clock()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.cuda:
            self._end.record(torch.cuda.current_stream(self.device))
            self._end.synchronize()
            self.ms = float(self._start.elapsed_time(self._end))
        else:
            self.ms = (self.clock() - self._t0) / 1e6


def time_call(fn: Callable[[], object], device: str | torch.device | None = None,
              clock: Clock | None = None) -> float:
    """Milliseconds taken by one call of ``fn``."""
    with Timer(device, clock) as t:
        fn()
    return t.ms


def summarize(samples: list[float]) -> dict[str, float]:
    """median, min, max, mean and count of a list of samples."""
    if not samples:
        raise ValueError("no samples")
    return {"median": float(statistics.median(samples)), "min": float(min(samples)),
            "max": float(max(samples)), "mean": float(statistics.fmean(samples)),
            "n": len(samples)}


@dataclass
class TimingSamples:
    """Per-method samples (ms) from :func:`interleaved`; ``order`` is the timed call order."""

    samples: dict[str, list[float]]
    order: list[str] = field(default_factory=list)

    def summary(self) -> dict[str, dict[str, float]]:
        return {k: summarize(v) for k, v in self.samples.items()}

    def ratio_to(self, reference: str) -> dict[str, dict[str, float]]:
        """Per-round ratios ``name_r / reference_r``: median, min, max over rounds."""
        if reference not in self.samples:
            raise KeyError(f"reference {reference!r} not among {sorted(self.samples)}")
        ref = self.samples[reference]
        out = {}
        for name, s in self.samples.items():
            if len(s) != len(ref):
                raise ValueError("ratios need the same number of rounds for every method")
            out[name] = summarize([a / b for a, b in zip(s, ref)])
        return out


def interleaved(callables: dict[str, Callable[[], object]], warmup: int = 1,
                repeats: int = 5, device: str | torch.device | None = None,
                clock: Clock | None = None) -> TimingSamples:
    """Run ``callables`` round-robin: ``warmup`` untimed rounds, then ``repeats`` timed ones."""
    if not callables:
        raise ValueError("no callables")
    for _ in range(warmup):
        for fn in callables.values():
            fn()
    if _is_cuda(device):
        torch.cuda.synchronize(torch.device(device))
    result = TimingSamples({k: [] for k in callables})
    for _ in range(repeats):
        for name, fn in callables.items():
            result.samples[name].append(time_call(fn, device, clock))
            result.order.append(name)
    return result


# ------------------------------------------------------------------------- memory
def cuda_peak_memory_mib(fn: Callable[[], object], device: str | torch.device = "cuda"
                         ) -> dict[str, float]:
    """Peak allocated CUDA memory while running ``fn``: absolute and above the start."""
    if not _is_cuda(device):
        raise RuntimeError("CUDA is not available")
    dev = torch.device(device)
    torch.cuda.synchronize(dev)
    torch.cuda.reset_peak_memory_stats(dev)
    start = torch.cuda.memory_allocated(dev)
    fn()
    torch.cuda.synchronize(dev)
    peak = torch.cuda.max_memory_allocated(dev)
    return {"peak_mib": peak / MIB, "delta_mib": (peak - start) / MIB}


def max_rss_mib() -> float:
    """Process lifetime peak RSS (``ru_maxrss``; KiB on Linux, bytes on macOS). Per process only."""
    r = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return r / MIB if sys.platform == "darwin" else r / 1024.0


def current_rss_bytes() -> int | None:
    """Current resident set size from ``/proc/self/statm`` (Linux), else ``None``."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return None


class RssSampler:
    """Context manager polling RSS every ``interval_s``; ``.delta_mib`` = peak − start."""

    def __init__(self, interval_s: float = 0.001) -> None:
        self.interval_s = interval_s
        self.start = self.peak = current_rss_bytes()
        self._stop = threading.Event()

    def _poll(self) -> None:
        while not self._stop.is_set():
            r = current_rss_bytes()
            if r is not None and r > self.peak:
                self.peak = r
            self._stop.wait(self.interval_s)

    def __enter__(self) -> "RssSampler":
        if self.start is not None:
            self._thread = threading.Thread(target=self._poll, daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.start is not None:
            self._stop.set()
            self._thread.join()
            r = current_rss_bytes()
            if r is not None and r > self.peak:
                self.peak = r

    @property
    def delta_mib(self) -> float:
        if self.start is None:
            return float("nan")
        return (self.peak - self.start) / MIB


def peak_memory_mib(fn: Callable[[], object], device: str | torch.device | None = None
                    ) -> dict[str, float]:
    """Peak memory of ``fn``: CUDA allocator peak on CUDA, sampled RSS delta on CPU."""
    if _is_cuda(device):
        out = cuda_peak_memory_mib(fn, device)
        out["kind"] = "cuda_max_memory_allocated"
        return out
    with RssSampler() as s:
        fn()
    return {"delta_mib": s.delta_mib, "process_max_rss_mib": max_rss_mib(),
            "kind": "cpu_rss_sampled"}
