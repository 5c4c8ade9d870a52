"""Helpers of the command-line safety tests: a tiny suite, one command line, its one-line error."""
from __future__ import annotations

import os
from pathlib import Path

import yaml

from harness.cli.main import main

TINY = {
    "name": "tiny", "description": "a small thm2_variance suite", "kind": "thm2_variance",
    "matrix": {"m": [2, 4], "n": [3], "distribution": ["gaussian"]}, "seeds": [0],
    "settings": {"matrices": 20},
    "checks": [{"name": "bound", "metric": "variance", "assert": "value <= 1", "cite": "Lin et al. 2021, Thm 2"}],
    "presets": {"ci": {}, "full": {}},
}


def write_suite(folder: Path, data=None, text=None, name="tiny") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.yaml"
    if text is not None:
        path.write_bytes(text if isinstance(text, bytes) else text.encode())
    else:
        path.write_text(yaml.safe_dump(data or TINY, sort_keys=False))
    return path


def lipbench(capsys, *args):
    """Exit code and stderr of one command line (stdout is dropped)."""
    code = main([str(a) for a in args])
    err = capsys.readouterr().err
    return code, err


def one_line_error(code, err, *needles):
    assert code == 2, err
    assert "Traceback" not in err and err.startswith("lipbench: "), err
    assert len(err.strip().splitlines()) == 1, err
    for needle in needles:
        assert needle in err, (needle, err)


def finished_run(tmp_path: Path, capsys, name: str = "r", *extra) -> Path:
    """A finished run of the tiny suite (cases in this process: quick)."""
    out = tmp_path / name
    code, err = lipbench(capsys, "run", write_suite(tmp_path / "s"), "--out", out, "--no-isolation", *extra)
    assert code == 0, err
    return out


def snapshot(folder: Path) -> dict:
    """Every entry under ``folder`` with its type, size, inode and modification time."""
    found = {}
    for root, dirs, files in os.walk(folder):
        for name in dirs + files:
            path = Path(root, name)
            info = path.lstat()
            found[str(path.relative_to(folder))] = (info.st_mode, info.st_size, info.st_ino, info.st_mtime_ns)
    return found
