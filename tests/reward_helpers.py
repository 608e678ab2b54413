"""Tiny reward instances shared by the reward tests (contract, configs, adapters): builders and inputs.

Every registered reward has a builder of a tiny, fast instance under a scratch folder in `TINY_BUILDERS`
(`tests/unit/test_rewards_contract.py` runs its contract over each; `test_reward_configs.py` rebuilds each
from its typed config and from YAML). The builders write what they need (a random tiny Qwen2-VL for
VideoAlign, a random tiny CLIP and aesthetic head, a random tiny shapes network) and build through
`build_reward`, the one path. Test modules import from here, never from each other.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from streamvid.core.rewards import RewardModel, build_reward
from streamvid.core.rewards.shapes_learned import ShapesRewardNet, ShapesRewardNetConfig, save_reward_net
from streamvid.core.rewards.videoalign_prompt import (
    DETAILED_SPECIAL_TEMPLATE,
    QWEN2VL_FALLBACK_CHAT,
    REWARD_TOKENS,
)

if TYPE_CHECKING:
    from streamvid.distill.shapes_generated import GeneratedSet

# ---------------------------------------------------------------- inputs of the contract tests

PROMPTS = [
    "a red circle moving left",
    "a blue square moving up then turns right",
    "green triangle moving down",
]
VIDEO_SHAPE = (3, 6, 3, 32, 32)  # [B, T, C, H, W]: the shapes world's default frame size


# ---------------------------------------------------------------- VideoAlign: a tiny random Qwen2-VL

QWEN_SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|vision_start|>", "<|vision_end|>",
                 "<|video_pad|>", "<|image_pad|>"]  # fmt: skip
VIDEOALIGN_PROMPTS = ["a red circle moving left", "a blue square moving up then turns right quickly", "green"]
TINY_PREPROCESS = dict(fps=4.0, video_fps=8.0, min_pixels=56 * 56, max_pixels=56 * 84)


def tiny_qwen_tokenizer():
    """Word-level tokenizer over the template + test prompts, plus Qwen2-VL's special tokens (no reward tokens)."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    split = pre_tokenizers.Whitespace()
    text = " ".join([DETAILED_SPECIAL_TEMPLATE, QWEN2VL_FALLBACK_CHAT, *VIDEOALIGN_PROMPTS])
    for token in (*QWEN_SPECIALS, *REWARD_TOKENS):
        text = text.replace(token, " ")
    words = sorted({w for w, _ in split.pre_tokenize_str(text)})
    vocab = {t: i for i, t in enumerate(["<unk>", *words, *QWEN_SPECIALS])}
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tok.pre_tokenizer = split
    tok.add_special_tokens(QWEN_SPECIALS)
    return PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<unk>", pad_token="<|endoftext|>")


def _tiny_config(tokenizer):
    from transformers import Qwen2VLConfig

    vocab = tokenizer.get_vocab()
    return Qwen2VLConfig(
        text_config=dict(
            vocab_size=len(vocab) + len(REWARD_TOKENS), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
            num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=2048,
            rope_parameters={"rope_type": "default", "rope_theta": 10000.0, "mrope_section": [2, 1, 1]},
        ),
        vision_config=dict(depth=2, embed_dim=32, hidden_size=32, num_heads=2, mlp_ratio=2, patch_size=14,
                           temporal_patch_size=2, spatial_merge_size=2),
        video_token_id=vocab["<|video_pad|>"], image_token_id=vocab["<|image_pad|>"],
        vision_start_token_id=vocab["<|vision_start|>"], vision_end_token_id=vocab["<|vision_end|>"],
    )  # fmt: skip


def _legacy_key(key: str) -> str:
    """transformers-5 ``Qwen2VLModel`` key -> peft-wrapped transformers-4.45 key, as VideoAlign saves them."""
    if key.startswith("language_model."):
        key = "model." + key[len("language_model.") :]
    return "base_model.model." + key


