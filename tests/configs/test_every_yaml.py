"""Every shipped YAML under configs/ and experiments/ composes and validates against its schema.

To register a folder (or one file, where a folder holds several kinds of config), add one line to `SCHEMAS`
(the longest matching entry wins). A YAML in a folder without
an entry fails, so no config ships unchecked. Map a folder to `None` for YAML that is not a streamvid config
(it is then only parsed).
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from streamvid.core.cli.generate import GenerateConfig
from streamvid.core.config import load_config, save_resolved_config
from streamvid.core.generator_config import GeneratorConfig
from streamvid.core.model_config import WanModelConfig
from streamvid.core.sampler_config import SamplerConfig
from streamvid.distill.dmd_config import DMDStageConfig
from streamvid.distill.shapes_reward_config import ShapesRewardStageConfig
from streamvid.distill.stage_config import OdePairsStageConfig, StudentStageConfig, TeacherStageConfig
from streamvid.eval.runner_config import EvalConfig
from streamvid.studio.config import StudioConfig
from streamvid.tts.batch import InferT1BatchConfig
from streamvid.tts.cli import InferT1Config

REPO = Path(__file__).resolve().parents[2]
ROOTS = ("configs", "experiments")

SCHEMAS: dict[str, type | None] = {
    "configs/model": WanModelConfig,
    "configs/sampler": SamplerConfig,
    "configs/generate": GenerateConfig,
    "configs/generator": GeneratorConfig,
    "configs/eval": EvalConfig,
    "configs/train/shapes_teacher.yaml": TeacherStageConfig,
    "configs/train/shapes_ode_pairs.yaml": OdePairsStageConfig,
    "configs/train/shapes_student.yaml": StudentStageConfig,
    "configs/train/shapes_r1.yaml": DMDStageConfig,
    "configs/train/shapes_reward.yaml": ShapesRewardStageConfig,
    "configs/train/shapes_reward_rendered.yaml": ShapesRewardStageConfig,
    "experiments": DMDStageConfig,
    "experiments/stream_t1": InferT1Config,
    "configs/infer": InferT1Config,
    "configs/infer/vbench_stream_t1.yaml": InferT1BatchConfig,
    "configs/studio": StudioConfig,
}


def shipped_yaml_files() -> list[Path]:
    return sorted(p for root in ROOTS for ext in ("*.yaml", "*.yml") for p in (REPO / root).rglob(ext))


def folder_entry(rel: str) -> str | None:
    """The longest `SCHEMAS` entry that is the repository-relative path `rel` or a folder containing it."""
    matches = [folder for folder in SCHEMAS if rel == folder or rel.startswith(folder.rstrip("/") + "/")]
    return max(matches, key=len, default=None)


@pytest.mark.parametrize("path", shipped_yaml_files(), ids=lambda p: p.relative_to(REPO).as_posix())
def test_yaml_composes_against_its_schema(path: Path, tmp_path: Path) -> None:
    rel = path.relative_to(REPO).as_posix()
    folder = folder_entry(rel)
    if folder is None:
        pytest.fail(
            f"{rel} is in a folder with no registered schema: add '{Path(rel).parent.as_posix()}': <Schema> "
            f"to SCHEMAS in {Path(__file__).relative_to(REPO)}"
        )
    schema = SCHEMAS[folder]
    if schema is None:
        assert isinstance(yaml.safe_load(path.read_text()), (dict, list, type(None)))
        return
    cfg = load_config(path, schema=schema)
    # the top-level values the file itself writes are the loaded ones (interpolations and lists aside) ...
    for key, value in yaml.safe_load(path.read_text()).items():
        actual = getattr(cfg, key, None)
        if key == "base" or isinstance(value, (dict, list)) or (isinstance(value, str) and
                                                              (not isinstance(actual, str) or "${" in value)):
            continue
        assert actual == value, f"{key}: the file sets {value!r}, the config holds {actual!r}"
    # ... and every value survives save -> load
    assert load_config(save_resolved_config(cfg, tmp_path), schema=schema) == cfg


def test_folder_lookup_prefers_the_longest_registered_folder(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(SCHEMAS, "configs/model/special", None)
    assert folder_entry("configs/model/tiny.yaml") == "configs/model"
    assert folder_entry("configs/model/special/x.yaml") == "configs/model/special"
    assert folder_entry("configs/modelling/x.yaml") is None
    assert folder_entry("notebooks/unregistered/x.yaml") is None
