"""``sample_quality``: train a GAN with each method, trace it, and measure its samples.

One case is one data set (and optionally an Adam setting), one method and one seed. The
models come from ``settings.models`` per data set (``mlp2d`` for the 2-D mixtures,
``dcgan_digits`` for scikit-learn's digits, the standard CNN for CIFAR-10 / STL-10) unless
the case names a ``model``. The loss is ``settings.loss`` (hinge, Miyato et al. 2018 eq. 17)
except where the method's entry, its declaration or its claim choose another
(:func:`._gan_common.loss_for`: the Wasserstein loss for weight clipping and gradient
penalties, the objectives they were designed for: Arjovsky et al. 2017, Gulrajani et al. 2017).
Training is :func:`harness.training.train` (``iterations`` generator updates, ``n_dis`` D
updates each).

Traces (every ``trace_every`` iterations, default ``iterations // trace_points`` with 20
points; ``ctx.trace``): the losses, per-layer gradient
norms ``grad_norm/<layer>`` (Donovan 2025 Fig. 1, Lin et al. 2021 Fig. 5), the spectral norm of
each reshaped effective weight ``sigma_reshaped/<layer>`` (Miyato App. C.1, Fig. 9), and the
entry variance of each effective weight with Lin's Thm 2 bound ``1/max(m, n)``:
``variance/<layer>``, ``variance_bound/<layer>`` and their ratio ``variance_over_bound/<layer>``
(at most 1 under the bound; Lin Fig. 7).

Metrics of the final generator (eval mode, ``z`` from a fixed per-seed stream):

* 2-D mixtures (VEEGAN §5.1 via :mod:`harness.metrics.two_d`): ``modes_covered`` (modes that
  are the nearest centre of at least ``mode_min_count`` high-quality samples), ``hq_share``
  (share within 3 std of a centre), ``energy_distance`` against a large fresh real sample
  drawn with a fixed seed (the same reference set for every method and seed).
* digits: ``fid_digits_cnn`` / ``kid_digits_cnn`` on the penultimate features of the offline
  digits classifier (:func:`harness.metrics.digits_extractor`), against all 1797 real digits;
  ``modes_covered`` (digit classes predicted for at least ``class_min_count`` samples) and
  ``confident_share`` (top class probability >= 0.9) from the same classifier.
* any other image data set (a user's ``--data``, ``npy``/``folder`` in a suite, the named
  sets): ``fid_data_cnn`` / ``kid_data_cnn`` on an extractor trained deterministically on the
  data set's own images (:func:`harness.metrics.data_extractor`: its class labels when it has
  them, else a rotation pretext task), ``modes_covered`` / ``confident_share`` when it has
  labels, ``extractor_data_cnn`` its identity (message: data hash, training settings,
  held-out accuracy, weights hash); what cannot be measured is an ``n/a`` row with the
  reason (no labels, non-square images, no InceptionV3 weights).
* 3-channel images with the InceptionV3 weights present (never in CI):
  ``fid_inception``, ``kid_inception``, ``inception_score``.

Feature-space numbers are only comparable when the same extractor produced them. The metric
*name* says which family (``_digits_cnn`` / ``_inception``), so baselines never compare an
Inception FID with a digits-CNN FID; the row's *unit* carries the exact extractor id
(``1 @ digits-cnn-v1-<config hash>``); and the metric ``extractor_digits_cnn`` (the config
hash as an integer, compared with the ``exact`` rule) turns any change of the digits
extractor (architecture, training recipe, data) into a failing comparison instead of a
silent FID shift. Its message holds the trained weights' SHA-256 prefix.

A diverged run (non-finite or huge loss) is a result: every quality metric gets status
``diverged`` with the message ``diverged at iteration N``, and the metrics ``diverged``
(0/1) and ``iterations_completed`` are always reported. A sample grid (images) or scatter
(2-D) is saved as the artifact ``samples.png``.

:meth:`SampleQualityRunner.summarize` adds, per data set and method, the mean and standard
error over seeds (``<metric>_mean[<case>]``, ``<metric>_se[<case>]``; samples = per-seed
values) and, per data set and metric, ``separation[<case>:<metric>]``: the largest
``|mean_a - mean_b| / sqrt(se_a² + se_b²)`` over method pairs (how many standard errors
apart the two most different methods are).
"""
from __future__ import annotations

import functools
import itertools
import math
from typing import Any, Iterable

import pandas as pd
import torch

