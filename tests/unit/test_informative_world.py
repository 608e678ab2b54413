"""The informative-world pieces: per-chunk background readings, generated sets, ranking metrics and the ranking
term of the reward stage, and the DMD stage's kept snapshots."""

from __future__ import annotations

import pytest
import torch
from reward_helpers import tiny_generated_set

from streamvid.core.config import ConfigError, load_config
from streamvid.core.world import WorldConfig, chunk_background, render, sample_attributes
from streamvid.distill.dmd_config import DMDStageConfig
from streamvid.distill.shapes_generated import GeneratorSpec, load_generated_set, save_generated_set
from streamvid.distill.shapes_reward_config import ShapesRewardStageConfig, check_generated_sets
from streamvid.distill.shapes_reward_metrics import ranking_metrics
from streamvid.distill.shapes_reward_stage import GeneratedBatches, ranking_loss


def _video(i: int = 0) -> torch.Tensor:
    attrs, _ = sample_attributes(WorldConfig(), "val", i)
    return render(attrs, WorldConfig())


def test_chunk_background_reads_a_noisier_later_chunk_and_a_lighter_first_one():
    clean = _video()
    assert chunk_background(clean, 3).noise.tolist() == [0.0] * 4
    noisy = clean.clone()
    noisy[3:] = (noisy[3:] + 0.05 * torch.randn(noisy[3:].shape, generator=torch.Generator().manual_seed(0)))
    noisy[:3] = noisy[:3] + 0.1 * (noisy[:3] < 0.2)  # a lighter background in the first chunk only
    read = chunk_background(noisy.clamp(0, 1), 3)
    assert read.noise[0] < 0.01 and all(0.04 < float(n) < 0.06 for n in read.noise[1:])  # MAD sigma ~ 0.05
    assert read.noise_ratio() > 4
    assert read.level_shift() == pytest.approx(0.1 * 3**0.5, abs=0.02)
    with pytest.raises(ValueError, match="multiple of 3"):
        chunk_background(clean[:10], 3)


def test_generator_spec_parses_and_names_what_it_makes():
    spec = GeneratorSpec.parse("teacher:cfg2:s8")
    assert (spec.kind, spec.path, spec.cfg, spec.steps, spec.name) == ("teacher", "assets/shapes/teacher", 2.0, 8,
                                                                      "teacher:cfg2:s8")
    assert GeneratorSpec.parse("student:assets/shapes/student").name == "student:assets/shapes/student"
    for bad in ("teacher:2:8", "student:", "critic:x", "teacher:cfgx:s4"):
        with pytest.raises(ValueError, match="expected teacher"):
            GeneratorSpec.parse(bad)


def test_generated_set_round_trips_and_selects(tmp_path):
    data = tiny_generated_set(2, 3)
    back = load_generated_set(save_generated_set(data, tmp_path / "set.safetensors"))
    assert back.prompts == data.prompts and back.generators == data.generators
    for key in ("videos", "groups", "axes", "chunk_axes", "colour", "shape", "direction"):
        assert torch.equal(getattr(back, key), getattr(data, key))
    sub = data.select(data.groups == 1)
    assert len(sub) == 3 and sub.prompts == data.prompts[3:]
    # visual falls with the added noise inside each group
    assert all(data.axes[3 * g, 0] > data.axes[3 * g + 2, 0] for g in range(2))


def test_ranking_metrics_of_the_oracle_itself_and_of_its_reverse():
    data = tiny_generated_set()
    perfect = ranking_metrics(data.axes, data.axes, data.groups)["visual"]
    assert perfect["spearman_within"] == pytest.approx(1.0) and perfect["best_of_n"]["headroom"] == pytest.approx(1.0)
    reverse = ranking_metrics(-data.axes, data.axes, data.groups)["visual"]
    assert reverse["spearman_within"] == pytest.approx(-1.0)
    assert reverse["best_of_n"]["pick"] < reverse["best_of_n"]["mean"] < perfect["best_of_n"]["pick"]
    assert len(perfect["best_of_n"]["gain"]) == 3


def test_ranking_loss_is_bradley_terry_over_pairs_of_one_group():
    truth = torch.tensor([[0.9, 0.5, 0.5], [0.1, 0.5, 0.5], [0.5, 0.5, 0.5]])
    groups = torch.tensor([0, 0, 1])
    logits = torch.tensor([[2.0, 0.0, 0.0], [0.0, 0.0, 0.0], [-9.0, 0.0, 0.0]])
    # one qualifying pair: video 0 better than 1 on visual; video 2 is in another group
    assert ranking_loss(logits, truth, groups, 0.02) == pytest.approx(float(torch.nn.functional.softplus(
        torch.tensor(-2.0))))
    assert ranking_loss(logits, truth, torch.tensor([0, 1, 2]), 0.02) == 0.0


def test_generated_batches_draw_groups_and_chunks(tmp_path):
    path = save_generated_set(tiny_generated_set(3, 4), tmp_path / "set.safetensors")
    cfg = ShapesRewardStageConfig(generated=[str(path)], generated_batch=4, group_draw=2, p_chunk=1.0)
    videos, prompts, targets, groups = GeneratedBatches(cfg).draw()
    assert videos.shape[:2] == (4, 3) and targets["direction"].shape == (4, 3)
    assert groups[0] == groups[1] and groups[2] == groups[3] and prompts[0] == prompts[1]
    cfg.p_chunk = 0.0
    videos, _, targets, _ = GeneratedBatches(cfg).draw()
    assert videos.shape[1] == 12 and targets["axes"].shape == (4, 3)
    with pytest.raises(ConfigError, match="generated: generated set not found"):
        check_generated_sets(ShapesRewardStageConfig(generated=[str(path), str(tmp_path / "missing.safetensors")]))


def test_snapshot_every_is_checked():
    cfg = load_config("experiments/shapes_student/dmd_long.yaml", schema=DMDStageConfig)
    assert cfg.snapshot_every == 250 and not cfg.stream_r1.uses_reward
    with pytest.raises(ConfigError, match="snapshot_every"):
        load_config("experiments/shapes_student/dmd_long.yaml", schema=DMDStageConfig, overrides=["snapshot_every=-1"])
