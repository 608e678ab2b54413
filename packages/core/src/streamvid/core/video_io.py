"""Video files <-> tensors: ``.mp4`` (H.264 through imageio's ffmpeg backend) and ``.gif`` (Pillow).

- `write_video` takes ``[T, C, H, W]`` or ``[T, H, W, C]``, uint8 or float in ``[0, 1]`` (clamped), with
  ``C`` in {1, 3, 4} (grey is repeated to RGB, alpha is dropped). Writes are atomic: the file is written to a
  temporary name in the same folder and renamed, so a failed write never leaves a partial file at ``path``.
- mp4 uses libx264 + yuv420p, which needs even sizes: odd ``H`` / ``W`` are padded by one replicated
  row / column (bottom / right), so `read_video` returns the padded size. ``macro_block_size=1`` stops
  imageio from resizing. The codec is lossy; fps is stored exactly.
- gif stores frame durations in 10 ms units, so fps comes back approximately (16 fps -> 60 ms -> 16.7 fps).
  Pillow merges identical consecutive frames into one longer frame; `read_video` expands them again using
  the shortest frame duration as the frame period. Colours are quantised to a 256-colour palette per frame.
- A file that cannot be decoded raises `VideoReadError` (an ``OSError``) with a one-line cause, never
  ffmpeg's multi-kilobyte banner.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from streamvid.core.atomic import atomic_write

SUPPORTED_EXTENSIONS = (".mp4", ".gif")


class VideoReadError(OSError):
    """A video file exists but cannot be decoded; the message is one line (ffmpeg's cause, not its banner)."""


def ffmpeg_cause(err: BaseException) -> str:
    """One line from an imageio-ffmpeg error: its summary plus ffmpeg's last stderr line, without the version banner.

    imageio puts ffmpeg's whole stderr (version, build configuration, library versions: ~3 KB) in the message;
    the cause is the last line ffmpeg printed (e.g. "Invalid data found when processing input").
    """
    head, _, stderr = str(err).partition("=== stderr ===")
    summary = " ".join(head.split())
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    cause = lines[-1] if lines else ""
    return f"{summary} ({cause})" if summary and cause else summary or cause or type(err).__name__


def _check_extension(path: Path) -> str:
    ext = path.suffix.lower()
    if ext not in SUPPORTED_EXTENSIONS:
        raise ValueError(
            f"unsupported video extension '{ext}' for '{path}'; expected one of {SUPPORTED_EXTENSIONS}"
        )
    return ext


def to_uint8_frames(video: Tensor | np.ndarray, channels_last: bool | None = None) -> np.ndarray:
    """``[T, C, H, W]`` / ``[T, H, W, C]`` uint8 or float in ``[0, 1]`` -> ``[T, H, W, 3]`` uint8 numpy.

    ``channels_last=None`` infers the layout: ``[T, C, H, W]`` if dim 1 is in {1, 3, 4}, otherwise
    ``[T, H, W, C]`` if the last dim is.
    """
    v = video.detach().cpu() if isinstance(video, Tensor) else torch.as_tensor(np.asarray(video))
    if v.dim() != 4:
        raise ValueError(f"video must be [T, C, H, W] or [T, H, W, C], got shape {tuple(v.shape)}")
    if channels_last is None:
        if v.shape[1] in (1, 3, 4):
            channels_last = False
        elif v.shape[-1] in (1, 3, 4):
            channels_last = True
        else:
            raise ValueError(f"cannot find a channel dim of size 1, 3 or 4 in video shape {tuple(v.shape)}")
    if not channels_last:
        v = v.permute(0, 2, 3, 1)
    if v.shape[-1] not in (1, 3, 4):
        raise ValueError(f"video must have 1, 3 or 4 channels, got shape {tuple(v.shape)} (channels last)")
    if v.dtype == torch.uint8:
        frames = v
    elif v.is_floating_point():
        frames = (v.float().clamp(0.0, 1.0) * 255.0).round().to(torch.uint8)
    else:
        raise ValueError(f"video dtype must be uint8 or floating, got {v.dtype}")
    frames = frames[..., :3] if frames.shape[-1] == 4 else frames.expand(*frames.shape[:-1], 3)
    return np.ascontiguousarray(frames.numpy())


def _write_mp4(path: str, frames: np.ndarray, fps: float, quality: float) -> None:
    import imageio.v2 as imageio

    _, height, width, _ = frames.shape
    frames = np.pad(frames, ((0, 0), (0, height % 2), (0, width % 2), (0, 0)), mode="edge")
    writer = imageio.get_writer(
        path,
        format="FFMPEG",
        mode="I",
        fps=fps,
        codec="libx264",
        pixelformat="yuv420p",
        quality=quality,
        macro_block_size=1,
        ffmpeg_log_level="error",
    )
    try:
        for frame in frames:
            writer.append_data(frame)
    finally:
        writer.close()


def _write_gif(path: str, frames: np.ndarray, fps: float) -> None:
    from PIL import Image

    images = [Image.fromarray(f) for f in frames]
    images[0].save(
        path, format="GIF", save_all=True, append_images=images[1:], duration=1000.0 / fps, loop=0, disposal=1
    )


def write_video(
    path: str | os.PathLike,
    video: Tensor | np.ndarray,
    fps: float,
    channels_last: bool | None = None,
    quality: float = 8.0,
) -> Path:
    """Write ``video`` (``[T, C, H, W]`` or ``[T, H, W, C]``, uint8 or float in [0, 1]) to ``.mp4`` / ``.gif``.

    ``quality`` (0-10, mp4 only) is imageio's ffmpeg quality setting. Returns the path written. Parent
    folders are created.
    """
    path = Path(path)
    ext = _check_extension(path)
    if fps <= 0:
        raise ValueError(f"fps must be > 0, got {fps}")
    frames = to_uint8_frames(video, channels_last)
    if frames.shape[0] == 0:
        raise ValueError(f"cannot write an empty video (0 frames) to '{path}'")
    with atomic_write(path) as tmp:  # keeps the extension: ffmpeg picks the muxer from it
        if ext == ".mp4":
            _write_mp4(str(tmp), frames, fps, quality)
        else:
            _write_gif(str(tmp), frames, fps)
    return path


def _read_mp4(path: str) -> tuple[np.ndarray, float]:
    import imageio.v2 as imageio

    reader = imageio.get_reader(path, format="FFMPEG", mode="I")
    try:
        fps = float(reader.get_meta_data()["fps"])
        frames = np.stack([np.asarray(f)[..., :3] for f in reader])
    finally:
        reader.close()
    return frames, fps


def _read_gif(path: str) -> tuple[np.ndarray, float]:
    from PIL import Image, ImageSequence

    with Image.open(path) as im:
        items = [
            (np.asarray(f.convert("RGB")), int(f.info.get("duration", 0))) for f in ImageSequence.Iterator(im)
        ]
    durations = [d for _, d in items if d > 0]
    period = min(durations) if durations else 100  # GIF viewers play 0-duration frames at ~10 fps
    frames = [f for f, d in items for _ in range(max(1, round(d / period)) if d > 0 else 1)]
    return np.stack(frames), 1000.0 / period


def read_video(path: str | os.PathLike) -> tuple[Tensor, float]:
    """Read ``.mp4`` / ``.gif`` -> ``(video [T, 3, H, W] float32 in [0, 1], fps)``."""
    path = Path(path)
    ext = _check_extension(path)
    if not path.is_file():
        raise FileNotFoundError(f"video file not found: '{path}'")
    try:
        frames, fps = _read_mp4(str(path)) if ext == ".mp4" else _read_gif(str(path))
    except (OSError, RuntimeError, ValueError) as err:  # imageio-ffmpeg / Pillow on a corrupt or empty file
        raise VideoReadError(f"cannot decode '{path}': {ffmpeg_cause(err)}") from err
    video = torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 3, 1, 2).float() / 255.0
    return video, fps


