"""Training loop: determinism, divergence as an outcome, checkpoint + resume, traces, steps."""
import math
import os

import pytest
import torch
from torch.nn.utils.parametrizations import spectral_norm

from harness import methods
from harness.methods import Method
from harness.training import loop as L
from harness.training import traces as T
from harness.training.data import digits
from harness.training.models import build

SMALL = {"hidden": 16, "depth": 2}
FAST = {"lr": 2e-3, "beta1": 0.5, "beta2": 0.9, "n_dis": 2}


pytestmark = pytest.mark.usefixtures("one_thread")


class TorchSN(Method):
    """Test method: torch's spectral_norm on every weight layer (persistent u buffers)."""
    name = "test_torch_sn"

    def apply(self, model):
        from harness.layers import weight_layers
        for _, layer in weight_layers(model):
            spectral_norm(layer)
        return model


class NaNPenalty(Method):
    """Penalty that turns NaN on its ``at``-th call (1-based)."""
    name = "test_nan_penalty"
    defaults = {"at": 3}

    def __init__(self, **kw):
        super().__init__(**kw)
        self.calls = 0

    def penalty(self, D, real, fake):
        self.calls += 1
        return real.new_tensor(math.nan if self.calls == self.params["at"] else 0.0)


class UnseededNoise(Method):
    """Broken on purpose: a penalty drawn from a generator seeded from the OS."""
    name = "test_unseeded"

    def penalty(self, D, real, fake):
        g = torch.Generator().manual_seed(int.from_bytes(os.urandom(4), "little"))
        return torch.rand((), generator=g)


def run(method=None, iterations=6, seed=0, model="mlp2d", data="ring8", **kw):
    G, D = build(model, seed=seed, **(SMALL if model == "mlp2d" else {"ch": 4}))
    kw.setdefault("settings", FAST)
    return L.train(G, D, method, data=data, iterations=iterations, batch_size=16, seed=seed, **kw)


def trajectory(result):
    """Everything that must match between two runs: losses, traces and D's/G's full state."""
    return (result.final, result.traces,
            {k: v.clone() for k, v in result.D.state_dict().items()},
            {k: v.clone() for k, v in result.G.state_dict().items()})


def same(a, b):
    fa, ta, da, ga = a
    fb, tb, db, gb = b
    return (fa == fb and ta == tb and da.keys() == db.keys()
            and all(torch.equal(da[k], db[k]) for k in da) and all(torch.equal(ga[k], gb[k]) for k in ga))


# ------------------------------------------------------------------ determinism

def test_same_seed_same_losses_and_state():
    a, b = run(trace_every=2), run(trace_every=2)
    assert a.iterations == 6 and not a.diverged and a.message == "completed 6 iterations"
    assert same(trajectory(a), trajectory(b))
    c = run(seed=1, trace_every=2)
    assert c.final != a.final


def test_determinism_check_catches_unseeded_randomness():
    a, b = run(UnseededNoise(), iterations=3), run(UnseededNoise(), iterations=3)
    assert not same(trajectory(a), trajectory(b))


def test_train_leaves_global_rng_alone():
    state = torch.get_rng_state()
    run(iterations=2)
    assert torch.equal(state, torch.get_rng_state())


@pytest.mark.parametrize("name", ["sn_w", "weight_clip", "grad_penalty"])
def test_registered_methods_train_deterministically(name):
    assert name in methods.available()
    a = run(methods.get(name), iterations=3, model="dcgan_digits", data=digits(), trace_every=3)
    b = run(methods.get(name), iterations=3, model="dcgan_digits", data=digits(), trace_every=3)
    assert not a.diverged and same(trajectory(a), trajectory(b))
    if name == "grad_penalty":
        assert a.final["penalty"] > 0


# ------------------------------------------------------------------ divergence

def test_huge_lr_diverges_without_exception():
    r = run(loss="wasserstein", settings={"lr": 10.0, "beta1": 0.5, "beta2": 0.9, "n_dis": 1},
            iterations=50)
    assert r.diverged and 1 <= r.diverged_at < 50
    assert r.iterations == r.diverged_at - 1
    assert f"diverged at iteration {r.diverged_at}" in r.message


