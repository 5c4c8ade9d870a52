"""InceptionExtractor is strictly offline: missing weights -> clear error, never a download."""
import socket
import urllib.request

import numpy as np
import pytest
import requests
import torch
import torch.nn.functional as F
from torch import nn

from harness.metrics import inception as I
from harness.metrics import inception_score


@pytest.fixture
def isolated(tmp_path, monkeypatch):
    """No weights anywhere we look, and any network access fails loudly."""
    monkeypatch.setattr(I, "CLEANFID_DIR", str(tmp_path / "cleanfid"))
    monkeypatch.setenv("LIPBENCH_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv(I.ENV_VAR, raising=False)

    def no_net(*a, **k):
        raise AssertionError("network access attempted")
    monkeypatch.setattr(urllib.request, "urlopen", no_net)
    monkeypatch.setattr(requests.Session, "request", no_net)
    monkeypatch.setattr(socket.socket, "connect", no_net)
    return tmp_path


def test_unavailable_without_weights(isolated):
    assert I.find_inception_weights() is None
    assert not I.InceptionExtractor.available()
    with pytest.raises(I.InceptionUnavailableError) as e:
        I.InceptionExtractor()
    msg = str(e.value)
    assert "inception-2015-12-05.pt" in msg and "never download" in msg
    assert str(isolated / "cache") in msg and "LIPBENCH_INCEPTION" in msg


def test_search_order(isolated, monkeypatch):
    paths = I.candidate_paths("/explicit/x.pt")
    assert str(paths[0]) == "/explicit/x.pt"
    assert paths[-2] == isolated / "cache" / I.WEIGHTS_NAME
    assert paths[-1] == isolated / "cleanfid" / I.WEIGHTS_NAME
    monkeypatch.setenv(I.ENV_VAR, str(isolated))
    assert I.candidate_paths()[0] == isolated / I.WEIGHTS_NAME  # folder -> file inside


class _FakeLayers(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(3 * 8 * 8, 2048)

    def forward(self, x):
        return self.fc(F.adaptive_avg_pool2d(x, 8).flatten(1)).view(x.shape[0], 2048, 1, 1)


class _FakeInception(nn.Module):
    """Same TorchScript interface as NVIDIA's file: ``.layers`` and ``forward(x, ...)``."""

    def __init__(self):
        super().__init__()
        self.layers = _FakeLayers()
        self.out = nn.Linear(2048, 1008)

    def forward(self, x, return_features: bool = False, use_fp16: bool = False,
                no_output_bias: bool = False):
        f = self.layers((x - 128) / 128).flatten(1)
        if return_features:
            return f
        return torch.softmax(self.out(f), dim=1)


@pytest.mark.filterwarnings("ignore:`torch.jit.*deprecated:FutureWarning")
@pytest.mark.parametrize("where", ["cleanfid_dir", "env_file"])
def test_loads_local_file_without_network(isolated, monkeypatch, where):
    torch.manual_seed(0)
    if where == "cleanfid_dir":
        (isolated / "cleanfid").mkdir()
        path = isolated / "cleanfid" / I.WEIGHTS_NAME   # loaded via clean-fid's InceptionV3W
    else:
        path = isolated / "renamed.pt"                  # any name: plain torch.jit.load
        monkeypatch.setenv(I.ENV_VAR, str(path))
    torch.jit.script(_FakeInception()).save(str(path))
    assert I.InceptionExtractor.available()
    ext = I.InceptionExtractor(device="cpu")
    assert ext.weights == path and ext.id == "inception-v3-clean"
    imgs = torch.rand(4, 1, 16, 16) * 2 - 1
    feats = ext.features(imgs)
    assert feats.values.shape == (4, 2048) and feats.extractor == "inception-v3-clean"
    probs = ext.probs(imgs)
    assert probs.shape == (4, 1008) and np.allclose(probs.sum(1), 1)
    assert inception_score(probs, splits=2)[0] >= 1.0
