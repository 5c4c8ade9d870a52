"""Data sources: mixtures, digits, seeded sampler, and real loaders on tiny fake on-disk data."""
import pickle
import struct

import numpy as np
import pytest
import torch

from harness.training import data as D
from harness.training.data import (GRID25, RING8, BatchSampler, DatasetCorruptError,
                                   DatasetNotFoundError, load_data)


# ------------------------------------------------------------------ mixtures and digits

def test_mixture_centers_and_std():
    assert RING8.centers.shape == (8, 2) and RING8.std == 0.02
    assert torch.allclose(RING8.centers.norm(dim=1), torch.full((8,), 2.0, dtype=torch.float64))
    assert GRID25.centers.shape == (25, 2) and GRID25.std == 0.05
    assert sorted(set(GRID25.centers[:, 0].tolist())) == [-4, -2, 0, 2, 4]


def batches(source, seed, n=4, bs=64):
    s = BatchSampler(source, bs, seed)
    return [next(s) for _ in range(n)]


def same_stream(a, b):
    return all(torch.equal(x, y) for x, y in zip(a, b))


@pytest.mark.parametrize("name", ["ring8", "grid25"])
def test_mixture_samples_determinism_and_range(name):
    src = load_data(name)
    a, b, c = batches(src, 1), batches(src, 1), batches(src, 2)
    assert same_stream(a, b) and not same_stream(a, c)
    x = torch.cat(a).double()
    mix = D.MIXTURES[name]
    dist = torch.cdist(x, mix.centers).min(dim=1).values
    assert dist.max() < 6 * mix.std  # every sample near a mode
    assert len(set(torch.cdist(x, mix.centers).argmin(dim=1).tolist())) > len(mix.centers) // 2


def test_determinism_check_catches_unseeded_sampler():
    src = load_data("ring8")

    class Unseeded(BatchSampler):
        def __init__(self, source, bs, seed):
            super().__init__(source, bs, torch.seed())  # broken: ignores the case seed

    a = [next(Unseeded(src, 8, 1)) for _ in range(2)]
    b = [next(Unseeded(src, 8, 1)) for _ in range(2)]
    assert not same_stream(a, b)


@pytest.mark.parametrize("size,shape", [(8, (1, 8, 8)), (16, (1, 16, 16)), (28, (1, 28, 28))])
def test_digits(size, shape):
    src = load_data("digits", size=size)
    assert len(src) == 1797 and src.sample_shape == shape and src.labels.shape == (1797,)
    x = src.data
    assert x.min() == -1 and x.max() == 1 and x.dtype == torch.float32
    if size == 28:  # 20x20 digit centred, background -1 in the 4-pixel border
        assert (x[..., :4, :] == -1).all() and (x[..., :, -4:] == -1).all()
    a, b = batches(src, 3, n=3, bs=32), batches(src, 3, n=3, bs=32)
    assert same_stream(a, b)


def test_sampler_epochs_and_state_roundtrip():
    src = D.TensorSource(torch.arange(10, dtype=torch.float32).view(10, 1))
    s = BatchSampler(src, 4, 0)
    epoch = torch.cat([next(s), next(s)]).flatten()
    assert len(set(epoch.tolist())) == 8  # within an epoch: no repeats, tail of 2 dropped
    state = s.state_dict()
    ahead = [next(s) for _ in range(5)]
    s2 = BatchSampler(src, 4, 123)
    s2.load_state_dict(state)
    assert same_stream(ahead, [next(s2) for _ in range(5)])
    with pytest.raises(ValueError):
        BatchSampler(src, 11, 0)


def test_sample_for_metrics():
    src = load_data("digits")
    a, b = src.sample(100, seed=4), src.sample(100, seed=4)
    assert torch.equal(a, b) and a.shape == (100, 1, 8, 8)
    assert load_data("grid25").sample(10, seed=1).shape == (10, 2)


# ------------------------------------------------------------------ missing data

