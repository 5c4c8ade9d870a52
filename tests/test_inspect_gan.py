"""``inspect`` on GAN discriminators: conditional (projection) models, reflect/replicate padding,
bilinear/bicubic interpolation, attention refused with its reason.

Soundness is checked against the dense Jacobian of float64 models on small inputs: copy maps and
interpolations are linear, so their exact norm is ``σ₁`` of the Jacobian (SVD, float64, relative
error ~1e-15); the certified bracket must contain it and be narrow (1e-9: the brackets are
~1e-11 wide, measured). For nonlinear models, each Jacobian norm at a point is a lower bound.
"""
from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from harness.cli.main import main
from harness.exact import lipschitz_upper_bound, with_constants
from harness.exact.inputs import InputsError, class_label, parse_classes

pytestmark = pytest.mark.usefixtures("one_thread")


def sigma_max(fn, shape) -> float:
    """``σ₁`` of the Jacobian of ``fn`` at a random float64 point of ``shape`` (batch 1)."""
    x = torch.randn(shape, dtype=torch.float64).reshape(-1)
    jac = torch.autograd.functional.jacobian(lambda z: fn(z.reshape(1, *shape)).reshape(-1), x)
    return float(torch.linalg.matrix_norm(jac, 2))


class Lambda(nn.Module):
    """A from-scratch module calling ``fn`` (so the functional forms are traced, not a module)."""

    def __init__(self, fn) -> None:
        super().__init__()
        self.fn = fn

    def forward(self, x):
        return self.fn(x)


def bracket(model: nn.Module, shape) -> tuple[float, float]:
    rec = lipschitz_upper_bound(model, shape).layers[-1]
    op = rec.operator_norm
    return (op.lower, op.upper) if op is not None else (rec.factor, rec.factor)


# --- padding ------------------------------------------------------------------------------

PADS = {1: (nn.ReflectionPad1d, nn.ReplicationPad1d, nn.CircularPad1d),
        2: (nn.ReflectionPad2d, nn.ReplicationPad2d, nn.CircularPad2d),
        3: (nn.ReflectionPad3d, nn.ReplicationPad3d, nn.CircularPad3d)}


@settings(max_examples=25)
@given(st.data())
def test_copy_padding_is_exact(data):
    """Reflect, replicate, circular padding (functional and modules, 1-3 spatial dims): the bound
    is σ₁ of the Jacobian (√ of the largest number of copies), rounded up by at most 1e-12."""
    dims = data.draw(st.integers(1, 3))
    spatial = tuple(data.draw(st.integers(2, 5)) for _ in range(dims))
    mode = data.draw(st.sampled_from(["reflect", "replicate", "circular"]))
    pad = tuple(data.draw(st.integers(0, n - 1)) for n in spatial for _ in range(2))[::-1]
    shape = (2, *spatial)
    if data.draw(st.booleans()):
        model = Lambda(lambda x: F.pad(x, pad, mode=mode))
    else:
        model = PADS[dims][("reflect", "replicate", "circular").index(mode)](pad)
    lo, hi = bracket(model, shape)
    exact = sigma_max(model.double(), shape)
    assert lo <= exact * (1 + 1e-12) and exact <= hi <= exact * (1 + 1e-12)


@pytest.mark.parametrize("mode", ["reflect", "replicate"])
def test_conv_with_copy_padding_is_sound(mode):
    torch.manual_seed(0)
    conv = nn.Conv2d(2, 3, 3, padding=2, padding_mode=mode).double()
    bound = lipschitz_upper_bound(conv, (2, 5, 6))
    exact = sigma_max(conv, (2, 5, 6))
    assert exact <= bound.upper <= 3 * exact  # ‖conv_valid‖·‖pad‖: an upper bound, not exact
    assert f"{mode} padding" in bound.layers[-1].note


# --- interpolation ------------------------------------------------------------------------

@settings(max_examples=30)
@given(st.data())
def test_interpolation_bracket_contains_the_exact_norm(data):
    mode = data.draw(st.sampled_from(["linear", "bilinear", "bicubic", "trilinear"]))
    dims = {"linear": 1, "bilinear": 2, "bicubic": 2, "trilinear": 3}[mode]
    spatial = tuple(data.draw(st.integers(1, 6)) for _ in range(dims))
    align = data.draw(st.sampled_from([None, False, True]))
    kwargs = dict(mode=mode, align_corners=align)
    how = data.draw(st.sampled_from(["size", "scale", "recompute"]))
    if how == "size":
        kwargs["size"] = tuple(data.draw(st.integers(1, 9)) for _ in range(dims))
    else:
        kwargs["scale_factor"] = data.draw(st.sampled_from([0.5, 1.0, 1.5, 2.0, 2.7, 3.0]))
        kwargs["recompute_scale_factor"] = how == "recompute"
        if any(int(n * kwargs["scale_factor"]) < 1 for n in spatial):
            return  # torch rejects an empty output
    if data.draw(st.booleans()):
        model = Lambda(lambda x: F.interpolate(x, **kwargs))
    else:
        model = nn.Upsample(**kwargs)
    shape = (2, *spatial)
    lo, hi = bracket(model, shape)
    exact = sigma_max(model.double(), shape)
    assert lo <= exact <= hi and hi - lo <= 1e-9 * hi


