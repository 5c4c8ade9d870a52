"""Sample-quality metrics (FID/KID/IS via clean-fid, 2-D mode metrics), timing and memory.

Modules: :mod:`.features` (extractor ids), :mod:`.sample_quality` (FID, KID, IS),
:mod:`.inception` (offline clean-fid InceptionV3), :mod:`.classifier` (offline digits
CNN extractor, classifier metrics), :mod:`.two_d` (2-D Gaussian mixtures),
:mod:`.timing` (interleaved timing, peak memory), :mod:`.stats` (mean ± s.e. over seeds).
"""
from .features import (ExtractorMismatchError, FeatureExtractor, Features,
                       require_same_extractor)
from .sample_quality import (SampleQuality, compare_sample_quality, compute_sample_quality,
                             fid, inception_score, kid, sample_quality)
from .inception import InceptionExtractor, InceptionUnavailableError, find_inception_weights
from .classifier import (ClassifierExtractor, ClassifierMetrics, classifier_metrics,
                         classifier_metrics_from_probs, data_extractor, digits_extractor, load_digits_images,
                         train_classifier_extractor)
from .two_d import (GRID25, RING8, Mixture, ModeMetrics, energy_distance, grid_centers,
                    mode_metrics, ring_centers, sample_mixture)
from .timing import (Timer, TimingSamples, interleaved, peak_memory_mib, summarize,
                     time_call)
from .stats import MeanSE, mean_se

__all__ = [
    "GRID25", "RING8", "Mixture", "ModeMetrics", "energy_distance", "grid_centers",
    "mode_metrics", "ring_centers", "sample_mixture", "Timer", "TimingSamples",
    "interleaved", "peak_memory_mib", "summarize", "time_call", "MeanSE", "mean_se",
    "ExtractorMismatchError", "FeatureExtractor", "Features", "require_same_extractor",
    "SampleQuality", "compare_sample_quality", "compute_sample_quality", "fid",
    "inception_score", "kid", "sample_quality", "InceptionExtractor",
    "InceptionUnavailableError", "find_inception_weights", "ClassifierExtractor",
    "ClassifierMetrics", "classifier_metrics", "classifier_metrics_from_probs",
    "data_extractor", "digits_extractor", "load_digits_images", "train_classifier_extractor",
]