@pytest.mark.parametrize("loader,kw,expect", [
    ("cifar10", {}, ["CIFAR-10 not found", "cifar-10-batches-py/", "cifar-10-python.tar.gz", "data_batch_1"]),
    ("mnist", {}, ["MNIST not found", "train-images-idx3-ubyte", "MNIST/raw"]),
    ("stl10", {}, ["STL-10 not found", "stl10_binary/unlabeled_X.bin", "stl10_binary.tar.gz"]),
    ("stl10", {"split": "train"}, ["train_X.bin", "train_y.bin"]),
    ("celeba", {}, ["CelebA not found", "celeba/img_align_celeba/", "img_align_celeba.zip"]),
])
def test_missing_datasets_name_files_and_root(tmp_path, loader, kw, expect):
    root = tmp_path / "nowhere"
    with pytest.raises(DatasetNotFoundError) as err:
        load_data(loader, root=root, **kw)
    msg = str(err.value)
    assert str(root) in msg
    for piece in expect:
        assert piece in msg, (piece, msg)
    assert err.value.missing and isinstance(err.value, FileNotFoundError)


def test_missing_folder_npy_and_partition(tmp_path):
    with pytest.raises(DatasetNotFoundError, match=str(tmp_path / "imgs")):
        load_data("folder", root=tmp_path / "imgs")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetNotFoundError, match="image files"):
        load_data("folder", root=tmp_path / "empty")
    with pytest.raises(DatasetNotFoundError, match="x.npy"):
        load_data("npy", path=tmp_path / "x.npy")
    make_celeba(tmp_path, partition=False)
    with pytest.raises(DatasetNotFoundError, match="list_eval_partition.txt"):
        load_data("celeba", root=tmp_path, split="train")


# ------------------------------------------------------------------ fake on-disk data

