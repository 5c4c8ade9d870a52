"""Sample pictures: an image grid (torchvision ``save_image``) and a 2-D scatter (matplotlib Agg)."""
from __future__ import annotations

import math
from pathlib import Path
from typing import Sequence

import torch


def save_grid(images: torch.Tensor, path: str | Path, nrow: int | None = None,
              value_range: tuple[float, float] = (-1.0, 1.0)) -> Path:
    """Save ``(N, C, H, W)`` images in ``value_range`` (tanh output by default) as one PNG grid,
    ``nrow`` per row (default ``ceil(sqrt(N))``)."""
    from torchvision.utils import save_image
    if images.dim() != 4:
        raise ValueError(f"save_grid needs (N, C, H, W) images, got shape {tuple(images.shape)}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    nrow = nrow or math.ceil(math.sqrt(images.shape[0]))
    save_image(images.detach().float().cpu(), path, nrow=nrow, normalize=True,
               value_range=value_range, padding=2)
    return path


def save_scatter(points: torch.Tensor, path: str | Path, real: torch.Tensor | None = None,
                 centers: torch.Tensor | None = None, title: str = "",
                 limits: Sequence[float] | None = None) -> Path:
    """Scatter of generated 2-D ``points`` (optionally over ``real`` samples and mode ``centers``)
    saved as PNG with the Agg backend (no display needed)."""
    import matplotlib
    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    if points.dim() != 2 or points.shape[1] != 2:
        raise ValueError(f"save_scatter needs (N, 2) points, got shape {tuple(points.shape)}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig, ax = plt.subplots(figsize=(4, 4), dpi=100)
    try:
        if real is not None:
            r = real.detach().cpu().numpy()
            ax.scatter(r[:, 0], r[:, 1], s=2, c="0.7", label="real")
        p = points.detach().float().cpu().numpy()
        ax.scatter(p[:, 0], p[:, 1], s=2, c="tab:blue", label="generated")
        if centers is not None:
            c = centers.detach().cpu().numpy()
            ax.scatter(c[:, 0], c[:, 1], s=30, marker="x", c="tab:red", label="modes")
        if limits is not None:
            ax.set_xlim(limits[0], limits[1])
            ax.set_ylim(limits[-2], limits[-1])
        ax.set_aspect("equal")
        if title:
            ax.set_title(title)
        ax.legend(loc="upper right", fontsize=6, markerscale=3)
        fig.tight_layout()
        fig.savefig(path, format="png")
    finally:
        plt.close(fig)
    return path
