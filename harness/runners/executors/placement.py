"""Which node runs the next case: the driver's own book of the cluster's nodes and what it placed.

Ray schedules tasks by resources, but the driver picks the node of every case itself, so it
knows where each case runs (the manifest records it; a case lost with its node is named by
it) and can keep an exclusive case alone on its node. Cases are placed in order (first in,
first out): when the next case does not fit anywhere right now, nothing overtakes it, so an
exclusive case waiting for an idle node is never starved by small ones. Pure Python, no Ray.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from harness.suite.resources import Resources

#: Slack for float resource sums (0.1 + 0.2 CPUs).
_EPS = 1e-9


@dataclass(frozen=True)
class Node:
    """A node as the cluster reports it: id, a readable label and its total resources."""

    id: str
    label: str
    cpu: float
    gpu: float = 0.0
    memory_mib: float | None = None

    def describe(self) -> str:
        gpu = f", {self.gpu:g} GPU" if self.gpu else ""
        return f"{self.label} ({self.cpu:g} CPU{gpu})"


@dataclass
class _Load:
    cpu: float = 0.0
    gpu: float = 0.0
    memory_mib: float = 0.0
    cases: int = 0
    exclusive: bool = False


@dataclass(frozen=True)
class Claim:
    """What a placed case holds on its node (returned to :meth:`Placement.release`)."""

    node: Node
    cpu: float
    gpu: float
    memory_mib: float
    exclusive: bool


@dataclass
class Placement:
    """The alive nodes and the load the driver has put on each."""

    nodes: dict[str, Node] = field(default_factory=dict)
    load: dict[str, _Load] = field(default_factory=dict)

    def update(self, alive: list[Node]) -> list[str]:
        """Replace the node list; returns one line per node that joined or left."""
        new = {n.id: n for n in alive}
        lines = [f"node joined: {n.describe()}" for i, n in new.items() if i not in self.nodes]
        lines += [f"node lost: {n.label}" for i, n in self.nodes.items() if i not in new]
        self.nodes = new
        for node_id in new:
            self.load.setdefault(node_id, _Load())
        return lines

    def could_ever_fit(self, need: Resources) -> bool:
        """Whether some alive node is big enough for ``need`` when idle."""
        return any(self._fits_total(n, need) for n in self.nodes.values())

    def place(self, need: Resources) -> Claim | None:
        """Claim room for one case on the least loaded node that has it now, or ``None``."""
        fitting = [n for n in self.nodes.values() if self._fits_now(n, need)]
        if not fitting:
            return None
        node = max(fitting, key=lambda n: (n.cpu - self.load[n.id].cpu, n.gpu - self.load[n.id].gpu, n.id))
        cpu = node.cpu if need.exclusive else need.cpu
        claim = Claim(node, cpu, need.gpu, need.memory_mib or 0.0, need.exclusive)
        load = self.load[node.id]
        load.cpu += claim.cpu
        load.gpu += claim.gpu
        load.memory_mib += claim.memory_mib
        load.cases += 1
        load.exclusive = load.exclusive or claim.exclusive
        return claim

    def release(self, claim: Claim) -> None:
        load = self.load.get(claim.node.id)
        if load is None:
            return
        load.cpu -= claim.cpu
        load.gpu -= claim.gpu
        load.memory_mib -= claim.memory_mib
        load.cases -= 1
        if claim.exclusive:
            load.exclusive = False

    def running(self) -> int:
        return sum(load.cases for node_id, load in self.load.items() if node_id in self.nodes)

    def summary(self) -> str:
        cpu = sum(n.cpu for n in self.nodes.values())
        gpu = sum(n.gpu for n in self.nodes.values())
        count = len(self.nodes)
        return f"{count} node{'s' if count != 1 else ''}, {cpu:g} CPU, {gpu:g} GPU"

    @staticmethod
    def _fits_total(node: Node, need: Resources) -> bool:
        memory_ok = need.memory_mib is None or node.memory_mib is None or need.memory_mib <= node.memory_mib + _EPS
        return need.cpu <= node.cpu + _EPS and need.gpu <= node.gpu + _EPS and memory_ok

    def _fits_now(self, node: Node, need: Resources) -> bool:
        load = self.load[node.id]
        if load.exclusive or not self._fits_total(node, need):
            return False
        if need.exclusive:
            return load.cases == 0
        memory_ok = need.memory_mib is None or node.memory_mib is None or \
            load.memory_mib + need.memory_mib <= node.memory_mib + _EPS
        return (load.cpu + need.cpu <= node.cpu + _EPS and load.gpu + need.gpu <= node.gpu + _EPS
                and memory_ok)


def makespan(costs: list[tuple[float, Resources]], nodes: list[Node]) -> float:
    """Wall time of running ``(seconds, needs)`` in order with :class:`Placement` on ``nodes``.

    A discrete-event simulation of the executor's own policy (first in, first out, exclusive
    cases alone on a node), so ``lipbench plan`` estimates the schedule the run will follow.
    A case that fits no node is skipped (the run records it as an error at once).
    """
    placement = Placement()
    placement.update(nodes)
    clock, running = 0.0, []  # (end time, claim)
    for seconds, need in costs:
        if not placement.could_ever_fit(need):
            continue
        while (claim := placement.place(need)) is None:
            running.sort(key=lambda item: item[0])
            end, done = running.pop(0)
            clock = max(clock, end)
            placement.release(done)
        running.append((clock + seconds, claim))
    return max([clock] + [end for end, _ in running])