def test_upsampling_bilinear2d_module():
    shape = (1, 4, 5)
    lo, hi = bracket(nn.UpsamplingBilinear2d(scale_factor=2), shape)  # align_corners=True
    exact = sigma_max(nn.UpsamplingBilinear2d(scale_factor=2).double(), shape)
    assert lo <= exact <= hi


# --- conditional models -------------------------------------------------------------------

class Projection(nn.Module):
    """Miyato & Koyama 2018: ``D(x, y) = ψ(φ(x)) + ⟨embed(y), φ(x)⟩``, written from scratch, with
    reflect padding and bilinear upsampling inside φ."""

    def __init__(self, classes: int = 4) -> None:
        super().__init__()
        self.conv = nn.Conv2d(2, 3, 3)
        self.conv2 = nn.Conv2d(3, 4, 3, stride=2, padding=1, padding_mode="replicate")
        self.psi = nn.Linear(4, 1)
        self.embed = nn.Embedding(classes, 4)

    def forward(self, x, y):
        h = F.leaky_relu(self.conv(F.pad(x, (1, 1, 1, 1), mode="reflect")), 0.1)
        h = F.leaky_relu(self.conv2(F.interpolate(h, scale_factor=2, mode="bilinear")), 0.1)
        phi = h.mean(dim=(2, 3))
        return self.psi(phi).squeeze(1) + (self.embed(y) * phi).sum(1)


def projection() -> nn.Module:
    torch.manual_seed(0)
    model = Projection()
    with torch.no_grad():
        model.embed.weight[1] *= 5  # class 1 has the largest bound
    return model


def test_projection_bound_per_class_is_sound():
    model = projection().double().eval()
    for k in range(4):
        bound = lipschitz_upper_bound(with_constants(model, "x", {"y": class_label(k)}), (2, 6, 6))
        grads = [sigma_max(lambda z: model(z, class_label(k)), (2, 6, 6)) for _ in range(5)]
        assert max(grads) <= bound.upper


def test_cli_classes_reports_each_class_and_the_maximum(capsys):
    assert main(["inspect", "test_inspect_gan:projection", "--input-shape", "2,6,6", "--classes", "0-3",
                 "--json"]) == 0
    out, err = capsys.readouterr()
    net = json.loads(out)["network"]
    per = {p["class"]: p["lipschitz_upper"] for p in net["per_class"]}
    assert sorted(per) == [0, 1, 2, 3] and net["wrt"] == "x" and net["label_arg"] == "y"
    assert net["lipschitz_upper"] == max(per.values()) and net["worst_class"] == 1
    model = projection().double().eval()
    for k, upper in per.items():  # each class's bound against its own certified computation
        assert upper == lipschitz_upper_bound(with_constants(model.float(), "x", {"y": class_label(k)}),
                                              (2, 6, 6)).upper
    assert net["lipschitz_lower"] <= net["lipschitz_upper"]
    assert err.count("graph validated") == 1 and "class 3: certified upper bound" in err


