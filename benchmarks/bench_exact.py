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
    OMP_NUM_THREADS=1 python benchmarks/bench_exact.py corpus 3

``compare DIR MODEL REPEATS`` times the same bound with another checkout's ``harness`` (e.g.
the commit this branch started from, unpacked by ``git archive``) and this one, interleaved in
fresh processes, and prints both medians, their spread and the ratio.

``corpus`` (issue 18): models of the kinds the issue lists (ignored aliases, hooks on
constant-rule modules, parametrised activations, discontinuous ops, overridden forwards,
transposed convolutions, weights from 2^-500 to 2^500, tuple arithmetic, tensor defaults),
each bounded or refused with one line in at most 20 s: the table gives every model's median
time, the outcome, and the largest time.

Set ``OMP_NUM_THREADS`` explicitly (the table prints it and the load average, since other
work on a shared machine slows the numbers). asv: ``ExactNetworkBound.time_bound`` and
``ExactNetworkBound.track_max_rel_width`` (parameter: the model). Nothing heavy happens at
import.
"""
from __future__ import annotations

import math
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
    if name.startswith("standard_cnn"):
        from harness.training.models import StandardCNNDiscriminator
        return StandardCNNDiscriminator(int(name[len("standard_cnn"):] or 32))
    import torchvision
    return torchvision.models.resnet18()


def config(name: str) -> dict:
    """``MODELS[name]``, or ``standard_cnnN``: the standard CNN at ``N x N`` (tol 1e-6)."""
    if name in MODELS:
        return MODELS[name]
    size = int(name[len("standard_cnn"):])
    return dict(shape=(3, size, size), tol=1e-6, target_s=math.inf)


def bound(name: str, model):
    from harness.exact import lipschitz_upper_bound

    cfg = config(name)
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


def corpus():
    """``(name, model, input shape)`` of the issue-18 kinds (see the module docstring)."""
    import torch
    import torch.nn.functional as F
    from torch import nn

    class Fn(nn.Module):
        def __init__(self, fn, *layers):
            super().__init__()
            self.fn, self.layers = fn, nn.ModuleList(layers)

        def forward(self, x):
            return self.fn(x, *self.layers)

    class Gated(nn.Linear):
        def forward(self, x):
            return super().forward(x) * (1 + 99 * (x.abs().max() > 10))

    class Default(nn.Module):
        def forward(self, x, y=torch.ones(8), z=2.0):
            return x * z + y

    torch.manual_seed(0)
    hooked = nn.Sequential(nn.Linear(8, 8), nn.ReLU(), nn.LayerNorm(8))
    hooked[1].register_forward_hook(lambda m, a, o: o * 100)
    hooked[2].register_forward_pre_hook(lambda m, a: (a[0] * 10,))
    tiny = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(),
                         nn.Conv2d(8, 8, 3, padding=1, padding_mode="circular")).double()
    huge = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.Tanh(), nn.Conv2d(8, 8, 3, stride=2, padding=1)).double()
    with torch.no_grad():
        tiny[0].weight.mul_(2.0 ** -500)
        tiny[2].weight.mul_(2.0 ** -400)
        huge[0].weight.mul_(2.0 ** 500)
        huge[2].weight.mul_(2.0 ** -100)
    return [
        ("mean(axis=2)", Fn(lambda x: x.mean(axis=2)), (3, 8, 8)),
        ("hooks on ReLU, LayerNorm", hooked, (8,)),
        ("Softplus(threshold=0)", nn.Sequential(nn.Linear(8, 8), nn.Softplus(threshold=0)), (8,)),
        ("div(rounding_mode=floor)", Fn(lambda x: torch.div(x, 2, rounding_mode="floor")), (8,)),
        ("F.prelu, input weight", Fn(lambda x: F.prelu(x, x[0, :1])), (8,)),
        ("CELU(alpha=-1)", nn.Sequential(nn.Linear(8, 8), nn.CELU(-1.0)), (8,)),
        ("Linear, overridden forward", Gated(8, 8), (8,)),
        ("ConvTranspose2d stack", nn.Sequential(nn.ConvTranspose2d(8, 4, 4, 2, 1), nn.ReLU(),
                                                nn.ConvTranspose2d(4, 3, 4, 2, 1)), (8, 8, 8)),
        ("weights 2^-500, 2^-400", tiny, (3, 16, 16)),
        ("weights 2^500, 2^-100", huge, (3, 16, 16)),
        ("norm(2, dim=1), stack(unbind)", Fn(lambda x: torch.stack(x.unbind(1) + x.unbind(1)).norm(2, dim=1)),
         (4, 5)),
        ("tensor default argument", Default(), (8,)),
        ("standard CNN 16x16", build("standard_cnn16"), (3, 16, 16)),
    ]


def main_corpus(repeats: int) -> None:
    import torch

    from harness.exact import lipschitz_upper_bound
    print(f"issue-18 corpus, {repeats} repeat(s); torch {torch.__version__}, threads {torch.get_num_threads()}, "
          f"load avg {os.getloadavg()[0]:.2f}")
    print(f"{'model':<32} {'seconds: median [min, max]':>27}  outcome")
    slowest = 0.0
    for name, model, shape in corpus():
        times, outcome = [], ""
        for _ in range(repeats):
            start = time.perf_counter()
            try:
                outcome = f"bound {lipschitz_upper_bound(model, shape).upper:.6g}"
            except ValueError as exc:  # refusals: one line naming the op
                outcome = f"refused: {str(exc)[:70]}"
            times.append(time.perf_counter() - start)
        slowest = max(slowest, max(times))
        print(f"{name:<32} {_spread(times):>27}  {outcome}")
    print(f"largest time {slowest:.2f} s (target 20 s: {'met' if slowest <= 20 else 'MISSED'}); "
          f"load avg after {os.getloadavg()[0]:.2f}")


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


def time_once(name: str) -> None:
    """One bound of ``name`` in this process; prints its seconds (for :func:`main_compare`)."""
    model = build(name)
    start = time.perf_counter()
    bound(name, model)
    print(f"seconds {time.perf_counter() - start:.4f}")


def main_compare(other: str, name: str, repeats: int) -> None:
    import subprocess
    from pathlib import Path

    here = str(Path(__file__).resolve().parents[1])
    times: dict[str, list[float]] = {other: [], here: []}
    for _ in range(repeats):
        for root in (other, here):  # interleaved, so drifting load hits both alike
            env = {**os.environ, "PYTHONPATH": root}
            out = subprocess.run([sys.executable, __file__, "time_once", name], env=env, capture_output=True,
                                 text=True, check=True, cwd=here).stdout
            times[root].append(float(out.split("seconds")[-1]))
    a, b = statistics.median(times[other]), statistics.median(times[here])
    print(f"{name}: {other}: {_spread(times[other])} s; this checkout: {_spread(times[here])} s; "
          f"ratio {b / a:.2f} (medians of {repeats}, interleaved); load avg {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    which = sys.argv[1] if len(sys.argv) > 1 else "standard_cnn"
    if which == "time_once":
        time_once(sys.argv[2])
    elif which == "compare":
        main_compare(sys.argv[2], sys.argv[3], int(sys.argv[4]))
    elif which == "corpus":
        main_corpus(int(sys.argv[2]) if len(sys.argv) > 2 else 1)
    else:
        main(which, int(sys.argv[2]) if len(sys.argv) > 2 else 1)
