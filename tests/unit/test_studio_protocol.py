"""streamvid-studio's WebSocket protocol with an in-process client (FastAPI's TestClient): chunk metadata followed
by binary frames equal to the generator's own, live prompt switches, Stream-T1's tree, bad input answered with
one readable error while the server goes on, the busy queue, and a disconnect that frees the stream's cache."""

from __future__ import annotations

import gc
import json
import time

import numpy as np
import pytest
import torch
from fastapi.testclient import TestClient
from studio_helpers import read_stream, studio_config

from streamvid.core.kv_cache import KVCache
from streamvid.core.sampler import PromptSwitch
from streamvid.core.video_io import to_uint8_frames
from streamvid.studio.server import create_app
from streamvid.studio.stream import Engine

PROMPT = "a red circle moving left"


@pytest.fixture(scope="module")
def engine():
    return Engine(studio_config())


@pytest.fixture
def client(engine):
    with TestClient(create_app(engine.cfg, engine)) as c:
        yield c


def reference_frames(engine, prompt, seed, frames, switches=()) -> np.ndarray:
    """The same stream made by `StreamVidPipeline.stream_video`, as uint8 frames."""
    chunks = engine.generator.stream_video([prompt], frames, seed, prompt_switches=[PromptSwitch(k, p) for k, p in switches])
    return to_uint8_frames(torch.cat([c[0] for c in chunks]))


def start(ws, **fields):
    ws.send_json({"type": "start", "prompt": PROMPT, "seed": 0, "frames": 12} | fields)


def test_hello_then_chunks_followed_by_their_frames_equal_to_the_generators(client, engine):
    with client.websocket_connect("/ws") as ws:
        hello = ws.receive_json()
        assert hello["type"] == "hello" and hello["config"]["fps"] == 8 and hello["config"]["chunk_frames"] == 3
        start(ws, seed=3)
        got = read_stream(ws)
    assert [m["type"] for m in got.messages] == ["started"] + ["chunk"] * 4 + ["done"]
    assert [c["chunk"] for c in got.chunks] == [0, 1, 2, 3] and [c["first_frame"] for c in got.chunks] == [0, 3, 6, 9]
    assert [c["nfe"] for c in got.chunks] == [5, 10, 15, 20]  # 4 denoising steps + the commit pass per chunk
    assert got.last["frames"] == 12 and not got.last["stopped"]
    video = got.video()
    assert video.shape == (12, 32, 32, 3) and video.std() > 5  # not blank
    np.testing.assert_array_equal(video, reference_frames(engine, PROMPT, 3, 12))


def test_prompt_switch_mid_stream_matches_a_scheduled_switch(client, engine):
    def switch(ws, message):
        if message["chunk"] == 1:
            ws.send_json({"type": "prompt", "prompt": "a red circle moving up"})

    with client.websocket_connect("/ws") as ws:
        ws.receive_json()
        start(ws)
        got = read_stream(ws, on_chunk=switch)
    (ack,) = got.of_type("switched")
    k = ack["chunk"]
    assert k >= 2
    assert [c["prompt"] for c in got.chunks] == [PROMPT] * k + ["a red circle moving up"] * (4 - k)
    assert got.chunks[k]["nfe"] - got.chunks[k - 1]["nfe"] > 5  # the history was re-encoded under the new prompt
    np.testing.assert_array_equal(got.video(), reference_frames(engine, PROMPT, 0, 12, [(k, "a red circle moving up")]))
    assert not np.array_equal(got.video(), reference_frames(engine, PROMPT, 0, 12))


