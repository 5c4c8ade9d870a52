"""What one case of a suite needs from the machine that runs it (``resources:`` in a suite file).

A suite, or one of its presets, declares ``resources: {cpu, gpu, memory_mib, exclusive}``
(the preset's keys replace the suite's one by one). Executors read it: Ray reserves
``cpu`` / ``gpu`` / ``memory_mib`` for each case and gives a case with ``gpu > 0`` a GPU
of its own (``device: cuda`` on its worker); an ``exclusive`` case gets a whole node to
itself, never sharing it with another case, so timings stay honest. ``lipbench plan``
prints them. The local executor (``--workers N`` cases at once) reads only ``exclusive``:
an exclusive case runs alone.

Defaults: one CPU; one GPU when the case's device is ``cuda``, else none; no memory
reservation; exclusive when the suite's runner declares ``timing`` metrics (ratios of
times measured in one process: another case beside it would change them).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

#: JSON Schema of the ``resources`` mapping (suite level and preset level).
RESOURCES_SCHEMA = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "cpu": {"type": "number", "exclusiveMinimum": 0},
        "gpu": {"type": "number", "minimum": 0},
        "memory_mib": {"type": "number", "exclusiveMinimum": 0},
        "exclusive": {"type": "boolean"},
    },
}


@dataclass(frozen=True)
class Resources:
    """What one case needs: CPUs, GPUs, memory (MiB, ``None``: no reservation), a node to itself."""

    cpu: float = 1.0
    gpu: float = 0.0
    memory_mib: float | None = None
    exclusive: bool = False

    @classmethod
    def from_config(cls, config: Mapping[str, Any] | None, *, device: str = "cpu",
                    timing: bool = False) -> "Resources":
        """The declared mapping completed with the defaults for ``device`` and a timing runner."""
        config = dict(config or {})
        gpu = config.get("gpu", 1.0 if str(device).startswith("cuda") else 0.0)
        return cls(cpu=float(config.get("cpu", 1.0)), gpu=float(gpu),
                   memory_mib=float(config["memory_mib"]) if "memory_mib" in config else None,
                   exclusive=bool(config.get("exclusive", timing)))

    def describe(self) -> str:
        """``1 CPU, 1 GPU, 4000 MiB, exclusive``: one line for progress and plans."""
        parts = [f"{self.cpu:g} CPU"]
        if self.gpu:
            parts.append(f"{self.gpu:g} GPU")
        if self.memory_mib:
            parts.append(f"{self.memory_mib:g} MiB")
        if self.exclusive:
            parts.append("whole node")
        return ", ".join(parts)
