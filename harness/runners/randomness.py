"""Per-case random generators, independent across cases and reproducible from the seed."""
from __future__ import annotations

import zlib

import torch


DISTRIBUTIONS = ("gaussian", "uniform", "rademacher")


def case_generator(seed: int, case: str, device: str | torch.device = "cpu") -> torch.Generator:
    """A torch.Generator seeded from the case seed and the case id (crc32)."""
    gen = torch.Generator(device=device)
    gen.manual_seed((int(seed) * 1_000_003 + zlib.crc32(case.encode())) % 2**63)
    return gen


def random_entries(shape: tuple[int, ...], distribution: str, gen: torch.Generator,
                   dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """I.i.d. zero-mean, unit-variance entries from a symmetric distribution (Thm 2's hypothesis)."""
    if distribution == "gaussian":
        return torch.randn(shape, generator=gen, dtype=dtype)
    if distribution == "uniform":
        return (torch.rand(shape, generator=gen, dtype=dtype) * 2 - 1) * 3 ** 0.5
    if distribution == "rademacher":
        return torch.randint(0, 2, shape, generator=gen).to(dtype) * 2 - 1
    raise ValueError(f"unknown distribution {distribution!r}; use gaussian, uniform or rademacher")
