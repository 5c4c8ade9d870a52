"""GAN training loop: seeded, checkpointed, divergence as an outcome.

One *iteration* is ``n_dis`` discriminator updates followed by one generator update, the
unit of Miyato et al. 2018 (seed 002 §4, Table 1: "100k generator updates"). Each D update
is ``L_D = d_loss(D(x), D(G(z))) + method.penalty(D, x, G(z))``, an Adam step, then
``method.after_step(D)`` (the Method interface, ``harness/methods/base.py``); each G update
minimises ``g_loss(D(G(z)))`` with D's parameters frozen.

Seeding: ``numpy.random.SeedSequence(seed)`` derives three streams: the global torch RNG
(method initialisation such as the first power-iteration ``u``, penalty interpolation
weights), the data sampler and the latent ``z`` (drawn on the CPU, then moved, so a seed gives
the same ``z`` on every device). :func:`train` runs inside ``torch.random.fork_rng``: the
caller's global RNG is untouched. On the CPU two runs with one seed give identical losses.

Divergence: a non-finite loss, ``|loss| > divergence_threshold``, or a linear-algebra failure
on non-finite weights ends the run with ``diverged_at = N`` (the 1-based iteration) and the
message ``diverged at iteration N``; it is a result, not an exception.

Checkpoints (``<checkpoint_dir>/checkpoint.pt``, written to a temporary file then renamed)
hold G, D (parametrization originals and buffers such as the persistent ``u``), both Adam
states, every RNG state, the sampler position, the iteration and the traces so far; with
``resume=True`` a run continues from one and ends in the same state as an uninterrupted run.
Method state kept in plain Python attributes (not in D's buffers) is not checkpointed; the
built-in methods keep theirs in buffers. Checkpoints load with ``weights_only=True``.

:func:`d_step` and :func:`g_step` are the exact steps the loop uses; :func:`prepare` builds a
:class:`Session` (models on the device, method applied, optimisers, sampler) so a caller can
time a single D or G step.
"""
from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, NamedTuple, Sequence

import numpy as np
import torch
from torch import nn

from .data import BatchSampler, DataSource, as_source
from .losses import GANLoss, get_loss
from .settings import AdamSettings, get_settings, make_optimizers
from .traces import DEFAULT_TRACES, Collector, OperatorNorm, TraceContext, Tracer, to_frame

CHECKPOINT_NAME = "checkpoint.pt"
CHECKPOINT_VERSION = 1


class StopTraining(Exception):
    """Raised by a callback to end training cleanly after the current iteration."""


class CheckpointMismatchError(ValueError):
    """A checkpoint was written by a run with a different configuration; says what differs."""


class DStepResult(NamedTuple):
    d_loss: torch.Tensor   # detached scalar
    penalty: torch.Tensor  # detached scalar
    fake: torch.Tensor     # the detached fake batch D saw


def sample_z(G: nn.Module, n: int, generator: torch.Generator, device: torch.device | str) -> torch.Tensor:
    """``z ~ N(0, I)`` of size ``(n, G.z_dim)``, drawn on the CPU from ``generator``."""
    return torch.randn(n, G.z_dim, generator=generator).to(device)


def d_step(G: nn.Module, D: nn.Module, method: Any, loss: GANLoss, opt_d: torch.optim.Optimizer,
           real: torch.Tensor, z: torch.Tensor) -> DStepResult:
    """One discriminator update: loss + penalty, backward, Adam step, ``method.after_step``."""
    with torch.no_grad():
        fake = G(z)
    d_loss = loss.d_loss(D(real), D(fake))
    penalty = method.penalty(D, real, fake)
    opt_d.zero_grad(set_to_none=True)
    (d_loss + penalty).backward()
    opt_d.step()
    method.after_step(D)
    return DStepResult(d_loss.detach(), torch.as_tensor(penalty, device=d_loss.device).detach(), fake)


