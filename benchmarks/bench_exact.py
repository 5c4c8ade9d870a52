"""asv benchmarks: exact operator norms of the standard-CNN discriminator's convolutions.

Target (issue): every convolution of ``StandardCNNDiscriminator(32)`` at its real input
size (32, 32, 16, 16, 8, 8, 4) computed by :func:`harness.exact.conv_operator_norm` to
``1e-6`` relative with a certified bracket at most 1% wide, in at most 5 s altogether on a
2-core CPU. Weights: torch's default init under ``torch.manual_seed(SEED)``.

* ``ExactConvNorm.time_layer``: one layer (parameter: conv index 0-6);
* ``ExactConvNorm.time_all``: the whole set;
* ``ExactConvNorm.track_max_rel_width``: the widest bracket of the set (must be ≤ 0.01).

Nothing heavy happens at import. Run as a script for a table with wall and CPU times:
``python benchmarks/bench_exact.py [repeats]``.
"""
from __future__ import annotations

import sys
import time

SEED = 0
SIZE = 32
TOL = 1e-6


def _layers():
    import torch

    from harness.training.models import StandardCNNDiscriminator

    torch.manual_seed(SEED)
    model = StandardCNNDiscriminator(SIZE)
    convs, n = [], SIZE
    for m in model.features:
        if isinstance(m, torch.nn.Conv2d):
            convs.append((m, n))
            n //= m.stride[0]
    return convs


def _norm(layer, n):
    from harness.exact import layer_operator_norm

    return layer_operator_norm(layer, (layer.in_channels, n, n), tol=TOL)


class ExactConvNorm:
    params = list(range(7))
    param_names = ["layer"]
    timeout = 300
    number = 1
    repeat = 3

    def setup(self, layer=0):
        self.convs = _layers()

    def time_layer(self, layer):
        _norm(*self.convs[layer])

    def time_all(self, layer):
        if layer == 0:  # one run of the whole set, not one per parameter
            for conv, n in self.convs:
                _norm(conv, n)

    def track_max_rel_width(self, layer):
        return _norm(*self.convs[layer]).rel_width


def main(repeats: int = 1) -> None:
    import os

    import torch

    convs = _layers()
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, "
          f"load avg {os.getloadavg()[0]:.2f}")
    totals = []
    for rep in range(repeats):
        wall0, cpu0 = time.perf_counter(), time.process_time()
        rows = []
        for conv, n in convs:
            t, c = time.perf_counter(), time.process_time()
            r = _norm(conv, n)
            rows.append((conv, n, r, time.perf_counter() - t, time.process_time() - c))
        totals.append((time.perf_counter() - wall0, time.process_time() - cpu0))
        if rep == repeats - 1:
            print(f"{'layer':>18} {'n':>3} {'value':>10} {'rel_width':>9} {'wall s':>7} {'cpu s':>7}  upper bound")
            for conv, n, r, w, c in rows:
                print(f"{conv.in_channels:>4}->{conv.out_channels:<4} k{conv.kernel_size[0]} s{conv.stride[0]}"
                      f" {n:>3} {r.value:10.6f} {r.rel_width:9.2e} {w:7.2f} {c:7.2f}  {r.detail}")
    for i, (w, c) in enumerate(totals):
        print(f"run {i}: total wall {w:.2f} s, cpu {c:.2f} s")
    best = min(w for w, _ in totals)
    print(f"best total wall {best:.2f} s (target 5 s); max rel_width "
          f"{max(r.rel_width for *_, r, _, _ in rows):.2e} (target 1e-2)")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 1)
