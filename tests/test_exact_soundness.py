"""Every case of issue 18: a certified bound at least the true constant, or a one-line refusal
naming the op. Truths are independent of the code under test (dense SVD of Jacobians from
``torch.func``, power iteration and ascent, :mod:`exact_fuzz`)."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given
from hypothesis import strategies as st
from torch import nn

import exact_fuzz as X
from harness.exact import UnfollowableModelError, conv_operator_norm, lipschitz_upper_bound, materialize_operator

pytestmark = pytest.mark.usefixtures("one_thread")


class Fn(nn.Module):
    def __init__(self, fn) -> None:
        super().__init__()
        self.fn = fn

    def forward(self, x):
        return self.fn(x)


def linear_truth(model: nn.Module, shape) -> float:
    return X.exact_linear_norm(model.double().eval(), shape)


def nonlinear_truth(model: nn.Module, shape) -> float:
    return X.ascent_norm(model.double().eval(), shape)


def refused(model: nn.Module, shape, *names: str) -> str:
    """The refusal's message: one line naming each of ``names``."""
    with pytest.raises(UnfollowableModelError) as info:
        lipschitz_upper_bound(model, shape)
    message = str(info.value)
    assert "\n" not in message and all(n in message for n in names), message
    return message


# --- arguments that were ignored ----------------------------------------------------------

@pytest.mark.parametrize("fn, shape, exact", [
    (lambda x: x.mean(axis=2), (3, 4, 5), 1 / 2), (lambda x: torch.mean(x, axis=(1, 2)), (3, 4, 5), 1 / math.sqrt(12)),
    (lambda x: x.sum(axis=-1, keepdims=True), (2, 6), math.sqrt(6)), (lambda x: torch.sum(x, 1, True), (3, 4), math.sqrt(3)),
    (lambda x: torch.amax(x, axis=1), (3, 4), 1.0), (lambda x: x.mean(dim=(), keepdim=False), (2, 3), 1 / math.sqrt(6)),
    (lambda x: torch.cat([x, 2 * x], axis=1), (2, 3), math.sqrt(5)), (lambda x: torch.softmax(x, axis=1) * 0 + x, (3,), 1.0),
])
def test_aliases_and_positional_arguments_are_read(fn, shape, exact):
    """The constants are exact: the bound equals them to rounding, and is at least the truth."""
    model = Fn(fn).double()
    bound = lipschitz_upper_bound(model, shape).upper
    assert bound == pytest.approx(exact, rel=1e-12)
    assert bound >= nonlinear_truth(model, shape) * (1 - X.RTOL)


def test_norm_with_positional_p_and_tuple_concatenation():
    assert lipschitz_upper_bound(Fn(lambda x: x.norm(2, dim=1)), (3, 4)).upper == pytest.approx(1.0)
    assert lipschitz_upper_bound(Fn(lambda x: x.norm(1, dim=1)), (3, 4)).upper == pytest.approx(math.sqrt(3))
    model = Fn(lambda x: torch.stack(x.unbind(1) + x.unbind(1)))
    assert lipschitz_upper_bound(model, (3,)).upper == pytest.approx(math.sqrt(2), rel=1e-12)
    assert linear_truth(model, (3,)) == pytest.approx(math.sqrt(2), rel=1e-12)


def test_tensor_default_argument_is_a_constant():
    class D(nn.Module):
        def forward(self, x, y=torch.ones(3), z=2.0):
            return x * z + y

    assert lipschitz_upper_bound(D(), (3,)).upper == pytest.approx(2.0, rel=1e-12)


# --- hooks --------------------------------------------------------------------------------

def _hooked(module: nn.Module, kind: str, c: float) -> nn.Module:
    if kind == "hook":
        module.register_forward_hook(lambda m, args, out: out * c)
    elif kind == "pre":
        module.register_forward_pre_hook(lambda m, args: (args[0] * c,))
    else:
        module.register_forward_hook(lambda m, args, kwargs, out: out * c, with_kwargs=True)
    return module


@pytest.mark.parametrize("kind", ["hook", "pre", "kwargs"])
@pytest.mark.parametrize("make", [nn.ReLU, lambda: nn.LayerNorm(4), nn.Dropout, lambda: nn.ZeroPad1d(1),
                                  lambda: nn.Linear(4, 4), lambda: nn.BatchNorm1d(4).eval(), nn.Softsign])
