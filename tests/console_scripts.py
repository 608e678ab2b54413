"""Helpers for tests that run the real console scripts (`.venv/bin/streamvid-*`) as a user would."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


def script(name: str) -> Path:
    """The console script ``name`` installed next to this interpreter."""
    return Path(sys.executable).with_name(name)


def run_script(name: str, *args) -> subprocess.CompletedProcess:
    return subprocess.run([str(script(name)), *map(str, args)], capture_output=True, text=True, timeout=300, env=ENV)


def error_line(proc: subprocess.CompletedProcess, name: str) -> str:
    """The single stderr line of a user error (exit code 2) of script ``name``."""
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"{name}: error: "), proc.stderr
    return lines[0]


def snapshot(folder: Path) -> dict[str, bytes]:
    """Every file below ``folder`` -> its bytes (to assert that nothing already written changed)."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@contextlib.contextmanager
def read_only(folder: Path):
    """`folder` made unwritable: mode 555, or (root ignores modes) the immutable attribute; skip if neither works."""
    folder.chmod(0o555)
    immutable = os.access(folder, os.W_OK) and shutil.which("chattr") is not None and subprocess.run(
        ["chattr", "+i", str(folder)], capture_output=True).returncode == 0
    try:
        if os.access(folder, os.W_OK):
            pytest.skip("cannot make a read-only directory here (root on a filesystem without chattr +i)")
        yield folder
    finally:
        if immutable:
            subprocess.run(["chattr", "-i", str(folder)], check=True)
        folder.chmod(0o755)
