"""Registry: built-ins, typed parameters, ``module:attr`` loading (only methods, nothing
called before the check), entry points, the example plug-ins."""
from __future__ import annotations

import sys
import textwrap
from importlib.metadata import EntryPoint
from pathlib import Path

import pytest
from torch import nn

from harness.methods import (ENTRY_POINT_GROUP, Claim, Method, MethodLoadError, MethodParameterError,
                             available, get, load, measure_claim, method_factory, power_iterate, registry)

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
        assert type(m).__doc__ and isinstance(m.claim, Claim) and m.claim_text
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


def test_declared_factory_returning_non_method():
    with pytest.raises(MethodLoadError, match="returned str, not a harness.methods.Method"):
        get("test_methods_registry:declared_but_broken")


@method_factory
def declared_but_broken(gain: float = 1.0):
    return "not a method"


@method_factory
def declared_ssn(s: float = 1.0, n_power_iterations: int = 1):
    """A declared factory: parameters from its signature."""
    return get("ssn", s=s, n_power_iterations=n_power_iterations)


def test_declared_factory_loads_with_validated_params():
    m = get("test_methods_registry:declared_ssn", s=2)
    assert m.name == "ssn" and m.params["s"] == 2
    with pytest.raises(MethodParameterError, match=r"'n_power_iterations' expects int, got 'abc'"):
        get("test_methods_registry:declared_ssn", n_power_iterations="abc")


@pytest.fixture
def sentinel_module(tmp_path, monkeypatch):
    """A module whose callables each write a file when called (proof that they ran)."""
    (tmp_path / "sentinel_mod.py").write_text(textwrap.dedent(f"""
        from pathlib import Path
        from harness.methods.spectral import SNw
        RAN = Path({str(tmp_path / "ran")!r})

        def touch(**params):
            RAN.write_text("function called")

        class NotAMethod:
            def __init__(self, **params):
                RAN.write_text("class instantiated")

        class Sneaky(SNw):
            name = "sneaky"

            def __init__(self, **params):
                RAN.write_text("constructor ran")
                super().__init__(**params)
    """))
    monkeypatch.syspath_prepend(str(tmp_path))
    yield tmp_path / "ran"
    sys.modules.pop("sentinel_mod", None)


@pytest.mark.parametrize("ref,params", [("sentinel_mod:touch", {}), ("sentinel_mod:NotAMethod", {}),
                                        ("sentinel_mod:Sneaky", {"n_power_iterations": "abc"}),
                                        ("sentinel_mod:Sneaky", {"bogus": 1})])
def test_nothing_is_called_before_the_checks(sentinel_module, ref, params):
    with pytest.raises(MethodLoadError):
        get(ref, **params)
    assert not sentinel_module.exists()
    get("sentinel_mod:Sneaky")  # the sentinel does fire when a call is legitimate
    assert sentinel_module.read_text() == "constructor ran"


def test_os_system_is_refused_without_running(tmp_path):
    marker = tmp_path / "ran"
    with pytest.raises(MethodLoadError, match="refused without calling it"):
        get("os:system", command=f"touch {marker}")
    assert not marker.exists()


@pytest.mark.parametrize("name,params,match", [
    ("sn_w", {"n_power_iterations": "abc"}, r"'n_power_iterations' expects int, got 'abc' \(str\)"),
    ("sn_w", {"n_power_iterations": 1.5}, r"'n_power_iterations' expects int, got 1.5"),
    ("sn_w", {"n_power_iterations": True}, r"expects int, got True \(bool\)"),
    ("grad_penalty", {"one_sided": 1}, r"'one_sided' expects bool, got 1 \(int\)"),
    ("grad_penalty", {"one_sided": "yes"}, r"'one_sided' expects bool"),
    ("weight_clip", {"c": "0.01"}, r"'c' expects float, got '0.01'"),
    ("ssn", {"s": None}, r"'s' expects float, got None"),
])
def test_parameter_types_are_checked(name, params, match):
    with pytest.raises(MethodParameterError, match=match) as info:
        get(name, **params)
    assert isinstance(info.value, TypeError) and isinstance(info.value, MethodLoadError)


def test_parameter_types_accepted():
    assert get("weight_clip", c=1).params["c"] == 1  # an int where a float is expected
    assert get("grad_penalty", one_sided=True).params["one_sided"] is True
    assert get("sn_conv", input_shape=(3, 8, 8)).params["input_shape"] == (3, 8, 8)  # None default
    assert get("sn_conv", input_shape={"": [3, 8, 8]}).params["input_shape"] == {"": [3, 8, 8]}


def test_declared_parameter_types():
    class Typed(Method):
        name = "typed"
        defaults = {"shape": None}
        param_types = {"shape": (tuple, list)}

    assert Typed(shape=[1, 2]).params["shape"] == [1, 2]
    with pytest.raises(MethodParameterError, match="'shape' expects tuple or list, got 3"):
        Typed(shape=3)


def test_entry_points(monkeypatch, examples_on_path):
    eps = [EntryPoint(name="my_norm", value="examples.my_norm:MyNorm", group=ENTRY_POINT_GROUP),
           EntryPoint(name="broken_ep", value="surely_not_a_module_xyz:X", group=ENTRY_POINT_GROUP)]
    monkeypatch.setattr(registry, "entry_points",
                        lambda group: [e for e in eps if e.group == group])
    assert {"my_norm", "broken_ep"} <= set(available())
    assert get("my_norm", gain=0.5).params["gain"] == 0.5
    with pytest.raises(MethodLoadError, match="entry point 'broken_ep'"):
        get("broken_ep")


def test_entry_point_to_a_non_method_is_refused(monkeypatch, tmp_path):
    eps = [EntryPoint(name="shell", value="os:system", group=ENTRY_POINT_GROUP)]
    monkeypatch.setattr(registry, "entry_points", lambda group: [e for e in eps if e.group == group])
    marker = tmp_path / "ran"
    with pytest.raises(MethodLoadError, match="refused without calling it"):
        get("shell", command=f"touch {marker}")
    assert not marker.exists()


def test_entry_points_are_not_imported_unless_named(monkeypatch):
    eps = [EntryPoint(name="never", value="surely_not_a_module_xyz:X", group=ENTRY_POINT_GROUP)]
    monkeypatch.setattr(registry, "entry_points", lambda group: [e for e in eps if e.group == group])
    assert "never" in available()
    assert get("sn_w").name == "sn_w"  # a built-in: the broken entry point is never loaded
    assert "surely_not_a_module_xyz" not in sys.modules


def test_example_keeps_its_claim(examples_on_path):
    method = get("examples.my_norm:MyNorm", gain=1.2)
    assert method.claim_text.endswith("is gain = 1.2")
    layer = method.apply(nn.Conv2d(3, 4, 3).double())
    power_iterate(layer, 1000)
    (m,) = measure_claim(method, layer)
    assert m.target == 1.2 and m.error < 1e-9  # float64 weights, converged power iteration
