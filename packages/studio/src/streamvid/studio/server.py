"""The studio's server: a FastAPI app serving the page, the WebSocket protocol (docs/studio.md) and downloads.

One session per WebSocket connection. A stream runs in a worker thread (`ThreadPoolExecutor`, one worker per
allowed stream), never on the event loop, so the server answers while it streams; the worker waits for each chunk's
messages to be sent (backpressure: a slow client slows its own stream, nothing piles up). At most
``studio.max_streams`` streams run at once; further starts wait in a FIFO queue and are told ``busy`` with their
place, and beyond ``studio.max_queue`` waiting they are told the server is full. A disconnect stops the stream
after the chunk in progress and frees its cache and its downloads.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import queue
import resource
import secrets
import tempfile
import threading
import time
from collections import deque
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import numpy as np
from fastapi import FastAPI, WebSocket, WebSocketDisconnect
from fastapi.responses import HTMLResponse, JSONResponse, PlainTextResponse, Response
from fastapi.staticfiles import StaticFiles

from streamvid.core.cli.generate import random_weights_note
from streamvid.core.config import ConfigError, resolved_config_yaml
from streamvid.core.video_io import to_uint8_frames, write_video
from streamvid.studio.config import STRATEGIES, StudioConfig
from streamvid.studio.frames import MIME, encode_frames
from streamvid.studio.protocol import Prompt, ProtocolError, Start, Stop, parse_message
from streamvid.studio.stream import ChunkEvent, Engine, LiveStream, StreamError, StreamRequest, check_prompt

log = logging.getLogger("streamvid.studio")
STATIC = resources.files("streamvid.studio") / "static"


class ServerFull(RuntimeError):
    """No stream slot is free and the queue is full."""


class StreamSlots:
    """At most ``limit`` streams at once; waiting starts in FIFO order, at most ``max_queue`` of them."""

    def __init__(self, limit: int, max_queue: int):
        self.limit, self.max_queue = limit, max_queue
        self.active = 0
        self.waiting: deque[object] = deque()
        self._changed = asyncio.Condition()

    async def acquire(self, on_position: Callable[[int], Awaitable[None]]) -> None:
        """Take a slot; while queued, ``on_position(place)`` (1 = next) is awaited whenever the place changes."""
        async with self._changed:
            if self.active < self.limit and not self.waiting:
                self.active += 1
                return
            if len(self.waiting) >= self.max_queue:
                raise ServerFull(f"busy: the server is full ({self.active} streams running, {len(self.waiting)} "
                                 "waiting); try again later")
            token, told = object(), None
            self.waiting.append(token)
            try:
                while not (self.active < self.limit and self.waiting[0] is token):
                    place = self.waiting.index(token) + 1
                    if place != told:
                        told = place
                        await on_position(place)
                    await self._changed.wait()
                self.waiting.popleft()
                self.active += 1
            finally:
                if token in self.waiting:  # cancelled (disconnect or stop) while waiting
                    self.waiting.remove(token)
                self._changed.notify_all()

    async def release(self) -> None:
        async with self._changed:
            self.active -= 1
            self._changed.notify_all()


@dataclass
class Download:
    """A finished session's video (uint8 ``[F, H, W, 3]``) and the resolved config that regenerates it."""

    frames: np.ndarray
    fps: int
    command: str
    config_yaml: str


@dataclass
class Running:
    """The controls of the stream in progress of one connection (read by its worker between chunks)."""

    request: StreamRequest
    prompts: queue.SimpleQueue = field(default_factory=queue.SimpleQueue)
    stop: threading.Event = field(default_factory=threading.Event)