from harness.metrics import (InceptionExtractor, classifier_metrics, compute_sample_quality, data_extractor,
                             digits_extractor, energy_distance, inception_score, mean_se,
                             mode_metrics, sample_mixture)
from harness.methods.claims import LOW_RANK, SPECTRAL
from harness.metrics.classifier import DATA_TRAIN_SHARE, MAX_DATA_TRAIN_IMAGES
from harness.results import Measurement
from harness.suite import Case
from harness.training import load_data, save_grid, save_scatter, train
from harness.training.data import MIXTURES
from harness.training.loop import sample_z
from harness.layers import layer_kind, reshape_matrix, weight_layers

from ._gan_common import GAN_PARAMS, GAN_SETTINGS, adam_setting, build_models, iterations_for, loss_for, threads
from .base import RunContext, Runner, register
from .spec import Declarations, Metric, Setting

#: Per data family, the quality metrics and their base unit (the extractor id is appended).
POINT_METRICS = ("modes_covered", "hq_share", "energy_distance")
DIGITS_METRICS = ("fid_digits_cnn", "kid_digits_cnn", "modes_covered", "confident_share")
DATA_METRICS = ("fid_data_cnn", "kid_data_cnn", "modes_covered", "confident_share")
INCEPTION_METRICS = ("fid_inception", "kid_inception", "inception_score")
#: ``separation`` when two methods differ but neither varies over seeds (zero s.e.).
SEPARATION_CAP = 1e6


def stable_rank(mat: torch.Tensor) -> float:
    """``‖A‖²_F / ‖A‖²₂``: between 1 (rank one) and the rank (a flat spectrum)."""
    return float(mat.pow(2).sum() / torch.linalg.matrix_norm(mat, ord=2) ** 2)


@functools.lru_cache(maxsize=4)
def _digits_extractor(size: int):
    """The offline digits classifier for ``size``-pixel images (trained once, cached on disk)."""
    return digits_extractor(size)


def _generate(G, n: int, seed: int, device: torch.device, chunk: int = 1000) -> torch.Tensor:
    """``n`` samples of G in eval mode from a fixed ``z`` stream (CPU float32)."""
    gen = torch.Generator().manual_seed(seed)
    mode = G.training
    G.eval()
    try:
        with torch.no_grad():
            out = [G(sample_z(G, min(chunk, n - i), gen, device)).float().cpu()
                   for i in range(0, n, chunk)]
    finally:
        G.train(mode)
    return torch.cat(out)


def _quality(description: str, better: str | None, resolution: float, unit: str = "1",
             spectrum: bool = False) -> Metric:
    """A training outcome; ``spectrum``: it depends on the trained weights' whole spectrum, in which
    correct implementations of one claim differ by design (``Metric.implementation_specific``)."""
    return Metric("outcome", description, unit, better, resolution, implementation_specific=spectrum)


