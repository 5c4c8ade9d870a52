"""Synthetic inputs for the reporters: a preview report and the tests' fixture.

``python -m harness.reporting.demo reports/demo.html`` writes a report from made-up data
that exercises every feature: three suites, method-free and method cases, a violated
check, a regression and an improvement against baselines, a run error with a traceback,
a check not applicable, training traces, image artifacts and a plot whose data are
missing.  The numbers are invented (shaped like the real suites); they are not results.
"""
from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import numpy as np
import pandas as pd

TRACEBACK = """Traceback (most recent call last):
  File "harness/runners/training.py", line 88, in run_case
    d_loss = step(discriminator, batch)
  File "harness/methods/sn_conv.py", line 41, in forward
    sigma = power_iteration(op, u, n_iter=self.params["n_iter"])
RuntimeError: power iteration did not converge: sigma=nan after 1 iterations"""


def _row(suite, case, method, seed, metric, value, unit="1", params=None, status="ok", message="",
         samples=""):
    return {"suite": suite, "case": case, "method": method, "seed": seed, "metric": metric,
            "value": value, "unit": unit, "device": "cpu", "status": status, "message": message,
            "params": json.dumps(params or {}, sort_keys=True), "samples": samples}


def _verdict(suite, case, method, seed, metric, check, kind, verdict, value, reference, detail):
    return {"suite": suite, "case": case, "method": method, "seed": seed, "metric": metric,
            "check": check, "kind": kind, "verdict": verdict, "value": value,
            "reference": reference, "detail": detail}


def _sample_grid(path: Path, seed: int, sharp: float) -> None:
    """A 4x4 grid of blurry blobs, written as PNG (what a generator's sample grid looks like)."""
    import matplotlib.image
    rng = np.random.default_rng(seed)
    tiles = []
    yy, xx = np.mgrid[0:16, 0:16] / 15.0
    for _ in range(16):
        img = np.zeros((16, 16, 3))
        for c in range(3):
            cx, cy = rng.uniform(0.2, 0.8, 2)
            img[..., c] = np.exp(-sharp * ((xx - cx) ** 2 + (yy - cy) ** 2)) * rng.uniform(0.5, 1)
        tiles.append(np.clip(img + rng.normal(0, 0.05, img.shape), 0, 1))
    rows = [np.concatenate(tiles[i * 4:(i + 1) * 4], axis=1) for i in range(4)]
    matplotlib.image.imsave(path, np.concatenate(rows, axis=0))


