"""LongLive's long tuning and switch training in the DMD stage (issue 18 §3): the long rollout is the inference
chunk loop with its switch, gradients reach only the supervised window, the config refuses what cannot work, the
world's switch prompts keep the subject, and the module supervises the window under the prompts it was made with."""

from __future__ import annotations

import pytest
import torch

from streamvid.core.config import ConfigError, load_config
from streamvid.core.sampler import GaussianNoise, PromptSwitch, StreamingSampler
from streamvid.distill.dmd_config import DMDStageConfig
from streamvid.distill.rollout import self_forcing_rollout

CONFIG = "configs/train/shapes_r1.yaml"
CACHE = "sampler.cache"


def _tiny_sampler(local_attn_frames: int | None = 9, sink_frames: int = 3):
    from dataclasses import replace

    from streamvid.core.causal_wan import CausalWanModel
    from streamvid.core.sampler_config import SamplerConfig

    torch.manual_seed(0)
    model = CausalWanModel(patch_size=(1, 2, 2), num_attention_heads=2, attention_head_dim=16, in_channels=4,
                           out_channels=4, text_dim=8, freq_dim=16, ffn_dim=32, num_layers=2)
    cfg = SamplerConfig()
    cfg = replace(cfg, cache=replace(cfg.cache, sink_frames=sink_frames, local_attn_frames=local_attn_frames,
                                     rope_positions="relative"))
    return StreamingSampler.from_config(model, cfg), model


def test_long_rollout_with_a_switch_is_the_inference_stream_with_that_switch():
    """At the last exit step, chunks before the window + a prompt switch at its start + the window equal the
    sampler's stream with the same `PromptSwitch` (re-cache included): one chunk loop, not two."""
    sampler, model = _tiny_sampler()
    text, other = torch.randn(2, 3, 8), torch.randn(2, 3, 8)
    with torch.no_grad():
        ref = torch.cat([c.latents for c in sampler.stream(
            model.encode_text(text), (4, 4, 4), 15, 2, GaussianNoise(7), (),
            [PromptSwitch(3, "other", model.encode_text(other))])], dim=1)
        out = self_forcing_rollout(sampler, text, (4, 4, 4), 6, exit_step=3, noise=GaussianNoise(7), grad=False,
                                   window_start=9, switch_text=other)
        plain = self_forcing_rollout(sampler, text, (4, 4, 4), 6, exit_step=3, noise=GaussianNoise(7),
                                     grad=False, window_start=9)
    assert out.shape == (2, 6, 4, 4, 4)
    assert torch.equal(out, ref[:, 9:])
    assert not torch.allclose(out, plain)  # the switch changed the window


def test_long_rollout_gradient_reaches_the_window_only():
    """The window's outputs carry the graph of their exit steps; the chunks before it are constants, so the
    window's gradient equals the one computed with the history rolled out under no_grad."""
    sampler, model = _tiny_sampler()
    text = torch.randn(1, 3, 8)
    x = self_forcing_rollout(sampler, text, (4, 4, 4), 6, exit_step=1, noise=GaussianNoise(3), window_start=6)
    assert x.shape == (1, 6, 4, 4, 4) and x.requires_grad
    params = [p for p in model.parameters() if p.requires_grad]
    g = torch.autograd.grad(x.sum(), params, allow_unused=True)
    assert sum(float(t.abs().sum()) for t in g if t is not None) > 0
    with torch.no_grad():
        full = self_forcing_rollout(sampler, text, (4, 4, 4), 12, exit_step=1, noise=GaussianNoise(3), grad=False)
    assert torch.allclose(x.detach(), full[:, 6:], atol=1e-6)


def test_long_rollout_rejects_bad_window_and_switch():
    sampler, _ = _tiny_sampler()
    text = torch.randn(1, 3, 8)
    with pytest.raises(ValueError, match="window_start"):
        self_forcing_rollout(sampler, text, (4, 4, 4), 6, 0, GaussianNoise(0), window_start=4)
    with pytest.raises(ValueError, match="switch"):
        self_forcing_rollout(sampler, text, (4, 4, 4), 6, 0, GaussianNoise(0), switch_text=text)


LONG = ["long_tuning.rollout_frames=48", f"{CACHE}.sink_frames=3", f"{CACHE}.local_attn_frames=12",
        f"{CACHE}.rope_positions=relative"]


def test_config_window_starts_and_refusals():
    cfg = load_config(CONFIG, LONG, schema=DMDStageConfig)
    assert cfg.window_starts == list(range(0, 37, 3))
    assert load_config(CONFIG, [], schema=DMDStageConfig).window_starts == [0]
    bad = {
        "must exceed": ["long_tuning.rollout_frames=12"],
        "multiple": ["long_tuning.rollout_frames=20", f"{CACHE}.local_attn_frames=12"],
        "bounded attention window": ["long_tuning.rollout_frames=24"],
        "switch_probability": ["long_tuning.switch_probability=0.5"],
        r"\[0, 1\]": [*LONG, "long_tuning.switch_probability=1.5"],
    }
    for match, overrides in bad.items():
        with pytest.raises(ConfigError, match=match):
            load_config(CONFIG, overrides, schema=DMDStageConfig)


