"""Metric registry contract: declared inputs, lazy imports, every weight-free metric in its declared range."""

import math
import subprocess
import sys

import pytest
import torch

from streamvid.eval.metrics import MetricSpec, as_video, build, get_spec, list_metrics, register
from streamvid.eval.metrics import registry as reg

WEIGHT_FREE = {"temporal_flickering", "dynamic_degree", "motion_smoothness", "warping_error", "brightness_drift",
               "colour_drift", "sharpness"}


def test_builtin_weight_free_metrics_are_registered():
    assert set(list_metrics(needs_weights=False)) >= WEIGHT_FREE
    assert not WEIGHT_FREE & set(list_metrics(needs_weights=True))
    assert get_spec("dynamic_degree").inputs == ("frames", "fps") and get_spec("dynamic_degree").proxy
    assert get_spec("warping_error").higher_is_better is False


@pytest.mark.parametrize("name", sorted(WEIGHT_FREE))
def test_every_weight_free_metric_lies_in_its_range(name, static_video):
    spec = get_spec(name)
    metric = build(name)
    for video in (static_video, static_video.float() / 255):
        value = metric(video, prompt="a red circle", fps=8.0)
        assert isinstance(value, float) and spec.range[0] <= value <= spec.range[1], (name, value)
    batch = metric(torch.stack([static_video, static_video]), prompt="x", fps=8.0)
    assert batch.shape == (2,)


def test_declared_inputs_are_required_and_options_bound(static_video):
    with pytest.raises(ValueError, match="needs fps"):
        build("dynamic_degree")(static_video)
    moving = static_video.clone()
    moving[1::2] = torch.roll(moving[1::2], 3, dims=-1)
    assert math.isnan(build("temporal_flickering")(moving))
    assert not math.isnan(build("temporal_flickering", static_filter=False)(moving))


def test_register_factory_and_errors(static_video):
    spec = MetricSpec("_test_scaled_mean", lambda scale: (lambda frames, prompt: scale * len(prompt)),
                      inputs=("frames", "prompt"), range=(0.0, math.inf), is_factory=True)
    register(spec)
    try:
        assert build("_test_scaled_mean", scale=2.0)(static_video, prompt="abc") == 6.0
        with pytest.raises(ValueError, match="already registered"):
            register(spec)
    finally:
        reg._REGISTRY.pop("_test_scaled_mean")
    with pytest.raises(KeyError, match="temporal_flickering"):
        get_spec("no_such_metric")
    with pytest.raises(ValueError, match="inputs"):
        MetricSpec("bad", lambda f: 0.0, inputs=("prompt",))


def test_video_convention():
    u8 = torch.full((2, 3, 4, 4), 255, dtype=torch.uint8)
    assert as_video(u8).dtype == torch.float32 and as_video(u8).max() == 1.0
    with pytest.raises(ValueError, match=r"\[T, C, H, W\]"):
        as_video(torch.zeros(3, 4, 4))


def test_importing_the_registry_does_not_import_cv2():
    code = "import sys, streamvid.eval.metrics as m; m.list_metrics(); assert 'cv2' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)
