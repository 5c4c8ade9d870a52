"""``lipbench check V --model pkg.mod:attr --input-shape ...``: a variant on the user's own discriminator.

The discriminators are written from scratch in a folder of the test (not lipbench's models), the
user's module is imported only in defendant processes (never in the test's own process, which
runs lipbench's judge), and the variant is judged beside sn_w and none run on the same model."""
import sys
import textwrap

import pandas as pd
import pytest

from cli_support import lipbench, one_line_error

MODELS = textwrap.dedent('''
    import torch
    from torch import nn
    import torch.nn.functional as F


    class TinyD(nn.Module):
        """Two strided convolutions and a dense head, leaky ReLU: 1x16x16 -> (N, 1)."""

        def __init__(self):
            super().__init__()
            self.c1 = nn.Conv2d(1, 8, 3, 2, 1)
            self.c2 = nn.Conv2d(8, 16, 3, 2, 1)
            self.head = nn.Linear(16 * 4 * 4, 1)

        def forward(self, x):
            x = F.leaky_relu(self.c1(x), 0.2)
            return self.head(F.leaky_relu(self.c2(x), 0.2).flatten(1))


    def make_discriminator():
        return TinyD()


    class ConcatConditional(nn.Module):
        """A conditional discriminator D(x, y): one-hot class planes beside the image (Mirza & Osindero 2014)."""

        def __init__(self, classes=3):
            super().__init__()
            self.classes = classes
            self.c1 = nn.Conv2d(3 + classes, 8, 4, 2, 1)
            self.head = nn.Linear(8 * 8 * 8, 1)

        def forward(self, x, y):
            planes = F.one_hot(y, self.classes).to(x.dtype)[:, :, None, None].expand(-1, -1, *x.shape[2:])
            return self.head(F.leaky_relu(self.c1(torch.cat([x, planes], 1)), 0.2).flatten(1))


    class Projection(nn.Module):
        """A projection discriminator (Miyato & Koyama 2018): its class embedding is a layer the
        built-in methods refuse."""

        def __init__(self):
            super().__init__()
            self.body = nn.Linear(3 * 16 * 16, 32)
            self.psi = nn.Linear(32, 1)
            self.embed = nn.Embedding(3, 32)

        def forward(self, x, y):
            h = F.relu(self.body(x.flatten(1)))
            return self.psi(h) + (self.embed(y) * h).sum(1, keepdim=True)


    def not_a_module():
        return 3


    class Flat(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(10, 1)

        def forward(self, x):
            return self.fc(x)
''')

#: A cheap selection: the claims suite with a short training run, one seed.
CHEAP = ["--suites", "claims", "--seeds", "0", "--set", "iterations=12", "--set", "warmup=2", "--set", "trace_points=2",
         "--set", "random_points=2", "--set", "settle_budget=400", "--no-isolation", "--baselines", "no-baselines"]


@pytest.fixture
def user_folder(tmp_path, monkeypatch):
    """The user's project: a module of discriminators in the current folder."""
    (tmp_path / "usermodels.py").write_text(MODELS)
    monkeypatch.chdir(tmp_path)
    sys.modules.pop("usermodels", None)
    return tmp_path


def _rows(path):
    """A results.csv with its ``n/a`` statuses kept as text."""
    return pd.read_csv(path, keep_default_na=False, na_values={"value": ["", "nan", "NaN"]})


def _check(capsys, folder, variant, *args):
    out = folder / "out"
    code, _ = lipbench(capsys, "check", variant, *args, "--out", out, "--report", folder / "r.html",
                       "--junit", folder / "j.xml")
    return code, _rows(out / "results.csv"), pd.read_csv(out / "verdicts.csv", keep_default_na=False)


def test_a_variant_on_the_users_discriminator_is_judged_beside_sn_w_and_none(user_folder, capsys):
    code, rows, verdicts = _check(capsys, user_folder, "from_scratch:MiyatoSN", "--model",
                                  "usermodels:make_discriminator", "--input-shape", "1,16,16", *CHEAP)
    variant = "from_scratch:MiyatoSN"
    assert code == 0, verdicts[verdicts["verdict"] != "pass"].to_string()
    assert set(rows["method"]) == {variant, "sn_w", "none"}
    assert "usermodels" not in sys.modules  # the judge never imported the user's module
    mine = rows[rows["method"] == variant].set_index("metric")
    assert mine.loc["claim_error_fixed", "value"] <= 1e-4  # measured on the user's three layers
    assert mine.loc["claim_error_fixed", "message"].split(":")[0] in {"c1", "c2", "head"}  # the user's layers
    assert "the model's own outputs are not" in mine.loc["consistency_error", "message"]
    compared = verdicts[(verdicts["kind"] == "comparison") & (verdicts["method"] == variant)]
    assert len(compared) > 0 and compared["detail"].str.startswith("beside sn_w on the same model").all()
    assert verdicts[verdicts["check"] == "claim_on_fixed_weights"].set_index("method").loc[variant, "verdict"] == "pass"


