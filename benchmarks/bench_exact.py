"""Benchmarks: certified network Lipschitz bounds (every weight layer's operator norm).

Targets (issue 10), on the 2-core CPU:

* ``standard_cnn``: Miyato's standard CNN discriminator (``StandardCNNDiscriminator(32)``,
  torch's default init under ``torch.manual_seed(0)``) at 3x32x32, every operator norm to
  ``tol=1e-6`` with a certified bracket at most 1% wide, in at most 1.5 s;
* ``resnet18``: torchvision ResNet-18 (default init, seed 0) at 3x224x224 with brackets at
  most 1% wide, in at most 60 s (``tol=1e-4``, the default of ``lipbench inspect``).

The time is that of :func:`harness.exact.lipschitz_upper_bound` (graph capture, validation,
every operator norm, propagation). Run as a script for a table of every weight layer (method,
median time, bracket width, how the upper end was obtained) and the totals, medians and
spread over repeats::

    OMP_NUM_THREADS=2 python benchmarks/bench_exact.py standard_cnn 5
    OMP_NUM_THREADS=2 python benchmarks/bench_exact.py resnet18 3

Set ``OMP_NUM_THREADS`` explicitly (the table prints it and the load average, since other
work on a shared machine slows the numbers). asv: ``ExactNetworkBound.time_bound`` and
``ExactNetworkBound.track_max_rel_width`` (parameter: the model). Nothing heavy happens at
import.
"""
from __future__ import annotations

import os
import statistics
import sys
import time

MODELS = {"standard_cnn": dict(shape=(3, 32, 32), tol=1e-6, target_s=1.5),
          "resnet18": dict(shape=(3, 224, 224), tol=1e-4, target_s=60.0)}
MAX_REL_WIDTH = 0.01


def build(name: str):
    import torch

    torch.manual_seed(0)
    if name == "standard_cnn":
        from harness.training.models import StandardCNNDiscriminator
        return StandardCNNDiscriminator(32)
    import torchvision
    return torchvision.models.resnet18()


def bound(name: str, model):
    from harness.exact import lipschitz_upper_bound

    cfg = MODELS[name]
    return lipschitz_upper_bound(model, cfg["shape"], cfg["tol"], max_rel_width=MAX_REL_WIDTH)


class ExactNetworkBound:
    params = sorted(MODELS)
    param_names = ["model"]
    timeout = 600
    number = 1
    repeat = 3

    def setup(self, model):
        self.model = build(model)

    def time_bound(self, model):
        bound(model, self.model)

    def track_max_rel_width(self, model):
        return max(r.operator_norm.rel_width for r in bound(model, self.model).weight_layers())


def _spread(values) -> str:
    return f"{statistics.median(values):.2f} [{min(values):.2f}, {max(values):.2f}]"


def main(name: str, repeats: int) -> None:
    import torch

    model = build(name)
    cfg = MODELS[name]
    print(f"{name} {cfg['shape']}, tol {cfg['tol']:g}, max_rel_width {MAX_REL_WIDTH:g}; torch "
          f"{torch.__version__}, threads {torch.get_num_threads()}, load avg {os.getloadavg()[0]:.2f}")
    totals, runs = [], []
    for _ in range(repeats):
        start = time.perf_counter()
        runs.append(bound(name, model))
        totals.append(time.perf_counter() - start)
    layers = [b.weight_layers() for b in runs]
    print(f"{'layer':<22} {'input':>10} {'method':>8} {'seconds: median [min, max]':>27} "
          f"{'width':>8}  upper end")
    for i, rec in enumerate(layers[0]):
        times = [run[i].seconds for run in layers]
        shape = "x".join(map(str, rec.input_shape))
        print(f"{rec.name:<22} {shape:>10} {rec.operator_norm.method:>8} {_spread(times):>27} "
              f"{rec.operator_norm.rel_width:8.1e}  {rec.operator_norm.detail}")
    widest = max(r.operator_norm.rel_width for r in layers[0])
    over = [r.name for r in layers[0] if r.operator_norm.rel_width > MAX_REL_WIDTH]
    print(f"total seconds: {_spread(totals)} over {repeats} run(s) (target {cfg['target_s']:g} s: "
          f"{'met' if statistics.median(totals) <= cfg['target_s'] else 'MISSED'} at the median); "
          f"load avg after {os.getloadavg()[0]:.2f}")
    print(f"widest bracket {widest:.2e} (target {MAX_REL_WIDTH:g}: "
          f"{'met' if not over else 'MISSED by ' + ', '.join(over)}); certified bound {runs[0].upper:.6g}")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "standard_cnn", int(sys.argv[2]) if len(sys.argv) > 2 else 1)
