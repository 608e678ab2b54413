"""Metric registry and the video input convention shared by every metric.

Video convention
----------------
A video is a tensor ``[T, C, H, W]`` (C = 3 RGB, or 1 grey) that is either float in [0, 1] or uint8 in
[0, 255]; a batch is ``[B, T, C, H, W]``. A metric returns a python ``float`` for one video and a float64
tensor ``[B]`` for a batch (``per_video`` does the looping).

Registry
--------
Each metric is described by a :class:`MetricSpec` (its inputs, whether it needs weights, its range and
direction). ``fn`` may be a dotted ``"module:attr"`` string so that heavy imports (cv2, transformers) happen
only when the metric is built. ``build(name, **options)`` returns a :class:`Metric` whose call signature is
uniform for the runner: ``metric(frames, prompt=..., fps=...)``; only the declared inputs are forwarded.
"""

from __future__ import annotations

import functools
import importlib
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

VALID_INPUTS = ("frames", "prompt", "fps")


# ---------------------------------------------------------------------------------------------------------
# video convention
# ---------------------------------------------------------------------------------------------------------
def as_video(video: torch.Tensor | np.ndarray) -> torch.Tensor:
    """Check one video ``[T, C, H, W]`` (float in [0, 1] or uint8) and return it as float32 in [0, 1]."""
    video = torch.as_tensor(video)
    if video.ndim != 4 or video.shape[1] not in (1, 3):
        raise ValueError(f"expected one video [T, C, H, W] with C in (1, 3), got shape {tuple(video.shape)}")
    if video.shape[0] < 1:
        raise ValueError("video has no frames (T = 0)")
    if video.dtype == torch.uint8:
        return video.float() / 255.0
    if not video.is_floating_point():
        raise TypeError(f"video dtype must be uint8 or floating point, got {video.dtype}")
    return video.float().clamp(0.0, 1.0)


def to_uint8_thwc(video: torch.Tensor | np.ndarray) -> np.ndarray:
    """One video ``[T, C, H, W]`` -> contiguous uint8 numpy ``[T, H, W, C]`` (floats are rounded)."""
    video = torch.as_tensor(video)
    if video.dtype != torch.uint8:
        video = (as_video(video) * 255.0).round().to(torch.uint8)
    else:
        as_video(video)  # shape check only
    return np.ascontiguousarray(video.permute(0, 2, 3, 1).cpu().numpy())


def to_gray_u8(video: torch.Tensor | np.ndarray) -> np.ndarray:
    """One video ``[T, C, H, W]`` -> uint8 grey ``[T, H, W]`` (ITU-R BT.601 luma, as cv2 RGB2GRAY)."""
    thwc = to_uint8_thwc(video)
    if thwc.shape[-1] == 1:
        return np.ascontiguousarray(thwc[..., 0])
    w = np.array([0.299, 0.587, 0.114], dtype=np.float32)
    return np.ascontiguousarray(np.clip(np.rint(thwc.astype(np.float32) @ w), 0, 255).astype(np.uint8))


def per_video(fn: Callable[..., float]) -> Callable[..., float | torch.Tensor]:
    """Lift ``fn(video [T, C, H, W], **kw) -> float`` to also accept ``[B, T, C, H, W]`` -> float64 ``[B]``."""

    @functools.wraps(fn)
    def wrapper(video, *args, **kwargs):
        video = torch.as_tensor(video)
        if video.ndim == 5:
            return torch.tensor([float(fn(v, *args, **kwargs)) for v in video], dtype=torch.float64)
        return float(fn(video, *args, **kwargs))

    return wrapper


# ---------------------------------------------------------------------------------------------------------
# registry
# ---------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class MetricSpec:
    """What a metric needs and what it returns."""

    name: str
    """Registry key, snake_case (VBench dimensions keep VBench's names, e.g. ``temporal_flickering``)."""
    fn: Callable[..., Any] | str
    """The metric callable ``fn(frames, [prompt=], [fps=], **options)``, or ``"module:attr"`` imported lazily."""
    inputs: tuple[str, ...] = ("frames",)
    """Subset of ``("frames", "prompt", "fps")``; the declared inputs are required at call time."""
    needs_weights: bool = False
    """True when the metric loads model weights (from a local directory; never from a hub at run time)."""
    range: tuple[float, float] = (0.0, 1.0)
    """Closed value range; ``math.inf`` for unbounded."""
    higher_is_better: bool = True
    """Direction used by drift (degradation) and by reports."""
    description: str = ""
    """One line: formula or source."""
    proxy: bool = False
    """True when the metric approximates a model-backed definition with a weight-free method."""
    vbench_dimension: str | None = None
    """VBench dimension this metric computes or approximates, if any."""
    is_factory: bool = False
    """When True, ``fn(**options)`` returns the metric callable (load weights once, call many times)."""
    tags: tuple[str, ...] = field(default_factory=tuple)

    def __post_init__(self):
        bad = [i for i in self.inputs if i not in VALID_INPUTS]
        if bad or "frames" not in self.inputs:
            raise ValueError(f"metric {self.name!r}: inputs must include 'frames' and be among {VALID_INPUTS}, "
                             f"got {self.inputs}")
        if not self.range[0] <= self.range[1]:
            raise ValueError(f"metric {self.name!r}: range {self.range} is not (low, high)")


