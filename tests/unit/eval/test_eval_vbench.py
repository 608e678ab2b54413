"""VBench aggregation: golden constants, a hand-computed Total, missing dimensions never scored as 0."""

import math
import warnings

import pytest

from streamvid.eval import vbench

# Copied as literals from anchors §3.2 (= Vchitect/VBench scripts/constant.py). Do not import them.
GOLDEN_MIN_MAX = {
    "subject_consistency": (0.1462, 1.0),
    "background_consistency": (0.2615, 1.0),
    "temporal_flickering": (0.6293, 1.0),
    "motion_smoothness": (0.706, 0.9975),
    "scene": (0.0, 0.8222),
    "appearance_style": (0.0009, 0.2855),
    "temporal_style": (0.0, 0.364),
    "overall_consistency": (0.0, 0.364),
}
GOLDEN_QUALITY = {"subject_consistency", "background_consistency", "temporal_flickering", "motion_smoothness",
                  "aesthetic_quality", "imaging_quality", "dynamic_degree"}
GOLDEN_SEMANTIC = {"object_class", "multiple_objects", "human_action", "color", "spatial_relationship", "scene",
                   "appearance_style", "temporal_style", "overall_consistency"}

SCORES = {
    "subject_consistency": 0.95, "background_consistency": 0.96, "temporal_flickering": 0.98,
    "motion_smoothness": 0.985, "dynamic_degree": 0.6, "aesthetic_quality": 0.65, "imaging_quality": 0.70,
    "object_class": 0.90, "multiple_objects": 0.70, "human_action": 0.95, "color": 0.85,
    "spatial_relationship": 0.75, "scene": 0.50, "appearance_style": 0.22, "temporal_style": 0.25,
    "overall_consistency": 0.27,
}


def test_golden_constants():
    assert set(vbench.QUALITY_DIMENSIONS) == GOLDEN_QUALITY
    assert set(vbench.SEMANTIC_DIMENSIONS) == GOLDEN_SEMANTIC
    assert len(vbench.DIMENSIONS) == 16
    for dim in vbench.DIMENSIONS:
        assert vbench.NORMALIZE[dim] == GOLDEN_MIN_MAX.get(dim, (0.0, 1.0)), dim
        assert vbench.DIM_WEIGHT[dim] == (0.5 if dim == "dynamic_degree" else 1.0), dim
    assert sum(vbench.DIM_WEIGHT[d] for d in GOLDEN_QUALITY) == 6.5
    assert sum(vbench.DIM_WEIGHT[d] for d in GOLDEN_SEMANTIC) == 9
    assert (vbench.QUALITY_WEIGHT, vbench.SEMANTIC_WEIGHT) == (4, 1)


def test_full_dict_matches_hand_computed_total():
    quality = ((0.95 - 0.1462) / (1 - 0.1462) + (0.96 - 0.2615) / (1 - 0.2615) + (0.98 - 0.6293) / (1 - 0.6293)
               + (0.985 - 0.706) / (0.9975 - 0.706) + 0.65 + 0.70 + 0.5 * 0.6) / 6.5
    semantic = (0.90 + 0.70 + 0.95 + 0.85 + 0.75 + 0.50 / 0.8222 + (0.22 - 0.0009) / (0.2855 - 0.0009)
                + 0.25 / 0.364 + 0.27 / 0.364) / 9
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a complete dict must not warn
        out = vbench.aggregate(SCORES)
    assert out["quality"] == pytest.approx(quality, abs=1e-12)
    assert out["semantic"] == pytest.approx(semantic, abs=1e-12)
    assert out["total"] == pytest.approx((4 * quality + semantic) / 5, abs=1e-12)
    assert out["total"] == pytest.approx(0.8241826783355846, abs=1e-12)
    assert out["complete"] and out["missing"] == [] and out["ignored"] == []
    assert out["normalized"]["scene"] == pytest.approx(0.5 / 0.8222)


def test_extremes_and_key_spelling():
    at_max = {d.replace("_", " "): hi for d, (_, hi) in vbench.NORMALIZE.items()}  # VBench's spaced keys
    out = vbench.aggregate(at_max)
    assert (out["quality"], out["semantic"], out["total"]) == pytest.approx((1.0, 1.0, 1.0))
    at_min = {d: lo for d, (lo, _) in vbench.NORMALIZE.items()}
    assert vbench.aggregate(at_min)["total"] == pytest.approx(0.0, abs=1e-12)


def test_missing_dimension_is_excluded_not_zero():
    partial = {k: v for k, v in SCORES.items() if k != "subject_consistency"}
    with pytest.warns(UserWarning, match="subject_consistency"):
        out = vbench.aggregate(partial)
    assert out["missing"] == ["subject_consistency"] and not out["complete"]
    expected_q = ((0.96 - 0.2615) / (1 - 0.2615) + (0.98 - 0.6293) / (1 - 0.6293)
                  + (0.985 - 0.706) / (0.9975 - 0.706) + 0.65 + 0.70 + 0.5 * 0.6) / 5.5
    assert out["quality"] == pytest.approx(expected_q, abs=1e-12)
    # VBench's cal_final_score.py would have used raw 0 -> (0 - 0.1462) / 0.8538 = -0.171
    zero_filled = vbench.aggregate(partial | {"subject_consistency": 0.0})
    assert zero_filled["quality"] < out["quality"] - 0.1
    with pytest.warns(UserWarning, match="missing"):
        nan = vbench.aggregate(SCORES | {"scene": math.nan})
    assert nan["missing"] == ["scene"] and "scene" not in nan["normalized"]


def test_missing_group_gives_no_total_and_strict_raises():
    quality_only = {d: SCORES[d] for d in vbench.QUALITY_DIMENSIONS}
    with pytest.warns(UserWarning):
        out = vbench.aggregate(quality_only)
    assert out["semantic"] is None and out["total"] is None and out["quality"] is not None
    assert out["missing"] == sorted(vbench.SEMANTIC_DIMENSIONS)
    with pytest.raises(ValueError, match="missing"):
        vbench.aggregate(quality_only, strict=True)


def test_unknown_keys_are_ignored_with_warning():
    with pytest.warns(UserWarning, match="warping_error"):
        out = vbench.aggregate(SCORES | {"warping_error": 0.01})
    assert out["ignored"] == ["warping_error"] and out["complete"]
    with pytest.raises(ValueError, match="twice"):
        vbench.aggregate({"scene": 0.5, "Scene": 0.4})
