"""`StreamVidPipeline`: the shipped students load in one line; the video equals what `streamvid-generate` made
before the pipeline existed (hashes recorded at e35ad35) and what it writes now; `stream` yields the same chunks
with prompt switches run by the sampler's own session steps; save / load round trip; output types."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import console_scripts
import numpy as np
import pytest
import torch

from streamvid.core import StreamVidPipeline
from streamvid.core.cli.generate import GenerateConfig
from streamvid.core.config import load_config
from streamvid.core.generator import build_generator, prompt_vocabulary
from streamvid.core.sampler import GaussianNoise
from streamvid.core.video_io import read_video, write_video

REPO = Path(__file__).resolve().parents[2]
PROMPT = "a red circle moving left"
# sha256 of the uint8 frames [12, 3, 32, 32] that `streamvid-generate`'s code path (build_generator +
# VideoGenerator.stream_video) made at commit e35ad35, before the pipeline: (config, seed) -> hash.
REFERENCE = {
    ("configs/generate/shapes_student.yaml", 0): "bbb699f1b5d6821a7e4362e4d6392c322e821f076fbedb06a8b8cc25c684d3b9",
    ("configs/generate/shapes_student.yaml", 3): "3a8c47fd7b19eadf368e39202b1ab71abbb329f2d9cb92b77b4aa56310c54fcc",
    ("configs/generate/tiny_random.yaml", 0): "df743768e6317e9b6fa2a4bb24d6f2226af0bb340e6da45ace4648df7f400a2f",
}


def _hash(video: torch.Tensor) -> str:
    u8 = (video * 255).round().to(torch.uint8).contiguous()
    return hashlib.sha256(u8.numpy().tobytes()).hexdigest()


@pytest.fixture(scope="module")
def student() -> StreamVidPipeline:
    pipe = StreamVidPipeline.from_pretrained(REPO / "assets/shapes/student")
    pipe.set_progress_bar_config(disable=True)
    return pipe


@pytest.mark.parametrize("name", ["student", "dmd_student", "stream_r1_student", "dmd_long_student"])
def test_shipped_students_load_in_one_line_with_their_own_architecture(name):
    folder = REPO / "assets/shapes" / name
    pipe = StreamVidPipeline.from_pretrained(folder)
    arch = json.loads((folder / "config.json").read_text())
    assert pipe.transformer.config.num_layers == arch["num_layers"]
    assert list(pipe.transformer.config.learned_positions) == arch["learned_positions"]
    assert sorted(pipe.components) == ["codec", "text_encoder", "transformer"]
    index = json.loads((folder / "model_index.json").read_text())
    assert [index[k] for k in ("transformer", "codec", "text_encoder")] == \
        [list(pipe.config[k]) for k in ("transformer", "codec", "text_encoder")]  # what diffusers registered
    assert pipe.latent_shape == (12, 16, 16) and pipe.sampler.chunk_frames == 3
    assert not pipe.transformer.training


@pytest.mark.parametrize("seed", [0, 3])
def test_shipped_student_equals_the_recorded_cli_video(student, seed):
    frames = student(PROMPT, 12, generator=torch.Generator().manual_seed(seed), output_type="pt").frames
    assert frames.shape == (1, 12, 3, 32, 32)
    assert _hash(frames[0]) == REFERENCE[("configs/generate/shapes_student.yaml", seed)]


def test_config_built_pipeline_equals_the_recorded_cli_video():
    cfg = load_config(REPO / "configs/generate/tiny_random.yaml", schema=GenerateConfig)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.init_seed)
        pipe = build_generator(cfg.generator, vocabulary=prompt_vocabulary([PROMPT]))
    assert isinstance(pipe, StreamVidPipeline)
    frames = torch.cat(list(pipe.stream(PROMPT, 12, seed=0)), dim=1)
    assert _hash(frames[0]) == REFERENCE[("configs/generate/tiny_random.yaml", 0)]


def test_generate_script_writes_the_pipeline_video(student, tmp_path):
    """`python -m streamvid.core.cli.generate` (the console script's module) writes exactly the video the pipeline
    makes for the same seed (both through the same mp4 encoder, read back)."""
    out = tmp_path / "cli.mp4"
    proc = subprocess.run([sys.executable, "-m", "streamvid.core.cli.generate", "--config",
                           str(REPO / "configs/generate/shapes_student.yaml"), "--prompt", PROMPT, "--out", str(out),
                           "--seed", "3"], capture_output=True, text=True, timeout=300, env=console_scripts.ENV)
    assert proc.returncode == 0, proc.stderr
    assert "warning" not in proc.stderr
    frames = student(PROMPT, 12, seed=3, output_type="pt").frames[0]
    ref = write_video(tmp_path / "pipe.mp4", frames, fps=8)
    assert torch.equal(read_video(out)[0], read_video(ref)[0])


def test_output_types_agree(student):
    pt = student(PROMPT, 6, seed=1, output_type="pt").frames
    np_frames = student(PROMPT, 6, seed=1).frames
    pil = student(PROMPT, 6, seed=1, output_type="pil").frames
    assert isinstance(np_frames, np.ndarray) and np_frames.shape == (1, 6, 32, 32, 3)
    assert np.array_equal(np_frames, pt.permute(0, 1, 3, 4, 2).numpy())
    assert len(pil) == 1 and len(pil[0]) == 6 and pil[0][0].size == (32, 32)
    assert np.array_equal(np.asarray(pil[0][2]), (pt[0, 2].permute(1, 2, 0) * 255).round().to(torch.uint8).numpy())
    frames, = student(PROMPT, 6, seed=1, output_type="pt", return_dict=False)
    assert torch.equal(frames, pt)


def test_stream_switches_prompt_through_the_sampler_session(student):
    """`stream` with ``{2: prompt}``: the first two chunks equal the unswitched stream; the whole video equals a
    session driven by hand (`switch_prompt` before chunk 2, `next_chunk`), decoded by the codec."""
    other = "a red circle moving up"
    chunks = list(student.stream(PROMPT, 12, seed=5, prompt_switches={2: other}))
    assert [c.shape for c in chunks] == [(1, 3, 3, 32, 32)] * 4
    plain = list(student.stream(PROMPT, 12, seed=5))
    assert torch.equal(chunks[0], plain[0]) and torch.equal(chunks[1], plain[1])
    assert (chunks[3] - plain[3]).abs().max() > 1e-3
    session = student.sampler.session(student.encode_prompts([PROMPT]), student.latent_shape, 1, GaussianNoise(5))
    latents = []
    for k in range(4):
        if k == 2:
            session.switch_prompt(student.encode_prompts([other]))
        latents.append(session.next_chunk().latents)
    expected = student.codec.decode(torch.cat(latents, dim=1)).clamp(0, 1)
    assert torch.allclose(torch.cat(chunks, dim=1), expected, atol=1e-6)


def test_save_and_load_round_trip_with_a_learned_text_encoder(tmp_path):
    cfg = load_config(REPO / "configs/generate/tiny_random.yaml", schema=GenerateConfig)
    pipe = build_generator(cfg.generator, vocabulary=prompt_vocabulary([PROMPT]))
    pipe.save_pretrained(tmp_path / "pipe")
    assert (tmp_path / "pipe/model_index.json").is_file() and (tmp_path / "pipe/transformer/config.json").is_file()
    assert (tmp_path / "pipe/text_encoder").is_dir()
    again = StreamVidPipeline.from_pretrained(tmp_path / "pipe")
    a = pipe(PROMPT, 6, seed=2, output_type="pt").frames
    assert torch.equal(a, again(PROMPT, 6, seed=2, output_type="pt").frames)
    windowed = StreamVidPipeline.from_pretrained(tmp_path / "pipe", overrides=["sampler.cache.local_attn_frames=6"])
    assert windowed.sampler.layout.local_attn_frames == 6


def test_torch_dtype_as_diffusers_takes_it():
    pipe = StreamVidPipeline.from_pretrained(REPO / "assets/shapes/student", torch_dtype=torch.bfloat16)
    assert pipe.transformer.blocks[0].ffn.net[0].proj.weight.dtype == torch.bfloat16
    assert pipe.transformer.condition_embedder.time_embedder.linear_1.weight.dtype == torch.float32  # kept fp32
    frames = pipe(PROMPT, 3, seed=0, output_type="pt").frames
    assert frames.dtype == torch.float32 and bool(torch.isfinite(frames).all())
    with pytest.raises(ValueError, match="torch_dtype"):
        StreamVidPipeline.from_pretrained(REPO / "assets/shapes/student", torch_dtype=torch.int8)


def test_bad_input_names_what(student, tmp_path):
    with pytest.raises(FileNotFoundError, match="model_index.json"):
        StreamVidPipeline.from_pretrained(REPO / "assets/shapes/teacher")
    with pytest.raises(ValueError, match="multiple of the chunk size 3"):
        student(PROMPT, 4)
    with pytest.raises(ValueError, match="output_type"):
        student(PROMPT, 3, output_type="gif")
    with pytest.raises(ValueError, match="chunk in 1..3"):
        student(PROMPT, 12, prompt_switches={4: "a red circle moving up"})
    with pytest.raises(ValueError, match="cache window"):
        next(student.stream(PROMPT, None))


def test_unknown_words_are_named(student):
    assert student.unknown_words("a cat playing the red piano, then left") == ["cat", "playing", "piano"]
    assert student.unknown_words(PROMPT) == []


def test_generate_script_warns_in_one_line_about_unknown_words(tmp_path):
    """A prompt outside the shapes vocabulary still makes a video; one line names the words the encoder ignores."""
    out = tmp_path / "cat.mp4"
    proc = subprocess.run([sys.executable, "-m", "streamvid.core.cli.generate", "--config",
                           str(REPO / "configs/generate/shapes_student.yaml"), "--prompt", "a red cat playing left",
                           "--out", str(out), "--frames", "3"], capture_output=True, text=True, timeout=300,
                          env=console_scripts.ENV)
    assert proc.returncode == 0, proc.stderr
    warnings = [line for line in proc.stderr.splitlines() if "warning" in line]
    assert len(warnings) == 1 and "'cat', 'playing'" in warnings[0] and "'red'" not in warnings[0], proc.stderr
    assert read_video(out)[0].shape == (3, 3, 32, 32)


def test_make_generate_and_eval_default_to_a_trained_student():
    """`make generate` / `make eval` (their recipes, as `make -n` prints them) use configs with shipped trained
    weights; the random-weight configs are named so."""
    import shlex

    from streamvid.eval.runner_config import EvalConfig

    proc = subprocess.run(["make", "-n", "-o", ".venv/.streamvid-installed", "generate", "eval"], cwd=REPO,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    commands = [shlex.split(line) for line in proc.stdout.splitlines() if "streamvid-" in line]
    configs = {Path(c[0]).name: c[c.index("--config") + 1] for c in commands}
    generate = load_config(REPO / configs["streamvid-generate"], schema=GenerateConfig).generator
    evaluate = load_config(REPO / configs["streamvid-eval"], schema=EvalConfig).generator
    for cfg in (generate, evaluate):
        assert cfg.checkpoint is not None and (REPO / cfg.checkpoint / "model_index.json").is_file()
    random = [p.name for p in (REPO / "configs").rglob("*.yaml") if "tiny" in p.name and p.parent.name != "model"]
    assert sorted(random) == ["tiny_random.yaml", "tiny_random_smoke.yaml"]


def test_readme_python_blocks_run_as_written(tmp_path):
    """The README's ```python blocks, in order, from a scratch copy of the repository root (symbolic links to all
    but outputs/, so what they write lands in a fresh folder)."""
    import re

    code = "\n".join(re.findall(r"```python\n(.*?)```", (REPO / "README.md").read_text(), re.S))
    assert "StreamVidPipeline.from_pretrained" in code and "search=SearchStrategy" in code
    root = tmp_path / "repo"
    root.mkdir()
    for entry in REPO.iterdir():
        if entry.name != "outputs":
            (root / entry.name).symlink_to(entry)
    proc = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True, timeout=300,
                          env=console_scripts.ENV)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert (root / "outputs/my_pipeline/model_index.json").is_file()