def test_cli_wrt_and_label_arg(capsys):
    """The argument order does not matter when both are named."""
    class Swapped(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.inner = projection()

        def forward(self, label, image):
            return self.inner(image, label)

    import test_inspect_gan as me
    me.swapped = lambda: Swapped()
    try:
        assert main(["inspect", "test_inspect_gan:swapped", "--input-shape", "2,6,6", "--classes", "0,1",
                     "--wrt", "image", "--label-arg", "label", "--json"]) == 0
    finally:
        del me.swapped
    net = json.loads(capsys.readouterr().out)["network"]
    assert net["wrt"] == "image" and [p["class"] for p in net["per_class"]] == [0, 1]


@pytest.mark.parametrize("args, line", [
    ((), "lipbench: Projection.forward takes 'x', 'y': give the class set with --classes (e.g. 0-9) and, "
         "if needed, --wrt and --label-arg"),
    (("--classes", "0-x"), "lipbench: --classes '0-x': expected class numbers such as 3, 0-9 or 0,2,5"),
    (("--classes", "0", "--wrt", "z"), "lipbench: --wrt 'z': Projection.forward has no argument 'z' "
                                       "(it takes x, y)"),
    (("--classes", "0", "--label-arg", "x"), "lipbench: --label-arg 'x' is the input the bound is about (--wrt)"),
    (("--label-arg", "y",), "lipbench: --label-arg needs --classes"),
    (("--classes", "2-4"), "lipbench: class 4 passed as 'y': input shape (2, 6, 6) does not fit the model: "
                           "module 'embed' rejects its input of shape (1,): index out of range in self"),
])
def test_cli_conditional_errors_exit_2_with_one_line(capsys, args, line):
    assert main(["inspect", "test_inspect_gan:projection", "--input-shape", "2,6,6", *args]) == 2
    assert capsys.readouterr().err.strip().splitlines() == [line]


def test_method_that_refuses_a_layer_of_a_conditional_model_is_one_line(capsys):
    """SNw normalises weight layers only; the projection's embedding is refused by the method."""
    assert main(["inspect", "test_inspect_gan:projection", "--input-shape", "2,6,6", "--classes", "0-1",
                 "--method", "sn_w"]) == 2
    assert capsys.readouterr().err.strip().splitlines() == [
        "lipbench: layer embed (Embedding) is not supported; lipbench handles Linear, Conv1d, Conv2d, "
        "ConvTranspose2d"]


class FunctionalProjection(Projection):
    """The class embedding as a plain parameter read by ``F.embedding`` (no Embedding module)."""

    def __init__(self) -> None:
        super().__init__()
        self.table = nn.Parameter(self.embed.weight.detach().clone())
        del self.embed

    def forward(self, x, y):
        h = F.leaky_relu(self.conv(F.pad(x, (1, 1, 1, 1), mode="reflect")), 0.1)
        h = F.leaky_relu(self.conv2(F.interpolate(h, scale_factor=2, mode="bilinear")), 0.1)
        phi = h.mean(dim=(2, 3))
        return self.psi(phi).squeeze(1) + (F.embedding(y, self.table) * phi).sum(1)


def functional_projection() -> nn.Module:
    torch.manual_seed(0)
    return FunctionalProjection()


def test_method_applies_to_a_conditional_model(capsys):
    """``--method`` is applied once (to the model behind every class): SNw sets each weight
    layer's ‖Ŵ‖ to 1 (16 power iterations after one training forward: within 10%)."""
    assert main(["inspect", "test_inspect_gan:functional_projection", "--input-shape", "2,6,6", "--classes", "0-2",
                 "--method", "sn_w", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    norms = [r["reshaped_norm"] for r in data["layers"] if r["reshaped_norm"] is not None]
    assert len(norms) == 3 and norms == pytest.approx([1.0] * 3, rel=0.1)
    assert len(data["network"]["per_class"]) == 3


def test_parse_classes():
    assert parse_classes("3") == (3,) and parse_classes("0-2,5") == (0, 1, 2, 5)
    with pytest.raises(InputsError):
        parse_classes("3-1")
    with pytest.raises(InputsError):
        with_constants(projection(), "x", {})


# --- refusals -----------------------------------------------------------------------------

class SelfAttention(nn.Module):
    """SAGAN's attention block (Zhang et al. 2019), from scratch."""

    def __init__(self, c: int = 4) -> None:
        super().__init__()
        self.q, self.k, self.v = nn.Conv2d(c, c // 2, 1), nn.Conv2d(c, c // 2, 1), nn.Conv2d(c, c, 1)
        self.gamma = nn.Parameter(torch.zeros(1))

    def forward(self, x):
        b, c, h, w = x.size()
        q = self.q(x).view(b, -1, h * w).permute(0, 2, 1)
        att = torch.softmax(torch.bmm(q, self.k(x).view(b, -1, h * w)), dim=-1)
        out = torch.bmm(self.v(x).view(b, -1, h * w), att.permute(0, 2, 1)).view(b, c, h, w)
        return self.gamma * out + x


def sagan() -> nn.Module:
    return nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), SelfAttention(4), nn.Flatten(), nn.Linear(4 * 6 * 6, 1))


def sdpa() -> nn.Module:
    return nn.Sequential(nn.Linear(4, 4), Lambda(lambda x: F.scaled_dot_product_attention(x, x, x)))


def multihead() -> nn.Module:
    class Block(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.att = nn.MultiheadAttention(4, 1, batch_first=True)

        def forward(self, x):
            return self.att(x, x, x)[0]
    return Block()


def antialias() -> nn.Module:
    return Lambda(lambda x: F.interpolate(x, scale_factor=0.5, mode="bilinear", antialias=True))


REASON = ("a product of two input-dependent tensors, as in dot-product attention, has no global Lipschitz "
          "constant (Kim et al. 2021, Theorem 3.1; docs/references.md)")


@pytest.mark.parametrize("factory, shape, line", [
    ("sagan", "1,6,6", f"lipbench: node 'bmm' (function torch.bmm) in module '1' (SelfAttention): {REASON}"),
    ("sdpa", "3,4", "lipbench: node 'scaled_dot_product_attention' (function torch._C._nn.scaled_dot_product_attention) "
                    f"in module '1' (Lambda): {REASON}"),
    ("multihead", "3,4", f"lipbench: module 'att': {REASON}"),
    ("antialias", "1,6,6", "lipbench: node 'interpolate' (function torch.nn.functional.interpolate): "
                           "antialias=True (a different, size-dependent filter) is not modelled"),
])
def test_refusals_exit_2_with_the_reason(capsys, factory, shape, line):
    assert main(["inspect", f"test_inspect_gan:{factory}", "--input-shape", shape]) == 2
    assert capsys.readouterr().err.strip().splitlines() == [line]
