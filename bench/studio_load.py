"""Load test of streamvid-studio on loopback: 1 / 2 / 4 / 8 concurrent clients streaming 48 frames each.

Starts `python -m streamvid.studio` as a subprocess on a free 127.0.0.1 port (``studio.max_streams`` streams at
once, so the larger rounds queue), then for each round connects N WebSocket clients at once, each streaming a plain
video of ``--frames`` frames, and records per client: the time queued (start sent -> ``started``), time to first
frame, generated fps (frames / (done - started)), chunk latency (server-measured p50 / p95) and the ``busy`` places
it was told; and the server's memory (``/status``: RSS, live streams, kept downloads) before the round and after its
clients disconnected. One more round streams Stream-T1 at 2x for one client. The baseline, measured in the same run
in this process: the generator alone (`StreamVidPipeline.stream_video`, no server), and the bytes per frame of PNG and
JPEG (quality 90) for the same frames. Every wait is bounded; the server is stopped at the end.

    .venv/bin/python bench/studio_load.py --out outputs/bench/studio_load.json
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

import httpx
import torch
from websockets.asyncio.client import connect

from streamvid.core.config import load_config
from streamvid.core.video_io import to_uint8_frames
from streamvid.studio.config import StudioConfig
from streamvid.studio.frames import encode_image
from streamvid.studio.stream import Engine

PROMPT = "a red circle moving left"


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--config", default="configs/studio/shapes.yaml")
    p.add_argument("--out", default="outputs/bench/studio_load.json")
    p.add_argument("--clients", type=int, nargs="+", default=[1, 2, 4, 8])
    p.add_argument("--frames", type=int, default=48)
    p.add_argument("--t1-frames", type=int, default=None, help="frames of the Stream-T1 round (default: --frames)")
    p.add_argument("--max-streams", type=int, default=2, help="the server's studio.max_streams")
    p.add_argument("--round-timeout", type=float, default=600.0, help="seconds one round may take")
    return p.parse_args()


def percentile(values: list[float], q: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, int(q * len(s)))]


def baseline(cfg: StudioConfig, frames: int) -> dict:
    """The generator alone in this process (one warm-up), and PNG / JPEG bytes per frame of its frames."""
    engine = Engine(cfg)
    list(engine.generator.stream_video([PROMPT], engine.chunk_frames, 0))  # warm-up
    start = time.perf_counter()
    video = torch.cat([c[0] for c in engine.generator.stream_video([PROMPT], frames, 0)])
    seconds = time.perf_counter() - start
    out = {"generator_alone_fps": frames / seconds, "generator_alone_seconds": seconds}
    for fmt in ("png", "jpeg"):
        t = time.perf_counter()
        sizes = [len(encode_image(f, fmt, 90)) for f in to_uint8_frames(video)]
        out[f"{fmt}_bytes_per_frame"] = statistics.mean(sizes)
        out[f"{fmt}_encode_ms_per_frame"] = 1000 * (time.perf_counter() - t) / len(sizes)
    return out


async def client(url: str, start: dict) -> dict:
    """One client: connect, start, read until done; returns its measurements."""
    busy: list[int] = []
    t_sent = t_started = t_first = None
    latencies: list[float] = []
    frames = 0
    async with connect(url, max_size=None) as ws:
        json.loads(await ws.recv())  # hello
        t_sent = time.perf_counter()
        await ws.send(json.dumps(start))
        while True:
            raw = await ws.recv()
            now = time.perf_counter()
            if isinstance(raw, bytes):
                frames += 1
                t_first = t_first or now
                continue
            m = json.loads(raw)
            if m["type"] == "busy":
                busy.append(m["position"])
            elif m["type"] == "started":
                t_started = now
            elif m["type"] == "chunk":
                latencies.append(m["seconds"])
            elif m["type"] in ("done", "error"):
                if m["type"] == "error":
                    raise RuntimeError(f"the server answered an error: {m['message']}")
                break
    t_done = time.perf_counter()
    return {"frames": frames, "queued_s": t_started - t_sent, "time_to_first_frame_s": t_first - t_sent,
            "generated_fps": frames / (t_done - t_started), "chunk_latency_p50_s": percentile(latencies, 0.5),
            "chunk_latency_p95_s": percentile(latencies, 0.95), "busy_places": busy}


def status(http: httpx.Client) -> dict:
    return http.get("/status").json()


def settle(http: httpx.Client, timeout: float = 60.0) -> dict:
    """The server's status once no stream is live (bounded wait)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        s = status(http)
        if s["live_streams"] == 0 and s["streams"] == 0 and s["connections"] == 0:
            return s
        time.sleep(0.1)
    return status(http)


