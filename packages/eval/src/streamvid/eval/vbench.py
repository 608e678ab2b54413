"""VBench score aggregation: per-dimension min/max normalisation, Quality / Semantic / Total.

Constants and formulas are copied from ``Vchitect/VBench: scripts/constant.py`` and
``scripts/cal_final_score.py`` (anchors §3.2):

    n_d      = (s_d - min_d) / (max_d - min_d)                       (can leave [0, 1]; VBench does not clip)
    Quality  = sum_{d in Q} w_d n_d / sum_{d in Q} w_d               (w = 1, dynamic_degree 0.5 -> 6.5)
    Semantic = sum_{d in S} w_d n_d / sum_{d in S} w_d               (all w = 1 -> 9)
    Total    = (QUALITY_WEIGHT * Quality + SEMANTIC_WEIGHT * Semantic) / (QUALITY_WEIGHT + SEMANTIC_WEIGHT)

Scores are on VBench's [0, 1] scale (leaderboards print x100). Deviation, on purpose: ``cal_final_score.py``
fills a missing dimension with a raw 0, which normalises to a negative value (subject_consistency -> -0.171).
Here a missing (or NaN) dimension is reported in ``missing``, excluded from both numerator and denominator of
its group, and a warning is issued; a group with no dimension at all is ``None`` and so is the Total.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping

QUALITY_DIMENSIONS = (
    "subject_consistency", "background_consistency", "temporal_flickering", "motion_smoothness",
    "aesthetic_quality", "imaging_quality", "dynamic_degree",
)
SEMANTIC_DIMENSIONS = (
    "object_class", "multiple_objects", "human_action", "color", "spatial_relationship", "scene",
    "appearance_style", "temporal_style", "overall_consistency",
)
DIMENSIONS = QUALITY_DIMENSIONS + SEMANTIC_DIMENSIONS

NORMALIZE: dict[str, tuple[float, float]] = {
    "subject_consistency": (0.1462, 1.0),
    "background_consistency": (0.2615, 1.0),
    "temporal_flickering": (0.6293, 1.0),
    "motion_smoothness": (0.706, 0.9975),
    "dynamic_degree": (0.0, 1.0),
    "aesthetic_quality": (0.0, 1.0),
    "imaging_quality": (0.0, 1.0),
    "object_class": (0.0, 1.0),
    "multiple_objects": (0.0, 1.0),
    "human_action": (0.0, 1.0),
    "color": (0.0, 1.0),
    "spatial_relationship": (0.0, 1.0),
    "scene": (0.0, 0.8222),
    "appearance_style": (0.0009, 0.2855),
    "temporal_style": (0.0, 0.364),
    "overall_consistency": (0.0, 0.364),
}
"""(Min, Max) per dimension, ``constant.py: NORMALIZE_DIC``."""

DIM_WEIGHT: dict[str, float] = {d: 1.0 for d in DIMENSIONS} | {"dynamic_degree": 0.5}
"""``constant.py: DIM_WEIGHT``."""

QUALITY_WEIGHT = 4.0
SEMANTIC_WEIGHT = 1.0


def canonical_dimension(key: str) -> str:
    """``"Subject Consistency"`` / ``"subject consistency"`` / ``"subject_consistency"`` -> ``"subject_consistency"``."""
    return key.strip().lower().replace(" ", "_").replace("-", "_")


def normalize(dimension: str, score: float) -> float:
    """``(s - min) / (max - min)`` for one dimension (unweighted, unclipped)."""
    lo, hi = NORMALIZE[canonical_dimension(dimension)]
    return (score - lo) / (hi - lo)


def _group(normalized: Mapping[str, float], dims: tuple[str, ...]) -> float | None:
    present = [d for d in dims if d in normalized]
    if not present:
        return None
    return sum(DIM_WEIGHT[d] * normalized[d] for d in present) / sum(DIM_WEIGHT[d] for d in present)


def aggregate(scores: Mapping[str, float], *, strict: bool = False) -> dict:
    """Aggregate raw VBench dimension scores (each in VBench's [0, 1] units) into Quality / Semantic / Total.

    Args:
        scores: dimension -> raw score; keys may use spaces or underscores. Unknown keys are ignored with a
            warning (listed in ``ignored``); NaN / None count as missing.
        strict: raise ``ValueError`` instead of warning when a dimension is missing.

    Returns:
        ``{"quality", "semantic", "total"}`` (float, or None when a whole group is missing), ``"normalized"``
        (dimension -> n_d, unweighted), ``"weights"`` (dimension -> w_d for the dimensions used),
        ``"missing"`` (sorted dimension names), ``"ignored"`` (unknown keys) and ``"complete"`` (all 16 present).
    """
    raw: dict[str, float] = {}
    ignored: list[str] = []
    for key, value in scores.items():
        dim = canonical_dimension(key)
        if dim not in NORMALIZE:
            ignored.append(key)
            continue
        if dim in raw:
            raise ValueError(f"dimension {dim!r} given twice (key {key!r})")
        if value is not None and not math.isnan(float(value)):
            raw[dim] = float(value)
    missing = sorted(d for d in DIMENSIONS if d not in raw)
    if ignored:
        warnings.warn(f"vbench.aggregate: ignoring non-VBench keys {sorted(ignored)}", stacklevel=2)
    if missing:
        msg = (f"vbench.aggregate: {len(missing)} of {len(DIMENSIONS)} dimensions missing {missing}; they are "
               "excluded from their group (not scored as 0), so Quality/Semantic/Total are not comparable with "
               "complete leaderboard entries")
        if strict:
            raise ValueError(msg)
        warnings.warn(msg, stacklevel=2)
    normalized = {d: normalize(d, s) for d, s in raw.items()}
    quality = _group(normalized, QUALITY_DIMENSIONS)
    semantic = _group(normalized, SEMANTIC_DIMENSIONS)
    total = None
    if quality is not None and semantic is not None:
        total = (QUALITY_WEIGHT * quality + SEMANTIC_WEIGHT * semantic) / (QUALITY_WEIGHT + SEMANTIC_WEIGHT)
    return {
        "quality": quality,
        "semantic": semantic,
        "total": total,
        "normalized": normalized,
        "weights": {d: DIM_WEIGHT[d] for d in normalized},
        "missing": missing,
        "ignored": sorted(ignored),
        "complete": not missing,
    }