class Studio:
    """The server's state: the engine, the stream slots and workers, the live streams and the downloads."""

    def __init__(self, cfg: StudioConfig, engine: Engine | None = None):
        self.cfg = cfg
        self.engine = engine or Engine(cfg)
        self.slots = StreamSlots(cfg.studio.max_streams, cfg.studio.max_queue)
        self.executor = ThreadPoolExecutor(cfg.studio.max_streams, thread_name_prefix="studio-stream")
        self.live: set[LiveStream] = set()
        self.downloads: dict[str, Download] = {}
        self.connections = 0

    def page_config(self) -> dict:
        cfg, gen = self.cfg, self.engine.generator
        return {"fps": cfg.fps, "width": gen.width, "height": gen.height, "chunk_frames": self.engine.chunk_frames,
                "frames": cfg.num_frames, "max_frames": cfg.studio.max_frames, "prompt": cfg.prompt or "",
                "seed": cfg.seed, "strategy": cfg.strategy, "budget": cfg.budget, "strategies": list(STRATEGIES),
                "max_budget": cfg.studio.max_budget, "max_prompt_chars": cfg.studio.max_prompt_chars,
                "frame_format": cfg.studio.frame_format, "search": cfg.generator.checkpoint is not None,
                "note": random_weights_note(cfg.generator)}

    def status(self) -> dict:
        return {"streams": self.slots.active, "queued": len(self.slots.waiting), "live_streams": len(self.live),
                "downloads": len(self.downloads), "connections": self.connections,
                "rss_bytes": current_rss_bytes(),
                "peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024}


def current_rss_bytes() -> int:
    """This process's resident set size now (Linux /proc; the peak where /proc is missing)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


class Connection:
    """One WebSocket client: its messages, at most one stream at a time, its downloads."""

    def __init__(self, studio: Studio, ws: WebSocket):
        self.studio, self.ws = studio, ws
        self.id = secrets.token_urlsafe(8)
        self.running: Running | None = None
        self.task: asyncio.Task | None = None
        self.closed = False
        """Set by `close`: a stream finishing after its client left keeps no download."""
        self._send_lock = asyncio.Lock()

    # ------------------------------------------------------------------ sending
    async def send(self, message: dict, frames: list[bytes] = ()) -> None:
        """A JSON message followed by its binary frames, never interleaved with another message."""
        async with self._send_lock:
            await self.ws.send_json(message)
            for data in frames:
                await self.ws.send_bytes(data)

    async def error(self, message: str, about: str) -> None:
        """An error line; ``about``: the client message it answers (start, prompt, stop; "message" when it was not
        one of the protocol's) or "stream" (the stream failed)."""
        await self.send({"type": "error", "message": message, "about": about})

    # ------------------------------------------------------------------ receiving
    async def run(self) -> None:
        self.studio.connections += 1
        try:
            await self.send({"type": "hello", "session": self.id, "config": self.studio.page_config()})
            while True:
                raw = await self.ws.receive()
                if raw["type"] == "websocket.disconnect":
                    return
                try:
                    message = parse_message(raw.get("text"))
                except ProtocolError as err:
                    await self.error(str(err), "message")
                    continue
                try:
                    await self.handle(message)
                except (StreamError, ConfigError) as err:
                    await self.error(str(err), message.type)
        except WebSocketDisconnect:
            return
        finally:
            await self.close()

    async def handle(self, message: Start | Prompt | Stop) -> None:
        cfg = self.studio.cfg
        if isinstance(message, Start):
            if self.running is not None:
                raise StreamError("start: a stream is already running; stop it first")
            request = StreamRequest(message.prompt, message.seed, message.strategy,
                                    message.frames if message.frames is not None else cfg.num_frames,
                                    float(message.budget) if message.budget is not None else cfg.budget)
            self.studio.engine.check(request)
            self.running = Running(request)
            self.studio.downloads.pop(self.id, None)
            self.task = asyncio.create_task(self.stream(self.running))
        elif isinstance(message, Prompt):
            if self.running is None:
                raise StreamError("prompt: no stream is running; start one before switching the prompt")
            self.running.prompts.put(check_prompt(message.prompt, cfg.studio.max_prompt_chars, "prompt"))
        else:
            if self.running is None:
                raise StreamError("stop: no stream is running")
            self.running.stop.set()

    async def close(self) -> None:
        """The client left: stop its stream (the worker frees the cache after the chunk in progress) and drop
        its downloads."""
        self.closed = True
        self.studio.connections -= 1
        if self.running is not None:
            self.running.stop.set()
        if self.task is not None:
            self.task.cancel()
            await asyncio.gather(self.task, return_exceptions=True)
        self.studio.downloads.pop(self.id, None)

    # ------------------------------------------------------------------ one stream
    async def stream(self, running: Running) -> None:
        request = running.request

        async def tell_place(place: int) -> None:
            await self.send({"type": "busy", "position": place})

        try:
            await self.studio.slots.acquire(tell_place)
        except ServerFull as err:
            self.running = None
            await self.error(str(err), "start")
            return
        worker = None
        try:
            started = {"type": "started", "strategy": request.strategy, "frames": request.frames,
                       "seed": request.seed, "prompt": request.prompt}
            if request.strategy != "plain":
                search = self.studio.engine.search_config(request)
                started |= {"budget": request.budget, "children": search.children, "beams": search.top_k,
                            "first_candidates": search.first_candidates}
            await self.send(started)
            loop = asyncio.get_running_loop()
            worker = loop.run_in_executor(self.studio.executor, self._work, running, loop)
            done = await asyncio.shield(worker)
        except asyncio.CancelledError:
            running.stop.set()
            if worker is not None:  # the disconnect: wait for the worker to let go of the cache
                await asyncio.gather(worker, return_exceptions=True)
            raise
        finally:
            await self.studio.slots.release()
            self.running = None
        await self.send(done)

    def _work(self, running: Running, loop: asyncio.AbstractEventLoop) -> dict:
        """The worker thread: iterate the stream, send each chunk, apply switches and stop between chunks."""
        studio, request = self.studio, running.request
        fmt, quality = studio.cfg.studio.frame_format, studio.cfg.studio.jpeg_quality

        def send(message: dict, frames: list[bytes] = ()) -> None:
            asyncio.run_coroutine_threadsafe(self.send(message, frames), loop).result()

        stream = studio.engine.open(request)
        studio.live.add(stream)
        start, frames_sent = time.perf_counter(), 0
        events = iter(stream)
        try:
            while not running.stop.is_set():
                event = next(events, None)
                if event is None:
                    break
                frames_sent += event.pixels.shape[0]
                send(chunk_message(event, fmt, frames_sent / (time.perf_counter() - start),
                                   time.perf_counter() - start), encode_frames(event.pixels, fmt, quality))
                while not running.prompts.empty():
                    prompt = running.prompts.get()
                    try:
                        at = stream.switch_prompt(prompt)
                        send({"type": "switched", "prompt": prompt, "chunk": at})
                    except StreamError as err:
                        send({"type": "error", "message": str(err), "about": "prompt"})
            stopped = stream.chunks_done < stream.num_chunks
            done = {"type": "done", "frames": frames_sent, "stopped": stopped, "nfe": stream.nfe,
                    "seconds": round(time.perf_counter() - start, 4), "download": None}
            if stream.result is not None:
                done["final"] = {"score": stream.result.best.final, "seed": stream.result.best.seed}
            try:
                done["download"] = self._keep_download(stream)
            except StreamError as err:
                done["download_note"] = str(err)
            return done
        except (StreamError, ConfigError) as err:  # e.g. the search reward's weights are missing
            return {"type": "error", "message": str(err), "about": "stream"}
        except Exception as err:  # noqa: BLE001 - a bug must not reach the client as a traceback; the log has it
            if running.stop.is_set():  # the client left while a send was in flight
                return {"type": "done", "frames": frames_sent, "stopped": True, "download": None}
            log.exception("stream of session %s failed", self.id)
            return {"type": "error", "message": f"internal error while generating ({type(err).__name__}); "
                                                "the server log has the details", "about": "stream"}
        finally:
            stream.close()
            studio.live.discard(stream)

    def _keep_download(self, stream: LiveStream) -> dict | None:
        if self.closed:  # the client left while the stream finished: nothing to keep for it
            return None
        command, cfg = stream.resolved_config()
        frames = to_uint8_frames(stream.video())
        name = f"studio-{self.id}"
        self.studio.downloads[self.id] = Download(frames, self.studio.cfg.fps, command, resolved_config_yaml(cfg))
        return {"video": f"/download/{self.id}/video.mp4", "config": f"/download/{self.id}/config.yaml",
                "command": f"{command} --config {name}.config.yaml --out {name}-again.mp4"}


def chunk_message(event: ChunkEvent, fmt: str, generated_fps: float, elapsed: float) -> dict:
    """The JSON metadata of one chunk; its ``frames`` binary frame messages follow."""
    return {"type": "chunk", "chunk": event.chunk, "first_frame": event.first_frame,
            "frames": int(event.pixels.shape[0]), "format": fmt, "prompt": event.prompt,
            "seconds": round(event.seconds, 5), "elapsed": round(elapsed, 5),
            "generated_fps": round(generated_fps, 3), "nfe": event.nfe, "tree": event.tree,
            "survivors": event.survivors, "routes": {str(k): v for k, v in event.routes.items()},
            "best": event.best}


def create_app(cfg: StudioConfig, engine: Engine | None = None) -> FastAPI:
    """The studio's app for ``cfg`` (the engine is built from it unless given)."""
    studio = Studio(cfg, engine)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI):
        yield
        studio.executor.shutdown(wait=False, cancel_futures=True)

    app = FastAPI(title="streamvid-studio", docs_url=None, redoc_url=None, openapi_url=None, lifespan=lifespan)
    app.state.studio = studio
    app.mount("/static", StaticFiles(directory=str(STATIC)), name="static")

    @app.get("/", response_class=HTMLResponse)
    def page() -> str:
        return (STATIC / "index.html").read_text()

    @app.get("/status")
    def status() -> dict:
        return studio.status()

    @app.get("/download/{session}/{name}")
    def download(session: str, name: str) -> Response:
        item = studio.downloads.get(session)
        if item is None or name not in ("video.mp4", "config.yaml"):
            return JSONResponse({"error": f"no download {name!r} for this session (finished sessions keep theirs "
                                          "while their page is open)"}, status_code=404)
        stem = f"studio-{session}"
        if name == "config.yaml":
            return PlainTextResponse(item.config_yaml, headers={
                "Content-Disposition": f'attachment; filename="{stem}.config.yaml"'})
        with tempfile.TemporaryDirectory() as tmp:
            path = write_video(Path(tmp) / f"{stem}.mp4", item.frames, fps=item.fps)
            data = path.read_bytes()
        return Response(data, media_type="video/mp4",
                        headers={"Content-Disposition": f'attachment; filename="{stem}.mp4"'})

    @app.websocket("/ws")
    async def ws(websocket: WebSocket) -> None:
        await websocket.accept()
        await Connection(studio, websocket).run()

    return app


__all__ = ["MIME", "Studio", "StreamSlots", "create_app"]
