"""Differentiable Qwen2-VL video preprocessing in torch (methods.md A.3.2; anchors section 2.1).

Follows qwen-vl-utils' ``fetch_video`` (as used by VideoAlign) and transformers' Qwen2-VL processor:

1. frame sampling: ``n = round_2(clip(T / video_fps * fps, min_frames, max_frames))`` with
   ``max_frames = floor_2(min(max_frames, T))``, capped at ``T``; indices ``round(linspace(0, T-1, n))``
   (`sample_frame_indices`);
2. `smart_resize` of ``(H, W)`` to multiples of ``patch * merge`` (28) with ``min_pixels <= h*w <= max_pixels``;
   bicubic, antialiased resize (torchvision's / ``F.interpolate(antialias=True)``), clamped to [0, 1];
3. CLIP mean/std normalisation;
4. an odd frame count is padded by repeating the last frame (like the processor), then frames are grouped
   in temporal pairs and cut into 14x14 patches, one row ``[C * 2 * 14 * 14]`` per patch, the rows in
   Qwen2-VL's merge-window order ``(t, h/2, w/2, 2, 2)`` (the order ``Qwen2VLVideoProcessor.patchify`` and the
   vision tower's ``PatchMerger`` use), not raster ``(t, h, w)``; `rows_to_grid` undoes it.

Everything after frame selection is differentiable w.r.t. the input pixels.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = [
    "OPENAI_CLIP_MEAN",
    "OPENAI_CLIP_STD",
    "Qwen2VLVideoPreprocessor",
    "Qwen2VLVideoSettings",
    "patchify",
    "rows_to_grid",
    "sample_frame_indices",
    "smart_resize",
]

OPENAI_CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


def smart_resize(
    height: int, width: int, factor: int = 28, min_pixels: int = 56 * 56, max_pixels: int = 200704
):
    """Qwen2-VL's target ``(h, w)``: multiples of ``factor``, ``min_pixels <= h*w <= max_pixels``, aspect kept.

    Same arithmetic as qwen-vl-utils / transformers ``smart_resize`` (480x832 -> 336x588 at 200,704 pixels).
    """
    if max(height, width) / min(height, width) > 200:
        raise ValueError(f"aspect ratio must be < 200 for Qwen2-VL; got {height}x{width}")
    h_bar = max(factor, round(height / factor) * factor)
    w_bar = max(factor, round(width / factor) * factor)
    if h_bar * w_bar > max_pixels:
        beta = math.sqrt((height * width) / max_pixels)
        h_bar = max(factor, math.floor(height / beta / factor) * factor)
        w_bar = max(factor, math.floor(width / beta / factor) * factor)
    elif h_bar * w_bar < min_pixels:
        beta = math.sqrt(min_pixels / (height * width))
        h_bar = math.ceil(height * beta / factor) * factor
        w_bar = math.ceil(width * beta / factor) * factor
    return h_bar, w_bar


def sample_frame_indices(
    num_frames: int, video_fps: float, fps: float | None, min_frames: int = 4, max_frames: int = 768
) -> Tensor:
    """qwen-vl-utils ``smart_nframes`` + uniform sampling: ``[n]`` int64 frame indices into ``num_frames``.

    ``fps=None`` keeps every frame (Stream-R1's training path). Where the reference would fail (a single
    frame), the one frame is returned; `patchify` then repeats it to fill the temporal patch.
    """
    if fps is None:
        return torch.arange(num_frames)
    lo = math.ceil(min_frames / 2) * 2
    hi = math.floor(min(max_frames, num_frames) / 2) * 2
    n = round(min(max(num_frames / video_fps * fps, lo), hi) / 2) * 2
    n = max(1, min(n, num_frames))
    return torch.linspace(0, num_frames - 1, n).round().long()


def patchify(
    frames: Tensor, patch_size: int = 14, temporal_patch_size: int = 2, merge_size: int = 2
) -> Tensor:
    """``[B, T, C, H, W]`` -> rows ``[B, N, C * tp * p * p]`` in merge-window order ``(t, h/m, w/m, m, m)``.

    ``N = (T/tp) * (H/p) * (W/p)``; an incomplete last temporal group is filled by repeating the last frame.
    Each row is laid out ``(C, tp, p, p)``, as the vision tower's Conv3d patch embedding expects.
    """
    b, t, c, h, w = frames.shape
    if h % (patch_size * merge_size) or w % (patch_size * merge_size):
        raise ValueError(f"frame size {h}x{w} must be a multiple of patch*merge = {patch_size * merge_size}")
    if pad := -t % temporal_patch_size:
        frames = torch.cat([frames, frames[:, -1:].expand(-1, pad, -1, -1, -1)], dim=1)
        t += pad
    gt, gh, gw, m, p = t // temporal_patch_size, h // patch_size, w // patch_size, merge_size, patch_size
    x = frames.reshape(b, gt, temporal_patch_size, c, gh // m, m, p, gw // m, m, p)
    x = x.permute(0, 1, 4, 7, 5, 8, 3, 2, 6, 9)  # b, t, h/m, w/m, m, m, C, tp, p, p
    return x.reshape(b, gt * gh * gw, c * temporal_patch_size * p * p)


def rows_to_grid(values: Tensor, grid_thw: tuple[int, int, int], merge_size: int = 2) -> Tensor:
    """Per-row values ``[..., N]`` in merge-window order -> raster grid ``[..., t, h, w]`` (methods.md A.6 fix)."""
    t, h, w = grid_thw
    m = merge_size
    x = values.reshape(*values.shape[:-1], t, h // m, w // m, m, m)
    nd = x.dim()
    x = x.permute(*range(nd - 5), nd - 5, nd - 4, nd - 2, nd - 3, nd - 1)  # t, h/m, m, w/m, m
    return x.reshape(*values.shape[:-1], t, h, w)


@dataclass
class Qwen2VLVideoSettings:
    """Frame sampling and resize bounds of Qwen2-VL video input: the preprocessing a reward config exposes.

    Declared once here: `Qwen2VLVideoPreprocessor` derives from it (adding the model's patch geometry) and so
    does `streamvid.core.rewards.configs.VideoAlignConfig` (whose fields these are).
    """

    fps: float | None = 2.0
    """Frame sampling rate fed to the model (VideoAlign was trained at 2); None feeds every frame (Stream-R1's
    training path)."""
    video_fps: float = 16.0
    """Frame rate of the input tensors (Wan: 16)."""
    min_frames: int = 4
    """Fewest frames sampled (qwen-vl-utils ``FPS_MIN_FRAMES``)."""
    max_frames: int = 768
    """Most frames sampled (qwen-vl-utils ``FPS_MAX_FRAMES``)."""
    min_pixels: int = 128 * 28 * 28
    """Lower bound of resized frame area (qwen-vl-utils VIDEO_MIN_PIXELS; small frames are upscaled to it)."""
    max_pixels: int = 200704
    """Upper bound of resized frame area (VideoAlign ``max_frame_pixels``, 256 * 28 * 28; 480x832 -> 336x588)."""

    def video_settings(self) -> dict[str, Any]:
        """The `Qwen2VLVideoSettings` fields of this object, by name (e.g. to make a preprocessor from a config)."""
        return {f.name: getattr(self, f.name) for f in fields(Qwen2VLVideoSettings)}


@dataclass
class Qwen2VLVideoPreprocessor(Qwen2VLVideoSettings):
    """Video batch ``[B, T, 3, H, W]`` in [0, 1] -> Qwen2-VL ``pixel_values_videos`` and ``video_grid_thw``.

    `Qwen2VLVideoSettings` (sampling and pixel bounds, as in VideoAlign's data config) plus the vision tower's
    patch geometry and CLIP normalisation; see the module docstring.
    """

    patch_size: int = 14
    temporal_patch_size: int = 2
    merge_size: int = 2
    mean: tuple[float, float, float] = OPENAI_CLIP_MEAN
    std: tuple[float, float, float] = OPENAI_CLIP_STD

    def target_size(self, height: int, width: int) -> tuple[int, int]:
        """`smart_resize` of ``(height, width)`` with this preprocessor's factor and pixel bounds."""
        factor = self.patch_size * self.merge_size
        return smart_resize(height, width, factor, self.min_pixels, self.max_pixels)

    def resize_normalise(self, frames: Tensor) -> Tensor:
        """``[B, T, C, H, W]`` in [0, 1] -> resized (bicubic, antialiased, clamped) and CLIP-normalised frames."""
        b, t, c, h, w = frames.shape
        rh, rw = self.target_size(h, w)
        x = frames.reshape(b * t, c, h, w).float()
        if (rh, rw) != (h, w):
            x = F.interpolate(x, size=(rh, rw), mode="bicubic", align_corners=False, antialias=True)
            x = x.clamp(0.0, 1.0)  # the reference resizes uint8 frames, which saturates at 0 and 255
        mean = x.new_tensor(self.mean).view(1, c, 1, 1)
        std = x.new_tensor(self.std).view(1, c, 1, 1)
        return ((x - mean) / std).reshape(b, t, c, rh, rw)

    def __call__(self, video: Tensor) -> tuple[Tensor, Tensor]:
        """``video [B, T, 3, H, W]`` -> ``(pixel_values [B*N, 3*2*14*14] float32, grid_thw [B, 3] int64)``.

        Rows of sample ``b`` are ``pixel_values[b*N:(b+1)*N]``; every sample has the same ``(t, h, w)`` grid.
        """
        idx = sample_frame_indices(video.shape[1], self.video_fps, self.fps, self.min_frames, self.max_frames)
        frames = self.resize_normalise(video[:, idx.to(video.device)])
        rows = patchify(frames, self.patch_size, self.temporal_patch_size, self.merge_size)
        b, _, _, h, w = frames.shape
        gt = -(-frames.shape[1] // self.temporal_patch_size)
        grid = torch.tensor([[gt, h // self.patch_size, w // self.patch_size]] * b, device=video.device)
        return rows.reshape(-1, rows.shape[-1]), grid
