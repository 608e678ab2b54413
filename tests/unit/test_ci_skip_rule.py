"""`.ci/run` sets STREAMVID_NO_SKIPS=1: a test skipped for any reason but the `gpu` marker fails the session."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

CONFTEST = Path(__file__).resolve().parents[1] / "conftest.py"
TESTS = '''
import pytest

def test_runs():
    assert True

@pytest.mark.gpu
def test_needs_cuda():
    pytest.skip("needs CUDA")

def test_needs_a_package():
    pytest.importorskip("no_such_package_here")
'''


def _pytest(folder: Path, no_skips: str | None, *args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "STREAMVID_NO_SKIPS"}
    if no_skips is not None:
        env["STREAMVID_NO_SKIPS"] = no_skips
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-o", "markers=gpu: cuda",
                           *args, str(folder)], capture_output=True, text=True, env=env, cwd=folder, timeout=120)


def test_a_skip_fails_ci_unless_the_test_is_marked_gpu(tmp_path):
    (tmp_path / "conftest.py").write_text(CONFTEST.read_text())
    (tmp_path / "test_some.py").write_text(TESTS)
    ci = _pytest(tmp_path, "1")
    assert ci.returncode == 1, ci.stdout
    assert "test_some.py::test_needs_a_package: Skipped: could not import 'no_such_package_here'" in ci.stdout
    assert "test_needs_cuda:" not in ci.stdout  # the gpu marker may skip
    # the same under `make test`'s pytest-xdist workers (reports reach the controller's hooks)
    workers = _pytest(tmp_path, "1", "-n", "2", "--dist", "loadfile")
    assert workers.returncode == 1, workers.stdout
    assert "test_some.py::test_needs_a_package: Skipped: could not import 'no_such_package_here'" in workers.stdout
    assert _pytest(tmp_path, None).returncode == 0  # outside CI a skip is a skip
    assert _pytest(tmp_path, "1", "-k", "runs or cuda").returncode == 0
