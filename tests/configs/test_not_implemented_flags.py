"""The reference flags kept but not implemented (`dmd_config.NOT_IMPLEMENTED`) accept only their default."""

from __future__ import annotations

from pathlib import Path

import pytest

from streamvid.core.config import ConfigError, load_config
from streamvid.distill.dmd_config import NOT_IMPLEMENTED, DMDStageConfig

R1_YAML = Path(__file__).resolve().parents[2] / "configs" / "train" / "shapes_r1.yaml"
DEFAULTS = DMDStageConfig(output_dir="unused")


def _default(key: str):
    section, name = key.split(".")
    return getattr(getattr(DEFAULTS, section), name)


def test_the_seven_reference_flags() -> None:
    assert len(NOT_IMPLEMENTED) == len(set(NOT_IMPLEMENTED)) == 7
    cfg = load_config(R1_YAML, [f"{key}={str(_default(key)).lower()}" for key in NOT_IMPLEMENTED],
                      schema=DMDStageConfig)  # the defaults, written out as a reference config does
    assert (cfg.dmd.fake_guidance_scale, cfg.dmd.same_step_across_blocks, cfg.stream_r1.spatial_reward_method) == (
        0.0, True, "gradient")


@pytest.mark.parametrize("key", NOT_IMPLEMENTED)
def test_any_other_value_is_refused_naming_the_flag(key: str) -> None:
    default = _default(key)
    other = {bool: str(not default).lower(), float: "1.5", str: "other"}[type(default)]
    with pytest.raises(ConfigError, match=rf"{key}: only {default!r} is implemented"):
        load_config(R1_YAML, [f"{key}={other}"], schema=DMDStageConfig)
