"""``lipbench inspect``: the per-node table, progress, --param, --html, and exit 2 on bad input."""
from __future__ import annotations

import json
import re
from xml.etree import ElementTree

import pytest
import torch
from torch import nn

from harness.cli.main import main

pytestmark = pytest.mark.usefixtures("one_thread")

TARGET = "harness.training.models:DCGANDiscriminator"  # 1x28x28, two convolutions, no batch norm


class Residual(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(2, 2, 3, padding=1)
        self.bn = nn.BatchNorm2d(2)
        self.head = nn.Linear(2 * 8 * 8, 1)

    def forward(self, x):
        out = self.bn(self.conv(x))
        out += x
        return self.head(torch.relu(out).flatten(1))


def residual_model() -> nn.Module:
    torch.manual_seed(0)
    return Residual()


def unsupported_model() -> nn.Module:
    return nn.Sequential(nn.Linear(4, 4), nn.Hardshrink())


def softplus_model() -> nn.Module:
    return nn.Sequential(nn.Linear(4, 4), nn.Softplus(threshold=0.0))


def floor_model() -> nn.Module:
    class Floor(nn.Module):
        def forward(self, x):
            return torch.div(x, 2, rounding_mode="floor")
    return nn.Sequential(nn.Linear(4, 4), Floor())


def hooked_model() -> nn.Module:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 4), nn.ReLU())
    model[1].register_forward_hook(lambda module, args, out: out * 100)
    return model


def run(*args) -> int:
    return main([str(a) for a in args])


def test_table_has_every_node_and_the_mode(capsys):
    assert run("inspect", "test_exact_inspect:residual_model", "--input-shape", "2,8,8") == 0
    out, err = capsys.readouterr()
    names = [line.split()[0] for line in out.splitlines()[1:] if line and not line.startswith(
        ("input shape", "network", "1 weight", "2 weight"))]
    assert names == ["input", "conv", "bn", "iadd", "relu", "flatten", "head"] or \
        names == ["input", "conv", "bn", "add", "relu", "flatten", "head"]
    assert re.search(r"\[sum: bn, input\]", out)  # the residual addition and its inputs
    assert "1 module(s) were in training mode" in out and "(bn)" in out
    assert "certified upper bound" in out and "empirical lower bound" in out
    assert "graph validated: 2 weight layer(s)" in err and re.search(r"\[1/2\] conv Conv2d 2x8x8: [\d.]+ s", err)


def test_json_and_html(tmp_path, capsys):
    page = tmp_path / "r.html"
    assert run("inspect", TARGET, "--input-shape", "1,28,28", "--json", "--html", page) == 0
    data = json.loads(capsys.readouterr().out)
    kinds = [r["kind"] for r in data["layers"]]
    assert kinds.count("conv2d") == 2 and kinds.count("LeakyReLU") == 2 and kinds[-1] == "linear"
    assert data["network"]["lipschitz_lower"] <= data["network"]["lipschitz_upper"]
    assert data["layers"][-1]["bound"] == pytest.approx(data["network"]["lipschitz_upper"])
    text = page.read_text()
    assert "<table>" in text and "features.0" in text and data["mode"] in text
    ns = "{http://www.w3.org/2000/svg}"
    charts = [ElementTree.fromstring(part[:part.index("</svg>") + 6]) for part in
              ("<svg" + p for p in text.split("<svg")[1:])]
    running, factors = charts
    assert len(factors.findall(f"{ns}rect")) == len(data["layers"])
    # one marker per node, in order, each titled with the node and its running bound L(node)
    titles = [c.find(f"{ns}title").text for c in running.findall(f"{ns}circle")]
    assert [t.split(" (")[0] for t in titles] == [r["node"] for r in data["layers"]]
    assert [float(t.rsplit("L = ", 1)[1]) for t in titles] == pytest.approx([r["bound"] for r in data["layers"]],
                                                                            rel=1e-5)
    heights = [float(c.get("cy")) for c in running.findall(f"{ns}circle")]
    order = sorted(range(len(heights)), key=lambda i: data["layers"][i]["bound"])
    assert [heights[i] for i in order] == sorted(heights, reverse=True)  # larger bound, higher on the page


@pytest.mark.parametrize("s", [0.5, 2.0])
def test_method_params(capsys, s):
    """ssn scales the SN-normalised weight by s: every ‖Ŵ‖ is s up to the power-iteration
    estimate after 16 iterations (measured within 5%; 10% allowed)."""
    assert run("inspect", TARGET, "--input-shape", "1,28,28", "--method", "ssn", "--json",
               "--param", f"s={s}") == 0
    data = json.loads(capsys.readouterr().out)
    norms = [r["reshaped_norm"] for r in data["layers"] if r["reshaped_norm"] is not None]
    assert len(norms) == 3 and norms == pytest.approx([s] * 3, rel=0.1)


@pytest.mark.parametrize("args, message", [
    (("--input-shape", "3,32,32", "--method", "sn_w"), r"input shape \(3, 32, 32\) does not fit the model: "
                                                       r"module 'features.0'"),
    (("--input-shape", "1,20,20"), r"input shape \(1, 20, 20\) does not fit the model: module 'head'"),
    (("--input-shape", "1,28,28", "--method", "no_such_method"), "no_such_method"),
    (("--input-shape", "1,28,28", "--method", "ssn", "--param", "bogus=1"), "bogus"),
    (("--input-shape", "1,28,28", "--param", "s=1"), "--param needs --method"),
    (("--input-shape", "1,a,28"), "expected integers"),
])
def test_bad_inputs_exit_2_with_one_line(capsys, args, message):
    assert run("inspect", TARGET, *args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and re.search(message, err[0]), err


def test_unsupported_op_exits_2(capsys):
    assert run("inspect", "test_exact_inspect:unsupported_model", "--input-shape", "4") == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("lipbench: module '1'") and "Hardshrink" in err[-1]


@pytest.mark.parametrize("factory, names", [("softplus_model", ("module '1'", "Softplus", "threshold")),
                                            ("floor_model", ("torch.div", "rounding_mode"))])
def test_refusal_exits_2_with_one_line_naming_the_op(capsys, factory, names):
    assert run("inspect", f"test_exact_inspect:{factory}", "--input-shape", "4") == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and all(n in err[0] for n in names), err


def test_hook_is_a_row_of_its_own(capsys):
    assert run("inspect", "test_exact_inspect:hooked_model", "--input-shape", "4", "--json") == 0
    data = json.loads(capsys.readouterr().out)
    assert [r["kind"] for r in data["layers"]] == ["input", "linear", "ReLU", "mul"]
    assert data["layers"][-1]["factor"] == pytest.approx(100.0)
