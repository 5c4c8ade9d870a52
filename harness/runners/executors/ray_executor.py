"""The Ray executor: cases as Ray tasks on a local or a real cluster; the driver still writes alone.

Connecting (:meth:`RayExecutor.__enter__`): without ``--address`` a local Ray cluster is started
with ``--workers`` CPUs (default: this machine's) and stopped at the end; ``--address ADDR``
(``auto``: the cluster this machine belongs to, see ``ray start``) joins a running cluster and
only disconnects from it; a connection the caller already made (``ray.init`` in a notebook) is
used as it is and left open. ``LIPBENCH_*`` environment variables travel to the workers; on a
local cluster so does the driver's ``sys.path``, so modules importable here (a variant for
``lipbench check``) are importable there.

Placing (:mod:`.placement`): the driver picks the node of every case and pins the task to it
(``NodeAffinitySchedulingStrategy``), reserving ``num_cpus`` / ``num_gpus`` / ``memory`` from
the case's :class:`~harness.suite.resources.Resources`. An exclusive case reserves every CPU of
its node, so nothing else (of this run or another) lands beside it. A case with ``gpu > 0``
runs with ``device: cuda``; Ray's ``CUDA_VISIBLE_DEVICES`` makes that its own GPU.

The worker boundary: on its Ray worker a case still runs through
:func:`~harness.runners.executors.execute_case`, i.e. in a forked process that worker can kill
(:mod:`~harness.runners.isolation`), so a case that exits, segfaults, hangs or eats memory
becomes an ``error`` row and the Ray worker lives on. What Ray reports as a failure is
therefore the loss of the worker or its node (or a node that cannot import lipbench): the
case is sent again, to whichever node has room, up to ``--retries`` times, and then becomes
an ``error`` row naming every node it was lost on. With ``--no-isolation`` the Ray worker
itself is the boundary: a case that kills it is such a failure too. Finished cases are
already in the results folder, so no failure loses them; if the driver dies, ``--resume``
runs what was in flight again.
"""
from __future__ import annotations

import dataclasses
import os
import re
import sys
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Iterator, Sequence

from harness.errors import UserError
from harness.suite import Case

from ..base import Runner, runner_for
from ..case import CaseOutcome, error_outcome
from ..termination import unblocked
from . import CaseNeeds, Event, Executor, Finished, NeedsFor, Note, Started, describe_case, execute_case
from .placement import Claim, Node, Placement

INSTALL_HINT = 'pip install "lipbench[ray]"'
#: Object store of a local cluster: results are rows and a few PNGs, so a small one is plenty
#: (Ray spills to disk beyond it) and leaves the shared machine's memory to the cases.
LOCAL_OBJECT_STORE_BYTES = 256 * 2**20
#: How long the driver waits for results before looking at nodes and deadlines again (s).
POLL_S = 0.5
#: How often the node list is refreshed while cases run (s).
NODE_REFRESH_S = 5.0
#: Time a task may take beyond its case's timeout (worker start-up, transfer) before the
#: driver cancels it: the isolated worker already stops the case itself at its timeout.
GRACE_S = 120.0
_ANSI = re.compile(r"\x1b\[[0-9;]*m")


def import_ray():
    """``ray``, or a one-line :class:`UserError` saying how to install it."""
    try:
        import ray
    except ImportError:
        raise UserError(f"--executor ray needs Ray, an optional extra: {INSTALL_HINT}") from None
    return ray


def run_on_worker(case: Case, runner: Runner, timeout: float, isolation: bool, max_memory: int | None
                  ) -> tuple[CaseOutcome, float]:
    """The Ray task: the case function on this node's worker boundary, and its own duration.

    ``runner`` travels with the case (pickled by reference to its module, like the isolated
    worker's), so a runner registered by the driver's own imports runs on the node too.

    The case's temporary folder is on this node: :func:`execute_case` makes it and removes it in
    a ``finally`` whatever the case does (:func:`~harness.runners.isolation.case_folder`; with
    ``--no-isolation``, :func:`~harness.runners.case.run_case`'s own). A Ray worker that is itself
    killed (``ray.cancel(force=True)`` of an overdue task, a lost node) cannot, and the driver
    never reaches into another node's files: such leftovers are out of lipbench's scope.
    """
    started = time.monotonic()
    outcome = execute_case(case, timeout, isolation=isolation, max_memory=max_memory, runner=runner)
    return outcome, time.monotonic() - started


