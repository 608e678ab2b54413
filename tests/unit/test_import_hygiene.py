"""The dependency DAG points one way: streamvid.core never imports lightning or deepspeed, and the shapes
world is a leaf under the rewards."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

CHECK = """
import importlib, pkgutil, sys
import streamvid.core as core
for info in pkgutil.walk_packages(core.__path__, "streamvid.core."):
    importlib.import_module(info.name)
heavy = sorted(m for m in sys.modules if m.split(".")[0] in ("lightning", "pytorch_lightning", "deepspeed"))
distill = sorted(m for m in sys.modules if m.startswith(("streamvid.distill", "streamvid.tts", "streamvid.eval")))
print(heavy, distill)
assert not heavy, heavy
assert not distill, distill
"""


def test_core_imports_neither_lightning_nor_deepspeed():
    proc = subprocess.run([sys.executable, "-c", CHECK], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]


WORLD_CHECK = """
import importlib, pkgutil, sys
import streamvid.core.world as world
for info in pkgutil.walk_packages(world.__path__, "streamvid.core.world."):
    importlib.import_module(info.name)
up = sorted(m for m in sys.modules if m.startswith("streamvid.core.rewards"))
print(up)
assert not up, up
"""


def test_world_is_a_leaf_under_rewards():
    """`streamvid.core.world` imports nothing from `streamvid.core.rewards` (the shapes rewards read the world,
    never the reverse), neither by import nor by an import string the graph would not show."""
    proc = subprocess.run([sys.executable, "-c", WORLD_CHECK], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    world = Path(__file__).resolve().parents[2] / "packages/core/src/streamvid/core/world"
    named = [p.name for p in sorted(world.rglob("*.py")) if "core.rewards" in p.read_text()]
    assert not named, f"world modules naming streamvid.core.rewards: {named}"