def g_step(G: nn.Module, D: nn.Module, loss: GANLoss, opt_g: torch.optim.Optimizer,
           z: torch.Tensor) -> torch.Tensor:
    """One generator update with D's parameters frozen (their ``.grad`` stays from the D step)."""
    flags = [(p, p.requires_grad) for p in D.parameters()]
    for p, _ in flags:
        p.requires_grad_(False)
    try:
        g_loss = loss.g_loss(D(G(z)))
        opt_g.zero_grad(set_to_none=True)
        g_loss.backward()
        opt_g.step()
    finally:
        for p, flag in flags:
            p.requires_grad_(flag)
    return g_loss.detach()


def _derive_seeds(seed: int) -> tuple[int, int, int]:
    s = np.random.SeedSequence(int(seed)).generate_state(3)
    return int(s[0]), int(s[1]), int(s[2])


def _resolve_method(method: Any) -> Any:
    from .. import methods
    if method is None:
        return methods.get("none")
    if isinstance(method, str):
        return methods.get(method)
    return method


class Session:
    """Everything a training run needs, ready to step. Build with :func:`prepare`."""

    def __init__(self, G: nn.Module, D: nn.Module, method: Any, loss: GANLoss, settings: AdamSettings,
                 source: DataSource, batch_size: int, seed: int, device: torch.device) -> None:
        self.G, self.D, self.method, self.loss, self.settings = G, D, method, loss, settings
        self.source, self.batch_size, self.seed, self.device = source, batch_size, seed, device
        _, data_seed, z_seed = _derive_seeds(seed)
        self.sampler = BatchSampler(source, batch_size, data_seed)
        self.z_gen = torch.Generator().manual_seed(z_seed)
        self.opt_g, self.opt_d = make_optimizers(G, D, settings)

    def next_real(self) -> torch.Tensor:
        return next(self.sampler).to(self.device, non_blocking=True)

    def next_z(self) -> torch.Tensor:
        return sample_z(self.G, self.batch_size, self.z_gen, self.device)

    def d_step(self) -> tuple[DStepResult, torch.Tensor]:
        """One D update on a fresh batch; returns the step result and the real batch."""
        real = self.next_real()
        return d_step(self.G, self.D, self.method, self.loss, self.opt_d, real, self.next_z()), real

    def g_step(self) -> torch.Tensor:
        return g_step(self.G, self.D, self.loss, self.opt_g, self.next_z())

    # -- checkpoint state -------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        rng: dict[str, Any] = {"torch": torch.get_rng_state(), "z": self.z_gen.get_state(),
                               "sampler": self.sampler.state_dict()}
        if self.device.type == "cuda":
            rng["cuda"] = torch.cuda.get_rng_state(self.device)
        return {"G": self.G.state_dict(), "D": self.D.state_dict(), "opt_g": self.opt_g.state_dict(),
                "opt_d": self.opt_d.state_dict(), "rng": rng}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if set(state["D"]) != set(self.D.state_dict()):
            self._materialize()
        self.G.load_state_dict(state["G"])
        self.D.load_state_dict(state["D"])
        self.opt_g.load_state_dict(state["opt_g"])
        self.opt_d.load_state_dict(state["opt_d"])
        rng = state["rng"]
        torch.set_rng_state(rng["torch"])
        self.z_gen.set_state(rng["z"])
        self.sampler.load_state_dict(rng["sampler"])
        if "cuda" in rng and self.device.type == "cuda":
            torch.cuda.set_rng_state(rng["cuda"], self.device)

    def _materialize(self) -> None:
        """One no-grad D forward, so method state created lazily by the first forward (e.g. a
        power-iteration vector shaped by the input) exists before a checkpoint is loaded into
        it; everything it touches (buffers, global RNG) is overwritten by the load."""
        with torch.no_grad():
            self.D(self.source.sample(2, seed=0).to(self.device))

    def config(self) -> dict[str, Any]:
        """What must match for a checkpoint to be resumed."""
        try:
            method = self.method.to_json()
        except Exception:  # a third-party method with non-JSON parameters
            method = repr(self.method)
        return {"seed": int(self.seed), "batch_size": int(self.batch_size), "loss": self.loss.name,
                "settings": self.settings.describe(), "method": method, "data": self.source.name,
                "G": type(self.G).__name__, "D": type(self.D).__name__}


