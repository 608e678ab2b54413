"""`pipe(prompt, search=SearchStrategy(...))`: the search reached from the pipeline is `chunk_search` /
`best_of_n` itself (same video, same tree, same ledger); `streamvid-infer-t1` refuses a prompt its rewards cannot
score in one line, exit code 2, before building anything."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import console_scripts
import pytest
import torch

from streamvid.core import StreamVidPipeline
from streamvid.core.rewards import build_reward
from streamvid.tts import SearchConfig, SearchStrategy, best_of_n, chunk_search
from streamvid.tts.tree_figure import chosen_path, tree_figure

REPO = Path(__file__).resolve().parents[2]
PROMPT = "a red circle moving left, then up"


@pytest.fixture(scope="module")
def pipe() -> StreamVidPipeline:
    return StreamVidPipeline.from_pretrained(REPO / "assets/shapes/stream_r1_student")


@pytest.fixture(scope="module")
def reward():
    return build_reward("shapes_analytic")


def test_stream_t1_from_the_pipeline_is_chunk_search(pipe, reward):
    cfg = SearchConfig(seed=7)
    out = pipe(PROMPT, 9, search=SearchStrategy(reward, config=cfg), output_type="pt")
    direct = chunk_search(pipe.sampler, pipe.text_states([PROMPT]), PROMPT, pipe.latent_shape, 9, reward, pipe.codec,
                          cfg)
    assert out.frames.shape == (1, 9, 3, 32, 32)
    assert torch.equal(out.frames, pipe.codec.decode(direct.best.video_latents()).clamp(0, 1))
    assert out.search.tree_dicts() == direct.tree_dicts()
    assert out.search.ledger.nfe == direct.ledger.nfe
    assert [len(level) for level in out.search.tree] == [4, 4, 4]  # chunk 0: children x top_k, then 2 beams x 2


def test_best_of_n_and_prompt_switches_from_the_pipeline(pipe, reward):
    switches = {2: "a red circle moving down"}
    calls = []
    strategy = SearchStrategy(reward, strategy="best_of_n", n=2, config=SearchConfig(seed=3), on_chunk=calls.append)
    out = pipe("a red circle moving left", 9, search=strategy, prompt_switches=switches)
    assert out.frames.shape == (1, 9, 32, 32, 3) and len(calls) == strategy.progress_total(3) == 6
    from streamvid.core.sampler import PromptSwitch

    direct = best_of_n(pipe.sampler, pipe.text_states(["a red circle moving left"]), "a red circle moving left",
                       pipe.latent_shape, 9, reward, pipe.codec, n=2, seed=3,
                       prompt_switches=[PromptSwitch(2, switches[2], pipe.text_states([switches[2]]))])
    assert out.search.best.final == pytest.approx(direct.best.final, abs=1e-6)
    forwards = out.search.ledger.forwards
    assert forwards == direct.ledger.forwards
    assert forwards["denoise"] + forwards["commit"] == 2 * 3 * (len(pipe.sampler.schedule) + 1)  # n plain samples
    assert forwards["recache"] > 0  # each video re-encoded its history under the new prompt
    with pytest.raises(ValueError, match="own seed"):
        pipe(PROMPT, 9, search=strategy, seed=1)


def test_the_tree_figure_traces_the_chosen_video_and_its_memory_routes(reward):
    """With the `streamvid-infer-t1` cache (sink 3, window 6 frames) chunks leave the window and take routes; the
    traced path's fused scores are the chosen beam's own; one edge per candidate after chunk 0, the path's thick."""
    windowed = StreamVidPipeline.from_pretrained(REPO / "assets/shapes/stream_r1_student", overrides=[
        "sampler.cache.sink_frames=3", "sampler.cache.local_attn_frames=9", "sampler.cache.max_sink_frames=6"])
    result = windowed(PROMPT, 12, search=SearchStrategy(reward, config=SearchConfig(seed=11))).search
    path = chosen_path(result)
    assert len(path) == len(result.tree) == 4
    assert [result.tree[k][i].fused for k, i in enumerate(path)] == pytest.approx(result.best.fused)
    assert all(result.tree[k][i].kept for k, i in enumerate(path))
    assert result.tree[-1][path[-1]].seed == result.best.seed
    assert result.best.routes  # chunk 1 left the window at chunk 3
    fig = tree_figure(result, 3)
    ax = fig.axes[0]
    edges = [line for line in ax.lines if len(line.get_xdata()) == 2]
    assert len(edges) == sum(len(level) for level in result.tree[1:])
    assert sum(line.get_linewidth() > 2 for line in edges) == len(result.tree) - 1
    labels = {t.get_text() for t in ax.texts}
    assert set(result.best.routes.values()) <= labels


@pytest.mark.parametrize("prompt, needle", [
    ("a cat playing the piano", "words outside the shapes vocabulary: cat, playing, piano"),
    ("a red circle moving left and a blue square moving right, then up", "exactly one colour"),
])
def test_infer_t1_refuses_prompts_its_rewards_cannot_score(tmp_path, prompt, needle):
    out = tmp_path / "x.mp4"
    proc = subprocess.run([sys.executable, "-m", "streamvid.tts.cli", "--config", str(REPO / "configs/infer/shapes_t1.yaml"),
                           "--prompt", prompt, "--out", str(out)], capture_output=True, text=True, timeout=300,
                          env=console_scripts.ENV, cwd=REPO)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("streamvid-infer-t1: error: prompt "), lines
    assert needle in lines[0] and "reward shapes_learned" in lines[0]
    assert not any(tmp_path.iterdir())
