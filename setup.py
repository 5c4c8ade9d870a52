"""Build hook: the wheel carries the shipped suites and baselines, and the commit it was built from.

The repository keeps ``suites/`` and ``baselines/`` at its root (where users read and edit
them); a wheel has no repository, so ``build_py`` copies them into ``harness/_shipped/``
and records the build commit there (``harness.shipped`` reads both back).
"""
import json
import shutil
import sys
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT))
from harness.shipped import git_commit  # noqa: E402 (stdlib only: no torch at build time)

SHIPPED = ("suites", "baselines")


class BuildWithShippedData(build_py):
    """``build_py`` plus ``harness/_shipped/{suites,baselines,build.json}``."""

    def run(self):
        super().run()
        target = Path(self.build_lib, "harness", "_shipped")
        if target.exists():
            shutil.rmtree(target)
        for name in SHIPPED:
            if (ROOT / name).is_dir():
                shutil.copytree(ROOT / name, target / name,
                                ignore=shutil.ignore_patterns("*.tmp", "*.partial", ".*"))
        (target / "build.json").write_text(json.dumps({"commit": git_commit(ROOT)}) + "\n")


setup(cmdclass={"build_py": BuildWithShippedData})
