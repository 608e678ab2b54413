"""streamvid.eval.metrics: the metric registry and the weight-free metrics.

``build("temporal_flickering")`` etc. import their module lazily (cv2 is loaded on first build). Modules:
``flicker`` (VBench temporal flickering + static filter), ``flow`` (optical flow, dynamic degree and motion
smoothness proxies), ``warping`` (occlusion-masked warping error), ``drift_colour`` (brightness / colour drift),
``sharpness`` (Laplacian variance).
"""

from streamvid.eval.metrics import (
    model_backed,  # noqa: F401  (registers the model-backed metrics)
    reward_metrics,  # noqa: F401  (registers reward and oracle metrics)
)
from streamvid.eval.metrics.registry import (
    Metric,
    MetricSpec,
    as_video,
    build,
    get_spec,
    list_metrics,
    per_video,
    register,
)

__all__ = ["Metric", "MetricSpec", "as_video", "build", "get_spec", "list_metrics", "per_video", "register"]
