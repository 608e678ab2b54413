"""`atomic_write`: the target is the old file or the complete new one; no temporary file is left behind."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from streamvid.core.atomic import atomic_write


def test_success_renames_onto_the_target_with_ordinary_permissions(tmp_path: Path) -> None:
    target = tmp_path / "sub" / "scores.csv"
    with atomic_write(target) as tmp:
        assert tmp.parent == target.parent and tmp.name.startswith(".scores.csv.") and tmp.suffix == ".csv"
        tmp.write_text("a,b\n")
        assert not target.exists()
    assert target.read_text() == "a,b\n"
    assert os.listdir(target.parent) == ["scores.csv"]
    umask = os.umask(0)
    os.umask(umask)
    assert target.stat().st_mode & 0o777 == 0o666 & ~umask


def test_failure_keeps_the_old_file_and_removes_the_temporary(tmp_path: Path) -> None:
    target = tmp_path / "scores.csv"
    target.write_text("old")
    with pytest.raises(RuntimeError), atomic_write(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("interrupted")
    assert target.read_text() == "old"
    assert os.listdir(tmp_path) == ["scores.csv"]
