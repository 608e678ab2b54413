"""`make help` lists every documented target with its description in one column, however long the names."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_make_help_aligns_every_description():
    out = subprocess.run(["make", "--no-print-directory", "help"], cwd=REPO, capture_output=True, text=True,
                         timeout=60, check=True).stdout.splitlines()
    targets = re.findall(r"^([a-zA-Z0-9_-]+):.*## ", (REPO / "Makefile").read_text(), re.M)
    assert [line.split()[0] for line in out] == targets
    assert any(len(t) > 12 for t in targets)  # e.g. shapes-reward-data, the names the old 12-wide column broke
    starts = {_description_column(line) for line in out}
    assert len(starts) == 1


def _description_column(line: str) -> int:
    """Where the description starts: after the name and its padding."""
    name = line.split()[0]
    rest = line[line.index(name) + len(name):]
    return line.index(name) + len(name) + (len(rest) - len(rest.lstrip()))
