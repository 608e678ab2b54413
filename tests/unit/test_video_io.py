"""Video I/O: mp4 / gif round trips, layouts, odd sizes, atomic writes, errors."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from streamvid.core.video_io import read_video, to_uint8_frames, write_video


def smooth_video(frames: int = 8, height: int = 32, width: int = 48) -> torch.Tensor:
    """``[T, 3, H, W]`` in [0, 1]: slowly moving colour gradients (compresses well)."""
    t = torch.arange(frames).view(-1, 1, 1, 1).float()
    y = torch.linspace(0, 1, height).view(1, 1, -1, 1)
    x = torch.linspace(0, 1, width).view(1, 1, 1, -1)
    c = torch.arange(3).view(1, -1, 1, 1).float()
    return 0.5 + 0.4 * torch.sin(2 * math.pi * (x + 0.5 * y + 0.05 * t + c / 3))


def test_mp4_round_trip_lossy_but_close_and_fps_exact(tmp_path):
    video = smooth_video()
    path = write_video(tmp_path / "clip.mp4", video, fps=16)
    out, fps = read_video(path)
    assert out.shape == video.shape and out.dtype == torch.float32
    assert fps == 16.0
    assert (out - video).abs().mean() < 0.05
    assert out.min() >= 0 and out.max() <= 1


def test_mp4_channels_last_uint8_and_odd_size_is_padded(tmp_path):
    video = (smooth_video(5, 17, 23) * 255).round().to(torch.uint8).permute(0, 2, 3, 1)  # [T, H, W, C]
    write_video(tmp_path / "odd.mp4", video, fps=8)
    out, fps = read_video(tmp_path / "odd.mp4")
    assert out.shape == (5, 3, 18, 24) and fps == 8.0
    ref = video.permute(0, 3, 1, 2).float() / 255
    assert (out[:, :, :17, :23] - ref).abs().mean() < 0.05


def test_gif_round_trip_frames_shape_fps(tmp_path):
    video = smooth_video(6, 16, 20)
    video[3] = video[2]  # Pillow merges identical frames; read_video must expand them back
    write_video(tmp_path / "clip.gif", video, fps=10)
    out, fps = read_video(tmp_path / "clip.gif")
    assert out.shape == (6, 3, 16, 20)
    assert fps == pytest.approx(10.0)
    assert torch.equal(out[3], out[2])
    assert (out - video).abs().mean() < 0.05  # palette quantisation only


def test_grey_input_is_repeated_to_rgb():
    frames = to_uint8_frames(torch.full((2, 1, 4, 4), 0.5))
    assert frames.shape == (2, 4, 4, 3) and frames.dtype == np.uint8 and (frames == 128).all()


def test_unknown_extension_and_bad_shapes(tmp_path):
    with pytest.raises(ValueError, match=r"\.avi"):
        write_video(tmp_path / "x.avi", smooth_video(2), fps=8)
    with pytest.raises(ValueError, match=r"\.webm"):
        read_video(tmp_path / "x.webm")
    with pytest.raises(ValueError, match=r"\(2, 5, 6, 6\)"):
        write_video(tmp_path / "x.mp4", torch.rand(2, 5, 6, 6), fps=8)
    with pytest.raises(FileNotFoundError, match="missing.mp4"):
        read_video(tmp_path / "missing.mp4")


def test_failed_write_leaves_old_file_and_no_temp(tmp_path, monkeypatch):
    import streamvid.core.video_io as vio

    path = write_video(tmp_path / "keep.gif", smooth_video(2, 8, 8), fps=5)
    before = path.read_bytes()

    def boom(tmp, frames, fps):
        with open(tmp, "wb") as f:
            f.write(b"partial")
        raise RuntimeError("encoder crashed")

    monkeypatch.setattr(vio, "_write_gif", boom)
    with pytest.raises(RuntimeError, match="encoder crashed"):
        write_video(path, smooth_video(3, 8, 8), fps=5)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["keep.gif"]