def make_cifar(root, n=4):
    base = root / "cifar-10-batches-py"
    base.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i, name in enumerate([f"data_batch_{k}" for k in range(1, 6)] + ["test_batch"]):
        entry = {"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8), "labels": [i] * n}
        with open(base / name, "wb") as f:
            pickle.dump(entry, f)
    with open(base / "batches.meta", "wb") as f:
        pickle.dump({"label_names": [f"c{k}" for k in range(10)]}, f)
    with open(base / "data_batch_1", "rb") as f:
        return pickle.load(f)["data"]


def test_cifar10_fake(tmp_path):
    first = make_cifar(tmp_path)
    src = load_data("cifar10", root=tmp_path, verify=False)
    assert len(src) == 20 and src.sample_shape == (3, 32, 32)
    assert torch.equal(src.data[0], torch.from_numpy(first[0].reshape(3, 32, 32)))  # CHW as stored
    x = src.get(torch.arange(4))
    assert x.dtype == torch.float32 and x.min() >= -1 and x.max() <= 1
    assert x[0, 0, 0, 0].item() == pytest.approx(first[0, 0] / 127.5 - 1)
    assert src.labels.tolist()[:5] == [0, 0, 0, 0, 1]
    assert len(load_data("cifar10", root=tmp_path, train=False, verify=False)) == 4
    with pytest.raises(DatasetCorruptError, match="MD5"):  # fake files fail torchvision's checksums
        load_data("cifar10", root=tmp_path)


def idx_file(path, arr, magic):
    with open(path, "wb") as f:
        f.write(struct.pack(">I", magic) + b"".join(struct.pack(">I", d) for d in arr.shape))
        f.write(arr.astype(np.uint8).tobytes())


def make_mnist(root, n=5):
    raw = root / "MNIST" / "raw"
    raw.mkdir(parents=True)
    rng = np.random.default_rng(1)
    imgs = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
    for split in ("train", "t10k"):
        idx_file(raw / f"{split}-images-idx3-ubyte", imgs, 0x00000803)
        idx_file(raw / f"{split}-labels-idx1-ubyte", np.arange(n) % 10, 0x00000801)
    return imgs


def test_mnist_fake(tmp_path):
    imgs = make_mnist(tmp_path)
    src = load_data("mnist", root=tmp_path)
    assert len(src) == 5 and src.sample_shape == (1, 28, 28)
    assert torch.equal(src.data[:, 0], torch.from_numpy(imgs))
    assert src.labels.tolist() == [0, 1, 2, 3, 4]
    assert load_data("mnist", root=tmp_path, size=32).sample_shape == (1, 32, 32)


def test_stl10_fake(tmp_path):
    base = tmp_path / "stl10_binary"
    base.mkdir()
    rng = np.random.default_rng(2)
    rng.integers(0, 256, (3, 3, 96, 96), dtype=np.uint8).tofile(base / "unlabeled_X.bin")
    src = load_data("stl10", root=tmp_path, verify=False)
    assert len(src) == 3 and src.sample_shape == (3, 48, 48) and src.data.dtype == torch.uint8
    assert load_data("stl10", root=tmp_path, verify=False, size=None).sample_shape == (3, 96, 96)


def make_celeba(root, n=4, partition=True):
    from PIL import Image
    d = root / "celeba" / "img_align_celeba"
    d.mkdir(parents=True)
    rng = np.random.default_rng(3)
    for i in range(n):
        Image.fromarray(rng.integers(0, 256, (218, 178, 3), dtype=np.uint8)).save(d / f"{i + 1:06d}.jpg")
    if partition:
        (root / "celeba" / "list_eval_partition.txt").write_text(
            "".join(f"{i + 1:06d}.jpg {0 if i < n - 1 else 2}\n" for i in range(n)))


def test_celeba_fake(tmp_path):
    make_celeba(tmp_path)
    src = load_data("celeba", root=tmp_path, size=16)
    assert len(src) == 4 and src.sample_shape == (3, 16, 16)
    x = src.get(torch.tensor([0, 3]))
    assert x.shape == (2, 3, 16, 16) and x.min() >= -1 and x.max() <= 1
    assert len(load_data("celeba", root=tmp_path, split="train", size=16)) == 3
    mem = load_data("celeba", root=tmp_path, split="test", size=16, in_memory=True)
    assert len(mem) == 1 and mem.data.dtype == torch.uint8


def test_image_folder_fake(tmp_path):
    from PIL import Image
    rng = np.random.default_rng(4)
    (tmp_path / "a").mkdir()
    arrays = []
    for i in range(3):
        arr = rng.integers(0, 256, (12, 12, 3), dtype=np.uint8)
        arrays.append(arr)
        Image.fromarray(arr).save(tmp_path / "a" / f"{i}.png")
    (tmp_path / "notes.txt").write_text("ignored")
    src = load_data("folder", root=tmp_path)
    assert len(src) == 3 and src.sample_shape == (3, 12, 12)
    x = src.get(torch.tensor([1]))
    expected = torch.from_numpy(arrays[1]).permute(2, 0, 1).float() / 127.5 - 1
    assert torch.allclose(x[0], expected)  # PNG is lossless
    gray = load_data("folder", root=tmp_path, size=8, channels=1, in_memory=True)
    assert gray.sample_shape == (1, 8, 8) and len(gray) == 3
    s = BatchSampler(src, 2, 0)
    assert next(s).shape == (2, 3, 12, 12)


@pytest.mark.parametrize("shape,layout,out", [
    ((5, 8, 8), "auto", (1, 8, 8)),
    ((5, 8, 8, 3), "auto", (3, 8, 8)),
    ((5, 3, 8, 8), "auto", (3, 8, 8)),
    ((5, 2), "auto", (2,)),
])
def test_npy_fake(tmp_path, shape, layout, out):
    arr = np.random.default_rng(5).integers(0, 256, shape, dtype=np.uint8)
    np.save(tmp_path / "x.npy", arr)
    src = load_data("npy", path=tmp_path / "x.npy", layout=layout)
    assert len(src) == 5 and src.sample_shape == out
    x = src.get(torch.arange(5))
    if len(shape) == 4 and shape[-1] == 3:
        assert torch.allclose(x, torch.from_numpy(arr).permute(0, 3, 1, 2).float() / 127.5 - 1)
    if len(shape) == 2:
        assert src.kind == "points"


def test_npy_float_value_range(tmp_path):
    arr = np.linspace(0, 1, 5 * 16, dtype=np.float32).reshape(5, 1, 4, 4)
    np.save(tmp_path / "f.npy", arr)
    as_is = load_data("npy", path=tmp_path / "f.npy")
    assert torch.allclose(as_is.get(torch.arange(5)), torch.from_numpy(arr))
    mapped = load_data("npy", path=tmp_path / "f.npy", value_range=(0, 1))
    y = mapped.get(torch.arange(5))
    assert y.min().item() == pytest.approx(-1) and y.max().item() == pytest.approx(1)