def demo_suites() -> list[dict]:
    return [
        {
            "name": "conv_operator_norm", "kind": "operator_norms",
            "description": "SNw vs SNConv: ‖Ŵ‖ ≤ ‖W̃‖ ≤ α‖Ŵ‖ with α = sqrt(⌈k/s⌉²), exact in float64 "
                           "(FFT for circular padding, certified brackets for zero padding).",
            "metrics": {"ratio": {"unit": "1", "description": "‖W̃‖ / ‖Ŵ‖"},
                        "alpha": {"unit": "1", "description": "sqrt(⌈k_h/s⌉·⌈k_w/s⌉)"},
                        "bracket_gap": {"unit": "1", "description": "relative width of the certified bracket"}},
            "checks": [
                {"name": "alpha_upper", "metric": "ratio", "assert": "value <= alpha * (1 + 1e-9)",
                 "cite": "Lin et al. 2021 §4 (after Tsuzuku et al. 2018)"},
                {"name": "reshape_lower", "metric": "ratio", "assert": "value >= 1 - 1e-9",
                 "when": "n >= k", "cite": "Lin et al. 2021 §4"},
            ],
            "compare": [{"metric": "ratio", "rule": "exact", "rtol": 1e-6}],
            "plots": [
                {"type": "scatter", "x": "metric:alpha", "y": "ratio", "group": "k",
                 "title": "‖W̃‖/‖Ŵ‖ inside the α band",
                 "reference": [{"label": "lower bound 1", "expr": "1"},
                               {"label": "upper bound α", "expr": "x"}]},
                {"type": "line", "x": "n", "y": "ratio", "group": "stride", "facet": "k", "logx": True,
                 "title": "ratio vs input size"},
            ],
        },
        {
            "name": "thm2_variance", "kind": "random_matrix",
            "description": "Thm 2 of Lin et al.: Var(a_ij/‖A‖) ≤ 1/max(m, n). Shown as Var·max(m,n) "
                           "(bound 1) with the Bai–Yin prediction max(m,n)/(√m+√n)².",
            "metrics": {"var_max": {"unit": "1", "description": "Var(a/‖A‖)·max(m,n)"}},
            "checks": [{"name": "thm2_bound", "metric": "var_max", "assert": "value <= 1",
                        "cite": "Lin et al. 2021, Thm 2"}],
            "plots": [
                {"type": "line", "x": "n", "y": "var_max", "group": "distribution", "logx": True,
                 "where": {"m": 8}, "title": "Var·max(m,n), m = 8",
                 "reference": [{"label": "Thm 2 bound", "expr": "1"},
                               {"label": "Bai–Yin (gaussian)", "expr": "max(x, 8)/(sqrt(x)+sqrt(8))**2"}]},
            ],
        },
        {
            "name": "train_standard_cnn", "kind": "training",
            "description": "Short GAN training on 8×8 digits with the standard CNN discriminator: "
                           "step time, FID proxy, Lipschitz bounds and per-layer gradient norms.",
            "metrics": {"step_ms": {"unit": "ms", "description": "median discriminator step"},
                        "fid": {"unit": "1", "description": "FID proxy on digit features"},
                        "lip_upper": {"unit": "1", "description": "certified upper bound ∏‖W̃_i‖"},
                        "lip_lower": {"unit": "1", "description": "largest input-gradient norm found"},
                        "inception_score": {"unit": "1", "description": "not measured at the ci preset"}},
            "checks": [{"name": "lip_sandwich", "metric": "lip_lower", "assert": "value <= lip_upper",
                        "cite": "Lipschitz bound ∏‖W̃_i‖ (docs/theory.md#certificate)"}],
            "compare": [{"metric": "step_ms", "rule": "noisy", "better": "lower", "threshold": 1.05,
                         "alpha": 0.01},
                        {"metric": "fid", "rule": "directional", "better": "lower"}],
            "plots": [
                {"type": "bars", "y": ["lip_upper", "lip_lower"], "group": "method", "logy": True,
                 "title": "Lipschitz: certified upper vs empirical lower"},
                {"type": "trace", "series": "grad_norm/*", "group": "method", "logy": True,
                 "title": "per-layer gradient norm during training"},
                {"type": "trace", "series": "loss_d", "group": "method", "title": "discriminator loss"},
                {"type": "line", "x": "lr", "y": "inception_score", "group": "method",
                 "title": "Inception score vs learning rate"},
                {"type": "images", "title": "generator samples after training"},
            ],
        },
    ]