@dataclass
class _Task:
    case: Case
    needs: CaseNeeds
    claim: Claim
    submitted: float
    losses: list[str] = field(default_factory=list)


class RayExecutor(Executor):
    """Cases as Ray tasks, placed by the driver, retried when their worker or node is lost."""

    name = "ray"

    def __init__(self, *, workers: int | None = None, address: str | None = None, retries: int = 1,
                 isolation: bool = True, max_memory: int | None = None) -> None:
        self.ray = import_ray()
        self.workers, self.address, self.retries = workers, address, retries
        #: On a joined cluster ``--workers`` caps the cases in flight; a local one is sized by it.
        self.cap = workers if address else None
        self.isolation, self.max_memory = isolation, max_memory
        self.placement = Placement()
        self._remote: Any = None
        self._refreshed = 0.0
        self._per_node: dict[str, int] = {}
        self._owned = False

    # --- connection ----------------------------------------------------------------------
    def __enter__(self) -> "RayExecutor":
        self._owned = not self.ray.is_initialized()  # else: the caller's own ray.init (a notebook, a test)
        if self._owned:
            self._connect()
        self._remote = self.ray.remote(run_on_worker)
        self._refresh(force=True)
        return self

    def _connect(self) -> None:
        with unblocked():  # the cluster's processes must not inherit lipbench's blocked stop signals
            self._init()

    def _init(self) -> None:
        env = {k: v for k, v in os.environ.items() if k.startswith("LIPBENCH_")}
        if self.address:
            self.ray.init(address=self.address, runtime_env={"env_vars": env} if env else None,
                          logging_level="WARNING")
            return
        path = os.pathsep.join(p for p in sys.path if p and os.path.isdir(p))
        self.ray.init(num_cpus=self.workers or os.cpu_count() or 1, include_dashboard=False,
                      object_store_memory=LOCAL_OBJECT_STORE_BYTES, logging_level="WARNING",
                      runtime_env={"env_vars": {**env, "PYTHONPATH": path}})

    def __exit__(self, *exc: Any) -> None:
        if self._owned and self.ray.is_initialized():
            self.ray.shutdown()  # stops a local cluster; only disconnects from a joined one

    # --- what the cluster can do ---------------------------------------------------------
    def _refresh(self, force: bool = False) -> list[str]:
        now = time.monotonic()
        if not force and now - self._refreshed < NODE_REFRESH_S:
            return []
        self._refreshed = now
        alive = []
        for info in self.ray.nodes():
            if not info.get("Alive"):
                continue
            res = info.get("Resources", {})
            host = info.get("NodeManagerHostname") or info.get("NodeManagerAddress", "?")
            alive.append(Node(id=info["NodeID"], label=f"{host}/{info['NodeID'][:8]}",
                              cpu=float(res.get("CPU", 0)), gpu=float(res.get("GPU", 0)),
                              memory_mib=res["memory"] / 2**20 if "memory" in res else None))
        return self.placement.update(alive)

    def check(self, cases: Sequence[Case], needs: NeedsFor) -> None:
        for case in cases:
            need = needs(case).resources
            if not self.placement.could_ever_fit(need):
                raise UserError(f"suite {case.suite}: one case needs {need.describe()}; no node of the Ray "
                                f"cluster has that ({self.nodes()}); see `resources:` in the suite file "
                                "and `lipbench plan`")

    def nodes(self) -> str:
        listed = ", ".join(n.describe() for n in self.placement.nodes.values())
        return f"ray: {self.placement.summary()}: {listed}"

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "address": self.address or "local cluster", "workers": self.workers,
                "retries": self.retries, "nodes": [n.describe() for n in self.placement.nodes.values()],
                "cases_per_node": dict(self._per_node)}

    # --- running ---------------------------------------------------------------------------
    def run(self, cases: Sequence[Case], needs: NeedsFor) -> Iterator[Event]:
        queue: deque[tuple[Case, list[str]]] = deque((c, []) for c in cases)
        inflight: dict[Any, _Task] = {}
        try:
            while queue or inflight:
                for line in self._refresh():
                    yield Note(line)
                yield from self._dispatch(queue, inflight, needs)
                if not inflight:
                    continue
                ready, _ = self.ray.wait(list(inflight), num_returns=1, timeout=POLL_S)
                for ref in ready:
                    yield from self._collect(ref, inflight.pop(ref), queue)
                yield from self._cancel_overdue(inflight)
        finally:
            for ref in inflight:
                self.ray.cancel(ref, force=True)

    def _dispatch(self, queue: deque, inflight: dict, needs: NeedsFor) -> Iterator[Event]:
        while queue and (self.cap is None or len(inflight) < self.cap):
            case, losses = queue[0]
            need = needs(case)
            if not self.placement.could_ever_fit(need.resources):
                queue.popleft()
                yield Finished(case, self._error(case, need, "no alive node of the Ray cluster can run it "
                                                 f"({self.nodes()})", losses), 0.0, "")
                continue
            claim = self.placement.place(need.resources)
            if claim is None:
                return  # first in, first out: nothing overtakes the case at the head
            queue.popleft()
            run_as = dataclasses.replace(case, device="cuda") if need.resources.gpu and \
                not case.device.startswith("cuda") else case
            ref = self._submit(run_as, need, claim)
            inflight[ref] = _Task(case, need, claim, time.monotonic(), losses)
            if not losses:
                yield Started(case, claim.node.label)

    def _submit(self, case: Case, need: CaseNeeds, claim: Claim) -> Any:
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy
        memory = need.resources.memory_mib
        options: dict[str, Any] = {
            "num_cpus": claim.cpu, "num_gpus": claim.gpu, "max_retries": 0,
            "scheduling_strategy": NodeAffinitySchedulingStrategy(claim.node.id, soft=False)}
        if memory:
            options["memory"] = int(memory * 2**20)
        limit = int(memory * 2**20) if memory else self.max_memory
        return self._remote.options(**options).remote(case, runner_for(case.kind), need.timeout, self.isolation,
                                                      limit)

    def _collect(self, ref: Any, task: _Task, queue: deque) -> Iterator[Event]:
        self.placement.release(task.claim)
        node = task.claim.node.label
        try:
            outcome, seconds = self.ray.get(ref)
        except self.ray.exceptions.RayError as exc:
            losses = task.losses + [f"{node} ({_reason(exc)})"]
            for line in self._refresh(force=True):
                yield Note(line)
            if len(losses) <= self.retries:
                yield Note(f"{describe_case(task.case)}: lost on {node}; retry {len(losses)} of {self.retries}")
                queue.appendleft((task.case, losses))
                return
            outcome, seconds = self._error(task.case, task.needs, "the Ray cluster could not finish it", losses), 0.0
        self._per_node[node] = self._per_node.get(node, 0) + 1
        yield Finished(task.case, outcome, seconds, node)

    def _cancel_overdue(self, inflight: dict) -> Iterator[Event]:
        now = time.monotonic()
        for ref, task in list(inflight.items()):
            if now - task.submitted > task.needs.timeout + GRACE_S:
                self.ray.cancel(ref, force=True)
                del inflight[ref]
                self.placement.release(task.claim)
                node = task.claim.node.label
                message = (f"the Ray worker on {node} returned nothing within the case's timeout of "
                           f"{task.needs.timeout:g} s plus {GRACE_S:g} s; the task was cancelled")
                yield Finished(task.case, self._error(task.case, task.needs, message, task.losses), 0.0, node)

    @staticmethod
    def _error(case: Case, need: CaseNeeds, reason: str, losses: list[str]) -> CaseOutcome:
        """The error row of a case the cluster could not finish (device ``cuda`` for GPU cases)."""
        where = "; ".join(f"attempt {i + 1} on {loss}" for i, loss in enumerate(losses))
        # labelled here, where there may be no GPU to name: built as cpu, marked cuda
        outcome = error_outcome(dataclasses.replace(case, device="cpu"), reason + (f": {where}" if where else ""))
        if need.resources.gpu or case.device.startswith("cuda"):
            for row in outcome.rows:
                row["device"] = "cuda"
        return outcome


def _reason(exc: BaseException) -> str:
    """What went wrong, in one line: the worker's own exception for a task that raised."""
    cause = getattr(exc, "cause", None) or exc
    lines = [line.strip() for line in str(cause).splitlines() if line.strip()]
    text = f"{type(cause).__name__}: {lines[0] if lines else ''}"
    return _ANSI.sub("", text)[:300]