@register
class SampleQualityRunner(Runner):
    kind = "sample_quality"
    declarations = Declarations(
        on_device=True,
        params=GAN_PARAMS,
        settings={**GAN_SETTINGS,
                  "iterations": Setting(int, description="generator updates"),
                  "iterations_for": Setting(dict, {}, "generator updates per data set"),
                  "trace_points": Setting(int, 20, "trace points over the run"),
                  "trace_every": Setting(int, 0, "iterations between trace points (0: from trace_points)"),
                  "n_fake": Setting(int, 2000, "generated samples measured"),
                  "n_real": Setting(int, 0, "real samples (0: every image; 2-D: 2500)"),
                  "real_seed": Setting(int, 123_456, "seed of the real reference sample"),
                  "eval_seed": Setting(int, 10_000, "z stream of the evaluation samples: eval_seed + seed"),
                  "mode_min_count": Setting(int, 10, "HQ samples a 2-D mode needs to count as covered"),
                  "class_min_count": Setting(int, 20, "samples a digit class needs to count as covered"),
                  "inception": Setting((str, bool), "auto", "auto (when the weights are on disk) or never"),
                  "divergence_threshold": Setting(float, 1e6, "a |loss| above this ends the run as diverged")},
        metrics={
            "diverged": _quality("1 when training ended early on a non-finite or huge loss, else 0", "lower", 0.5),
            "iterations_completed": _quality("generator updates completed", "higher", 1.0),
            "modes_covered": _quality("2-D: modes nearest to >= mode_min_count high-quality samples (VEEGAN "
                                      "§5.1); digits: classes the digits classifier assigns >= class_min_count "
                                      "samples to", "higher", 1.0, "modes"),
            "hq_share": _quality("2-D: share of samples within 3 std of a mode centre (VEEGAN)", "higher", 0.05),
            "energy_distance": _quality("2-D: energy distance to n_real fresh real samples (V-statistic)",
                                        "lower", 0.005),
            "fid_digits_cnn": _quality("FID on the offline digits classifier's penultimate features",
                                       "lower", 0.05, "1 @ extractor id"),
            "kid_digits_cnn": _quality("KID (clean-fid estimator) on the same features", "lower", 0.005,
                                       "1 @ extractor id"),
            "confident_share": _quality("share of generated digits the classifier assigns with probability "
                                        ">= 0.9", "higher", 0.02, "1 @ extractor id"),
            "fid_data_cnn": _quality("FID on the penultimate features of an extractor trained on the data set's "
                                     "own images (its labels, else rotations)", "lower", 0.05, "1 @ extractor id"),
            "kid_data_cnn": _quality("KID on the same features", "lower", 0.005, "1 @ extractor id"),
            "extractor_data_cnn": Metric("identity", "config hash of the data set's extractor (training settings "
                                                     "and data); message: data and weights SHA-256 prefixes", "id"),
            "extractor_digits_cnn": Metric("identity", "config hash of the digits extractor; message: its "
                                                       "weights' SHA-256 prefix", "id"),
            "fid_inception": _quality("FID on InceptionV3 pool3 features (clean-fid)", "lower", 0.5,
                                      "1 @ inception-v3-clean"),
            "kid_inception": _quality("KID on InceptionV3 features", "lower", 0.001, "1 @ inception-v3-clean"),
            "inception_score": _quality("Inception score, 10 splits (Salimans et al. 2016)", "higher", 0.05,
                                        "1 @ inception-v3-clean"),
            "stable_rank": _quality("mean stable rank ||W^||_F^2/||W^||^2 of the first five trained weight layers "
                                    "(Miyato et al. 2018, §3, Fig. 3: clipping and weight normalization "
                                    "concentrate the spectrum)", None, 0.1),
            "variance_over_claimed_bound": _quality("largest weight variance over Thm 2's bound s^2/max(m,n) over "
                                                    "layers and trace points (reshape_spectral claims)", "lower",
                                                    0.05, spectrum=True),
            "stable_rank_margin[*]": Metric("info", "smallest mean stable rank of a spectral normalisation minus "
                                                    "the largest of weight normalization / Frobenius / clipping "
                                                    "(same data, same budget; judged by its check)"),
            "*_mean[*]": Metric("info", "mean over seeds per data set and method"),
            "*_se[*]": Metric("info", "standard error over seeds"),
            "separation[*]": Metric("info", "standard errors between the two most different methods"),
        })

    def run(self, case: Case, ctx: RunContext) -> Iterable[Measurement]:
        s, p = case.settings, case.params
        data_name = str(p["data"])
        spec = case.method
        source = load_data(data_name, **s["data_args"].get(data_name, {}))
        G, D = build_models(p, s, case.seed, data_name)
        iterations = iterations_for(p, s, data_name)
        setting = adam_setting(p, s)
        every = s["trace_every"] or max(1, iterations // s["trace_points"])
        with threads(s["threads"]):
            result = train(G, D, ctx.method, loss_for(s, ctx.method, spec), setting, source,
                           iterations=iterations, batch_size=s["batch"], seed=case.seed,
                           device=ctx.device, trace_every=every,
                           divergence_threshold=s["divergence_threshold"])
            self._traces(result.traces, ctx)
            out = [Measurement("diverged", float(result.diverged),
                               message=result.message if result.diverged else ""),
                   Measurement("iterations_completed", float(result.iterations))]
            metrics = self._planned_metrics(source, s)
            if result.diverged:
                msg = f"diverged at iteration {result.diverged_at}"  # the reason: on `diverged`
                return out + [Measurement(m, math.nan, unit, status="diverged", message=msg)
                              for m, unit in metrics]
            out += self._spectrum(result, ctx)
            eval_seed = s["eval_seed"] + case.seed
            if source.kind == "points":
                out += (self._points(result.G, data_name, s, eval_seed, case, ctx) if data_name in MIXTURES
                        else self._vectors(result.G, source, s, eval_seed, ctx))
            else:
                out += self._images(result.G, source, data_name, s, eval_seed, case, ctx)
        return out

    # ------------------------------------------------------------------ traces
    @staticmethod
    def _traces(rows: list[dict[str, Any]], ctx: RunContext) -> None:
        bound: dict[tuple[str, int], float] = {}
        for r in rows:
            if r["series"].startswith("variance_bound/"):
                bound[(r["series"].split("/", 1)[1], r["step"])] = r["value"]
        for r in rows:
            ctx.trace(r["series"], r["step"], r["value"])
            if r["series"].startswith("variance/"):
                layer = r["series"].split("/", 1)[1]
                b = bound.get((layer, r["step"]))
                if b:
                    ctx.trace(f"variance_over_bound/{layer}", r["step"], r["value"] / b)

    @staticmethod
    def _spectrum(result, ctx: RunContext) -> list[Measurement]:
        """Stable rank of the first five layers; for reshape_spectral claims the variance over Thm 2's bound."""
        layers = weight_layers(result.D)[:5]
        with torch.no_grad():
            ranks = [stable_rank(reshape_matrix(layer.weight.detach().double(), layer_kind(layer, name)))
                     for name, layer in layers]
        out = [Measurement("stable_rank", float(sum(ranks) / len(ranks)),
                           message=", ".join(f"{r:.3g}" for r in ranks))]
        claim, params = ctx.claim()
        if claim.quantity == "reshape_spectral":
            scale = claim.target_value(params) ** 2
            bound = {(r["series"].split("/", 1)[1], r["step"]): r["value"] for r in result.traces
                     if r["series"].startswith("variance_bound/")}
            ratios = [r["value"] / (scale * bound[(r["series"].split("/", 1)[1], r["step"])])
                      for r in result.traces if r["series"].startswith("variance/")]
            if ratios:
                out.append(Measurement("variance_over_claimed_bound", max(ratios),
                                       message=f"{len(ratios)} layer x trace point(s)"))
        return out

    # ----------------------------------------------------------------- metrics
    def _planned_metrics(self, source, s) -> list[tuple[str, str]]:
        """(metric, unit) of every quality metric a finished run of this data set reports."""
        if source.kind == "points":
            return [("modes_covered", "modes"), ("hq_share", "1"), ("energy_distance", "1")]
        out = []
        if self._use_digits_cnn(source):
            ext = _digits_extractor(int(source.sample_shape[-1]))
            unit = f"1 @ {ext.id}"
            out += [("fid_digits_cnn", unit), ("kid_digits_cnn", unit),
                    ("modes_covered", f"classes @ {ext.id}"), ("confident_share", unit)]
        elif self._use_data_cnn(source):
            out += [(m, "1 @ data extractor") for m in DATA_METRICS]
        if self._use_inception(source, s):
            unit = f"1 @ {InceptionExtractor.id}"
            out += [(m, unit) for m in INCEPTION_METRICS]
        return out

    @staticmethod
    def _use_digits_cnn(source) -> bool:
        return source.name.startswith("digits") and source.sample_shape[0] == 1

    @staticmethod
    def _use_data_cnn(source) -> bool:
        """Any other finite image data set (a user's ``--data``, a suite's ``npy``/``folder``, the named
        sets): the extractor trained on its own images (:func:`harness.metrics.data_extractor`)."""
        return source.kind == "image" and source.finite and not SampleQualityRunner._use_digits_cnn(source)

    @staticmethod
    def _use_inception(source, s) -> bool:
        want = s["inception"]
        if want is False or want == "never" or source.sample_shape[0] not in (1, 3):
            return False
        return InceptionExtractor.available()

    def _points(self, G, data_name: str, s, eval_seed: int, case: Case, ctx: RunContext) -> list[Measurement]:
        mixture = MIXTURES[data_name]
        fake = _generate(G, s["n_fake"], eval_seed, ctx.device).double()
        real = sample_mixture(mixture.centers, mixture.std, s["n_real"] or 2500, seed=s["real_seed"])
        mm = mode_metrics(fake, mixture.centers, mixture.std, min_count=s["mode_min_count"])
        if ctx.artifact_dir is not None:
            lim = float(mixture.centers.abs().max()) * 1.6
            save_scatter(fake[:1000], ctx.artifact_path(case, "samples.png"), real=real[:1000],
                         centers=mixture.centers, title=f"{data_name} {case.method.label if case.method else ''} "
                         f"seed {case.seed}", limits=(-lim, lim, -lim, lim))
        return [Measurement("modes_covered", mm.modes_covered, "modes"),
                Measurement("hq_share", mm.hq_share),
                Measurement("energy_distance", energy_distance(fake, real))]

    @staticmethod
    def _vectors(G, source, s, eval_seed: int, ctx: RunContext) -> list[Measurement]:
        """Vectors of a user's data set: the energy distance to its own samples; the mode metrics
        need a mixture's known centres (``n/a``)."""
        fake = _generate(G, s["n_fake"], eval_seed, ctx.device).double()
        real = source.sample(min(s["n_real"] or len(source), len(source)), seed=s["real_seed"]).double()
        why = "the data set is not a mixture with known centres (ring8, grid25)"
        return [Measurement("modes_covered", math.nan, "modes", status="n/a", message=why),
                Measurement("hq_share", math.nan, status="n/a", message=why),
                Measurement("energy_distance", energy_distance(fake, real))]

    def _images(self, G, source, data_name: str, s, eval_seed: int, case: Case,
                ctx: RunContext) -> list[Measurement]:
        fake = _generate(G, s["n_fake"], eval_seed, ctx.device)
        n_real = s["n_real"] or (len(source) if source.finite else 5000)
        real = source.sample(n_real, seed=s["real_seed"])
        out: list[Measurement] = []
        if ctx.artifact_dir is not None:
            save_grid(fake[:64], ctx.artifact_path(case, "samples.png"), nrow=8)
        if self._use_digits_cnn(source):
            ext = _digits_extractor(int(source.sample_shape[-1]))
            unit = f"1 @ {ext.id}"
            q = compute_sample_quality(ext, real, fake, kid_seed=0)
            cm = classifier_metrics(ext, fake, min_count=s["class_min_count"])
            digest = ext.id.rsplit("-", 1)[-1]
            out += [Measurement("fid_digits_cnn", q.fid, unit),
                    Measurement("kid_digits_cnn", q.kid, unit),
                    Measurement("modes_covered", cm.modes_covered, f"classes @ {ext.id}"),
                    Measurement("confident_share", cm.confident_share, unit),
                    Measurement("extractor_digits_cnn", float(int(digest, 16)), f"id @ {ext.id}",
                                message=f"weights sha256 {ext.weights_sha256[:16]}")]
        elif self._use_data_cnn(source):
            out += self._data_cnn(source, real, fake, s)
        if self._use_data_cnn(source) and not self._use_inception(source, s) and s["inception"] not in (False, "never"):
            why = ("InceptionV3 takes 1- or 3-channel images" if source.sample_shape[0] not in (1, 3) else
                   "the InceptionV3 weights are not in the lipbench cache (lipbench never downloads them)")
            out += [Measurement(m, math.nan, f"1 @ {InceptionExtractor.id}", status="n/a", message=why)
                    for m in INCEPTION_METRICS]
        if self._use_inception(source, s):
            ext = InceptionExtractor(device=ctx.device)
            unit = f"1 @ {ext.id}"
            q = compute_sample_quality(ext, real, fake, kid_seed=0)
            is_mean, is_std = inception_score(ext.probs(fake), splits=10)
            out += [Measurement("fid_inception", q.fid, unit),
                    Measurement("kid_inception", q.kid, unit),
                    Measurement("inception_score", is_mean, unit, message=f"std over 10 splits {is_std:.4g}")]
        return out

    @staticmethod
    def _data_cnn(source, real: torch.Tensor, fake: torch.Tensor, s) -> list[Measurement]:
        """FID/KID on the data set's own extractor; class metrics when the data has labels; the
        extractor's identity (data hash, training settings, weights hash). ``n/a`` with the reason
        for what cannot be measured."""
        shape = tuple(source.sample_shape)
        if shape[-1] != shape[-2]:
            return [Measurement(m, math.nan, status="n/a", message=f"the extractor takes square images, the data "
                                                                    f"is {shape[-2]}x{shape[-1]}")
                    for m in DATA_METRICS + ("extractor_data_cnn",)]
        count = min(len(source), int(MAX_DATA_TRAIN_IMAGES / DATA_TRAIN_SHARE))
        index = torch.randperm(len(source), generator=torch.Generator().manual_seed(0))[:count].sort().values
        labels = getattr(source, "labels", None)
        ext = data_extractor(source.get(index), None if labels is None else labels[index])
        unit = f"1 @ {ext.id}"
        q = compute_sample_quality(ext, real, fake, kid_seed=0)
        cfg, meta = ext.config, ext.meta
        identity = (f"data sha256 {str(meta.get('data_sha256', ''))[:16]} ({len(index)} images, a fixed "
                    f"{DATA_TRAIN_SHARE:.0%} trains); {cfg.epochs} epochs, batch {cfg.batch_size}, lr {cfg.lr:g}, "
                    f"seed {cfg.seed}; held-out accuracy {meta.get('eval_accuracy', math.nan):.3g}; "
                    f"weights sha256 {ext.weights_sha256[:16]}")
        out = [Measurement("fid_data_cnn", q.fid, unit), Measurement("kid_data_cnn", q.kid, unit),
               Measurement("extractor_data_cnn", float(int(ext.id.rsplit("-", 1)[-1], 16)), f"id @ {ext.id}",
                           message=identity)]
        if labels is None:
            why = ("the data set has no class labels (--labels for npy, class sub-folders for a folder); its "
                   "extractor learned rotations instead")
            return out + [Measurement(m, math.nan, unit, status="n/a", message=why)
                          for m in ("modes_covered", "confident_share")]
        cm = classifier_metrics(ext, fake, min_count=s["class_min_count"])
        return out + [Measurement("modes_covered", cm.modes_covered, f"classes @ {ext.id}"),
                      Measurement("confident_share", cm.confident_share, unit)]

    # --------------------------------------------------------------- summaries
    def summarize(self, rows: pd.DataFrame, config: dict[str, Any]) -> list[Measurement]:
        if rows.empty:
            return []
        skip = {"extractor_digits_cnn", "extractor_data_cnn", "iterations_completed"}
        rows = rows[(rows["case"] != "summary") & ~rows["metric"].isin(skip)]
        out: list[Measurement] = []
        stats: dict[tuple[str, str], dict[str, Any]] = {}
        for (case, metric, method), g in rows.groupby(["case", "metric", "method"], sort=False):
            values = g.sort_values("seed")["value"].astype(float).tolist()
            ms = mean_se(values)
            unit = str(g["unit"].iloc[0])
            note = f"n={ms.n} seed(s)" + (f", {ms.n_nan} non-finite dropped" if ms.n_nan else "")
            out.append(Measurement(f"{metric}_mean[{case}]", ms.mean, unit, samples=values,
                                   case="summary", method=method, message=note))
            if ms.n >= 2:
                out.append(Measurement(f"{metric}_se[{case}]", ms.se, unit, case="summary",
                                       method=method, message=note))
                stats.setdefault((case, metric), {})[method] = ms
        for (case, metric), by_method in stats.items():
            if metric == "diverged" or len(by_method) < 2:
                continue
            best, pair = 0.0, ""
            for (a, ma), (b, mb) in itertools.combinations(by_method.items(), 2):
                se = math.hypot(ma.se, mb.se)
                diff = abs(ma.mean - mb.mean)
                z = min(diff / se, SEPARATION_CAP) if se > 0 else (SEPARATION_CAP if diff > 0 else 0.0)
                if z > best:
                    best, pair = z, f"{a} vs {b}: {ma.mean:.4g}±{ma.se:.2g} vs {mb.mean:.4g}±{mb.se:.2g}"
            if best > 0:
                out.append(Measurement(f"separation[{case}:{metric}]", best, "s.e.", case="summary",
                                       method="", message=pair))
        return out + rank_margins(rows, config.get("method_profiles") or {})


def rank_margins(rows: pd.DataFrame, profiles: dict[str, dict]) -> list[Measurement]:
    """Per data set: the smallest mean stable rank of a spectral normalisation minus the largest
    of a low-rank-favouring method (Miyato et al. 2018, §3, App. D, Fig. 3), chosen by claim."""
    out = []
    for case, group in rows[rows["metric"] == "stable_rank"].groupby("case"):
        means = group.groupby("method")["value"].mean()
        claim = {m: (profiles.get(m) or {}).get("claim") for m in means.index}
        spectral = {m: v for m, v in means.items() if claim[m] in SPECTRAL}
        low = {m: v for m, v in means.items() if claim[m] in LOW_RANK}
        if spectral and low:
            a, b = min(spectral, key=spectral.get), max(low, key=low.get)
            out.append(Measurement(f"stable_rank_margin[{case}]", spectral[a] - low[b], case="summary", method="",
                                   message=f"{a} {spectral[a]:.3g} vs {b} {low[b]:.3g}"))
    return out
