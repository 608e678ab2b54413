"""The notebooks under notebooks/ run top to bottom on tiny settings, from the repository root, with the venv's
own Python as the kernel. Their computed values are sane.

The kernel is a kernel spec written to a temporary folder that points at ``sys.executable`` and is put first on
``JUPYTER_PATH``. A fresh clone where `make install` has run needs no registered kernel, and a user-level
``python3`` kernel that points at another interpreter is never picked up.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
KERNEL = "streamvid-notebook-test"
CHECK = "__NOTEBOOK_CHECK__"


@pytest.fixture
def kernel(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    spec = tmp_path / "jupyter" / "kernels" / KERNEL
    spec.mkdir(parents=True)
    argv = [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"]
    (spec / "kernel.json").write_text(
        json.dumps({"argv": argv, "display_name": KERNEL, "language": "python"})
    )
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "jupyter"))
    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # the kernel inherits the environment
    return KERNEL


def _execute(name: str, parameters: str, check: str, kernel: str):
    """Run notebooks/<name> with its ``parameters``-tagged cell replaced and ``check`` appended (cwd = root)."""
    import nbformat
    from nbclient import NotebookClient

    nb = nbformat.read(ROOT / "notebooks" / name, as_version=4)
    tagged = [c for c in nb.cells if "parameters" in c.get("metadata", {}).get("tags", [])]
    assert len(tagged) == 1, f"{name}: expected one cell tagged 'parameters'"
    tagged[0].source = parameters
    nb.cells.append(nbformat.v4.new_code_cell(check))
    NotebookClient(nb, timeout=120, kernel_name=kernel, resources={"metadata": {"path": str(ROOT)}}).execute()
    return nb


def _check_output(nb, min_figures: int) -> dict:
    """The values the appended check cell printed, after asserting that no cell failed and that at least
    ``min_figures`` figures were drawn."""
    errors = [o for c in nb.cells for o in c.get("outputs", []) if o.output_type == "error"]
    assert not errors, errors
    images = sum("image/png" in o.get("data", {}) for c in nb.cells for o in c.get("outputs", []))
    assert images >= min_figures, f"only {images} figures were drawn"
    text = "".join(o.get("text", "") for o in nb.cells[-1].get("outputs", []) if o.output_type == "stream")
    line = next(ln for ln in text.splitlines() if ln.startswith(CHECK))
    return json.loads(line[len(CHECK) :])


def test_stream_r1_weights_notebook(kernel: str):
    """One rollout of the shipped student, its rewards, saliency and Stream-R1 weights (methods.md A.4-A.7).
    The notebook itself asserts that its weights equal `DMDModule.reward_weights`. This test also checks the
    invariants of the weights and that the figures were drawn."""
    parameters = "\n".join(
        [
            "BATCH = 2",
            'PROMPTS = ["a red circle moving left", "a green triangle moving right"]',
            "SEED = 1",
            "EXIT_STEP = None  # drawn as in training",
            'CONFIG = "configs/train/shapes_r1.yaml"',
            "OVERRIDES = []",
        ]
    )
    check = f"""
import json
print({CHECK!r} + json.dumps({{
    "W_shape": list(W.shape), "latent": [F, h, w],
    "W_mean": W.mean(dim=(1, 2, 3)).tolist(), "W_min": W.min().item(), "W_finite": bool(torch.isfinite(W).all()),
    "w_t_mean": w_t.mean(dim=1).tolist(), "w_t_min": w_t.min().item(),
    "a_sum": a.sum(dim=1).tolist(), "P": P.tolist(),
    "w_inter": w_inter.tolist(), "expected_inter": torch.exp(r1.beta * r_final).tolist(),
    "r_final": r_final.tolist(), "base": base.tolist(), "exit_step": exit_step, "steps": steps,
}}))
"""
    v = _check_output(_execute("stream_r1_weights.ipynb", parameters, check, kernel), min_figures=8)
    assert v["W_shape"] == [2, *v["latent"]]
    assert v["W_finite"] and v["W_min"] > 0
    assert v["W_mean"] == pytest.approx([1.0, 1.0], abs=1e-5)  # mean(W) = 1 per sample (A.6 step 6)
    assert v["w_t_mean"] == pytest.approx([1.0, 1.0], abs=1e-5)  # temporal factor mean 1 (A.6 step 4)
    assert v["w_t_min"] > 0
    assert v["a_sum"] == pytest.approx([1.0, 1.0], abs=1e-6)  # softmax fusion weights (A.6 step 3)
    assert v["P"] == [0.0, 0.0]  # warm-up: no balance penalty (A.5)
    assert v["r_final"] == pytest.approx(v["base"])
    assert v["w_inter"] == pytest.approx(v["expected_inter"], rel=1e-6)  # exp(beta r_final) (A.4)
    assert all(0.01 < x < 100 for x in v["w_inter"])
    assert 0 <= v["exit_step"] < v["steps"]


def test_stream_t1_search_notebook(kernel: str):
    """One Stream-T1 search of the shipped shapes student (methods.md B.2-B.6): the tree, the chosen beam's scores,
    flags and routes, its frames, and the ledger beside best-of-N at equal budget."""
    parameters = "\n".join(
        [
            'PROMPT = "a red circle moving left, then up"',
            'CONFIG = "configs/infer/shapes_t1.yaml"',
            "NUM_FRAMES = 12",
            "SEED = 42",
        ]
    )
    check = f"""