def make_tiny_videoalign_dir(root: Path, layout: str = "full") -> Path:
    """Write a tiny VideoAlign checkpoint under ``root`` (idempotent); returns the checkpoint folder.

    ``full``: ``root/config.json`` + tokenizer + ``root/checkpoint-7/model.pth`` (peft-style keys with one LoRA
    pair on ``layers.0.self_attn.q_proj``). ``lora``: base Qwen2-VL in ``root/base`` (model.safetensors),
    ``root/ckpt/checkpoint-3/{adapter_model.safetensors, non_lora_state_dict.pth, adapter_config.json}``.
    Expected merged weights are saved to ``root/expected.pt``.
    """
    from safetensors.torch import save_file
    from transformers import Qwen2VLModel

    if (root / "expected.pt").is_file():
        return root / ("checkpoint-7" if layout == "full" else "ckpt")
    root.mkdir(parents=True, exist_ok=True)
    tokenizer = tiny_qwen_tokenizer()
    config = _tiny_config(tokenizer)
    gen = torch.Generator().manual_seed(0)
    torch.manual_seed(0)
    state = {k: v.clone() for k, v in Qwen2VLModel(config).state_dict().items()}
    rm_head = torch.randn(1, 32, generator=gen)
    q = "language_model.layers.0.self_attn.q_proj"
    lora_a, lora_b = torch.randn(4, 32, generator=gen) * 0.1, torch.randn(32, 4, generator=gen) * 0.1
    expected = dict(state, **{"rm_head.weight": rm_head})
    expected[f"{q}.weight"] = state[f"{q}.weight"] + 2.0 * lora_b @ lora_a  # alpha / r = 8 / 4
    legacy = {_legacy_key(k): v for k, v in state.items()}
    q_legacy = _legacy_key(q)
    base_q = legacy.pop(f"{q_legacy}.weight")
    if layout == "full":
        config.save_pretrained(root)
        tokenizer.save_pretrained(root)
        ckpt = root / "checkpoint-7"
        ckpt.mkdir()
        legacy.update({f"{q_legacy}.base_layer.weight": base_q, f"{q_legacy}.lora_A.default.weight": lora_a,
                       f"{q_legacy}.lora_B.default.weight": lora_b, "base_model.model.rm_head.weight": rm_head})  # fmt: skip
        torch.save(legacy, ckpt / "model.pth")
        (root / "model_config.json").write_text(
            json.dumps({"peft_lora_config": {"lora_r": 4, "lora_alpha": 8}})
        )
    else:
        base, ckpt = root / "base", root / "ckpt" / "checkpoint-3"
        config.save_pretrained(base)
        tokenizer.save_pretrained(base)
        plain = {k[len("base_model.model.") :]: v for k, v in legacy.items()}
        plain[f"{q_legacy[len('base_model.model.') :]}.weight"] = base_q
        vis = "visual.merger.mlp.0.weight"
        plain[vis] = torch.zeros_like(plain[vis])  # the non-LoRA file must override the base
        save_file({k: v.contiguous() for k, v in plain.items()}, str(base / "model.safetensors"))
        ckpt.mkdir(parents=True)
        save_file({f"{q_legacy}.lora_A.weight": lora_a, f"{q_legacy}.lora_B.weight": lora_b},
                  str(ckpt / "adapter_model.safetensors"))  # fmt: skip
        torch.save({"base_model.model." + vis: state["visual.merger.mlp.0.weight"],
                    "base_model.model.rm_head.weight": rm_head}, ckpt / "non_lora_state_dict.pth")  # fmt: skip
        (ckpt / "adapter_config.json").write_text(json.dumps({"r": 4, "lora_alpha": 8}))
    torch.save(expected, root / "expected.pt")
    return ckpt if layout == "full" else root / "ckpt"


def tiny_videoalign(root: Path, **overrides):
    """A tiny `VideoAlignReward` (full layout) built under ``root``."""
    make_tiny_videoalign_dir(root)
    return build_reward("videoalign", checkpoint_dir=str(root), **{**TINY_PREPROCESS, **overrides})


# ---------------------------------------------------------------- CLIP frame score and aesthetic head

def word_level_tokenizer(words: list[str], eos: str):
    """(vocab, a transformers fast tokenizer) splitting on whitespace over ``<pad>``, ``eos``, ``<unk>`` and
    ``words``, appending ``eos`` to every sequence: the tokenizer of the tiny CLIP and UMT5 test models."""
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    vocab = {t: i for i, t in enumerate(["<pad>", eos, "<unk>", *words])}
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.post_processor = processors.TemplateProcessing(single=f"$A {eos}", special_tokens=[(eos, 1)])
    return vocab, PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", eos_token=eos, unk_token="<unk>")


WORDS = ["a", "red", "blue", "green", "circle", "square", "triangle", "moving", "left", "right", "up", "down",
         "then", "turns", "quickly"]  # fmt: skip


