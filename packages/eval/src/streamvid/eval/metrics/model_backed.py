"""Registration of the model-backed metrics (weights from local directories, loaded once per ``build``).

Registering imports nothing heavy: each ``fn`` is a lazy ``"module:factory"`` string, so transformers is
imported only when one of these metrics is built. Every factory takes ``weights_dir=`` (a local transformers
checkpoint; FileNotFoundError naming it and the expected files when absent or incomplete), plus
``preprocess="auto" | "vbench"``, ``batch_size``, ``device`` and ``dtype``::

    build("subject_consistency", weights_dir="ckpt/dino-vitb16")                # DINO ViT-B/16 (ViTModel)
    build("background_consistency", weights_dir="ckpt/clip-vit-base-patch32")   # CLIP ViT-B/32
    build("aesthetic_quality", weights_dir="ckpt/clip-vit-large-patch14",       # + LAION head (safetensors)
          head_file="aesthetic_head.safetensors")
    build("clip_score", weights_dir="ckpt/clip-vit-base-patch32")               # metric(frames, prompt=...)
"""

from __future__ import annotations

from streamvid.eval.metrics.registry import MetricSpec, register

_M = "streamvid.eval.metrics"
_CONSISTENCY = ("VBench: mean_k (max(0, cos(f_k-1, f_k)) + max(0, cos(f_0, f_k))) / 2 over frames 1..T-1 of "
                "L2-normalised ")  # fmt: skip

MODEL_BACKED = [
    MetricSpec("subject_consistency", f"{_M}.consistency:subject_consistency", needs_weights=True, is_factory=True,
               description=_CONSISTENCY + "DINO ViT CLS features", vbench_dimension="subject_consistency",
               tags=("model", "vbench")),
    MetricSpec("background_consistency", f"{_M}.consistency:background_consistency", needs_weights=True,
               is_factory=True, description=_CONSISTENCY + "CLIP image embeddings",
               vbench_dimension="background_consistency", tags=("model", "vbench")),
    MetricSpec("aesthetic_quality", f"{_M}.aesthetic:aesthetic_quality", needs_weights=True, is_factory=True,
               description="VBench: mean over frames of LAION aesthetic head(L2-normalised CLIP embedding) / 10 "
                           "(not clamped, as VBench)", vbench_dimension="aesthetic_quality",
               tags=("model", "vbench")),
    MetricSpec("clip_score", f"{_M}.clip_score:clip_score", inputs=("frames", "prompt"), needs_weights=True,
               is_factory=True, range=(-1.0, 1.0),
               description="mean over frames of cos(CLIP image, CLIP text) (VBench appearance_style convention; "
                           "range for the default scale=1; scale / clamp_negative give CLIPScore variants)",
               tags=("model",)),
]
for _spec in MODEL_BACKED:
    register(_spec)