def test_hooks_are_traced(kind, make):
    """A ×100 hook or pre-hook on a module with a rule multiplies its bound by 100."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 4), make()).double()
    plain = lipschitz_upper_bound(model, (4,)).upper
    _hooked(model[1], kind, 100.0)
    bound = lipschitz_upper_bound(model, (4,)).upper
    assert bound >= nonlinear_truth(model, (4,)) * (1 - X.RTOL)
    assert bound == pytest.approx(100 * plain, rel=1e-9)


def test_hooks_on_the_root_and_on_containers():
    relu = nn.ReLU()
    relu.register_forward_hook(lambda m, args, out: out * 100)
    assert lipschitz_upper_bound(relu, (4,)).upper == pytest.approx(100.0)
    seq = nn.Sequential(nn.Linear(3, 3), nn.Tanh()).double()
    seq.register_forward_pre_hook(lambda m, args: (args[0] * 7,))
    assert lipschitz_upper_bound(seq, (3,)).upper >= nonlinear_truth(seq, (3,)) * (1 - X.RTOL)


def test_untraceable_hook_and_global_hooks_are_refused():
    relu = nn.ReLU()
    relu.register_forward_hook(lambda m, args, out: out * 100 if out.abs().max() > 1 else out)
    refused(nn.Sequential(nn.Linear(3, 3), relu), (3,), "fx")
    handle = torch.nn.modules.module.register_module_forward_hook(lambda m, args, out: out)
    try:
        refused(nn.Linear(3, 3), (3,), "global module forward hooks")
    finally:
        handle.remove()


def test_old_style_spectral_norm_hook_is_kept():
    lin = nn.utils.spectral_norm(nn.Linear(5, 5)).double().eval()
    bound = lipschitz_upper_bound(lin, (5,))
    assert bound.upper == pytest.approx(float(torch.linalg.matrix_norm(lin.weight.detach(), 2)), rel=1e-9)


# --- parametrised activations and discontinuous ops ---------------------------------------

def test_softplus_domain():
    refused(nn.Softplus(threshold=0), (4,), "Softplus", "threshold")
    refused(nn.Softplus().double(), (4,), "Softplus")  # a 2e-9 jump float64 resolves
    float32 = nn.Sequential(nn.Linear(4, 4), nn.Softplus())  # float32: the jump is below resolution
    assert lipschitz_upper_bound(float32, (4,)).upper == pytest.approx(lipschitz_upper_bound(float32[:1], (4,)).upper)
    model = nn.Softplus(beta=3.0, threshold=60.0).double()
    assert lipschitz_upper_bound(model, (4,)).upper >= nonlinear_truth(model, (4,)) * (1 - X.RTOL)
    refused(Fn(lambda x: F.softplus(x, 1e-6, 20.0)).double(), (4,), "Softplus")
    refused(Fn(lambda x: F.softplus(x, -1.0)), (4,), "beta")


@pytest.mark.parametrize("fn, names", [
    (lambda x: torch.div(x, 2, rounding_mode="floor"), ("div", "rounding_mode")),
    (lambda x: x.div(2, rounding_mode="trunc"), ("div", "rounding_mode")),
    (lambda x: x.to(torch.int64) * 1.0, ("to", "int64")), (lambda x: x.long().float(), ("long",)),
    (lambda x: x.bool().float(), ("bool",)), (lambda x: (x > 0).float(), ("gt",)),
    (lambda x: torch.where(x > 0, x, 0.1 * x), ("gt",)), (lambda x: x.sign(), ("sign",)),
    (lambda x: torch.round(x), ("round",)), (lambda x: x // 2, ("floordiv",)),
    (lambda x: x.view(torch.int32).float(), ("view",)), (lambda x: x * x, ("mul", "two input-dependent")),
    (lambda x: F.prelu(x, x[0, :1]), ("prelu", "weight")), (lambda x: F.celu(x, -1.0), ("CELU", "alpha")),
    (lambda x: F.dropout(x, 0.5), ("dropout", "training=True")), (lambda x: F.softmax(x), ("softmax", "dim")),
    (lambda x: x.norm(0.5, dim=1), ("norm", "p=0.5")), (lambda x: x.max(), ("max",)),
    (lambda x: F.interpolate(x.view(1, 1, 2, 2), scale_factor=2, mode="area"), ("interpolate", "area")),
    (lambda x: F.interpolate(x.view(1, 1, 2, 2), scale_factor=0.5, mode="bilinear", antialias=True),
     ("interpolate", "antialias")),
    (lambda x: torch.sum(x, 1, out=torch.empty(1)), ("sum",)), (lambda x: x[0, 0].item() * x, ("item",)),
])
def test_discontinuous_and_unmodelled_ops_are_refused(fn, names):
    refused(Fn(fn), (4,), *names)


def test_celu_and_prelu_modules():
    refused(nn.CELU(-1.0), (4,), "CELU", "alpha")
    prelu = nn.PReLU(1, init=-3.0).double()
    assert lipschitz_upper_bound(prelu, (4,)).upper == pytest.approx(3.0)
    assert lipschitz_upper_bound(nn.ELU(-2.5), (4,)).upper == pytest.approx(2.5)


# --- subclasses ---------------------------------------------------------------------------

def test_subclass_that_overrides_forward_is_traced_or_refused():
    class Gated(nn.Linear):
        def forward(self, x):
            return super().forward(x) * (1 + 99 * (x.abs().max() > 10))

    refused(Gated(4, 4), (4,), "max")

    class Loud(nn.ReLU):
        def forward(self, x):
            return 50 * super().forward(x)

    net = nn.Sequential(nn.Linear(3, 3), Loud()).double()
    assert lipschitz_upper_bound(net, (3,)).upper >= nonlinear_truth(net, (3,)) * (1 - X.RTOL)

    class ConvCustom(nn.Conv2d):
        def _conv_forward(self, x, weight, bias):
            return 10 * super()._conv_forward(x, weight, bias)

    conv = ConvCustom(1, 1, 3).double()
    assert lipschitz_upper_bound(conv, (1, 5, 5)).upper >= linear_truth(conv, (1, 5, 5)) * (1 - 1e-9)


# --- references: scale, range, hangs --------------------------------------------------------

@pytest.mark.parametrize("scale", [3e-82, 1e-160, 2.0 ** -1060, 1e77, 1e150, 1e300])
@pytest.mark.parametrize("method", ["auto", "gram", "lanczos", "dense"])
@pytest.mark.parametrize("mode, padding", [("circular", 0), ("zeros", 1)])
def test_bracket_holds_at_every_scale(scale, method, mode, padding):
    """Tiny, subnormal and huge weights: the scaled problem is the unscaled one times a power of
    two, so the truth is the scale times the unit problem's dense norm."""
    w0 = torch.randn(2, 2, 3, 3, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    w = w0 * scale
    exact_scale = scale if (w / scale == w0).all() else None
    a = materialize_operator(w if exact_scale is None else w0, 6, padding=padding, padding_mode=mode)
    truth = float(torch.linalg.matrix_norm(a, 2)) * (exact_scale or 1.0)
    r = conv_operator_norm(w, 6, padding=padding, padding_mode=mode, method=method)
    assert r.lower <= truth * (1 + 1e-12) and truth * (1 - 1e-12) <= r.upper, (r, truth)


def test_beyond_float64_is_a_one_line_value_error():
    net = nn.Sequential(nn.Linear(3, 3), nn.Tanh(), nn.Linear(3, 3)).double()
    with torch.no_grad():
        net[0].weight.mul_(1e200)
        net[2].weight.mul_(1e200)
    with pytest.raises(ValueError) as info:
        lipschitz_upper_bound(net, (3,))
    assert "float64's range" in str(info.value) and "\n" not in str(info.value)
    net = nn.Sequential(nn.Linear(3, 3), nn.Linear(3, 3)).double()
    with torch.no_grad():
        net[0].weight.mul_(1e200)
        net[1].weight.mul_(1e200)
    with pytest.raises(ValueError, match="non-finite"):
        lipschitz_upper_bound(net, (3,))


# --- the α guarantee of transposed convolutions and Prop. 1 ---------------------------------

@given(st.integers(1, 4), st.integers(1, 4), st.integers(1, 4), st.integers(1, 3), st.integers(0, 1),
       st.integers(2, 5), st.integers(0, 2 ** 16))
def test_transposed_alpha_guarantee_bounds_the_operator(ci, co, k, s, p, n, seed):
    torch.manual_seed(seed)
    layer = nn.ConvTranspose2d(ci, co, k, stride=s, padding=p).double()
    try:
        truth = linear_truth(layer, (ci, n, n))
    except RuntimeError:
        return  # a size torch rejects
    record = lipschitz_upper_bound(layer, (ci, n, n)).weight_layers()[0]
    assert record.alpha_guarantee >= truth * (1 - 1e-9)
    assert record.operator_norm.contains(truth)


def test_prop1_needs_alpha_for_convolutions():
    """docs/theory.md#prop1: all-ones 3x3 convolution, all-ones readout, all-ones 8x8 input."""
    conv = nn.Conv2d(1, 1, 3, padding=1, bias=False).double()
    with torch.no_grad():
        conv.weight.fill_(1.0)
    x = torch.ones(1, 1, 8, 8, dtype=torch.float64)
    readout = torch.ones(64, dtype=torch.float64)
    (grad,) = torch.autograd.grad((conv(x).reshape(-1) @ readout), conv.weight)
    g = float(grad.norm())
    assert g == pytest.approx(162.0) and g > float(x.norm() * readout.norm()) == 64.0
    assert g <= 3 * 64.0  # α = 3


@given(st.integers(1, 3), st.integers(1, 3), st.sampled_from([1, 2]), st.integers(4, 7), st.integers(0, 2 ** 16))
def test_prop1_with_alpha_holds_on_random_conv_nets(c1, c2, stride, n, seed):
    torch.manual_seed(seed)
    net = nn.Sequential(nn.Conv2d(1, c1, 3, padding=1, bias=False), nn.ReLU(),
                        nn.Conv2d(c1, c2, 3, stride=stride, padding=1, bias=False), nn.LeakyReLU(0.5),
                        nn.Flatten(), nn.LazyLinear(1, bias=False)).double()
    x = torch.randn(1, 1, n, n, dtype=torch.float64)
    net(x)
    bound = lipschitz_upper_bound(net, (1, n, n))
    norms = [r.operator_norm.upper for r in bound.weight_layers()]
    alphas = [r.alpha.alpha if r.alpha else 1.0 for r in bound.weight_layers()]
    layers = [m for m in net if hasattr(m, "weight")]
    grads = torch.autograd.grad(net(x).sum(), [m.weight for m in layers])
    for t, g in enumerate(grads):
        others = math.prod(norms[:t] + norms[t + 1:])
        assert float(g.norm()) <= alphas[t] * float(x.norm()) * others * (1 + 1e-9)


def test_snw_reshape_does_not_bound_transposed_convolutions():
    """docs/theory.md#alpha: over 300 random ConvTranspose2d layers (seed 0), α‖Ŵ₀‖ bounds every
    operator norm, α‖Ŵ₁‖ (SNw's dim-1 reshape) does not."""
    from harness.exact import alpha, reshaped_norm
    rng = __import__("random").Random(0)
    below = 0
    for _ in range(300):
        ci, co, k, s, p, n = (rng.randint(1, 4), rng.randint(1, 4), rng.randint(1, 4), rng.randint(1, 3),
                              rng.randint(0, 1), rng.randint(2, 5))
        w = torch.randn(ci, co, k, k, generator=torch.Generator().manual_seed(rng.randint(0, 2 ** 16)),
                        dtype=torch.float64)
        try:
            truth = float(torch.linalg.matrix_norm(materialize_operator(w, n, stride=s, padding=p,
                                                                        kind="conv_transpose2d"), 2))
        except ValueError:
            continue  # a size with no output
        a = alpha(k, k, s)
        assert a * reshaped_norm(w, "conv2d") >= truth * (1 - 1e-12)  # dim 0: the conv it is the adjoint of
        below += a * reshaped_norm(w, "conv_transpose2d") < truth * (1 - 1e-9)
    assert below > 0