def test_nan_penalty_sets_diverged_at():
    r = run(NaNPenalty(at=3), settings={**FAST, "n_dis": 1})
    assert (r.diverged_at, r.iterations) == (3, 2)
    assert r.message.startswith("diverged at iteration 3")


def test_nan_in_a_middle_d_step_is_caught():
    # n_dis=5: call 7 is the 2nd D step of iteration 2, not the one whose loss is reported
    r = run(NaNPenalty(at=7), settings={**FAST, "n_dis": 5})
    assert r.diverged_at == 2


def test_threshold_is_configurable():
    r = run(iterations=3, divergence_threshold=1e-3)
    assert r.diverged_at == 1
    assert not run(iterations=3).diverged


# ------------------------------------------------------------------ checkpoint and resume

class Crash(Exception):
    pass


def crash_at(step):
    def cb(info):
        if info.step == step:
            raise Crash
    return cb


@pytest.mark.parametrize("method", [None, TorchSN()])
def test_resume_after_crash_matches_uninterrupted(tmp_path, method):
    full = trajectory(run(method, iterations=6, trace_every=1))
    with pytest.raises(Crash):  # dies during iteration 5; last checkpoint at 4
        run(method, iterations=6, trace_every=1, checkpoint_dir=tmp_path, checkpoint_every=2,
            callbacks=[crash_at(5)])
    assert torch.load(tmp_path / L.CHECKPOINT_NAME, weights_only=True)["iteration"] == 4
    resumed = run(method, iterations=6, trace_every=1, checkpoint_dir=tmp_path, checkpoint_every=2)
    assert resumed.resumed_from == 4 and resumed.iterations == 6
    assert same(trajectory(resumed), full)
    assert not [p for p in tmp_path.iterdir() if ".tmp" in p.name]  # temp files renamed away


def test_extend_finished_run(tmp_path):
    full = trajectory(run(TorchSN(), iterations=6, trace_every=2))
    first = run(TorchSN(), iterations=3, trace_every=2, checkpoint_dir=tmp_path, checkpoint_every=100)
    assert first.iterations == 3  # the final state is checkpointed even off the schedule
    second = run(TorchSN(), iterations=6, trace_every=2, checkpoint_dir=tmp_path, checkpoint_every=100)
    assert second.resumed_from == 3 and same(trajectory(second), full)


def test_resume_check_catches_lost_rng_state(tmp_path):
    full = trajectory(run(iterations=4))
    run(iterations=2, checkpoint_dir=tmp_path)
    path = tmp_path / L.CHECKPOINT_NAME
    state = torch.load(path, weights_only=True)
    state["rng"]["z"] = torch.Generator().manual_seed(99).get_state()  # broken: wrong z stream
    torch.save(state, path)
    assert not same(trajectory(run(iterations=4, checkpoint_dir=tmp_path)), full)


def test_resume_refuses_a_different_run(tmp_path):
    run(iterations=2, checkpoint_dir=tmp_path)
    with pytest.raises(L.CheckpointMismatchError, match="seed"):
        run(iterations=4, seed=1, checkpoint_dir=tmp_path)
    fresh = run(iterations=2, seed=1, checkpoint_dir=tmp_path, resume=False)
    assert fresh.resumed_from is None


def test_diverged_checkpoint_is_not_retrained(tmp_path):
    r = run(NaNPenalty(at=3), settings={**FAST, "n_dis": 1}, checkpoint_dir=tmp_path)
    again = run(NaNPenalty(at=3), settings={**FAST, "n_dis": 1}, checkpoint_dir=tmp_path)
    assert again.diverged_at == r.diverged_at == 3 and again.message == r.message