async def round_of(url: str, n: int, start: dict, timeout: float) -> list[dict]:
    tasks = [client(url, start | {"seed": i}) for i in range(n)]
    return await asyncio.wait_for(asyncio.gather(*tasks), timeout)


def main() -> int:
    args = parse_args()
    cfg = load_config(args.config, [f"studio.max_streams={args.max_streams}"], schema=StudioConfig)
    torch.set_num_threads(1)
    base = baseline(cfg, args.frames)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    server = subprocess.Popen([sys.executable, "-m", "streamvid.studio", "--config", args.config, "--port", str(port),
                               "--set", f"studio.max_streams={args.max_streams}"], env=env)
    results = {"config": args.config, "frames": args.frames, "max_streams": args.max_streams, "fps": cfg.fps,
               "cpu_count": os.cpu_count(), "load_average_at_start": os.getloadavg(), "baseline": base, "rounds": []}
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as http:
            deadline = time.monotonic() + 120
            while True:
                try:
                    status(http)
                    break
                except httpx.TransportError:
                    if server.poll() is not None or time.monotonic() > deadline:
                        raise RuntimeError("the studio server did not start") from None
                    time.sleep(0.2)
            url = f"ws://127.0.0.1:{port}/ws"
            asyncio.run(round_of(url, 1, {"type": "start", "prompt": PROMPT, "frames": 3}, args.round_timeout))  # warm-up
            rounds = [(n, "plain", None) for n in args.clients] + [(1, "stream_t1", 2)]
            for n, strategy, budget in rounds:
                before = settle(http)
                frames = args.t1_frames or args.frames if strategy == "stream_t1" else args.frames
                start = {"type": "start", "prompt": PROMPT, "frames": frames, "strategy": strategy}
                if budget is not None:
                    start["budget"] = budget
                t = time.perf_counter()
                clients = asyncio.run(round_of(url, n, start, args.round_timeout))
                wall = time.perf_counter() - t
                after = settle(http)
                row = {"clients": n, "strategy": strategy, "budget": budget, "wall_s": wall,
                       "aggregate_fps": sum(c["frames"] for c in clients) / wall,
                       "per_client_fps_mean": statistics.mean(c["generated_fps"] for c in clients),
                       "per_client_fps_min": min(c["generated_fps"] for c in clients),
                       "real_time_factor_mean": statistics.mean(c["generated_fps"] for c in clients) / cfg.fps,
                       "chunk_latency_p50_s": statistics.median(c["chunk_latency_p50_s"] for c in clients),
                       "chunk_latency_p95_s": max(c["chunk_latency_p95_s"] for c in clients),
                       "queued_s_max": max(c["queued_s"] for c in clients),
                       "queued_clients": sum(bool(c["busy_places"]) for c in clients),
                       "time_to_first_frame_s_mean": statistics.mean(c["time_to_first_frame_s"] for c in clients),
                       "server_rss_mb_before": before["rss_bytes"] / 2**20,
                       "server_rss_mb_after": after["rss_bytes"] / 2**20,
                       "live_streams_after": after["live_streams"], "downloads_kept_after": after["downloads"],
                       "load_average": os.getloadavg(), "clients_detail": clients}
                results["rounds"].append(row)
                print(f"{n} client(s) {strategy}: {row['per_client_fps_mean']:.1f} fps/client "
                      f"({row['real_time_factor_mean']:.2f}x real time), chunk p50 {row['chunk_latency_p50_s'] * 1000:.0f} ms, "
                      f"p95 {row['chunk_latency_p95_s'] * 1000:.0f} ms, queued max {row['queued_s_max']:.2f} s "
                      f"({row['queued_clients']} queued), RSS {row['server_rss_mb_before']:.0f} -> "
                      f"{row['server_rss_mb_after']:.0f} MB, live after {row['live_streams_after']}", file=sys.stderr)
    finally:
        server.terminate()
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
    one = next(r for r in results["rounds"] if r["clients"] == 1 and r["strategy"] == "plain")
    results["server_vs_generator_alone"] = one["per_client_fps_mean"] / base["generator_alone_fps"]
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(results, indent=2))
    print(f"wrote {args.out}; 1 client through the server: {results['server_vs_generator_alone']:.2f}x the generator "
          f"alone; png {base['png_bytes_per_frame']:.0f} B / jpeg {base['jpeg_bytes_per_frame']:.0f} B per frame",
          file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
