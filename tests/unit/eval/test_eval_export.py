"""VBench export: flat `{prompt}-{i}.mp4` names at the target fps, a manifest that round-trips, and names over
the filesystem limit (or holding '/') refused with every offender listed and nothing written."""

from __future__ import annotations

import json

import pytest
import torch

from streamvid.core.video_io import read_video, write_video
from streamvid.eval.export import (
    ExportError,
    check_vbench_names,
    discover_videos,
    export_vbench,
    read_manifest,
    vbench_filename,
)


def _video(path, fps, value=0.5, frames=6):
    torch.manual_seed(int(value * 100))
    return write_video(path, torch.rand(frames, 3, 16, 16) * 0.2 + value * 0.8, fps=fps)


def test_name_limit_counts_utf8_bytes_with_extension():
    prompt_255 = "a" * (255 - len("-0.mp4"))
    check_vbench_names([(prompt_255, 0)])  # exactly 255 bytes: allowed
    with pytest.raises(ExportError, match="over 255 bytes"):
        check_vbench_names([(prompt_255 + "b", 0)])
    accented = "é" * 125  # 250 bytes in UTF-8 though only 125 characters
    with pytest.raises(ExportError, match=r"\(256 bytes\)"):
        check_vbench_names([(accented, 0)])


def test_over_long_and_slash_prompts_are_refused_listing_all_and_nothing_is_written(tmp_path):
    ok = _video(tmp_path / "ok.mp4", 16)
    long_a, long_b = "x" * 300, "y " * 130
    videos = [(ok, "a red circle", 0, 0), (ok, long_a, 0, 0), (ok, "left/right", 1, 0), (ok, long_b, 2, 1)]
    out = tmp_path / "vbench"
    with pytest.raises(ExportError) as err:
        export_vbench(videos, out)
    message = str(err.value)
    assert "2 prompt(s) give names over 255 bytes" in message and "not truncated" in message
    assert repr(long_a) in message and repr(long_b) in message and "'left/right'" in message
    assert "'a red circle'" not in message
    assert err.value.prompts == [long_a, long_b, "left/right"]
    assert not out.exists()


def test_export_round_trips_the_manifest_and_sets_fps(tmp_path):
    src8 = _video(tmp_path / "src8.mp4", fps=8, value=0.3)
    src16 = _video(tmp_path / "src16.mp4", fps=16, value=0.7)
    gif = _video(tmp_path / "src.gif", fps=10, value=0.5)
    prompts = ["a red circle moving left, then up", "Ünïcödé prompt"]
    videos = [(src8, prompts[0], 11, 0), (src16, prompts[0], 12, 1), (gif, prompts[1], 11, 0)]
    out = tmp_path / "vbench"
    entries = export_vbench(videos, out, fps=16)

    assert [e.file for e in entries] == [vbench_filename(p, i) for _, p, _, i in videos]
    assert sorted(p.name for p in out.glob("*.mp4")) == sorted(e.file for e in entries)
    for (src, *_), entry in zip(videos, entries):
        frames, fps = read_video(out / entry.file)
        assert fps == pytest.approx(16) and frames.shape[0] == read_video(src)[0].shape[0]
    assert (out / entries[1].file).read_bytes() == src16.read_bytes()  # already 16 fps: copied, not re-encoded
    assert read_manifest(out / "manifest.csv") == entries
    assert read_manifest(out / "manifest.json") == entries
    assert json.loads((out / "prompt_file.json").read_text()) == {e.file: e.prompt for e in entries}
    assert discover_videos(out) == {(e.prompt, e.index): (e.seed, out / e.file) for e in entries}


def test_discover_without_manifest_parses_vbench_names(tmp_path):
    _video(tmp_path / "a cat-0.mp4", 16)
    _video(tmp_path / "a cat-1.mp4", 16)
    _video(tmp_path / "well-known-2.mp4", 16)  # the prompt is everything before the last -<digits>
    (tmp_path / "notes.txt").write_text("ignored")
    found = discover_videos(tmp_path, seeds=[5, 6])
    assert found == {("a cat", 0): (5, tmp_path / "a cat-0.mp4"), ("a cat", 1): (6, tmp_path / "a cat-1.mp4"),
                     ("well-known", 2): (-1, tmp_path / "well-known-2.mp4")}


def test_manifest_errors_name_the_row(tmp_path):
    bad = tmp_path / "manifest.csv"
    bad.write_text("prompt,seed,index,file\na,0,0,a-0.mp4\nb,x,1,b-1.mp4\n")
    with pytest.raises(ValueError, match="manifest.csv: line 3: seed and index must be integers"):
        read_manifest(bad)
    bad.write_text("prompt,seed,index\na,0,0\n")
    with pytest.raises(ValueError, match=r"line 2: missing \['file'\]"):
        read_manifest(bad)