def test_checkpoint_write_is_atomic(tmp_path, monkeypatch):
    path = tmp_path / "checkpoint.pt"
    L._save(path, {"iteration": 1})

    def broken_save(obj, f):
        f.write(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(L.torch, "save", broken_save)
    with pytest.raises(OSError):
        L._save(path, {"iteration": 2})
    monkeypatch.undo()
    assert torch.load(path, weights_only=True)["iteration"] == 1


def test_stop_training_callback(tmp_path):
    def stop(info):
        if info.step == 2:
            raise L.StopTraining
    r = run(iterations=6, callbacks=[stop], checkpoint_dir=tmp_path)
    assert r.stopped and r.iterations == 2 and not r.diverged
    assert torch.load(tmp_path / L.CHECKPOINT_NAME, weights_only=True)["iteration"] == 2


# ------------------------------------------------------------------ traces

def test_traces_series_and_values():
    seen = []

    def opnorm(layer, shape):
        seen.append(shape)
        torch.randn(3)  # consumes global RNG: must not perturb training
        return 1.0

    r = run(TorchSN(), iterations=4, model="dcgan_digits", data=digits(), trace_every=2,
            traces=T.DEFAULT_TRACES + ("grad_norm_effective",), operator_norm=opnorm)
    df = r.frame()
    assert list(df.columns) == ["series", "step", "value"]
    assert sorted(df.step.unique()) == [2, 4]
    layers = ["features.0", "features.2", "head"]
    expected = {"loss_d", "loss_g", "penalty"} | {f"{k}/{l}" for l in layers for k in (
        "grad_norm", "grad_norm_effective", "sigma_reshaped", "variance", "variance_bound", "operator_norm")}
    assert set(df.series) == expected
    assert df.value.map(math.isfinite).all()
    v = df.set_index(["series", "step"]).value
    for l in layers:
        assert abs(v[f"sigma_reshaped/{l}", 4] - 1) < 0.1          # SN keeps ‖Ŵ‖ near 1
        assert v[f"variance/{l}", 4] <= v[f"variance_bound/{l}", 4]  # Lin et al. 2021 Thm 2
        assert v[f"grad_norm/{l}", 4] > 0
    assert v["variance_bound/features.0", 2] == 1 / 16  # Ŵ is 4 x 16 (1 in, k4x4)
    assert set(seen) == {(1, 8, 8), (4, 4, 4), (32,)}  # per-sample input shapes


def test_grad_norm_is_wrt_unconstrained_parameter():
    G, D = build("mlp2d", seed=0, **SMALL)
    s = L.prepare(G, D, TorchSN(), "hinge", FAST, "ring8", 16, 0)
    d, real = s.d_step()
    ctx = T.TraceContext(1, s.G, s.D, s.loss, real, d.fake, {}, {})
    rows = dict(T.collect_grad_norm(ctx))
    head = s.D.head
    assert rows["grad_norm/head"] == pytest.approx(
        float(head.parametrizations.weight.original.grad.double().norm()))


def test_tracing_does_not_change_the_trajectory():
    kw = dict(iterations=4, model="dcgan_digits", data=digits())
    plain = trajectory(run(TorchSN(), **kw))
    traced = run(TorchSN(), trace_every=1, traces=T.DEFAULT_TRACES + ("grad_norm_effective",), **kw)
    assert same((plain[0], [], *plain[2:]), (traced.final, [], *trajectory(traced)[2:]))


def test_trajectory_check_catches_unpreserved_tracing(monkeypatch):
    import contextlib
    kw = dict(iterations=4, model="dcgan_digits", data=digits())
    plain = trajectory(run(TorchSN(), **kw))
    # broken: reading layer.weight in training mode runs torch SN's power iteration
    monkeypatch.setattr(T, "preserved", lambda module: contextlib.nullcontext())
    traced = run(TorchSN(), trace_every=1, **kw)
    assert not same((plain[0], [], *plain[2:]), (traced.final, [], *trajectory(traced)[2:]))


# ------------------------------------------------------------------ steps for timing

def test_prepare_exposes_single_steps():
    G, D = build("mlp2d", seed=0, **SMALL)
    s = L.prepare(G, D, None, "hinge", "A", "ring8", 16, 0)
    before_d = s.D.head.weight.detach().clone()
    d, real = s.d_step()
    assert real.shape == (16, 2) and d.fake.shape == (16, 2) and d.d_loss.dim() == 0
    assert not torch.equal(before_d, s.D.head.weight)
    before_g, before_dd = s.G.net[0].weight.detach().clone(), s.D.head.weight.detach().clone()
    g = s.g_step()
    assert torch.isfinite(g) and not torch.equal(before_g, s.G.net[0].weight)
    assert torch.equal(before_dd, s.D.head.weight)  # G step leaves D alone
    assert all(p.requires_grad for p in s.D.parameters())


def test_iteration_timing():
    r = run(iterations=3, time_iterations=True)
    assert len(r.times) == 3 and all(t > 0 for t in r.times)