def prepare(G: nn.Module, D: nn.Module, method: Any = None, loss: str | GANLoss = "hinge",
            settings: str | dict | AdamSettings = "A", data: Any = "ring8", batch_size: int = 64,
            seed: int = 0, device: str | torch.device = "cpu", apply_method: bool = True) -> Session:
    """Move G and D to ``device``, seed the global torch RNG, apply ``method`` to D (once),
    build the optimisers, sampler and ``z`` stream. Note: seeds the *global* torch RNG
    (:func:`train` wraps this in a forked RNG)."""
    device = torch.device(device)
    method = _resolve_method(method)
    global_seed, _, _ = _derive_seeds(seed)
    torch.manual_seed(global_seed)
    G.to(device).train()
    D.to(device).train()
    if apply_method:
        D = method.apply(D) or D  # methods create their state on the weight's device
    return Session(G, D, method, get_loss(loss), get_settings(settings), as_source(data),
                   batch_size, seed, device)


@dataclass
class TrainResult:
    """Outcome of :func:`train`."""

    iterations: int                    # completed iterations (generator updates)
    diverged_at: int | None = None     # 1-based iteration whose loss diverged
    message: str = ""
    final: dict[str, float] = field(default_factory=dict)  # loss_d, penalty, loss_g of the last iteration
    traces: list[dict[str, Any]] = field(default_factory=list)  # rows series, step, value
    times: list[float] | None = None   # seconds per iteration run in this process
    resumed_from: int | None = None
    stopped: bool = False              # a callback raised StopTraining
    G: nn.Module | None = field(default=None, repr=False)
    D: nn.Module | None = field(default=None, repr=False)  # the method-applied discriminator

    @property
    def diverged(self) -> bool:
        return self.diverged_at is not None

    def frame(self):
        """Traces as a DataFrame ``series, step, value``."""
        return to_frame(self.traces)


@dataclass
class StepInfo:
    """Passed to callbacks after every iteration."""

    step: int
    session: Session
    losses: dict[str, float]


