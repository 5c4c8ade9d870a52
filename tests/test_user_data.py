"""``--data npy:PATH``, ``folder:PATH``, named sets under ``--data-root``: the user's own data, checked up
front, with quality metrics on an extractor trained on that data (its identity recorded) and n/a rows
with reasons for what cannot be measured."""
import numpy as np
import pandas as pd
import pytest
import yaml

from cli_support import lipbench, one_line_error
from test_user_model import _rows, user_folder  # noqa: F401 - the user's project folder, a fixture

#: The sample_quality suite on the user's model, few updates and samples, one seed.
CHEAP = ["--suites", "sample_quality", "--seeds", "0", "--set", "iterations=6", "--set", "n_fake=64",
         "--set", "trace_points=2", "--no-isolation", "--baselines", "no-baselines"]


@pytest.fixture(autouse=True)
def fresh_cache(tmp_path, monkeypatch):
    """Every test trains its data set's extractor anew (nothing from an earlier run's cache)."""
    monkeypatch.setenv("LIPBENCH_CACHE", str(tmp_path / "cache"))


def _images(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``n`` 16x16 grey images (N, H, W) uint8 and their classes: a bright square whose corner depends on the class."""
    rng = np.random.default_rng(seed)
    x = (rng.random((n, 16, 16)) * 60).astype(np.uint8)
    labels = np.arange(n) % 2
    for i, c in enumerate(labels):
        x[i, 2 + 8 * c:6 + 8 * c, 2:6] = 250
    return x, labels


def _check(capsys, folder, *args):
    out = folder / "out"
    code, err = lipbench(capsys, "check", "from_scratch:MiyatoSN", "--model", "usermodels:make_discriminator",
                         "--input-shape", "1,16,16", *args, "--out", out, "--report", folder / "r.html",
                         "--junit", folder / "j.xml")
    assert code == 0, err
    rows = _rows(out / "results.csv")
    return rows[rows["case"] != "summary"], pd.read_csv(out / "verdicts.csv", keep_default_na=False)


def test_npy_data_with_labels_gives_quality_metrics_on_its_own_extractor(user_folder, capsys):
    x, labels = _images(96)
    np.save(user_folder / "x.npy", x)
    np.save(user_folder / "y.npy", labels)
    rows, verdicts = _check(capsys, user_folder, "--data", "npy:x.npy", "--labels", "y.npy", *CHEAP)
    assert set(rows["method"]) == {"from_scratch:MiyatoSN", "sn_w", "none"}
    fid = rows[rows["metric"] == "fid_data_cnn"]
    assert len(fid) == 3 and (fid["status"] == "ok").all() and fid["unit"].str.startswith("1 @ data-cnn-v1-").all()
    identity = rows[rows["metric"] == "extractor_data_cnn"]
    assert identity["value"].nunique() == 1  # one extractor for every method
    assert identity["message"].str.contains("data sha256").all() and identity["message"].str.contains("weights sha256").all()
    assert (rows[rows["metric"] == "modes_covered"]["status"] == "ok").all()
    assert len(verdicts[(verdicts["kind"] == "comparison") & (verdicts["metric"] == "fid_data_cnn")]) == 1


def test_an_unlabelled_folder_of_pngs_lists_what_it_cannot_measure(user_folder, capsys):
    from PIL import Image
    x, _ = _images(64, seed=1)
    folder = user_folder / "pngs"
    folder.mkdir()
    for i, image in enumerate(x):
        Image.fromarray(image).save(folder / f"{i:03d}.png")
    rows, _ = _check(capsys, user_folder, "--data", "folder:pngs", *CHEAP)
    fid = rows[rows["metric"] == "fid_data_cnn"]
    assert (fid["status"] == "ok").all() and fid["unit"].str.startswith("1 @ data-rot-cnn-v1-").all()
    na = rows[rows["metric"].isin(["modes_covered", "confident_share"])]
    assert len(na) == 6 and (na["status"] == "n/a").all() and na["message"].str.contains("no class labels").all()


def test_class_subfolders_are_labels(tmp_path):
    from PIL import Image
    from harness.training.data import image_folder
    x, labels = _images(8)
    for i, (image, c) in enumerate(zip(x, labels)):
        (tmp_path / f"class{c}").mkdir(exist_ok=True)
        Image.fromarray(image).save(tmp_path / f"class{c}" / f"{i}.png")
    source = image_folder(tmp_path, size=16, channels=1, in_memory=True)
    assert source.labels.tolist() == sorted(labels.tolist())  # sorted by path: class0's first


def test_a_suite_with_npy_data_measures_quality(tmp_path, capsys):
    """A suite file naming ``data: [npy]`` used to train and measure nothing: now the data set's extractor."""
    x, _ = _images(64)
    np.save(tmp_path / "x.npy", x)
    suite = {"name": "mine", "description": "npy data", "kind": "sample_quality", "methods": ["none"],
             "matrix": {"data": ["npy"]}, "seeds": [0],
             "settings": {"models": {"npy": {"name": "dcgan_digits", "size": 16}},
                          "data_args": {"npy": {"path": str(tmp_path / "x.npy")}}, "iterations": 4,
                          "n_fake": 64, "trace_points": 2, "inception": "auto"},
             "presets": {"ci": {}, "full": {}}}
    (tmp_path / "mine.yaml").write_text(yaml.safe_dump(suite))
    code, err = lipbench(capsys, "run", tmp_path / "mine.yaml", "--out", tmp_path / "r", "--no-isolation")
    assert code == 0, err
    rows = _rows(tmp_path / "r" / "results.csv").set_index("metric")
    assert rows.loc["fid_data_cnn", "status"] == "ok"
    assert rows.loc["fid_inception", "status"] == "n/a" and "never downloads" in rows.loc["fid_inception", "message"]


@pytest.mark.parametrize("make, args, needle", [
    (None, ["--data", "npy:missing.npy"], "missing.npy"),
    (lambda f: np.save(f / "x.npy", np.full((8, 16, 16), 3.0, np.float32)), ["--data", "npy:x.npy"],
     "must lie in [-1, 1]"),
    (lambda f: np.save(f / "x.npy", np.zeros((8, 12, 12), np.uint8)), ["--data", "npy:x.npy"], "shape 1,12,12"),
    (lambda f: np.save(f / "x.npy", np.zeros((8, 16, 16), np.int32)), ["--data", "npy:x.npy"], "uint8 or floating"),
    (lambda f: (np.save(f / "x.npy", np.zeros((8, 16, 16), np.uint8)), np.save(f / "y.npy", np.zeros(3, np.int64))),
     ["--data", "npy:x.npy", "--labels", "y.npy"], "y.npy"),
    (None, ["--data", "folder:nothing_here"], "nothing_here"),
    (lambda f: np.save(f / "x.npy", np.zeros((8, 16, 16), np.uint8)), ["--data", "npy:x.npy"],
     "8 samples, fewer than the batch of 32 of suite claims"),
    (None, ["--data", "mnist", "--data-root", "empty_root"], "empty_root/MNIST/raw"),
    (None, ["--data", "imagenet"], "--data 'imagenet'"),
])
def test_missing_or_invalid_data_is_one_line_exit_2(user_folder, capsys, make, args, needle):
    if make is not None:
        make(user_folder)
    code, err = lipbench(capsys, "check", "sn_w", "--model", "usermodels:make_discriminator", "--input-shape",
                         "1,16,16", *args, "--suites", "claims", "--out", user_folder / "o")
    one_line_error(code, err, needle)
    assert not (user_folder / "o").exists()


def _idx(path, array: np.ndarray) -> None:
    """An MNIST idx file (big-endian header: magic, sizes; then the uint8 values)."""
    magic = {1: 2049, 3: 2051}[array.ndim]
    header = np.array([magic, *array.shape], dtype=">i4").tobytes()
    path.write_bytes(header + array.astype(np.uint8).tobytes())


def test_mnist_is_read_from_the_data_root_in_torchvisions_layout(user_folder, capsys):
    raw = user_folder / "root" / "MNIST" / "raw"
    raw.mkdir(parents=True)
    images = np.zeros((80, 28, 28), np.uint8)
    images[:, 6:22, 10:18] = 255
    for split in ("train", "t10k"):
        _idx(raw / f"{split}-images-idx3-ubyte", images)
        _idx(raw / f"{split}-labels-idx1-ubyte", np.arange(80) % 4)
    rows, _ = _check(capsys, user_folder, "--data", "mnist", "--data-root", "root", *CHEAP)
    assert set(rows[rows["metric"] == "fid_data_cnn"]["status"]) == {"ok"}
    assert (rows[rows["metric"] == "modes_covered"]["status"] == "ok").all()  # MNIST's labels


def test_vector_data_on_a_vector_discriminator(user_folder, capsys):
    """``--input-shape D`` with ``(N, D)`` data: an MLP generator; the energy distance to the data,
    the mixture metrics n/a with the reason."""
    (user_folder / "vectors.py").write_text(
        "from torch import nn\n\ndef make():\n    return nn.Sequential(nn.Linear(3, 16), nn.ReLU(), nn.Linear(16, 1))\n")
    np.save(user_folder / "v.npy", np.random.default_rng(0).uniform(-1, 1, (128, 3)).astype(np.float32))
    out = user_folder / "out"
    code, err = lipbench(capsys, "check", "from_scratch:MiyatoSN", "--model", "vectors:make", "--input-shape", "3",
                         "--data", "npy:v.npy", *CHEAP, "--out", out, "--report", user_folder / "r.html",
                         "--junit", user_folder / "j.xml")
    assert code == 0, err
    rows = _rows(out / "results.csv")
    rows = rows[rows["case"] != "summary"]
    assert set(rows[rows["metric"] == "energy_distance"]["status"]) == {"ok"}
    na = rows[rows["metric"] == "hq_share"]
    assert len(na) == 3 and set(na["status"]) == {"n/a"}