def make_tiny_clip_dir(root: Path) -> Path:
    """A tiny random CLIP (32 px images, 16-d projection), a word-level tokenizer and a 16->8->1 aesthetic head.

    Idempotent. The head is saved as ``root/aesthetic.safetensors`` with LAION-style keys ``layers.{0,2}``.
    """
    from safetensors.torch import save_file
    from transformers import CLIPConfig, CLIPModel

    if (root / "aesthetic.safetensors").is_file():
        return root
    root.mkdir(parents=True, exist_ok=True)
    vocab, fast = word_level_tokenizer(WORDS, "<eos>")
    fast.save_pretrained(root)
    config = CLIPConfig(
        text_config=dict(vocab_size=len(vocab), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=2, max_position_embeddings=16, eos_token_id=1, pad_token_id=0,
                         bos_token_id=1),
        vision_config=dict(image_size=32, patch_size=8, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                           num_attention_heads=2),
        projection_dim=16,
    )  # fmt: skip
    torch.manual_seed(0)
    CLIPModel(config).save_pretrained(root)
    gen = torch.Generator().manual_seed(1)
    head = {"layers.0.weight": torch.randn(8, 16, generator=gen), "layers.0.bias": torch.randn(8, generator=gen),
            "layers.2.weight": torch.randn(1, 8, generator=gen), "layers.2.bias": torch.zeros(1)}  # fmt: skip
    save_file(head, str(root / "aesthetic.safetensors"))
    return root


def tiny_clip_frames(root: Path, **overrides):
    make_tiny_clip_dir(root)
    return build_reward("clip_frames", model_dir=str(root), **overrides)


def tiny_aesthetic(root: Path, **overrides):
    make_tiny_clip_dir(root)
    return build_reward(
        "aesthetic", model_dir=str(root), head_path=str(root / "aesthetic.safetensors"), **overrides
    )


# ---------------------------------------------------------------- shapes world

TINY_NET = ShapesRewardNetConfig(channels=(4, 8, 8, 8), dim=16, grid=2)


def tiny_shapes_analytic(folder: Path) -> RewardModel:
    """The analytic reward has no weights: the tiny instance is the real one."""
    return build_reward("shapes_analytic")


def tiny_shapes_learned(folder: Path) -> RewardModel:
    """A randomly initialised tiny network, saved to ``folder`` and loaded through the registry."""
    torch.manual_seed(0)
    save_reward_net(ShapesRewardNet(TINY_NET), folder)
    return build_reward("shapes_learned", path=str(folder))


# ---------------------------------------------------------------- registry name -> builder

TINY_BUILDERS: dict[str, Callable[[Path], RewardModel]] = {
    "videoalign": tiny_videoalign,
    "clip_frames": tiny_clip_frames,
    "aesthetic": tiny_aesthetic,
    "shapes_analytic": tiny_shapes_analytic,
    "shapes_learned": tiny_shapes_learned,
}
"""Reward name -> builder of a tiny, fast instance under a scratch folder (add one per registered reward; the contract tests fail for a name without one)."""


def tiny_generated_set(n_groups: int = 3, seeds: int = 4) -> GeneratedSet:
    """A `GeneratedSet` of rendered train-split videos made worse by seed-dependent noise (``n_groups`` prompts x
    ``seeds``): within a group the oracle ranks them by their noise."""
    from streamvid.core.world import WorldConfig, render, sample_attributes
    from streamvid.distill.shapes_generated import GeneratedSet
    from streamvid.distill.shapes_reward_data import oracle_targets

    videos, prompts, groups = [], [], []
    for g in range(n_groups):
        attrs, prompt = sample_attributes(WorldConfig(), "train", g)
        clean = render(attrs, WorldConfig())
        for s in range(seeds):
            noise = 0.03 * s * torch.randn(clean.shape, generator=torch.Generator().manual_seed(10 * g + s))
            videos.append((clean + noise).clamp(0, 1))
            prompts.append(prompt)
            groups.append(g)
    labels = oracle_targets(videos, prompts, [1] * len(prompts))
    chunk = torch.stack([oracle_targets([v[c : c + 3] for v in videos], prompts, [1] * len(prompts))["axes"]
                         for c in range(0, 12, 3)], 1)
    return GeneratedSet((torch.stack(videos) * 255).round().to(torch.uint8), prompts, ["rendered"] * len(prompts),
                        torch.tensor(groups), labels["axes"], chunk, labels["colour"], labels["shape"],
                        labels["direction"])
