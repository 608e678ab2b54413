"""CLIP frame rewards on tiny random CLIP models: preprocessing parity, values vs manual CLIP, loading errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from reward_helpers import make_tiny_clip_dir, tiny_aesthetic, tiny_clip_frames

from streamvid.core.rewards.clip_frames import MLPHead, clip_preprocess

PROMPTS = ["a red circle moving left", "a blue square moving up then turns right", "green"]


@pytest.fixture(scope="module")
def clip_dir(tmp_path_factory):
    return make_tiny_clip_dir(tmp_path_factory.mktemp("clip"))


def _video(b=3, t=4, h=40, w=60, seed=0):
    return torch.rand(b, t, 3, h, w, generator=torch.Generator().manual_seed(seed))


def test_preprocess_matches_clip_image_processor_exactly_without_resize():
    from transformers import CLIPImageProcessorPil

    hf = CLIPImageProcessorPil(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})
    for shape in ((2, 3, 32, 48), (2, 3, 45, 32)):  # landscape and portrait; crop offsets 8 and 6
        u8 = np.random.default_rng(0).integers(0, 256, size=shape, dtype=np.uint8)
        ref = hf(images=list(u8), return_tensors="pt")["pixel_values"]
        ours = clip_preprocess(torch.from_numpy(u8).float() / 255, 32)
        assert ours.shape == ref.shape == (2, 3, 32, 32)
        assert (ours - ref).abs().max() <= 1e-5


def test_preprocess_resize_matches_pil_float_bicubic_then_processor():
    from PIL import Image
    from transformers import CLIPImageProcessorPil

    frames = np.random.default_rng(1).random((2, 3, 40, 70)).astype(np.float32)
    resized = np.stack([np.stack([np.asarray(Image.fromarray(c, mode="F").resize((56, 32), Image.BICUBIC))
                                  for c in f]) for f in frames]).clip(0, 1)  # fmt: skip
    hf = CLIPImageProcessorPil(do_resize=False, do_rescale=False, crop_size={"height": 32, "width": 32})
    ref = hf(images=list(resized), return_tensors="pt")["pixel_values"]
    ours = clip_preprocess(torch.from_numpy(frames), 32)
    assert (ours - ref).abs().max() <= 1e-4


def test_clip_frame_score_is_mean_frame_cosine_of_hf_clip(clip_dir):
    reward = tiny_clip_frames(clip_dir, scale=100.0, mean=20.0, std=4.0)
    video = _video()
    tok = reward.tokenizer(PROMPTS, padding=True, return_tensors="pt")
    with torch.no_grad():
        out = reward(video, PROMPTS)
        cos = []
        for b in range(3):
            hf = reward.model(input_ids=tok["input_ids"][b : b + 1], attention_mask=tok["attention_mask"][b : b + 1],
                              pixel_values=clip_preprocess(video[b], 32))  # fmt: skip
            cos.append((hf.logits_per_image[:, 0] / reward.model.logit_scale.exp()).mean())
    expect = (100.0 * torch.stack(cos) - 20.0) / 4.0
    assert set(out.axes) == {"text"} and torch.allclose(out.axes["text"], expect, atol=1e-4)
    assert torch.equal(out.score, out.axes["text"])
    assert out.score.std() > 0  # prompts are told apart


def test_num_frames_samples_uniformly(clip_dir):
    video = _video(1, t=5)
    with torch.no_grad():
        two = tiny_clip_frames(clip_dir, num_frames=2)(video, PROMPTS[:1]).score
        ends = tiny_clip_frames(clip_dir)(video[:, [0, 4]], PROMPTS[:1]).score
    assert torch.allclose(two, ends, atol=1e-6)


def test_aesthetic_is_head_of_normalised_embedding(clip_dir):
    reward = tiny_aesthetic(clip_dir, mean=1.0, std=2.0)
    video = _video()
    with torch.no_grad():
        out = reward(video, PROMPTS)
        emb = reward.model.get_image_features(
            pixel_values=clip_preprocess(video.flatten(0, 1), 32)
        ).pooler_output
        head = reward.head(F.normalize(emb, dim=-1))[:, 0].reshape(3, 4).mean(1)
    assert set(out.axes) == {"visual"} and torch.allclose(out.axes["visual"], (head - 1.0) / 2.0, atol=1e-5)
    w = {k: v for k, v in reward.head.state_dict().items()}
    manual = (F.normalize(emb, dim=-1) @ w["layers.0.weight"].T + w["layers.0.bias"]) @ w["layers.1.weight"].T
    assert torch.allclose(head, (manual[:, 0] + w["layers.1.bias"]).reshape(3, 4).mean(1), atol=1e-5)


def test_mlp_head_orders_layers_numerically_and_checks_shapes():
    w = {"l.10.weight": torch.ones(1, 4), "l.2.weight": torch.ones(4, 3), "l.2.bias": torch.zeros(4)}
    head = MLPHead(w, activation="relu")
    assert [tuple(layer.weight.shape) for layer in head.layers] == [(4, 3), (1, 4)]
    assert head(-torch.ones(1, 3)).item() == 0.0  # relu between layers
    with pytest.raises(ValueError, match="takes 5 inputs"):
        MLPHead({"a.0.weight": torch.ones(4, 3), "a.1.weight": torch.ones(1, 5)})


def test_missing_files_give_clear_errors(tmp_path, clip_dir):
    from streamvid.core.rewards import build_reward

    with pytest.raises(FileNotFoundError, match=r"nowhere.*config\.json.*model\.safetensors"):
        build_reward("clip_frames", model_dir=str(tmp_path / "nowhere"))
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(FileNotFoundError, match="incomplete"):
        build_reward("aesthetic", model_dir=str(tmp_path), head_path="x.safetensors")
    with pytest.raises(FileNotFoundError, match="aesthetic head file not found: 'nohead.safetensors'"):
        build_reward("aesthetic", model_dir=str(clip_dir), head_path="nohead.safetensors")
    with pytest.raises(ValueError, match="unknown option"):
        build_reward("clip_frames", model_dir=str(clip_dir), head_path="x")
    with pytest.raises(ValueError, match="names no axis"):
        build_reward("clip_frames", model_dir=str(clip_dir), combine="motion")


def test_gradients_reach_pixels(clip_dir):
    from streamvid.core.rewards import saliency

    for reward, axis in ((tiny_clip_frames(clip_dir), "text"), (tiny_aesthetic(clip_dir), "visual")):
        maps = saliency(reward, _video(2), PROMPTS[:2], reduce="abs_sum")
        assert maps[axis].shape == (2, 4, 40, 60)
        assert (maps[axis].flatten(1).sum(1) > 0).all()
