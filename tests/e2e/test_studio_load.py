"""bench/studio_load.py on a small scale: the server queues what exceeds its stream limit, tells the waiting client
its place, and keeps nothing after the clients disconnected (no live stream, no download)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from studio_helpers import REPO

pytestmark = pytest.mark.slow


def test_load_bench_queues_beyond_the_limit_and_frees_everything(tmp_path):
    out = tmp_path / "studio_load.json"
    proc = subprocess.run([sys.executable, str(REPO / "bench" / "studio_load.py"), "--clients", "1", "3", "--frames", "6",
                           "--max-streams", "1", "--t1-frames", "6", "--out", str(out)],
                          capture_output=True, text=True, timeout=600, cwd=REPO, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(out.read_text())
    rounds = {(r["clients"], r["strategy"]): r for r in result["rounds"]}
    assert set(rounds) == {(1, "plain"), (3, "plain"), (1, "stream_t1")}
    three = rounds[(3, "plain")]
    assert three["queued_clients"] == 2  # one stream at a time: two clients waited
    places = sorted(c["busy_places"][0] for c in three["clients_detail"] if c["busy_places"])
    assert places == [1, 2]
    for r in result["rounds"]:
        assert r["live_streams_after"] == 0 and r["downloads_kept_after"] == 0
        assert all(c["frames"] == 6 for c in r["clients_detail"])
    assert result["baseline"]["png_bytes_per_frame"] > 0 and result["baseline"]["jpeg_bytes_per_frame"] > 0