def test_a_broken_variant_fails_on_the_users_discriminator(user_folder, capsys):
    code, rows, verdicts = _check(capsys, user_folder, "variants:ScaledSNw", "--model",
                                  "usermodels:make_discriminator", "--input-shape", "1,16,16", *CHEAP)
    assert code == 1
    failed = verdicts[(verdicts["method"] == "variants:ScaledSNw") & (verdicts["verdict"] == "violation")]
    assert "claim_on_fixed_weights" in set(failed["check"])


def test_a_conditional_discriminator_takes_class_labels(user_folder, capsys):
    code, rows, verdicts = _check(capsys, user_folder, "from_scratch:MiyatoSN", "--model",
                                  "usermodels:ConcatConditional", "--num-classes", "3", "--input-shape", "3,16,16",
                                  *CHEAP)
    assert code == 0, verdicts[verdicts["verdict"] != "pass"].to_string()
    fixed = rows[(rows["metric"] == "claim_error_fixed")].set_index("method")
    assert set(fixed.index) == {"from_scratch:MiyatoSN", "sn_w"}
    assert (fixed["value"] <= 1e-4).all()


def test_the_certificate_is_na_with_its_reason_on_a_users_model(user_folder, capsys):
    code, rows, verdicts = _check(capsys, user_folder, "sn_w", "--model", "usermodels:make_discriminator",
                                  "--input-shape", "1,16,16", "--against", "none", "--suites", "lipschitz_certificate",
                                  "--seeds", "0", "--no-isolation", "--baselines", "no-baselines")
    assert code == 0
    assert set(rows["method"]) == {"sn_w", "none"} and set(rows["status"]) == {"n/a"}
    assert rows["message"].str.contains("layer by layer only").all()
    assert set(verdicts["verdict"]) <= {"n/a", "pass"}


@pytest.mark.parametrize("args, needle", [
    (["--model", "usermodels:not_a_module", "--input-shape", "1,16,16"], "returned int, not a torch.nn.Module"),
    (["--model", "usermodels:Flat", "--input-shape", "1,16,16"], "rejects --input-shape 1,16,16"),
    (["--model", "usermodels:nothing", "--input-shape", "1,16,16"], "--model usermodels:nothing"),
    (["--model", "nomodule:x", "--input-shape", "1,16,16"], "--model nomodule:x"),
    (["--model", "usermodels:TinyD", "--input-shape", "1,x"], "--input-shape '1,x'"),
    (["--model", "usermodels:TinyD"], "needs --input-shape"),
    (["--model", "usermodels:TinyD", "--input-shape", "1,15,15"], "--input-shape 1,15,15"),
    (["--model", "usermodels:Projection", "--num-classes", "3", "--input-shape", "3,16,16"], "net.embed (Embedding)"),
    (["--input-shape", "1,16,16"], "--input-shape: only with --model"),
])
def test_a_bad_model_is_one_line_exit_2(user_folder, capsys, args, needle):
    code, err = lipbench(capsys, "check", "sn_w", *args, "--suites", "claims", "--out", user_folder / "o")
    one_line_error(code, err, needle)
    assert not (user_folder / "o").exists()
    assert "usermodels" not in sys.modules


def test_timing_runs_on_the_users_discriminator(user_folder, capsys):
    code, rows, verdicts = _check(capsys, user_folder, "from_scratch:MiyatoSN", "--model",
                                  "usermodels:make_discriminator", "--input-shape", "1,16,16", "--suites",
                                  "training_time", "--seeds", "0", "--set", "repeats=2", "--set", "warmup=1",
                                  "--set", "batch=8", "--no-isolation", "--baselines", "no-baselines")
    assert code == 0, verdicts[~verdicts["verdict"].isin(["pass", "n/a", "new"])].to_string()
    ratios = rows[rows["metric"] == "iteration_ratio"].set_index("method")["value"]
    assert set(ratios.index) == {"from_scratch:MiyatoSN", "sn_w", "none"} and ratios["none"] == 1.0