@dataclass
class Metric:
    """A built metric: ``metric(frames, prompt=None, fps=None)`` forwards only the declared inputs."""

    spec: MetricSpec
    fn: Callable[..., Any]

    @property
    def name(self) -> str:
        return self.spec.name

    def __call__(self, frames, *, prompt: str | None = None, fps: float | None = None):
        kwargs: dict[str, Any] = {}
        for key, value in (("prompt", prompt), ("fps", fps)):
            if key in self.spec.inputs:
                if value is None:
                    raise ValueError(f"metric {self.spec.name!r} needs {key}= (declared inputs: {self.spec.inputs})")
                kwargs[key] = value
        return self.fn(frames, **kwargs)


_REGISTRY: dict[str, MetricSpec] = {}


def register(spec: MetricSpec, *, overwrite: bool = False) -> MetricSpec:
    """Add ``spec`` to the registry; a duplicate name is an error unless ``overwrite``."""
    if spec.name in _REGISTRY and not overwrite:
        raise ValueError(f"metric {spec.name!r} is already registered (pass overwrite=True to replace it)")
    _REGISTRY[spec.name] = spec
    return spec


def get_spec(name: str) -> MetricSpec:
    """The spec registered under ``name``; KeyError lists the known names."""
    try:
        return _REGISTRY[name]
    except KeyError:
        raise KeyError(f"unknown metric {name!r}; registered: {sorted(_REGISTRY)}") from None


def list_metrics(*, needs_weights: bool | None = None) -> list[str]:
    """Sorted registered names, optionally only those that do (or do not) need weights."""
    return sorted(n for n, s in _REGISTRY.items() if needs_weights is None or s.needs_weights == needs_weights)


def _resolve(fn: Callable[..., Any] | str) -> Callable[..., Any]:
    if callable(fn):
        return fn
    module, _, attr = fn.partition(":")
    if not attr:
        raise ValueError(f"lazy metric target {fn!r} must look like 'package.module:function'")
    return getattr(importlib.import_module(module), attr)


def build(name: str, **options: Any) -> Metric:
    """Instantiate the metric ``name``; ``options`` are bound as keyword arguments (or passed to a factory)."""
    spec = get_spec(name)
    fn = _resolve(spec.fn)
    fn = fn(**options) if spec.is_factory else (functools.partial(fn, **options) if options else fn)
    return Metric(spec=spec, fn=fn)


# ---------------------------------------------------------------------------------------------------------
# built-in weight-free metrics (lazy: importing this module does not import cv2)
# ---------------------------------------------------------------------------------------------------------
_M = "streamvid.eval.metrics"
_BUILTIN = [
    MetricSpec("temporal_flickering", f"{_M}.flicker:temporal_flickering", range=(0.0, 1.0),
               description="VBench: (255 - mean_t MAE(x_t, x_t+1)) / 255 on uint8 frames; NaN when the "
                           "optical-flow static filter rejects the video", vbench_dimension="temporal_flickering"),
    MetricSpec("dynamic_degree", f"{_M}.flow:dynamic_degree", inputs=("frames", "fps"), proxy=True,
               description="VBench rule (8 fps subsampling, top-5% flow magnitude, round(4n/16) count) on "
                           "OpenCV DIS flow instead of RAFT; 1.0 = dynamic", vbench_dimension="dynamic_degree"),
    MetricSpec("motion_smoothness", f"{_M}.flow:motion_smoothness", proxy=True,
               description="VBench rule (interpolate odd frames from even ones, (255 - MAE)/255) with a "
                           "flow-based midpoint interpolator instead of AMT-S", vbench_dimension="motion_smoothness"),
    MetricSpec("warping_error", f"{_M}.warping:warping_error", range=(0.0, 3.0), higher_is_better=False,
               description="Lai et al. 2018 E_warp: occlusion-masked squared RGB error after flow warping"),
    MetricSpec("brightness_drift", f"{_M}.drift_colour:brightness_drift", higher_is_better=False,
               description="|mean luma(last frames) - mean luma(first frames)|, luma in [0, 1]"),
    MetricSpec("colour_drift", f"{_M}.drift_colour:colour_drift", range=(0.0, math.sqrt(3.0)),
               higher_is_better=False, description="L2 distance of mean RGB (in [0, 1]) between last and first frames"),
    MetricSpec("sharpness", f"{_M}.sharpness:sharpness", range=(0.0, math.inf),
               description="variance of the 3x3 Laplacian of the grey frame in [0, 255], mean over frames"),
]
for _spec in _BUILTIN:
    register(_spec)