import json
print({CHECK!r} + json.dumps({{
    "chunks": len(result.tree), "per_chunk": [len(level) for level in result.tree], "chunk": chunk,
    "video_shape": list(video.shape), "bon_video_shape": list(bon_video.shape),
    "kept": [sum(c.kept for c in level) for level in result.tree], "top_k": cfg.search.top_k,
    "scores": len(best.fused), "rows": len(scores), "nfe": result.ledger.nfe, "bon_nfe": bon.ledger.nfe,
    "plain_nfe": plain_nfe, "n": n, "final": best.final,
}}))
"""
    # at least the tree and the frames
    v = _check_output(_execute("stream_t1_search.ipynb", parameters, check, kernel), min_figures=2)
    assert v["chunks"] == v["rows"] == v["scores"] == 12 // v["chunk"]
    assert v["kept"] == [v["top_k"]] * v["chunks"]  # top-k survive every chunk (B.2)
    assert all(p > v["top_k"] for p in v["per_chunk"])  # there was something to prune
    assert v["video_shape"][0] == 12 and v["video_shape"][1] == 3  # [T, 3, H, W]
    assert v["bon_video_shape"] == v["video_shape"]
    assert v["n"] >= 1 and v["bon_nfe"] == v["n"] * v["plain_nfe"]  # best-of-N: n plain samples
    assert v["bon_nfe"] <= v["nfe"] < (v["n"] + 1) * v["plain_nfe"]  # equal budget: floor(T1 multiple) videos
    assert v["final"] is not None and v["final"] == v["final"]


def test_pipeline_notebook(kernel: str):
    """The pipeline notebook: the shipped student in one line, one video, the stream with a prompt switch (equal to
    the video before the switch, different after), and a Stream-T1 search whose tree and frames are drawn."""
    parameters = "\n".join(
        [
            'MODEL = "assets/shapes/stream_r1_student"',
            'PROMPT = "a red circle moving left, then up"',
            "NUM_FRAMES = 9",
            "SEED = 3",
            'SWITCH = {2: "a red circle moving down"}',
        ]
    )
    check = f"""
import json
print({CHECK!r} + json.dumps({{
    "video_shape": list(video.shape), "streamed_shape": list(streamed.shape), "chunks": len(chunks), "chunk": chunk,
    "same_until_switch": same_until_switch, "after_switch_diff": float((streamed[6:] - video[6:]).abs().max()),
    "searched_shape": list(searched.frames.shape), "tree": [len(level) for level in result.tree],
    "final": result.best.final, "nfe": result.ledger.nfe, "plain_nfe": plain_nfe,
}}))
"""
    v = _check_output(_execute("pipeline.ipynb", parameters, check, kernel), min_figures=4)
    assert v["video_shape"] == v["streamed_shape"] == [9, 3, 32, 32]
    assert v["chunks"] == 9 // v["chunk"] == 3
    assert v["same_until_switch"] and v["after_switch_diff"] > 1e-3
    assert v["searched_shape"] == [1, 9, 3, 32, 32] and v["tree"] == [4, 4, 4]
    assert v["final"] == v["final"] and v["nfe"] > v["plain_nfe"]