def test_stream_t1_sends_the_tree_survivors_and_memory_routes(client):
    def switch(ws, message):
        if message["chunk"] == 0:
            ws.send_json({"type": "prompt", "prompt": "a blue square moving down"})

    with client.websocket_connect("/ws") as ws:
        ws.receive_json()
        start(ws, strategy="stream_t1", budget=4, frames=15)
        got = read_stream(ws, on_chunk=switch)
    started = got.of_type("started")[0]
    assert (started["beams"], started["children"], started["first_candidates"]) == (2, 2, 4)
    chunks = got.chunks
    assert [len(c["tree"]) for c in chunks] == [4, 4, 4, 4, 4]  # 2 beams x 2 children (chunk 0: 4 candidates)
    for c in chunks:
        kept = [n["candidate"] for n in c["tree"] if n["kept"]]
        assert sorted(c["survivors"]) == sorted(kept) and len(kept) == 2
        best = next(n for n in c["tree"] if n["candidate"] == c["survivors"][0])
        assert best["fused"] == max(n["fused"] for n in c["tree"]) == pytest.approx(c["best"]["fused"])
        assert all({"short", "long", "fused", "parent", "seed"} <= n.keys() for n in c["tree"])
    assert chunks[-1]["nfe"] > 2 * 5 * len(chunks)  # more than plain sampling's forwards
    # sink 3 + window 6 frames: chunks leave the window from chunk 3 on and are routed by their memory flags
    assert set(chunks[-1]["routes"]) >= {"3"} and set(chunks[-1]["routes"].values()) <= {"drop", "ema_sink", "append_sink"}
    switched = got.of_type("switched")[0]["chunk"]
    assert chunks[switched]["prompt"] == "a blue square moving down" and chunks[0]["prompt"] == PROMPT
    assert got.last["type"] == "done" and got.last["final"]["score"] is not None


BAD = [
    ("nonsense", "malformed message: not JSON"),
    ('{"type": "dance"}', 'malformed message: expected a JSON object with "type"'),
    ('[1, 2]', "malformed message"),
    ('{"type": "start", "prompt": "a red circle", "seed": "zero"}', "malformed message: start.seed"),
    ('{"type": "start", "prompt": "a red circle", "colour": "red"}', "malformed message: start.colour"),
    ('{"type": "start", "prompt": "a red circle", "seed": -1}', "malformed message: start.seed: Input should be greater"),
    ('{"type": "start", "prompt": "   "}', "prompt: the prompt is empty"),
    ('{"type": "start", "prompt": "' + "a red circle " * 40 + '"}', "more than the 200 allowed"),
    ('{"type": "start", "prompt": "a red circle", "strategy": "magic"}', "unknown strategy 'magic'"),
    ('{"type": "start", "prompt": "a red circle", "strategy": "stream_t1", "budget": 0.5}', "budget: 0.5 is out of range"),
    ('{"type": "start", "prompt": "a red circle", "strategy": "stream_t1", "budget": 9}', "budget: 9.0 is out of range"),
    ('{"type": "start", "prompt": "a red circle", "frames": 10}', "frames: 10 must be a multiple of the chunk size 3"),
    ('{"type": "start", "prompt": "a red circle", "frames": 243}', "in 3..240"),
    ('{"type": "prompt", "prompt": "a red circle moving up"}', "prompt: no stream is running"),
    ('{"type": "stop"}', "stop: no stream is running"),
]


def test_bad_input_gets_one_error_line_and_the_connection_goes_on(client, engine):
    with client.websocket_connect("/ws") as ws:
        ws.receive_json()
        for text, expected in BAD:
            ws.send_text(text)
            reply = ws.receive_json()
            assert reply["type"] == "error" and expected in reply["message"], (text, reply)
            assert reply["about"] == ("message" if "malformed" in expected else json.loads(text)["type"])
            assert "Traceback" not in reply["message"] and "\n" not in reply["message"]
        ws.send_bytes(b"\x00\x01")
        assert "binary messages" in ws.receive_json()["message"]
        start(ws, frames=6)  # the same connection still streams
        assert read_stream(ws).last["type"] == "done"


def test_switch_after_stop_and_second_start_are_refused(client):
    def stop(ws, message):
        if message["chunk"] == 0:
            ws.send_json({"type": "start", "prompt": PROMPT})  # a second start while streaming
            ws.send_json({"type": "stop"})

    with client.websocket_connect("/ws") as ws:
        ws.receive_json()
        start(ws, frames=240)
        got = read_stream(ws, until=("done",), on_chunk=stop)
        assert any("already running" in m["message"] for m in got.of_type("error"))
        assert got.last["stopped"] and got.last["frames"] < 240
        assert got.last["download"] is not None  # a plain stream stopped early keeps its frames so far
        ws.send_json({"type": "prompt", "prompt": "a red circle moving up"})
        assert "no stream is running" in ws.receive_json()["message"]