def _save(path: Path, payload: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.tmp-{os.getpid()}")
    with open(tmp, "wb") as f:
        torch.save(payload, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _check_config(saved: dict[str, Any], current: dict[str, Any], path: Path) -> None:
    diff = sorted(k for k in set(saved) | set(current) if saved.get(k) != current.get(k))
    if diff:
        details = "; ".join(f"{k}: checkpoint {saved.get(k)!r} vs run {current.get(k)!r}" for k in diff)
        raise CheckpointMismatchError(f"{path} was written by a different run ({details}); "
                                      "use another checkpoint_dir or resume=False")


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def train(G: nn.Module, D: nn.Module, method: Any = None, loss: str | GANLoss = "hinge",
          settings: str | dict | AdamSettings = "A", data: Any = "ring8", iterations: int = 100,
          batch_size: int = 64, seed: int = 0, device: str | torch.device = "cpu",
          callbacks: Sequence[Callable[[StepInfo], Any]] = (), trace_every: int = 0,
          traces: Sequence[str | Collector] = DEFAULT_TRACES, operator_norm: OperatorNorm | None = None,
          checkpoint_dir: str | Path | None = None, checkpoint_every: int = 1000, resume: bool = True,
          time_iterations: bool = False, divergence_threshold: float = 1e6,
          apply_method: bool = True) -> TrainResult:
    """Train ``G`` against ``D`` for ``iterations`` generator updates (see the module docstring).

    ``method``: a Method, a registry name or None (``none``); ``loss``: name or GANLoss;
    ``settings``: ``"A"``..``"F"``, a mapping or AdamSettings; ``data``: a DataSource, a
    tensor, or a loader name. ``trace_every > 0`` runs the ``traces`` collectors (plus
    ``operator_norm`` when given) every that many iterations. G and D are trained in place;
    D is the method-applied module afterwards (``method.apply`` may return a new module:
    use ``result``'s session via a callback if you need it).
    """
    device = torch.device(device)
    cuda = [device.index or 0] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=cuda):
        session = prepare(G, D, method, loss, settings, data, batch_size, seed, device, apply_method)
        return _run(session, iterations, callbacks, Tracer(traces, trace_every, operator_norm),
                    Path(checkpoint_dir) if checkpoint_dir is not None else None,
                    checkpoint_every, resume, time_iterations, divergence_threshold)


def _run(s: Session, iterations: int, callbacks: Sequence[Callable], tracer: Tracer,
         ckpt_dir: Path | None, checkpoint_every: int, resume: bool, time_iterations: bool,
         threshold: float) -> TrainResult:
    result = TrainResult(iterations=0, times=[] if time_iterations else None, G=s.G, D=s.D)
    ckpt = ckpt_dir / CHECKPOINT_NAME if ckpt_dir is not None else None
    config = s.config()

    def payload(step: int) -> dict[str, Any]:
        return {"version": CHECKPOINT_VERSION, "iteration": step, "config": config,
                "diverged_at": result.diverged_at, "message": result.message,
                "final": dict(result.final), "traces": list(result.traces), **s.state_dict()}

    start = 0
    if ckpt is not None and resume and ckpt.exists():
        state = torch.load(ckpt, map_location="cpu", weights_only=True)  # RNG states must stay on the CPU
        _check_config(state["config"], config, ckpt)
        if state["iteration"] > iterations:
            raise CheckpointMismatchError(f"{ckpt} is at iteration {state['iteration']}, beyond the "
                                          f"requested {iterations}")
        s.load_state_dict(state)
        start = result.iterations = result.resumed_from = int(state["iteration"])
        result.traces, result.final = list(state["traces"]), dict(state["final"])
        result.diverged_at, result.message = state["diverged_at"], state["message"]
        if result.diverged_at is not None:
            return result

    if tracer.every > 0:  # hooks only when tracing: they would mark every layer as hooked
        tracer.attach(s.D)
    saved_at = start
    try:
        for step in range(start + 1, iterations + 1):
            if time_iterations:
                _sync(s.device)
                t0 = time.perf_counter()
            try:
                d_losses, penalties = [], []
                for _ in range(s.settings.n_dis):
                    d, real = s.d_step()
                    d_losses.append(d.d_loss)
                    penalties.append(d.penalty.reshape(()))
                g_loss = s.g_step()
                values = torch.stack(d_losses + penalties + [g_loss]).double().cpu()
            except torch.linalg.LinAlgError as exc:
                result.diverged_at = step
                result.message = f"diverged at iteration {step} (linear algebra failed: {exc})"
                break
            if time_iterations:
                _sync(s.device)
                result.times.append(time.perf_counter() - t0)
            losses = {"loss_d": float(values[s.settings.n_dis - 1]),
                      "penalty": float(values[2 * s.settings.n_dis - 1]), "loss_g": float(values[-1])}
            if not bool(torch.isfinite(values).all()) or float(values.abs().max()) > threshold:
                bad = ", ".join(f"{k}={v:.4g}" for k, v in losses.items())
                result.diverged_at = step
                result.message = (f"diverged at iteration {step} (non-finite or |loss| > "
                                  f"{threshold:g}: {bad}; max |loss| over its steps "
                                  f"{float(values.abs().max()):.4g})")
                break
            result.iterations, result.final = step, losses
            if tracer.due(step):
                ctx = TraceContext(step, s.G, s.D, s.loss, real, d.fake, losses, {})
                result.traces += tracer.collect(ctx)
            try:
                for cb in callbacks:
                    cb(StepInfo(step, s, losses))
            except StopTraining:
                result.stopped = True
                result.message = f"stopped by a callback at iteration {step}"
                break
            if ckpt is not None and checkpoint_every > 0 and step % checkpoint_every == 0:
                _save(ckpt, payload(step))
                saved_at = step
    finally:
        tracer.detach()
    if ckpt is not None and (saved_at != result.iterations or result.diverged_at is not None):
        _save(ckpt, payload(result.iterations))
    if not result.message:
        result.message = f"completed {result.iterations} iterations"
    return result
