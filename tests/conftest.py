"""Shared fixtures; the repository root is importable (``examples``, ``benchmarks.injected``).

Hypothesis runs derandomized by default (profile ``ci``): the examples are a fixed function of
each test, so a run in CI reproduces a local one, with the tests' own example counts.
``HYPOTHESIS_PROFILE=explore`` draws fresh random examples (the same counts) to search further.
"""
import os
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


@pytest.fixture(scope="module")
def one_thread():
    """Tiny float64 ops: threads only add contention on a shared 2-core box (restored after)."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
