"""Registry: built-ins, parameters, ``module:attr`` loading, entry points, the example plug-in."""
from __future__ import annotations

from importlib.metadata import EntryPoint
from pathlib import Path

import pytest
from torch import nn

from harness.methods import ENTRY_POINT_GROUP, Method, MethodLoadError, available, get, load, registry
from harness.methods.checks import check_normalised

ROOT = Path(__file__).resolve().parents[1]
BUILTINS = {"none", "weight_clip", "grad_penalty", "sn_w", "ssn", "bsn", "bssn", "sn_conv",
            "torch_sn", "weight_norm", "frobenius_norm", "orthonormal_reg"}


@pytest.fixture
def examples_on_path(monkeypatch):
    monkeypatch.syspath_prepend(str(ROOT))


def test_builtins_available_and_documented():
    assert BUILTINS <= set(available())
    for name in BUILTINS:
        m = get(name)
        assert isinstance(m, Method) and m.name == name
        assert type(m).__doc__ and m.claim
        assert m.describe() == {"name": name, "params": m.params}
        m.to_json()


def test_get_with_params_and_errors():
    m = get("ssn", s=1.5)
    assert m.params["s"] == 1.5 and repr(m).startswith("ssn(")
    assert get("ssn", s=1.5) == m and get("ssn", s=2.0) != m
    with pytest.raises(TypeError, match=r"bogus.*allowed: .*n_power_iterations"):
        get("sn_w", bogus=1)
    with pytest.raises(MethodLoadError, match="unknown method 'nope'; available: .*sn_w"):
        get("nope")


def test_load_module_attr(examples_on_path):
    from examples.my_norm import MyNorm
    assert load("examples.my_norm:MyNorm") is MyNorm
    m = get("examples.my_norm:MyNorm", gain=2.0)
    assert isinstance(m, MyNorm) and m.params["gain"] == 2.0


@pytest.mark.parametrize("ref,match", [
    ("no_colon", "form"),
    ("surely_not_a_module_xyz:X", "cannot import module"),
    ("math:nothing_here", "no attribute"),
    ("collections:OrderedDict", "does not subclass"),
    ("math:pi", "not a harness.methods.Method"),
])
def test_load_errors(ref, match):
    with pytest.raises(MethodLoadError, match=match):
        load(ref)


def test_factory_returning_non_method():
    with pytest.raises(MethodLoadError, match="not a harness.methods.Method"):
        get("os:getcwd")


def test_entry_points(monkeypatch, examples_on_path):
    eps = [EntryPoint(name="my_norm", value="examples.my_norm:MyNorm", group=ENTRY_POINT_GROUP),
           EntryPoint(name="broken_ep", value="surely_not_a_module_xyz:X", group=ENTRY_POINT_GROUP)]
    monkeypatch.setattr(registry, "entry_points",
                        lambda group: [e for e in eps if e.group == group])
    assert {"my_norm", "broken_ep"} <= set(available())
    assert get("my_norm", gain=0.5).params["gain"] == 0.5
    with pytest.raises(MethodLoadError, match="entry point 'broken_ep'"):
        get("broken_ep")


def test_example_keeps_its_claim(examples_on_path):
    layer = get("examples.my_norm:MyNorm", gain=1.2).apply(nn.Conv2d(3, 4, 3).double())
    assert check_normalised(layer, "reshape", 1.2, iterations=1000) == []
    assert check_normalised(layer, "reshape", 1.0, iterations=0)