def demo_inputs(workdir: str | Path) -> dict:
    """All reporter inputs; image artifacts are written under ``workdir``."""
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    rows, verdicts, traces, artifacts = [], [], [], []

    # --- conv_operator_norm: method-free, two seeds
    s = "conv_operator_norm"
    for k in (3, 4):
        for stride in (1, 2):
            for n in (4, 8, 16, 32):
                p = {"c_in": 16, "c_out": 32, "k": k, "stride": stride, "n": n}
                case = f"k={k},stride={stride},n={n}"
                alpha = math.sqrt(math.ceil(k / stride) ** 2)
                for seed in (0, 1):
                    ratio = 1 + (alpha - 1) * (0.35 + 0.25 * math.log2(n) / 5) + rng.normal(0, 0.02)
                    if (k, stride, n) == (3, 1, 4) and seed == 0:
                        ratio = alpha * 1.04          # the planted violation
                    rows += [_row(s, case, "", seed, "ratio", ratio, params=p),
                             _row(s, case, "", seed, "alpha", alpha, params=p),
                             _row(s, case, "", seed, "bracket_gap", abs(rng.normal(0, 1e-3)), params=p)]
                    ok = ratio <= alpha * (1 + 1e-9)
                    verdicts.append(_verdict(
                        s, case, "", seed, "ratio", "alpha_upper", "check", "pass" if ok else "violation",
                        ratio, alpha, f"value {ratio:.4g} {'<=' if ok else '>'} bound {alpha:g} (Lin et al. 2021 §4)"))
                    if n >= k:
                        verdicts.append(_verdict(s, case, "", seed, "ratio", "reshape_lower", "check", "pass",
                                                 ratio, 1.0, f"value {ratio:.4g} >= 1"))
                    else:
                        verdicts.append(_verdict(s, case, "", seed, "ratio", "reshape_lower", "check", "n/a",
                                                 ratio, 1.0, "input smaller than the kernel: lower bound not implied"))
                verdicts.append(_verdict(s, case, "", float("nan"), "ratio", "exact", "comparison", "pass",
                                         ratio, ratio, "|Δ| = 0 <= rtol 1e-06"))

    # --- thm2_variance: method-free, three seeds, two distributions
    s = "thm2_variance"
    for dist in ("gaussian", "rademacher"):
        for n in (8, 16, 32, 64, 128, 256):
            p = {"m": 8, "n": n, "distribution": dist}
            case = f"m=8,n={n},distribution={dist}"
            base = max(8, n) / (math.sqrt(8) + math.sqrt(n)) ** 2
            for seed in (0, 1, 2):
                v = base * (1 + rng.normal(0, 0.03)) * (0.97 if dist == "rademacher" else 1.0)
                rows.append(_row(s, case, "", seed, "var_max", v, params=p))
                verdicts.append(_verdict(s, case, "", seed, "var_max", "thm2_bound", "check", "pass", v, 1.0,
                                         f"value {v:.4g} <= bound 1 (Lin et al. 2021, Thm 2)"))
    verdicts.append(_verdict(s, "m=8,n=512,distribution=gaussian", "", float("nan"), "var_max", "noisy",
                             "comparison", "missing", float("nan"), 0.69,
                             "in the baseline but not in this run"))

    # --- train_standard_cnn: methods, seeds, comparisons, an error, traces, images
    s = "train_standard_cnn"
    case = "dataset=digits8,steps=200"
    p = {"dataset": "digits8", "steps": 200, "lr": 0.0002}
    base_ms = {"none": 311, "sn_w": 336, "clip(c=0.01)": 320, "wgan_gp": 710}
    fid = {"none": 41.0, "sn_w": 27.5, "clip(c=0.01)": 44.1, "wgan_gp": 38.2}
    lip = {"none": (310.0, 12.0), "sn_w": (6.3, 0.9), "clip(c=0.01)": (1.1e-3, 2e-4), "wgan_gp": (55.0, 1.3)}
    for m in base_ms:
        for seed in (0, 1, 2):
            ms = base_ms[m] * (1.12 if m == "wgan_gp" else 1.0) * (1 + rng.normal(0, 0.02))
            rows += [_row(s, case, m, seed, "step_ms", ms, "ms", p,
                          samples=json.dumps([round(ms * (1 + rng.normal(0, 0.01)), 2) for _ in range(5)])),
                     _row(s, case, m, seed, "fid", fid[m] + rng.normal(0, 0.8), params=p),
                     _row(s, case, m, seed, "lip_upper", lip[m][0] * (1 + rng.normal(0, 0.05)), params=p),
                     _row(s, case, m, seed, "lip_lower", lip[m][1] * (1 + rng.normal(0, 0.05)), params=p)]
            for step in range(0, 201, 10):
                decay = math.exp(-step / 120)
                for layer, scale in (("features.0", 1.0), ("features.2", 8.0), ("features.4", 40.0)):
                    g = {"none": scale * 30, "sn_w": 1.2, "clip(c=0.01)": 0.02, "wgan_gp": scale * 2}[m]
                    traces.append({"suite": s, "case": case, "method": m, "seed": seed,
                                   "series": f"grad_norm/{layer}", "step": step,
                                   "value": g * (0.5 + decay) * math.exp(rng.normal(0, 0.1))})
                traces.append({"suite": s, "case": case, "method": m, "seed": seed, "series": "loss_d",
                               "step": step, "value": -0.5 * (1 - decay) * (1 if m != "none" else 3)
                               + rng.normal(0, 0.05)})
        if m in ("none", "sn_w"):
            png = workdir / f"samples_{m}.png"
            _sample_grid(png, seed=len(m), sharp=18 if m == "sn_w" else 6)
            artifacts.append({"suite": s, "case": case, "method": m, "seed": 0, "kind": "image",
                              "path": str(png)})
        lo, hi = np.median([lip[m][1]]), np.median([lip[m][0]])
        verdicts.append(_verdict(s, case, m, float("nan"), "lip_lower", "lip_sandwich", "check", "pass",
                                 lo, hi, f"value {lo:.3g} <= lip_upper {hi:.3g}"))
        ratio = 1.12 if m == "wgan_gp" else 1.0 + rng.normal(0, 0.005)
        if m == "wgan_gp":
            verdicts.append(_verdict(s, case, m, float("nan"), "step_ms", "noisy", "comparison", "regression",
                                     base_ms[m] * 1.12, base_ms[m],
                                     "Mann-Whitney p=0.003, median ratio 1.12 > 1.05"))
        else:
            verdicts.append(_verdict(s, case, m, float("nan"), "step_ms", "noisy", "comparison", "pass",
                                     base_ms[m] * ratio, base_ms[m],
                                     f"Mann-Whitney p=0.41, median ratio {ratio:.3f}"))
        verdicts.append(_verdict(s, case, m, float("nan"), "fid", "directional", "comparison",
                                 "improvement" if m == "sn_w" else "pass", fid[m],
                                 fid[m] * (1.1 if m == "sn_w" else 1.0),
                                 "lower is better: 27.5 < baseline 30.25" if m == "sn_w" else "within tolerance"))
    # a method that crashed
    for seed in (0, 1, 2):
        for metric in ("step_ms", "fid"):
            rows.append(_row(s, case, "sn_conv", seed, metric, float("nan"), "ms" if metric == "step_ms" else "1",
                             p, status="error", message=TRACEBACK))
    verdicts.append(_verdict(s, case, "sn_conv", float("nan"), "step_ms", "run", "run", "error",
                             float("nan"), float("nan"), TRACEBACK))
    verdicts.append(_verdict(s, case, "sn_conv", float("nan"), "fid", "directional", "comparison", "new",
                             float("nan"), float("nan"), "no baseline for this method"))

    manifest = {
        "git_commit": "2e7206f0304975365b52f4c00561e72d9b193c40", "git_dirty": False,
        "preset": "ci", "device": "cpu", "device_name": "2-core CPU", "torch": "2.14.1",
        "python": sys.version.split()[0], "seeds": [0, 1, 2],
        "command": "lipbench verify --preset ci --baselines baselines/",
        "start_time": "2026-11-22T03:30:00Z", "end_time": "2026-11-22T03:41:12Z",
        "baselines_dir": "baselines/",
        "packages": {"numpy": np.__version__, "pandas": pd.__version__},
        "note": "synthetic demo data (harness.reporting.demo), not measurements",
    }
    return {"results": pd.DataFrame(rows), "verdicts": pd.DataFrame(verdicts), "suites": demo_suites(),
            "manifest": manifest, "traces": pd.DataFrame(traces), "artifacts": artifacts}


def main(argv: list[str] | None = None) -> int:
    from . import terminal_summary, write_html, write_junit
    argv = sys.argv[1:] if argv is None else argv
    out = Path(argv[0] if argv else "reports/demo.html")
    inputs = demo_inputs(out.parent / (out.stem + "_artifacts"))
    write_html(out, title="lipbench demo report (synthetic data)", **inputs)
    write_junit(out.with_suffix(".xml"), inputs["verdicts"])
    print(terminal_summary(inputs["verdicts"]))
    print(f"wrote {out} and {out.with_suffix('.xml')}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
