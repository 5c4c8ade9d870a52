"""Timing helpers on injected fake clocks: no test depends on real time or a GPU."""
import pytest
import torch

from harness.metrics import timing as T


class FakeClock:
    def __init__(self):
        self.ns = 0

    def __call__(self):
        return self.ns

    def advance_ms(self, ms):
        self.ns += int(ms * 1e6)


def _methods(clock, durations, log):
    """Callables that advance the fake clock by the next scripted duration and log the call."""
    def make(name):
        it = iter(durations[name])

        def fn():
            log.append(name)
            clock.advance_ms(next(it))
        return fn
    return {name: make(name) for name in durations}


def test_interleaved_round_robin_and_samples():
    clock, log = FakeClock(), []
    durations = {"A": [99, 10, 20, 30], "B": [99, 20, 20, 90], "C": [99, 5, 5, 5]}
    res = T.interleaved(_methods(clock, durations, log), warmup=1, repeats=3, clock=clock)
    assert log == ["A", "B", "C"] * 4                      # warmup round, then 3 timed rounds
    assert res.order == ["A", "B", "C"] * 3
    assert res.samples == {"A": [10, 20, 30], "B": [20, 20, 90], "C": [5, 5, 5]}
    s = res.summary()
    assert (s["A"]["median"], s["A"]["min"], s["A"]["max"]) == (20, 10, 30)
    assert (s["B"]["median"], s["B"]["min"], s["B"]["max"]) == (20, 20, 90)


def test_ratio_is_pairwise_per_round():
    clock, log = FakeClock(), []
    durations = {"A": [10, 20, 30], "B": [20, 20, 90]}
    res = T.interleaved(_methods(clock, durations, log), warmup=0, repeats=3, clock=clock)
    r = res.ratio_to("A")["B"]
    # per-round ratios 2, 1, 3 -> median 2; the ratio of medians would be 20/20 = 1
    assert (r["median"], r["min"], r["max"]) == (2.0, 1.0, 3.0)
    assert res.ratio_to("A")["A"]["median"] == 1.0
    with pytest.raises(KeyError):
        res.ratio_to("Z")


def test_timer_uses_clock_on_cpu_even_if_cuda_requested():
    clock = FakeClock()
    with T.Timer(device="cpu", clock=clock) as t:
        clock.advance_ms(12.5)
    assert t.ms == 12.5
    if not torch.cuda.is_available():  # guarded CUDA path falls back to the host clock
        with T.Timer(device="cuda", clock=clock) as t:
            clock.advance_ms(3)
        assert t.ms == 3 and not t.cuda
    assert T.time_call(lambda: clock.advance_ms(7), clock=clock) == 7


def test_summarize():
    s = T.summarize([3.0, 1.0, 2.0, 10.0])
    assert s == {"median": 2.5, "min": 1.0, "max": 10.0, "mean": 4.0, "n": 4}
    with pytest.raises(ValueError):
        T.summarize([])


def test_cpu_memory_helpers():
    rss = T.current_rss_bytes()
    assert rss is None or rss > 0
    assert T.max_rss_mib() > 0
    out = T.peak_memory_mib(lambda: torch.ones(8 * 1024 * 1024, dtype=torch.float64).sum())
    assert out["kind"] == "cpu_rss_sampled" and out["delta_mib"] >= 0
    if not torch.cuda.is_available():
        with pytest.raises(RuntimeError):
            T.cuda_peak_memory_mib(lambda: None)
