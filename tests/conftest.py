"""Shared fixtures; the repository root is importable (``examples``, ``benchmarks.injected``).

Hypothesis runs derandomized by default (profile ``ci``): the examples are a fixed function of
each test, so a run in CI reproduces a local one, with the tests' own example counts.
``HYPOTHESIS_PROFILE=explore`` draws fresh random examples (the same counts) to search further.
"""
import os
import signal
import sys
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, settings

settings.register_profile("ci", derandomize=True, database=None, deadline=None, print_blob=True,
                          suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("explore", derandomize=False, deadline=None, print_blob=True,
                          suppress_health_check=[HealthCheck.too_slow])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

# lipbench leaves a stop signal its caller ignores ignored (`nohup lipbench run ...`), and a
# shell starts background jobs with SIGINT ignored: the tests of stop signals run as from a
# terminal wherever pytest was started (children inherit these dispositions).
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)
if signal.getsignal(signal.SIGHUP) is signal.SIG_IGN:
    signal.signal(signal.SIGHUP, signal.SIG_DFL)


@pytest.fixture(scope="module")
def one_thread():
    """Tiny float64 ops: threads only add contention on a shared 2-core box (restored after)."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