def mp4_fps(path: str | os.PathLike) -> float:
    """The frame rate an ``.mp4`` file declares (its stream metadata; no frame is decoded)."""
    import imageio.v2 as imageio

    reader = imageio.get_reader(str(path), format="FFMPEG", mode="I")
    try:
        return float(reader.get_meta_data()["fps"])
    finally:
        reader.close()


def retime_mp4(src: str | os.PathLike, dst: str | os.PathLike, fps: float) -> Path:
    """Write ``src`` (an ``.mp4``) to ``dst`` at ``fps`` without re-encoding: the same compressed frames, only
    their timestamps scaled by ``fps_src / fps`` (ffmpeg's ``setts`` bitstream filter on a stream copy), so the
    decoded frames are identical to the source's and nothing is lost to a second encode. Written atomically."""
    import subprocess

    import imageio_ffmpeg

    if fps <= 0:
        raise ValueError(f"fps must be > 0, got {fps}")
    scale = mp4_fps(src) / fps
    dst = Path(dst)
    with atomic_write(dst) as tmp:
        cmd = [imageio_ffmpeg.get_ffmpeg_exe(), "-v", "error", "-y", "-i", str(src), "-map", "0:v", "-c", "copy",
               "-bsf:v", f"setts=pts=PTS*{scale!r}:dts=DTS*{scale!r}:duration=DURATION*{scale!r}", str(tmp)]
        done = subprocess.run(cmd, capture_output=True, text=True)
        if done.returncode:
            raise VideoReadError(f"cannot retime '{src}' to {fps:g} fps: {' '.join(done.stderr.split())[:300]}")
    return dst