def test_streams_beyond_the_limit_wait_in_the_queue_and_are_told_their_place(engine):
    cfg = studio_config("studio.max_streams=1", "studio.max_queue=1")
    with TestClient(create_app(cfg, engine_for(cfg, engine))) as c, \
            c.websocket_connect("/ws") as first, c.websocket_connect("/ws") as second, \
            c.websocket_connect("/ws") as third:
        for ws in (first, second, third):
            ws.receive_json()
        start(first, frames=24)
        assert first.receive_json()["type"] == "started"
        start(second, frames=6)
        assert second.receive_json() == {"type": "busy", "position": 1}
        start(third, frames=6)
        full = third.receive_json()
        assert full["type"] == "error" and "server is full" in full["message"] and full["about"] == "start"
        assert c.get("/status").json()["queued"] == 1
        assert read_stream(first).last["type"] == "done"
        second_got = read_stream(second)  # starts once the first stream is done
        assert second_got.messages[0]["type"] == "started" and second_got.last["frames"] == 6


def test_two_streams_at_once_each_equal_the_generators(engine):
    """Two worker threads share the model: each stream still makes exactly its own frames."""
    cfg = studio_config("studio.max_streams=2")
    with TestClient(create_app(cfg, engine_for(cfg, engine))) as c, c.websocket_connect("/ws") as a, \
            c.websocket_connect("/ws") as b:
        a.receive_json(), b.receive_json()
        start(a, seed=1, frames=24)
        start(b, seed=2, frames=24, prompt="a blue square moving up")
        assert a.receive_json()["type"] == "started" and b.receive_json()["type"] == "started"
        got_a, got_b = read_stream(a), read_stream(b)
    np.testing.assert_array_equal(got_a.video(), reference_frames(engine, PROMPT, 1, 24))
    np.testing.assert_array_equal(got_b.video(), reference_frames(engine, "a blue square moving up", 2, 24))


def engine_for(cfg, engine):
    """`engine` with the server limits of ``cfg`` (the generator is the same, built once per module)."""
    shared = Engine.__new__(Engine)
    shared.__dict__.update(engine.__dict__)
    shared.cfg = cfg
    return shared


def _wait_idle(client, seconds: float = 60) -> dict:
    """The server's status once no stream of an earlier test is live (their workers end after their chunk)."""
    deadline = time.monotonic() + seconds
    status = client.get("/status").json()
    while (status["live_streams"] or status["streams"]) and time.monotonic() < deadline:
        time.sleep(0.05)
        status = client.get("/status").json()
    return status


def test_disconnect_frees_the_stream_and_its_cache(client):
    _wait_idle(client)
    gc.collect()
    caches_before = sum(type(o) is KVCache for o in gc.get_objects())
    with client.websocket_connect("/ws") as ws:
        ws.receive_json()
        start(ws, frames=240)
        assert ws.receive_json()["type"] == "started"
        assert ws.receive_json()["type"] == "chunk"
        assert client.get("/status").json()["live_streams"] == 1
    status = _wait_idle(client)  # the worker stops after the chunk in progress
    assert status["live_streams"] == 0 and status["streams"] == 0 and status["downloads"] == 0
    gc.collect()
    # <=: a worker thread of an earlier test's server may free its cache meanwhile; this stream's must be gone.
    assert sum(type(o) is KVCache for o in gc.get_objects()) <= caches_before


def test_a_search_whose_reward_cannot_be_built_ends_with_an_error_and_the_server_goes_on(engine, tmp_path):
    cfg = studio_config(f"reward.shapes_learned.path={tmp_path / 'missing'}")
    broken = engine_for(cfg, engine)
    broken._reward = None
    with TestClient(create_app(cfg, broken)) as c, c.websocket_connect("/ws") as ws:
        ws.receive_json()
        start(ws, strategy="stream_t1", budget=2)
        got = read_stream(ws)
        assert got.last["type"] == "error" and got.last["about"] == "stream" and "reward" in got.last["message"]
        start(ws, frames=3)  # plain streams still run
        assert read_stream(ws).last["type"] == "done"
