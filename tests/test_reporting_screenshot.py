"""Render the fixture report in headless Chromium and check the screenshot is not blank.

Skips (honestly) when no ``chromium`` binary is installed; the content tests do not need it.
"""
from __future__ import annotations

import shutil
import subprocess

import pytest

from harness.reporting import write_html
from harness.reporting.demo import demo_inputs

CHROMIUM = next((shutil.which(n) for n in ("chromium", "chromium-browser") if shutil.which(n)), None)


def _png_stats(path):
    """(width, height, distinct colours) of the screenshot (Pillow ships with matplotlib)."""
    from PIL import Image
    with Image.open(path) as im:
        assert im.format == "PNG"
        rgb = im.convert("RGB")
        colours = rgb.getcolors(maxcolors=1 << 20) or []
        return rgb.width, rgb.height, {c for _, c in colours}


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (apt-get install chromium); "
                                             "the HTML content tests do not need it")
def test_chromium_screenshot_is_not_trivial(tmp_path):
    report = write_html(tmp_path / "report.html", **demo_inputs(tmp_path / "art"))
    png = tmp_path / "report.png"
    cmd = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
           "--disable-background-networking", "--disable-component-update", "--disable-sync",
           f"--user-data-dir={tmp_path / 'profile'}", f"--screenshot={png}", "--window-size=1400,2400",
           report.resolve().as_uri()]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert png.exists(), proc.stderr[-2000:]
    w, h, colours = _png_stats(png)
    assert (w, h) == (1400, 2400)
    assert png.stat().st_size > 50_000
    assert len(colours) > 50            # text, chips, plots: far from a blank page
    red = {c for c in colours if c[0] > 180 and c[1] < 80 and c[2] < 80}
    assert red, "the red FAIL banner should be visible at the top"
