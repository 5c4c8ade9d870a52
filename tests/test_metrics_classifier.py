"""Offline digits-CNN extractor: deterministic, cached, and it separates digits from noise."""
import numpy as np
import pytest
import torch

from harness.metrics import classifier as C
from harness.metrics import fid, kid


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    d = tmp_path_factory.mktemp("cache")
    return C.digits_extractor(16, cache_dir=d), d


def test_digits_split_is_fixed_and_disjoint():
    xa, ya = C.load_digits_images(16, "train")
    xb, yb = C.load_digits_images(16, "test")
    assert xa.shape[1:] == (1, 16, 16) and len(xa) + len(xb) == 1797
    assert xa.min() >= -1 and xa.max() <= 1
    assert torch.equal(C.load_digits_images(16, "train")[0], xa)


def test_extractor_id_and_accuracy(trained):
    ext, _ = trained
    assert ext.id.startswith("digits-cnn-v1-") and len(ext.id) == len("digits-cnn-v1-") + 10
    assert ext.meta["eval_accuracy"] > 0.9
    assert not ext.loaded_from_cache


def test_cached_second_call_loads(trained, monkeypatch):
    ext, d = trained
    monkeypatch.setattr(C, "_train", lambda *a, **k: pytest.fail("retrained despite cache"))
    again = C.digits_extractor(16, cache_dir=d)
    assert again.loaded_from_cache and again.id == ext.id
    x, _ = C.load_digits_images(16, "test")
    assert np.array_equal(again.features(x[:50]).values, ext.features(x[:50]).values)


def test_training_is_deterministic(tmp_path):
    # Same config and data, two empty caches: bitwise-identical weights and features.
    x, y = C.load_digits_images(8, "train")
    torch.manual_seed(999)  # the caller's RNG state must not matter ...
    state = torch.get_rng_state()
    a = C.train_classifier_extractor(x[:300], y[:300], "det", cache_dir=tmp_path / "a", epochs=2)
    assert torch.equal(torch.get_rng_state(), state)  # ... and is left untouched
    torch.manual_seed(1)
    b = C.train_classifier_extractor(x[:300], y[:300], "det", cache_dir=tmp_path / "b", epochs=2)
    assert not a.loaded_from_cache and not b.loaded_from_cache
    assert a.id == b.id and a.weights_sha256 == b.weights_sha256
    xt, _ = C.load_digits_images(8, "test")
    assert np.array_equal(a.features(xt).values, b.features(xt).values)
    assert np.array_equal(a.probs(xt), b.probs(xt))


def test_config_change_changes_id(tmp_path):
    x, y = C.load_digits_images(8, "train")
    a = C.train_classifier_extractor(x[:200], y[:200], "tiny", cache_dir=tmp_path, epochs=1)
    b = C.train_classifier_extractor(x[:200], y[:200], "tiny", cache_dir=tmp_path, epochs=2)
    assert a.id != b.id and a.id.startswith("tiny-")


def test_separates_real_digits_from_noise(trained):
    ext, _ = trained
    x, y = C.load_digits_images(16, "test")
    g = torch.Generator().manual_seed(0)
    noise = torch.rand(x[:270].shape, generator=g) * 2 - 1
    real_a, real_b, fake = ext.features(x[:270]), ext.features(x[270:]), ext.features(noise)
    assert real_a.extractor == fake.extractor == ext.id
    assert fid(real_a, real_b) * 20 < fid(real_a, fake)
    assert kid(real_a, real_b) * 100 < kid(real_a, fake)


def test_classifier_metrics_detect_collapse(trained):
    ext, _ = trained
    x, y = C.load_digits_images(16, "test")
    full = C.classifier_metrics(ext, x)
    assert full.modes_covered == 10 and full.class_kl_uniform < 0.05
    assert full.confident_share > 0.7 and full.classifier_score > 7
    one = C.classifier_metrics(ext, x[y == 3])
    assert one.classifier_score < 2 and one.class_kl_uniform > 1.5
    assert one.extractor == ext.id


def test_resizes_other_sizes(trained):
    ext, _ = trained
    x28, _ = C.load_digits_images(28, "test")
    assert ext.features(x28[:10]).values.shape == (10, ext.config.feat_dim)
