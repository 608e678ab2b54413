"""`streamvid-studio`: bad input is one `error:` line with exit code 2 before anything is built or served; the
config loads from the studio's, `streamvid-generate`'s and `streamvid-infer-t1`'s YAML."""

from __future__ import annotations

import socket

import pytest
from fastapi.testclient import TestClient
from studio_helpers import REPO, read_stream

from streamvid.core.config import ConfigError, load_config
from streamvid.studio.cli import main
from streamvid.studio.config import StudioConfig
from streamvid.studio.server import create_app


@pytest.mark.parametrize("args, expected", [
    (["--config", "configs/studio/missing.yaml"], "config file not found"),
    (["--config", "configs/studio/shapes.yaml", "--set", "studio.frame_format=gif"], "studio.frame_format"),
    (["--config", "configs/studio/shapes.yaml", "--set", "strategy=best_of_n"], "strategy"),
    (["--config", "configs/studio/shapes.yaml", "--set", "num_frames=10"], "multiple of the chunk size 3"),
    (["--config", "configs/studio/shapes.yaml", "--set", "budget=20"], "budget=20.0 must be in 1..studio.max_budget"),
    (["--config", "configs/studio/shapes.yaml", "--set", "prompt_switches={1: a}"], "prompt_switches"),
    (["--config", "configs/studio/shapes.yaml", "--port", "70000"], "--port 70000"),
    (["--config", "configs/studio/shapes.yaml", "--set", "reward.shapes_learned.path=nowhere"], "reward.shapes_learned.path"),
])
def test_bad_input_is_one_error_line(args, expected, capsys, monkeypatch):
    monkeypatch.chdir(REPO)
    assert main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("streamvid-studio: error: ") and expected in err[0], err


def test_a_port_in_use_is_refused_before_building(capsys, monkeypatch):
    monkeypatch.chdir(REPO)
    with socket.create_server(("127.0.0.1", 0)) as busy:
        port = busy.getsockname()[1]
        assert main(["--config", "configs/studio/shapes.yaml", "--port", str(port)]) == 2
    assert f"cannot listen on 127.0.0.1:{port}" in capsys.readouterr().err


@pytest.mark.parametrize("path", ["configs/generate/shapes_student.yaml", "configs/infer/shapes_t1.yaml"])
def test_generate_and_infer_configs_load_as_studio_configs(path):
    cfg = load_config(REPO / path, schema=StudioConfig)
    assert cfg.generator.sampler.cache.chunk_frames == 3 and cfg.studio.host == "127.0.0.1"


def test_config_with_scheduled_switches_is_refused():
    with pytest.raises(ConfigError, match="prompt_switches"):
        load_config(REPO / "configs/studio/shapes.yaml", ["prompt_switches={1: a red circle}"], schema=StudioConfig)


def test_random_weights_stream_but_say_so_and_offer_no_download_they_cannot_keep():
    """`configs/generate/tiny_random.yaml` (random model and text encoder): the page is told, plain streams run, search is
    refused, and the download is withheld (the commands would draw another random text encoder)."""
    cfg = load_config(REPO / "configs/generate/tiny_random.yaml", schema=StudioConfig)
    with TestClient(create_app(cfg)) as c, c.websocket_connect("/ws") as ws:
        assert "random (untrained) weights" in ws.receive_json()["config"]["note"]
        ws.send_json({"type": "start", "prompt": "a zebra dancing", "frames": 6, "strategy": "stream_t1", "budget": 2})
        assert "needs a trained student" in ws.receive_json()["message"]
        ws.send_json({"type": "start", "prompt": "a zebra dancing", "frames": 6})
        done = read_stream(ws).last
    assert done["frames"] == 6 and done["download"] is None and "text encoder has random weights" in done["download_note"]
