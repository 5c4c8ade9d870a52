"""What a runner declares next to its code: its case parameters, settings and metrics.

A suite file only *chooses* values (matrix, settings) and writes checks; the names, types,
defaults, units and the kind of variability of every metric live with the runner that
produces them, so the loader can reject a misspelt setting with its ``file:line`` and
the comparison rule of a metric follows from what it is (asv benchmarks carry their
attributes the same way).

Kinds of metric and how a run is compared with its baseline (``harness.baselines.rules``):

``exact``    float64 references: equal within a relative tolerance from float64 rounding
             (:data:`FLOAT64_RTOL`), or the metric's own stated tolerance (e.g. an iterative
             solver's convergence tolerance);
``monte_carlo`` estimates with a sampling error (means over random samples): with fixed seeds
             and settings a deterministic float64 computation, so compared with a baseline
             like ``exact``; ``lipbench compare`` of runs whose sample sizes or seeds differ
             compares them by confidence intervals, from the standard error the runner
             reports (:attr:`Metric.standard_error`) or, failing that, from the seeds;
``float32``  computed from float32 effective weights without training: equal within
             :data:`FLOAT32_TOL` (absolute and relative), the rounding of float32 arithmetic;
``outcome``  results of training, which other CPUs round differently and training
             amplifies: judged as distributions over seeds (and baseline machines);
``timing``   ratios of per-round times to ``none`` in the same run: repeated samples;
``identity`` must match exactly (e.g. the id of a feature extractor);
``info``     recorded and reported, never compared (absolute times, counts, summaries).
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

KINDS = ("exact", "monte_carlo", "float32", "outcome", "timing", "identity", "info")

#: float64: LAPACK SVD / eigenvalue backward errors are a small multiple of n·u·‖A‖
#: (u = 1.1e-16; Golub & Van Loan, Matrix Computations, §8.6, §5.4) and Monte Carlo sums
#: of N terms in another order differ by about sqrt(N)·u; for the sizes in the suites
#: (n ≤ 1e4, N ≤ 1e7) both stay below 1e-12. 1e-9 leaves three orders of margin while
#: still catching any change of the mathematics (the smallest real change in the suites'
#: histories was 1e-6).
FLOAT64_RTOL = 1e-9
#: float32: one rounding is u = 2^-24 = 6e-8; a norm or power-iteration estimate of a
#: float32 weight accumulates a few hundred of them (reductions of ~1e4 terms whose order
#: depends on the CPU's vector width). 2e-5 (~330 u) absolute and relative: differences
#: measured between CPU kernels and thread counts stayed below it (docs/results.md, "Portability").
FLOAT32_TOL = 2e-5

REQUIRED = object()


@dataclass(frozen=True)
class Metric:
    """A metric a runner reports: unit, meaning, kind of variability and better direction."""

    kind: str
    description: str
    unit: str = "1"
    better: str | None = None  # "lower" / "higher": a change that way is an improvement
    #: outcome metrics: the smallest absolute change worth a verdict (the metric's resolution)
    resolution: float = 0.0
    #: exact metrics: the relative tolerance and where it comes from (default: float64 rounding)
    rtol: float | None = None
    tolerance_source: str = ""
    #: correct implementations of the same claim give different values by design (norms at
    #: initialisation, a power iteration's estimate): under ``lipbench check --as NAME`` another
    #: implementation's value is reported against NAME's baseline, never failed
    implementation_specific: bool = False
    #: monte_carlo metrics: the metric reporting this estimate's standard error (``*`` stands for
    #: what ``*`` matched in this metric's declared name); ``None``: derived from the seeds
    standard_error: str | None = None

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"metric kind must be one of {KINDS}, got {self.kind!r}")
        if self.better not in (None, "lower", "higher"):
            raise ValueError(f"better must be lower, higher or None, got {self.better!r}")
        if self.standard_error is not None and self.kind != "monte_carlo":
            raise ValueError("only a monte_carlo metric has a standard error")


@dataclass(frozen=True)
class Setting:
    """A setting (suite-wide) or case parameter (matrix) a runner reads, with type and default."""

    type: type | tuple[type, ...]
    default: Any = REQUIRED
    description: str = ""
    #: what the type cannot say: ``check(value)`` returns why a value is wrong, or ``None``
    check: Callable[[Any], str | None] | None = None
    #: changes only how many samples a statistic is estimated from (a Monte Carlo sample size,
    #: timed rounds) or an interval's level, not what it estimates: ``lipbench compare`` still
    #: compares monte_carlo and timing metrics across it
    sampling: bool = False

    @property
    def required(self) -> bool:
        return self.default is REQUIRED

    def type_problem(self, value: Any) -> str | None:
        """Why ``value`` does not fit (``None`` when it does); ints are accepted for floats."""
        expected = self.type if isinstance(self.type, tuple) else (self.type,)
        if value is None and type(None) in expected:
            return None
        if isinstance(value, bool) and bool not in expected:
            return f"expected {_names(expected)}, got the boolean {value!r}"
        widened = isinstance(value, int) and float in expected and not isinstance(value, bool)
        if not widened and not isinstance(value, expected):
            return f"expected {_names(expected)}, got {type(value).__name__} {value!r}"
        return self.check(value) if self.check is not None and value is not None else None


def _names(types: tuple[type, ...]) -> str:
    words = {int: "an integer", float: "a number", str: "a string", bool: "true/false",
             dict: "a mapping", list: "a list", type(None): "null"}
    return " or ".join(words.get(t, t.__name__) for t in types)


def matches(pattern: str, name: str) -> bool:
    """Whether metric ``name`` matches ``pattern``, where ``*`` stands for any text (and only ``*``:
    metric names contain brackets)."""
    return re.fullmatch(".*".join(map(re.escape, pattern.split("*"))), name) is not None


@dataclass(frozen=True)
class Declarations:
    """A runner's params, settings and metrics, with glob patterns for metric families."""

    params: Mapping[str, Setting] = field(default_factory=dict)
    settings: Mapping[str, Setting] = field(default_factory=dict)
    metrics: Mapping[str, Metric] = field(default_factory=dict)
    #: True: the method's model and the measurements are on ``--device``; False: the runner
    #: computes on the CPU whatever ``--device`` says (a run on another device is refused,
    #: :mod:`harness.runners.devices`).
    on_device: bool = False

    def metric(self, name: str) -> Metric | None:
        """The declaration of ``name``; ``*`` in a declared name matches anything
        (``loglog_slope_gaussian`` matches ``loglog_slope_*``); of several matching patterns
        the most specific (longest) one (``loglog_slope_stderr_*`` before ``loglog_slope_*``)."""
        pattern = self.pattern_of(name)
        return self.metrics[pattern] if pattern is not None else None

    def pattern_of(self, name: str) -> str | None:
        """The declared name (or pattern) ``name`` is declared by."""
        if name in self.metrics:
            return name
        found = [p for p in self.metrics if "*" in p and matches(p, name)]
        return max(found, key=len) if found else None

    def standard_error_of(self, name: str) -> str | None:
        """The metric reporting the standard error of monte_carlo metric ``name`` (``None``: none declared)."""
        pattern = self.pattern_of(name)
        declared = self.metrics[pattern].standard_error if pattern is not None else None
        if declared is None or "*" not in pattern:
            return declared
        stem = re.fullmatch("(.*)".join(map(re.escape, pattern.split("*"))), name)
        parts = declared.split("*")
        return parts[0] + "".join(g + rest for g, rest in zip(stem.groups(), parts[1:]))

    def sampling_settings(self) -> set[str]:
        """The settings that change only the sampling of Monte Carlo estimates."""
        return {k for k, s in self.settings.items() if s.sampling}

    def defaults(self) -> dict[str, Any]:
        return {k: s.default for k, s in self.settings.items() if not s.required}