def test_world_switch_targets_keep_the_subject_and_change_the_direction():
    from streamvid.core.world import WorldConfig
    from streamvid.core.world.prompts import parse_prompt
    from streamvid.distill.prompts import WorldPrompts

    source = WorldPrompts(WorldConfig())
    prompts = source.draw(torch.Generator().manual_seed(0), 16)
    targets = source.switch_targets(torch.Generator().manual_seed(1), prompts)
    assert targets == source.switch_targets(torch.Generator().manual_seed(1), prompts)  # reads only the generator
    for p, q in zip(prompts, targets, strict=True):
        a, b = parse_prompt(p), parse_prompt(q)
        assert (a.colour, a.shape) == (b.colour, b.shape)
        assert len(b.segments) == 1 and b.segments[0] != a.segments[-1]
    assert len({parse_prompt(q).segments for q in targets}) > 1


def test_file_switch_targets_draw_another_line(tmp_path):
    from streamvid.distill.prompts import FilePrompts

    path = tmp_path / "p.txt"
    path.write_text("a cat\na dog\na bird\n")
    source = FilePrompts(path)
    targets = source.switch_targets(torch.Generator().manual_seed(0), ["a cat"] * 20)
    assert "a cat" not in targets and set(targets) <= {"a dog", "a bird"}


@pytest.fixture(scope="module")
def long_module():
    from streamvid.distill.r1_stage import build_dmd_module

    cfg = load_config(CONFIG, ["trainer.batch_size=2", "stream_r1.reward_weighting=false",
                               "stream_r1.spatial_reward=false", *LONG, "long_tuning.switch_probability=1.0"],
                      schema=DMDStageConfig)
    torch.manual_seed(0)
    return build_dmd_module(cfg)


def test_module_window_starts_cover_the_rollout_and_switches_change_the_prompts(long_module):
    from streamvid.distill.dmd_module import _gen

    prompts = ["a red circle moving left", "one small blue square gliding up"]
    seen, switched = set(), 0
    for seed in range(12):
        g = _gen(seed)
        starts = long_module.cfg.window_starts
        start = starts[int(torch.randint(len(starts), (1,), generator=_gen(seed)))]  # the module's first draw
        x, window_prompts = long_module._rollout(prompts, 3, seed, False, g)
        assert x.shape[1] == 12
        seen.add(start)
        if start > 0:  # switch_probability 1: every rollout with history switches
            assert window_prompts != prompts
            switched += 1
        else:
            assert window_prompts == prompts
    assert len(seen) > 3 and switched > 0


def test_module_generator_loss_runs_the_long_window_with_gradient(long_module):
    from streamvid.distill.dmd_module import _gen

    long_module.nets.zero_grad(set_to_none=True)
    loss, logs, _ = long_module.generator_loss(["a red circle moving left"] * 2, _gen(0), 1, 0, _gen(5))
    loss.backward()
    grads = [p.grad for p in long_module.student.parameters() if p.grad is not None]
    assert torch.isfinite(loss) and grads and sum(float(g.abs().sum()) for g in grads) > 0
    with pytest.raises(ValueError, match="long_gen"):
        long_module._rollout(["a red circle moving left"], 1, 0, False)


def test_segment_reading_of_a_rendered_two_segment_stream():
    """The bench's per-segment reading: a clean rendered 2-segment video read against its two single-direction
    prompts scores the right direction and one whole object in each segment; a frozen second half does not move."""
    from streamvid.core.world import WorldConfig, render, sample_attributes
    from streamvid.core.world.prompts import parse_prompt
    from streamvid.eval.long_streams import segment_plans, segment_scores, switch_integrity

    cfg = WorldConfig(num_frames=24, num_segments=2)
    attrs, prompt = sample_attributes(cfg, "train", 3)
    spec = parse_prompt(prompt)
    video = render(attrs, cfg)
    prompts = [f"a {spec.colour} {spec.shape} moving {d}" for d in spec.segments]
    scores = segment_scores(video, prompts, 12)
    assert [s["direction"] for s in scores] == [1.0, 1.0]
    assert all(s["colour"] == 1.0 and s["integrity"] == 1.0 for s in scores)
    assert switch_integrity(video, prompts, 12) == 1.0
    frozen = torch.cat([video[:12], video[11:12].expand(12, -1, -1, -1)])
    assert segment_scores(frozen, prompts, 12)[1]["motion"] < scores[1]["motion"]
    plans = segment_plans([("red", "circle"), ("blue", "square")], 3, 4)
    assert [p[0].split()[1] for p in plans] == ["red", "blue", "red"]
    for plan in plans:  # out and back along one axis, then the other
        dirs = [parse_prompt(p).segments[0] for p in plan]
        assert dirs[0] != dirs[1] and {dirs[0], dirs[1]}.isdisjoint({dirs[2], dirs[3]})
