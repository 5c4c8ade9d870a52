"""GAN losses against hand-written formulas; Adam settings A-F (Miyato Table 1)."""
import math

import pytest
import torch

from harness.training.losses import GANLoss, get_loss
from harness.training.settings import SETTINGS, AdamSettings, get_settings, make_optimizers

REAL = torch.tensor([[2.0], [-0.5], [0.3]])
FAKE = torch.tensor([[-1.5], [0.7], [1.2]])


def sp(x):
    return math.log1p(math.exp(x))


def expected(name):
    r, f = REAL.flatten().tolist(), FAKE.flatten().tolist()
    mean = lambda xs: sum(xs) / len(xs)
    if name == "nonsaturating":   # -log σ(D(x)) - log(1 - σ(D(G(z)))), G: -log σ(D(G(z)))
        return mean([sp(-x) for x in r]) + mean([sp(x) for x in f]), mean([sp(-x) for x in f])
    if name == "hinge":           # Miyato eq. 17
        return mean([max(0, 1 - x) for x in r]) + mean([max(0, 1 + x) for x in f]), -mean(f)
    if name == "wasserstein":
        return mean(f) - mean(r), -mean(f)


def check_loss(loss: GANLoss, name: str):
    d, g = expected(name)
    assert loss.d_loss(REAL, FAKE).item() == pytest.approx(d, rel=1e-6)
    assert loss.g_loss(FAKE).item() == pytest.approx(g, rel=1e-6)


@pytest.mark.parametrize("name", ["nonsaturating", "hinge", "wasserstein"])
def test_losses_match_formulas(name):
    check_loss(get_loss(name), name)
    d_loss, g_loss = get_loss(name)  # unpacks as a pair
    assert d_loss is get_loss(name).d_loss


def test_broken_loss_fails_formula_check():
    wrong_sign = GANLoss("hinge", lambda r, f: torch.relu(1 + r).mean() + torch.relu(1 - f).mean(),
                         lambda f: f.mean())
    with pytest.raises(AssertionError):
        check_loss(wrong_sign, "hinge")
    swapped = GANLoss("wasserstein", lambda r, f: r.mean() - f.mean(), lambda f: -f.mean())
    with pytest.raises(AssertionError):
        check_loss(swapped, "wasserstein")


def test_loss_aliases_and_errors():
    assert get_loss("wgan").name == "wasserstein" and get_loss("NS").name == "nonsaturating"
    custom = get_loss((lambda r, f: r.sum(), lambda f: f.sum()))
    assert custom.name == "custom"
    with pytest.raises(KeyError, match="available"):
        get_loss("lsgan")


MIYATO_TABLE1 = {"A": (1e-4, 0.5, 0.9, 5), "B": (1e-4, 0.5, 0.999, 1), "C": (2e-4, 0.5, 0.999, 1),
                 "D": (1e-3, 0.5, 0.9, 5), "E": (1e-3, 0.5, 0.999, 5), "F": (1e-3, 0.9, 0.999, 5)}


def check_settings(s: AdamSettings, row):
    assert (s.lr, s.beta1, s.beta2, s.n_dis) == row


@pytest.mark.parametrize("name", sorted(MIYATO_TABLE1))
def test_settings_a_to_f(name):
    check_settings(get_settings(name), MIYATO_TABLE1[name])
    check_settings(get_settings(name.lower()), MIYATO_TABLE1[name])
    assert get_settings(name).name == name


def test_broken_settings_fail_check():
    swapped = AdamSettings(1e-4, 0.9, 0.5, 5)  # betas swapped
    with pytest.raises(AssertionError):
        check_settings(swapped, MIYATO_TABLE1["A"])


def test_custom_settings_and_optimizers():
    s = get_settings({"lr": 3e-4, "beta1": 0.0, "beta2": 0.9, "n_dis": 2})
    assert s.name == "custom" and s.n_dis == 2
    s2 = get_settings({"base": "A", "lr": 5e-4})
    assert (s2.lr, s2.beta2, s2.n_dis, s2.name) == (5e-4, 0.9, 5, "custom")
    assert get_settings("A", n_dis=1).n_dis == 1 and SETTINGS["A"].n_dis == 5
    assert get_settings("gulrajani").beta1 == 0.0
    with pytest.raises(ValueError):
        AdamSettings(1e-4, 0.5, 1.0, 5)
    with pytest.raises(ValueError):
        AdamSettings(1e-4, 0.5, 0.9, 0)
    with pytest.raises(KeyError):
        get_settings("Z")
    G, D = torch.nn.Linear(2, 2), torch.nn.Linear(2, 1)
    og, od = make_optimizers(G, D, AdamSettings(1e-3, 0.5, 0.9, 1, lr_g=2e-3))
    assert og.param_groups[0]["lr"] == 2e-3 and od.param_groups[0]["lr"] == 1e-3
    assert od.param_groups[0]["betas"] == (0.5, 0.9)
