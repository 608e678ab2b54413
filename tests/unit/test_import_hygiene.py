"""The dependency DAG points one way: streamvid.core never imports lightning or deepspeed."""

from __future__ import annotations

import subprocess
import sys

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
