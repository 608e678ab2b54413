"""A studio session's download (mp4 + resolved config with the live prompt switches) regenerates the same frames
with `streamvid-generate` (plain) or `streamvid-infer-t1` (Stream-T1)."""

from __future__ import annotations

import numpy as np
import pytest
from fastapi.testclient import TestClient
from studio_helpers import read_stream, studio_config

from streamvid.core.cli.generate import main as generate_main
from streamvid.core.video_io import read_video, to_uint8_frames
from streamvid.studio.server import create_app
from streamvid.tts.cli import main as infer_main

PROMPT = "a red circle moving left"


@pytest.fixture(scope="module")
def client():
    with TestClient(create_app(studio_config())) as c:
        yield c


def stream_and_download(client, tmp_path, start: dict, switch_at_chunk: int):
    def switch(ws, message):
        if message["chunk"] == switch_at_chunk:
            ws.send_json({"type": "prompt", "prompt": "a red circle moving up"})

    with client.websocket_connect("/ws") as ws:
        ws.receive_json()
        ws.send_json({"type": "start", "prompt": PROMPT, "seed": 4} | start)
        got = read_stream(ws, on_chunk=switch)
        download = got.last["download"]
        config = tmp_path / "session.config.yaml"
        config.write_text(client.get(download["config"]).text)
        video = tmp_path / "session.mp4"
        video.write_bytes(client.get(download["video"]).content)
    assert client.get(download["video"]).status_code == 404  # nothing is kept after the page left
    return got, download, config, video


def frames(path) -> np.ndarray:
    return to_uint8_frames(read_video(path)[0])


def test_plain_session_regenerates_with_streamvid_generate(client, tmp_path):
    got, download, config, video = stream_and_download(client, tmp_path, {"frames": 12}, 1)
    assert download["command"].startswith("streamvid-generate --config ")
    switched = got.of_type("switched")[0]["chunk"]
    assert f"{switched}: a red circle moving up" in config.read_text()
    assert generate_main(["--config", str(config), "--out", str(tmp_path / "again.mp4")]) == 0
    np.testing.assert_array_equal(frames(tmp_path / "again.mp4"), frames(video))
    # and the mp4 holds the frames the page was sent, in order (up to h264's loss at 32x32 px)
    sent, mp4 = got.video().astype(int), frames(video).astype(int)
    assert np.abs(mp4 - sent).mean() < 0.6 * np.abs(mp4 - sent[::-1]).mean()


@pytest.mark.parametrize("strategy, budget", [("stream_t1", 2), ("greedy", 3)])
def test_searched_session_regenerates_with_streamvid_infer_t1(client, tmp_path, strategy, budget):
    got, download, config, video = stream_and_download(
        client, tmp_path, {"frames": 12, "strategy": strategy, "budget": budget}, 1)
    assert download["command"].startswith("streamvid-infer-t1 --config ")
    assert "a red circle moving up" in config.read_text()
    assert infer_main(["--config", str(config), "--out", str(tmp_path / "again.mp4")]) == 0
    np.testing.assert_array_equal(frames(tmp_path / "again.mp4"), frames(video))
