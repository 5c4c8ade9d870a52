"""Sample pictures: image grid and 2-D scatter PNGs."""
import pytest
import torch
from PIL import Image

from harness.training.data import RING8
from harness.training.samples import save_grid, save_scatter


def test_save_grid(tmp_path):
    imgs = torch.rand(6, 3, 8, 8) * 2 - 1
    path = save_grid(imgs, tmp_path / "sub" / "grid.png")
    with Image.open(path) as im:  # 3 per row, 2 rows, padding 2
        assert im.size == (3 * 8 + 4 * 2, 2 * 8 + 3 * 2)
    with pytest.raises(ValueError):
        save_grid(torch.rand(6, 8, 8), tmp_path / "bad.png")


def test_save_scatter(tmp_path):
    pts = torch.randn(100, 2)
    path = save_scatter(pts, tmp_path / "s.png", real=torch.randn(50, 2), centers=RING8.centers,
                        title="ring8", limits=(-3, 3))
    with Image.open(path) as im:
        assert im.format == "PNG" and im.size == (400, 400)
    with pytest.raises(ValueError):
        save_scatter(torch.randn(10, 3), tmp_path / "bad.png")
