"""VideoAlign adapter on a tiny random Qwen2-VL: preprocessing parity, token positions, gradients, loading."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from reward_helpers import (
    TINY_PREPROCESS,
    VIDEOALIGN_PROMPTS,
    make_tiny_videoalign_dir,
    tiny_qwen_tokenizer,
    tiny_videoalign,
)

from streamvid.core.rewards.qwen2vl_preprocess import (
    Qwen2VLVideoPreprocessor,
    patchify,
    rows_to_grid,
    sample_frame_indices,
    smart_resize,
)
from streamvid.core.rewards.videoalign_prompt import (
    QWEN2VL_FALLBACK_CHAT,
    REWARD_TOKENS,
    format_chat,
)

PROMPTS = VIDEOALIGN_PROMPTS


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("videoalign")
    make_tiny_videoalign_dir(root)
    return root


@pytest.fixture(scope="module")
def reward(tiny_dir):
    return tiny_videoalign(tiny_dir)


def _video(b=3, t=6, h=50, w=70, seed=0):
    return torch.rand(b, t, 3, h, w, generator=torch.Generator().manual_seed(seed))


# ---------------------------------------------------------------- preprocessing


def test_smart_resize_and_frame_sampling_match_reference_numbers():
    assert smart_resize(480, 832, 28, 128 * 28 * 28, 200704) == (336, 588)  # methods.md A.3.2
    assert smart_resize(32, 32, 28, 128 * 28 * 28, 200704) == (336, 336)  # small frames are upscaled
    assert sample_frame_indices(81, 16.0, 2.0).tolist() == [0, 9, 18, 27, 36, 44, 53, 62, 71, 80]
    assert sample_frame_indices(8, 4.0, 2.0).tolist() == [0, 2, 5, 7]  # clipped up to min_frames=4
    assert sample_frame_indices(3, 16.0, 2.0).tolist() == [0, 2]  # at most the (even) frame count
    assert sample_frame_indices(5, 16.0, None).tolist() == [0, 1, 2, 3, 4]


def test_patchify_is_merge_window_order_and_rows_to_grid_inverts_it():
    frames = torch.arange(2 * 4 * 1 * 56 * 56, dtype=torch.float32).reshape(2, 4, 1, 56, 56)
    rows = patchify(frames)  # [2, 2*4*4, 1*2*14*14]
    assert rows.shape == (2, 32, 392)
    first = rows[..., 0].reshape(2, 32)  # top-left pixel of each patch, first frame of its pair
    grid = rows_to_grid(first, (2, 4, 4))
    expect = frames[:, ::2, 0, ::14, ::14]  # [2, t, h, w] raster
    assert torch.equal(grid, expect)
    # merge-window order: rows 0..3 are the 2x2 window at the top-left, not the first raster row
    assert torch.equal(first[0, :4], frames[0, 0, 0, [0, 0, 14, 14], [0, 14, 0, 14]])


def _hf_rows(frames: np.ndarray, processor) -> tuple[torch.Tensor, torch.Tensor]:
    """Video rows from transformers' Qwen2-VL image processor run on single frames (pairs recombined)."""
    out = processor(images=list(frames), return_tensors="pt")
    n_img, (_, gh, gw) = len(frames), out["image_grid_thw"][0].tolist()
    per = out["pixel_values"].reshape(n_img, gh * gw, 3, 2, 14, 14)[:, :, :, 0]  # temporal copies are equal
    pairs = torch.stack([per[0::2], per[1::2]], dim=3)  # [t, N, 3, 2, 14, 14]
    return pairs.reshape(-1, 3 * 2 * 14 * 14), torch.tensor([[len(frames) // 2, gh, gw]])


def test_preprocessing_matches_transformers_qwen2vl_processor_exactly():
    """Aligned frames (no resize): normalisation, temporal pairing, patch order and grid_thw are HF's."""
    from transformers import Qwen2VLImageProcessorPil

    hf = Qwen2VLImageProcessorPil(min_pixels=56 * 56, max_pixels=84 * 112)
    u8 = np.random.default_rng(0).integers(0, 256, size=(4, 3, 84, 112), dtype=np.uint8)
    ref, ref_grid = _hf_rows(u8, hf)
    pre = Qwen2VLVideoPreprocessor(fps=None, min_pixels=56 * 56, max_pixels=84 * 112)
    rows, grid = pre(torch.from_numpy(u8).float().div(255).unsqueeze(0))
    assert torch.equal(grid, ref_grid) and rows.shape == ref.shape == (2 * 6 * 8, 1176)
    assert (rows - ref).abs().max() <= 1e-4


def test_preprocessing_resize_matches_processor_fed_with_float_bicubic_frames():
    """Unaligned frames: our antialiased bicubic resize vs PIL's float bicubic, then HF's processor (<= 1e-4)."""
    from PIL import Image
    from transformers import Qwen2VLImageProcessorPil

    frames = np.random.default_rng(1).random((6, 3, 50, 80)).astype(np.float32)
    pre = Qwen2VLVideoPreprocessor(fps=None, min_pixels=56 * 56, max_pixels=56 * 84)
    h, w = pre.target_size(50, 80)
    assert (h, w) == (56, 84)
    resized = np.stack([np.stack([np.asarray(Image.fromarray(c, mode="F").resize((w, h), Image.BICUBIC))
                                  for c in f]) for f in frames]).clip(0, 1)  # fmt: skip
    hf = Qwen2VLImageProcessorPil(do_resize=False, do_rescale=False)
    ref, ref_grid = _hf_rows(resized, hf)
    rows, grid = pre(torch.from_numpy(frames).unsqueeze(0))
    assert torch.equal(grid, ref_grid)
    assert (rows - ref).abs().max() <= 1e-4


@pytest.mark.gpu
def test_preprocessing_matches_transformers_video_processor_with_torchvision():
    """transformers' video processors need torchvision. PyPI's torchvision wheels for torch 2.13 link
    libtorch_cuda.so, so they load beside a CUDA torch only (beside the pinned CPU build the import fails with
    "operator torchvision::nms does not exist"): this comparison runs with the `gpu` tests, on a CUDA install. On
    the CPU install the PIL path above checks the same resize against HF's image processor."""
    try:
        import torchvision  # noqa: F401
    except (ImportError, RuntimeError) as err:
        pytest.skip(f"torchvision does not load beside this torch ({torch.__version__}): {err}")
    from transformers import Qwen2VLVideoProcessor

    video = torch.rand(1, 6, 3, 50, 70, generator=torch.Generator().manual_seed(2))
    hf = Qwen2VLVideoProcessor(min_pixels=56 * 56, max_pixels=56 * 84)
    out = hf(videos=[video[0]], do_rescale=False, do_sample_frames=False, return_tensors="pt")
    rows, grid = Qwen2VLVideoPreprocessor(fps=None, min_pixels=56 * 56, max_pixels=56 * 84)(video)
    assert torch.equal(grid, out["video_grid_thw"])
    assert (rows - out["pixel_values_videos"]).abs().max() <= 1e-4


# ---------------------------------------------------------------- model, tokens, positions


def test_chat_format_uses_template_when_present_else_fallback():
    tok = tiny_qwen_tokenizer()
    assert format_chat(tok, "hi") == QWEN2VL_FALLBACK_CHAT.replace("{text}", "hi")
    tok.chat_template = ("{% for m in messages %}<|im_start|>{{ m.role }}\n{% for c in m.content %}"
                         "{% if c.type == 'video' %}<|vision_start|><|video_pad|><|vision_end|>"
                         "{% else %}{{ c.text }}{% endif %}{% endfor %}<|im_end|>\n{% endfor %}"
                         "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")  # fmt: skip
    assert format_chat(tok, "hi") == (
        "<|im_start|>user\n<|vision_start|><|video_pad|><|vision_end|>hi<|im_end|>\n<|im_start|>assistant\n"
    )


def test_scores_are_read_at_the_reward_tokens_like_a_manual_hf_forward(reward):
    """Manual path: HF's own M-RoPE (get_rope_index), Qwen2VLModel forward, rm_head at each token position."""
    video = _video(2)
    pixel_values, grid = reward.preprocess(video)
    n = int(grid[0].prod()) // 4
    ids, mask = reward.tokenize(PROMPTS[:2], n)
    assert (ids == reward.video_token_id).sum(1).tolist() == [n, n]
    t, h, w = grid[0].tolist()
    assert t <= max(h, w) // 2  # HF 5.x and 4.45 rope positions agree when t <= max(h, w) / merge
    with torch.no_grad():
        hidden = reward.backbone(
            input_ids=ids, attention_mask=mask.long(), pixel_values_videos=pixel_values, video_grid_thw=grid,
            mm_token_type_ids=(ids == reward.video_token_id).int() * 2,
        ).last_hidden_state  # fmt: skip
        vocab = reward.tokenizer.get_vocab()
        manual = torch.stack(
            [torch.stack([reward.rm_head(hidden[b, (ids[b] == vocab[tok]).nonzero()[0, 0]])[0] for tok in REWARD_TOKENS])
             for b in range(2)]
        )  # fmt: skip
        raw = reward.raw_scores(video, PROMPTS[:2])
        out = reward(video, PROMPTS[:2])
    assert torch.allclose(raw, manual, atol=1e-5)
    expect = (manual - torch.tensor([3.6757, 1.1646, 2.8105])) / torch.tensor([2.2476, 1.3811, 2.5121])
    for i, axis in enumerate(("visual", "motion", "text")):
        assert torch.allclose(out.axes[axis], expect[:, i], atol=1e-5)
    assert torch.allclose(out.score, expect.mean(1), atol=1e-5)


def test_each_axis_reads_its_own_token(reward):
    """Causal LM: perturbing the MQ token's embedding changes MQ and TA (later) but not VQ (earlier)."""
    video, embed = _video(1), reward.backbone.language_model.embed_tokens.weight
    mq = reward.tokenizer.get_vocab()["<|MQ_reward|>"]
    with torch.no_grad():
        before = reward.raw_scores(video, PROMPTS[:1])
        saved = embed[mq].clone()
        embed[mq] += 1.0
        after = reward.raw_scores(video, PROMPTS[:1])
        embed[mq] = saved
    diff = (after - before).abs()[0]
    assert diff[0] < 1e-6 and diff[1] > 1e-4 and diff[2] > 1e-4


def test_mrope_positions_follow_original_qwen2vl_rule(reward):
    from streamvid.core.rewards.videoalign import mrope_position_ids

    ids, mask = reward.tokenize(PROMPTS[:2], 2 * 2 * 2)
    grid = torch.tensor([[2, 4, 4]] * 2)
    ours = mrope_position_ids(ids, mask, grid, reward.video_token_id, 2)
    hf, _ = reward.backbone.get_rope_index(ids, (ids == reward.video_token_id).int() * 2, video_grid_thw=grid,
                                           attention_mask=mask.long())  # fmt: skip
    assert torch.equal(ours[:, mask], hf[:, mask])  # t <= h/2, w/2: both rules agree
    ids6, mask6 = reward.tokenize(PROMPTS[:1], 6 * 4)
    ours6 = mrope_position_ids(ids6, mask6, torch.tensor([[6, 4, 4]]), reward.video_token_id, 2)
    start = int((ids6[0] == reward.video_token_id).nonzero()[0, 0])
    assert ours6[:, 0, start + 24].tolist() == [start + 6] * 3  # first text token after the video


def test_batch_invariance_and_right_padding(reward):
    video = _video(3)
    with torch.no_grad():
        batch = reward(video, PROMPTS)
        for i in range(3):
            alone = reward(video[i : i + 1], PROMPTS[i : i + 1])
            for axis in reward.axes:
                assert torch.allclose(alone.axes[axis], batch.axes[axis][i : i + 1], atol=1e-4)


def test_gradients_reach_the_pixels_of_sampled_frames_only(reward):
    from streamvid.core.rewards import saliency

    video = _video(1, t=8)  # video_fps 8, fps 4 -> 4 frames: indices 0, 2, 5, 7
    maps = saliency(reward, video, PROMPTS[:1])
    assert set(maps) == {"visual", "motion", "text"}
    per_frame = maps["text"][0].sum((1, 2))
    assert (per_frame[[0, 2, 5, 7]] > 0).all() and (per_frame[[1, 3, 4, 6]] == 0).all()
    # directional derivative matches a central finite difference
    v = torch.randn(video.shape, generator=torch.Generator().manual_seed(5)) * 0.01
    x = video.clone().requires_grad_(True)
    (g,) = torch.autograd.grad(reward(x, PROMPTS[:1]).axes["motion"].sum(), x)
    with torch.no_grad():
        fd = (
            reward(video + v, PROMPTS[:1]).axes["motion"] - reward(video - v, PROMPTS[:1]).axes["motion"]
        ) / 2
    assert torch.allclose((g * v).sum(), fd.sum(), rtol=0.05, atol=1e-5)


def test_gradient_checkpointing_gives_the_same_saliency(tiny_dir, reward):
    from streamvid.core.rewards import saliency

    ckpt = tiny_videoalign(tiny_dir, gradient_checkpointing=True).eval()
    assert ckpt.backbone.training and ckpt.backbone.language_model.layers[0].gradient_checkpointing
    video = _video(1)
    a, b = saliency(ckpt, video, PROMPTS[:1]), saliency(reward, video, PROMPTS[:1])
    assert all(torch.allclose(a[k], b[k], rtol=1e-4, atol=1e-7) for k in a)


def test_combine_modes_and_raw_outputs(tiny_dir):
    video = _video(2)
    with torch.no_grad():
        mean = tiny_videoalign(tiny_dir)(video, PROMPTS[:2])
        total = tiny_videoalign(tiny_dir, combine="sum")(video, PROMPTS[:2])
        text = tiny_videoalign(tiny_dir, combine="text")(video, PROMPTS[:2])
        raw = tiny_videoalign(tiny_dir, normalize=False)
        raw_out = raw(video, PROMPTS[:2])
    stacked = torch.stack([mean.axes[a] for a in ("visual", "motion", "text")])
    assert torch.allclose(total.score, stacked.sum(0), atol=1e-5)
    assert torch.allclose(text.score, mean.axes["text"], atol=1e-6)
    assert torch.allclose(raw_out.axes["visual"], mean.axes["visual"] * 2.2476 + 3.6757, atol=1e-4)
    with pytest.raises(ValueError, match="combine"):
        tiny_videoalign(tiny_dir, combine="median")
    with pytest.raises(ValueError, match="dtype"):
        tiny_videoalign(tiny_dir, dtype="float33")


# ---------------------------------------------------------------- loading


def test_bfloat16_weights_keep_fp32_rope_and_close_scores(tiny_dir, reward):
    half = tiny_videoalign(tiny_dir, dtype="bfloat16")
    assert half.rm_head.weight.dtype == torch.bfloat16
    assert half.backbone.language_model.embed_tokens.weight.dtype == torch.bfloat16
    assert half.backbone.language_model.rotary_emb.inv_freq.dtype == torch.float32
    video = _video(2)
    with torch.no_grad():
        lo, hi = half(video, PROMPTS[:2]), reward(video, PROMPTS[:2])
    assert lo.score.dtype == torch.float32 and torch.allclose(lo.score, hi.score, atol=0.1)


def test_full_checkpoint_keys_and_lora_are_merged(reward, tiny_dir):
    expected = torch.load(tiny_dir / "expected.pt", weights_only=True)
    state = reward.backbone.state_dict()
    for key in ("language_model.layers.0.self_attn.q_proj.weight", "visual.merger.mlp.0.weight",
                "language_model.embed_tokens.weight"):  # fmt: skip
        assert torch.allclose(state[key], expected[key], atol=1e-6), key
    assert torch.equal(reward.rm_head.weight, expected["rm_head.weight"])
    from transformers import Qwen2VLModel

    fresh = dict(
        Qwen2VLModel(reward.backbone.config).named_buffers()
    )  # RoPE buffers rebuilt, not left on meta
    for name, buf in reward.backbone.named_buffers():
        assert torch.equal(buf, fresh[name]), name
    assert not any(p.is_meta for p in reward.parameters())
    assert reward.reward_token_ids == [len(tiny_qwen_tokenizer().get_vocab()) + i for i in range(3)]


def test_lora_layout_merges_adapter_into_base_weights(tmp_path):
    from streamvid.core.rewards import build_reward

    ckpt = make_tiny_videoalign_dir(tmp_path, layout="lora")
    reward = build_reward("videoalign", checkpoint_dir=str(ckpt), base_model_dir=str(tmp_path / "base"),
                          **TINY_PREPROCESS)  # fmt: skip
    expected = torch.load(tmp_path / "expected.pt", weights_only=True)
    state = reward.backbone.state_dict()
    for key in ("language_model.layers.0.self_attn.q_proj.weight", "visual.merger.mlp.0.weight"):
        assert torch.allclose(state[key], expected[key], atol=1e-6), key


def test_missing_weights_name_directory_and_expected_files(tmp_path, tiny_dir):
    from streamvid.core.rewards import build_reward

    with pytest.raises(FileNotFoundError, match=r"absent.*model\.pth.*adapter_model\.safetensors"):
        build_reward("videoalign", checkpoint_dir=str(tmp_path / "absent"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match=r"empty.*model\.pth.*non_lora_state_dict\.pth"):
        build_reward("videoalign", checkpoint_dir=str(tmp_path / "empty"))
    with pytest.raises(FileNotFoundError, match="checkpoint-99"):
        build_reward("videoalign", checkpoint_dir=str(tiny_dir), checkpoint_step=99)
    with pytest.raises(ValueError, match="checkpoint_dir is required"):
        build_reward("videoalign")
