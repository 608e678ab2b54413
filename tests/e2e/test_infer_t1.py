"""`streamvid-infer-t1` as a user runs it (`make infer-t1`): the shipped Stream-R1 shapes student under Stream-T1
search writes the video, scores, search tree and ledger; baselines spend what they say; bad input is one line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from streamvid.tts.cli import main
from tests.console_scripts import error_line, run_script

pytestmark = pytest.mark.slow


@pytest.fixture(autouse=True)
def _keep_torch_threads():
    """`main` sets torch's thread count from the config (1); give the other tests theirs back."""
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)

CONFIG = "configs/infer/shapes_t1.yaml"
PROMPT = "a red circle moving left, then up"


def test_stream_t1_writes_video_scores_tree_and_ledger(tmp_path: Path):
    out = tmp_path / "red.mp4"
    proc = run_script("streamvid-infer-t1", "--config", CONFIG, "--prompt", PROMPT, "--out", out)
    assert proc.returncode == 0, proc.stderr[-2000:]
    names = ["red.mp4", "red.gif", "red.scores.json", "red.tree.json", "red.tree.png", "red.ledger.json",
             "red.config.yaml"]
    assert all((tmp_path / n).stat().st_size > 0 for n in names)
    assert proc.stderr.strip().splitlines()[-1].startswith("streamvid-infer-t1: wrote ")
    ledger = json.loads((tmp_path / "red.ledger.json").read_text())
    scores = json.loads((tmp_path / "red.scores.json").read_text())
    summary = proc.stderr.strip().splitlines()[-2]  # the final score, NFE and wall time, as the files record them
    assert summary.startswith("streamvid-infer-t1: stream_t1: final score ")
    assert f"final score {scores['final']:.4f}, NFE {ledger['nfe']} ({ledger['cost_multiple']}x plain)" in summary
    assert "wall time" in summary
    # 4 chunks: 4 candidates at chunk 0, then 2 beams x 2 children; 4 steps each; 2 commits per chunk
    assert ledger["forwards"] == {"denoise": 4 * 4 * 4, "commit": 4 * 2, "cfg": 0, "recache": 0}
    tree = json.loads((tmp_path / "red.tree.json").read_text())["tree"]
    assert [len(level) for level in tree] == [4, 4, 4, 4] and all(sum(c["kept"] for c in lv) == 2 for lv in tree)
    assert len(scores["chunks"]) == 4 and scores["final"] is not None


def test_a_multi_segment_stream_switches_prompts(tmp_path: Path):
    out = tmp_path / "long.mp4"
    proc = run_script("streamvid-infer-t1", "--config", CONFIG, "--prompt", "a red circle moving left", "--out", out,
                      "--set", "num_frames=18", "--set",
                      "prompt_switches={2: a red circle moving right, 4: a red circle moving up}")
    assert proc.returncode == 0, proc.stderr[-2000:]
    scores = json.loads((tmp_path / "long.scores.json").read_text())
    assert scores["prompt_switches"] == {"2": "a red circle moving right", "4": "a red circle moving up"}
    assert len(scores["chunks"]) == 6
    ledger = json.loads((tmp_path / "long.ledger.json").read_text())
    # 2 beams re-encode their retained history in chunk groups at each switch: 6 frames (2 groups) at chunk 2;
    # sink 3 + window 6 (3 groups, 4 if a beam appended chunk 1 to its sink) at chunk 4
    assert 2 * 2 + 2 * 3 <= ledger["forwards"]["recache"] <= 2 * 2 + 2 * 4
    assert ledger["reward_calls"]["final"] == 2 * 3  # each beam's 3 segments, each against its own prompt


def test_best_of_n_costs_n_plain_samples(tmp_path: Path):
    runs = {}
    for strategy in ("plain", "best_of_n"):
        out = tmp_path / f"{strategy}.mp4"
        assert main(["--config", CONFIG, "--prompt", PROMPT, "--out", str(out), "--set", f"strategy={strategy}",
                     "--set", "n=3"]) == 0
        runs[strategy] = json.loads((tmp_path / f"{strategy}.ledger.json").read_text())
    assert runs["plain"]["nfe"] == 4 * (4 + 1) and runs["plain"]["reward_calls"] == {}
    assert runs["best_of_n"]["nfe"] == 3 * runs["plain"]["nfe"] and runs["best_of_n"]["reward_calls"]["final"] == 3


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--prompt", "  "], "no prompt"),
        (["--prompt", PROMPT, "--set", "search.bogus=1"], "unknown key 'search.bogus'"),
        (["--prompt", PROMPT, "--set", "reward.name=nope"], "unknown reward name 'nope'"),
        (["--prompt", PROMPT, "--set", "reward.name=videoalign"], "reward.videoalign.checkpoint_dir: required"),
        (["--prompt", PROMPT, "--set", "strategy=magic"], "strategy"),
        (["--prompt", PROMPT, "--set", "generator.model.num_layers=2"], "generator.checkpoint"),
        (["--prompt", PROMPT, "--set", "budget=0.5"], "smaller than one plain sample"),
        (["--prompt", PROMPT, "--set", "prompt_switches={4: a red circle moving up}"], "prompt_switches.4: a switch"),
        (["--prompt", PROMPT, "--set", "prompt_switches={2: ' '}"], "prompt_switches.2: empty prompt"),
        (["--prompt", PROMPT, "--set", "prompt_switches={two: up}"], "expected int keys"),
        (["--prompt", "a cat playing the piano"], "words outside the shapes vocabulary: cat, playing, piano"),
        (["--prompt", "a red circle and a blue square moving left"], "one colour"),
        (["--prompt", PROMPT, "--set", "prompt_switches={2: a dog}"], "prompt 'a dog': reward shapes_learned"),
    ],
    ids=["blank-prompt", "unknown-key", "unknown-reward", "reward-weights", "unknown-strategy", "checkpoint-mismatch", "budget",
         "switch-out-of-range", "switch-empty", "switch-key-type", "outside-vocabulary", "two-objects",
         "switch-outside-vocabulary"],
)
def test_bad_input_is_one_line(args: list[str], needle: str, tmp_path: Path, capsys):
    """In process (`main(argv)`, what the console script calls), so each case skips an interpreter start; the
    console script itself is checked on one case below."""
    out = tmp_path / "x.mp4"
    assert main(["--config", CONFIG, "--out", str(out), *args]) == 2
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("streamvid-infer-t1: error: ") and needle in lines[0], lines
    assert not any(tmp_path.iterdir())  # nothing written


def test_the_console_script_reports_bad_input_in_one_line(tmp_path: Path):
    out = tmp_path / "x.mp4"
    proc = run_script("streamvid-infer-t1", "--config", CONFIG, "--out", out, "--prompt", PROMPT,
                      "--set", "budget=0.5")
    assert "smaller than one plain sample" in error_line(proc, "streamvid-infer-t1")
    assert not out.exists()
