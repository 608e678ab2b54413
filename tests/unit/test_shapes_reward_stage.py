"""``streamvid-train shapes-reward``: examples and oracle targets, the training loop, the stage and its config."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch
from reward_helpers import TINY_NET, tiny_generated_set

from streamvid.core.config import load_config
from streamvid.core.rewards import build_reward
from streamvid.core.rewards.shapes_learned import DEFAULT_CHECKPOINT
from streamvid.core.world import score_batch
from streamvid.distill.cli import main as train_main
from streamvid.distill.shapes_generated import save_generated_set
from streamvid.distill.shapes_reward_config import ShapesRewardStageConfig, training_settings
from streamvid.distill.shapes_reward_data import make_examples
from streamvid.distill.shapes_reward_metrics import spearman
from streamvid.distill.shapes_reward_stage import fit_shapes_reward

REPO = Path(__file__).resolve().parents[2]
YAML = REPO / "configs" / "train" / "shapes_reward.yaml"
AXES = ("visual", "motion", "text")
TINY_RUN = ["steps=4", "batch_size=4", "pool_size=8", "fresh_per_step=2", "eval_val=4", "eval_heldout=2",
            "eval_degenerate=2", "progress_bar=false", "net.channels=[4,8,8,8]", "net.dim=16", "net.grid=2"]  # fmt: skip


def test_spearman_handles_ties_and_order():
    x = torch.tensor([1.0, 2.0, 3.0, 4.0])
    assert spearman(x, x * 10) == pytest.approx(1.0)
    assert spearman(x, -x) == pytest.approx(-1.0)
    # scipy.stats.spearmanr([1, 2, 2, 3], [1, 3, 2, 4]) = 0.9486832980505138 (average ranks for ties)
    assert spearman(torch.tensor([1.0, 2, 2, 3]), torch.tensor([1.0, 3, 2, 4])) == pytest.approx(0.9486833)


def test_examples_are_deterministic_and_targets_come_from_the_oracle():
    cfg = ShapesRewardStageConfig()
    v1, p1, t1 = make_examples("train", range(6), 3, cfg)
    v2, p2, t2 = make_examples("train", range(6), 3, cfg)
    assert torch.equal(v1, v2) and p1 == p2 and all(torch.equal(t1[k], t2[k]) for k in t1)
    oracle = score_batch(v1, p1)
    assert torch.allclose(t1["axes"], torch.stack([oracle[a] for a in AXES], 1))


def test_a_few_training_steps_lower_the_loss_deterministically():
    cfg = ShapesRewardStageConfig(
        progress_bar=False,
        steps=20,
        batch_size=8,
        pool_size=8,
        fresh_per_step=0,
        lr=3e-3,
        eval_val=0,
        eval_heldout=0,
        net=TINY_NET,
    )
    net, metrics = fit_shapes_reward(cfg)
    loss = metrics["loss"]
    assert len(loss) == 20 and not metrics["stopped_early"]
    assert sum(loss[-5:]) / 5 < 0.8 * loss[0], loss
    again, metrics_again = fit_shapes_reward(cfg)
    assert metrics_again["loss"] == loss
    assert all(torch.equal(a, b) for a, b in zip(net.state_dict().values(), again.state_dict().values()))


def test_shipped_yaml_holds_the_settings_the_shipped_checkpoint_was_trained_with():
    """``make shapes-reward`` (this YAML) reproduces the shipped checkpoint: same training settings and sizes."""
    cfg = load_config(YAML, schema=ShapesRewardStageConfig)
    shipped = json.loads((DEFAULT_CHECKPOINT / "reward.json").read_text())
    settings, defaults = training_settings(cfg), training_settings(ShapesRewardStageConfig())
    assert {k: settings[k] for k in shipped["train"]} == shipped["train"]
    # fields added after the shipped run hold their defaults, the recipe before they existed
    assert {k: v for k, v in settings.items() if k not in shipped["train"]} == \
        {k: v for k, v in defaults.items() if k not in shipped["train"]}
    assert list(cfg.net.channels) == shipped["net"]["channels"]
    assert (cfg.net.dim, cfg.net.grid) == (shipped["net"]["dim"], shipped["net"]["grid"])
    assert Path(cfg.output_dir).resolve() == DEFAULT_CHECKPOINT


def test_stage_writes_a_checkpoint_the_registry_loads(tmp_path, capsys):
    out = tmp_path / "reward"
    generated = save_generated_set(tiny_generated_set(2, 4), tmp_path / "generated.safetensors")
    args = ["shapes-reward", "--config", str(YAML), "--set", f"output_dir={out}", "--set", f"generated=[{generated}]",
            "--set", f"eval_generated={generated}", "--set", "generated_batch=4", "--set", "group_draw=2"]
    for item in TINY_RUN:
        args += ["--set", item]
    assert train_main(args) == 0
    assert {p.name for p in out.iterdir()} == {"reward.safetensors", "reward.json", "metrics.json"}
    meta, metrics = json.loads((out / "reward.json").read_text()), json.loads((out / "metrics.json").read_text())
    shipped = json.loads((DEFAULT_CHECKPOINT / "reward.json").read_text())
    assert list(meta["train"])[: len(shipped["train"])] == list(shipped["train"]) and meta["train"]["steps"] == 4
    assert metrics["steps_done"] == 4 and len(metrics["loss_per_25_steps"]) == 1
    assert set(metrics["spearman"]) == set(AXES)
    assert metrics["generated_videos"] == 8 and metrics["generated_ranking"]["motion"]["groups_ranked"] == 2
    reward = build_reward("shapes_learned", path=str(out))
    assert reward.net.config == TINY_NET
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["steps_done"] == 4


@pytest.mark.parametrize(
    ("override", "message"),
    [("stepz=3", "unknown key 'stepz'"), ("p_clean=2", "'p_clean' must lie in \\[0, 1\\]"),
     ("fresh_per_step=2000", "'fresh_per_step' must lie in"), ('output_dir=""', "'output_dir' is empty")],
)  # fmt: skip
def test_bad_config_is_one_error_line_and_exit_2(tmp_path, capsys, override, message):
    code = train_main(["shapes-reward", "--config", str(YAML), "--set", f"output_dir={tmp_path}/r",
                       "--set", override])  # fmt: skip
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and err[0].startswith("streamvid-train: error: "), err
    assert re.search(message, err[0]), err[0]
    assert not (tmp_path / "r").exists()
