"""VideoAlign / VideoReward (Qwen2-VL reward model) on transformers 5, from local directories only.

Model (methods.md A.3.1; anchors 2.1): transformers' ``Qwen2VLModel`` (vision tower + LM, no ``lm_head``), a
linear ``rm_head`` (hidden -> 1, no bias) read at the three added tokens ``<|VQ_reward|>``, ``<|MQ_reward|>``,
``<|TA_reward|>`` of the "detailed_special" prompt, giving raw VQ, MQ, TA -> axes ``visual``, ``motion``,
``text``. Axes are z-normalised with the published constants; ``score`` is their mean (the frame API of the
reference; its file API returns the sum: ``combine="sum"``). Preprocessing is the differentiable torch path
of `qwen2vl_preprocess`, so gradients reach the pixels (`saliency`).

Weights, as released by VideoAlign (``checkpoint_dir``, directly or in ``checkpoint-<step>/``):

- ``model.pth`` or ``model.safetensors``: a full state dict (peft-wrapped or plain, transformers 4.x or 5.x
  key names); or
- ``adapter_model.safetensors`` + ``non_lora_state_dict.pth``: LoRA deltas on the LM, plus the trained
  non-LoRA tensors (vision tower, embeddings, ``rm_head``); the base Qwen2-VL weights come from
  ``base_model_dir`` and LoRA is merged into them here, ``W += (alpha / r) B A`` (no peft needed).

``base_model_dir`` (default: ``checkpoint_dir``) holds the Qwen2-VL ``config.json`` and tokenizer files.
Text after the video gets M-RoPE positions by the original Qwen2-VL rule (max vision position + 1), which the
checkpoint was trained with; transformers 5.23 ignores the temporal extent there (`mrope_position_ids`).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import torch
from torch import Tensor, nn

from streamvid.core.rewards.base import BaseReward
from streamvid.core.rewards.configs import VideoAlignConfig
from streamvid.core.rewards.qwen2vl_preprocess import Qwen2VLVideoPreprocessor
from streamvid.core.rewards.videoalign_prompt import REWARD_TOKENS, build_prompt, format_chat, load_template

__all__ = ["VideoAlignConfig", "VideoAlignReward", "find_checkpoint", "load_state_dict", "mrope_position_ids"]

EXPECTED_WEIGHTS = (
    "model.pth or model.safetensors (full state dict), or adapter_model.safetensors + non_lora_state_dict.pth "
    "(LoRA), directly in the folder or in checkpoint-<step>/"
)
_TOKENIZER_FILES = ("tokenizer.json", "vocab.json")
_LORA_KEY = re.compile(r"^(.*)\.lora_([AB])(?:\.[^.]+)?\.weight$")


def find_checkpoint(root: str | Path, step: int | None = None) -> tuple[str, Path]:
    """Locate the weights under ``root``: ``("full", file)`` or ``("lora", folder)``.

    Raises:
        FileNotFoundError: naming ``root`` and the expected files.
    """
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(
            f"VideoAlign checkpoint directory not found: '{root}' (expected {EXPECTED_WEIGHTS})"
        )
    if step is not None:
        candidates = [root / f"checkpoint-{step}"]
    else:
        steps = [p for p in root.glob("checkpoint-*") if p.is_dir() and p.name.split("-")[-1].isdigit()]
        candidates = [root, *sorted(steps, key=lambda p: int(p.name.split("-")[-1]), reverse=True)]
    for folder in candidates:
        for name in ("model.pth", "model.safetensors"):
            if (folder / name).is_file():
                return "full", folder / name
        if (folder / "adapter_model.safetensors").is_file() and (
            folder / "non_lora_state_dict.pth"
        ).is_file():
            return "lora", folder
    where = f"'{candidates[0]}'" if step is not None else f"'{root}'"
    raise FileNotFoundError(f"no VideoAlign weights in {where}: expected {EXPECTED_WEIGHTS}")


def load_state_dict(path: Path) -> dict[str, Tensor]:
    """A ``.safetensors`` or torch ``.pth`` / ``.bin`` state dict, on CPU (torch files with weights_only)."""
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path))
    state = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(state, dict):
        raise ValueError(f"'{path}' does not hold a state dict (got {type(state).__name__})")
    return state


def _canonical(state: dict[str, Tensor]) -> tuple[dict[str, Tensor], dict[str, dict[str, Tensor]]]:
    """Map checkpoint keys to ``Qwen2VLModel`` + ``rm_head`` names; split out LoRA A/B per module.

    Handles peft wrapping (``base_model.model.``, ``.base_layer.``, ``lora_A[.default]``), transformers 4.x
    names (``model.layers`` -> ``language_model.layers``; ``visual`` stays) and 5.x names
    (``model.language_model``, ``model.visual``). ``lm_head`` is dropped (unused by the reward).
    """
    weights: dict[str, Tensor] = {}
    lora: dict[str, dict[str, Tensor]] = {}
    for key, value in state.items():
        for prefix in ("module.", "base_model.model."):
            if key.startswith(prefix):
                key = key[len(prefix) :]
        key = key.replace(".base_layer.", ".")
        if key.startswith("lm_head."):
            continue
        if key.startswith(("model.visual.", "model.language_model.")):
            key = key[len("model.") :]
        elif key.startswith("model."):
            key = "language_model." + key[len("model.") :]
        if match := _LORA_KEY.match(key):
            lora.setdefault(match.group(1), {})[match.group(2)] = value
        else:
            weights[key] = value
    return weights, lora


def _lora_scale(folder: Path, config: VideoAlignConfig) -> float:
    """``alpha / r`` from the config, else adapter_config.json, else model_config.json, else 128 / 64."""
    r, alpha = config.lora_r, config.lora_alpha
    for name, r_key, a_key, section in (
        ("adapter_config.json", "r", "lora_alpha", None),
        ("model_config.json", "lora_r", "lora_alpha", "peft_lora_config"),
    ):
        for path in (folder / name, folder.parent / name):
            if path.is_file():
                data = json.loads(path.read_text())
                data = data.get(section, {}) if section else data
                r = r if r is not None else data.get(r_key)
                alpha = alpha if alpha is not None else data.get(a_key)
    return float(alpha if alpha is not None else 128) / float(r if r is not None else 64)


def _merge_lora(weights: dict[str, Tensor], lora: dict[str, dict[str, Tensor]], scale: float) -> None:
    """In place: ``weights[m.weight] += scale * B @ A`` for every LoRA module ``m`` (float32 accumulate)."""
    for module, ab in lora.items():
        key = f"{module}.weight"
        if set(ab) != {"A", "B"} or key not in weights:
            raise ValueError(f"LoRA module '{module}' needs lora_A, lora_B and a base weight '{key}'")
        base = weights[key]
        delta = ab["B"].float() @ ab["A"].float()
        if delta.shape != base.shape:
            raise ValueError(
                f"LoRA delta for '{key}' has shape {tuple(delta.shape)}; base is {tuple(base.shape)}"
            )
        weights[key] = (base.float() + scale * delta).to(base.dtype)


def mrope_position_ids(
    input_ids: Tensor, mask: Tensor, grid_thw: Tensor, video_token_id: int, merge: int
) -> Tensor:
    """Qwen2-VL M-RoPE positions ``[3, B, L]`` for one video per row (transformers 4.45 ``get_rope_index``).

    Text before the video counts 0, 1, ...; the video's tokens get ``start + (t, h, w)`` on the three axes;
    text after it restarts at the largest vision position + 1. Padding (``mask`` False) gets 1.
    """
    b, length = input_ids.shape
    pos = torch.ones(3, b, length, dtype=torch.long, device=input_ids.device)
    for i in range(b):
        valid = mask[i].bool()
        ids = input_ids[i, valid]
        t, h, w = (int(v) for v in grid_thw[i])
        h, w = h // merge, w // merge
        start = int((ids == video_token_id).nonzero()[0, 0])
        n_after = ids.numel() - start - t * h * w
        grid = torch.stack(torch.meshgrid(torch.arange(t), torch.arange(h), torch.arange(w), indexing="ij"))
        row = torch.cat(
            [
                torch.arange(start).expand(3, -1),
                grid.reshape(3, -1) + start,
                torch.arange(n_after).expand(3, -1) + start + max(t, h, w),
            ],
            dim=1,
        )
        pos[:, i, valid] = row.to(pos.device)
    return pos


def _load_weights(
    kind: str, where: Path, base: Path, folder: Path, config: VideoAlignConfig
) -> dict[str, Tensor]:
    """Canonical ``Qwen2VLModel`` + ``rm_head`` weights with LoRA merged (see `find_checkpoint` for ``kind``)."""
    if kind == "full":
        weights, lora = _canonical(load_state_dict(where))
    else:
        shards = sorted(base.glob("model*.safetensors"))
        if not shards:
            raise FileNotFoundError(
                f"LoRA checkpoint needs base Qwen2-VL weights: no model*.safetensors in '{base}'"
            )
        weights = {}
        for shard in shards:
            weights.update(_canonical(load_state_dict(shard))[0])
        non_lora, lora = _canonical(load_state_dict(where / "non_lora_state_dict.pth"))
        adapter, adapter_lora = _canonical(load_state_dict(where / "adapter_model.safetensors"))
        weights.update(non_lora)
        weights.update(adapter)
        lora.update(adapter_lora)
    if lora:
        _merge_lora(weights, lora, _lora_scale(folder, config))
    return weights


def _build_backbone(
    model_cfg, weights: dict[str, Tensor], dtype: torch.dtype, attn: str, source: str
) -> nn.Module:
    """``Qwen2VLModel`` built on the meta device and assigned ``weights`` (cast to ``dtype``): no random init.

    RoPE ``inv_freq`` buffers are not in state dicts; their modules are rebuilt on CPU from their configs (fp32).
    """
    from transformers import Qwen2VLModel

    with torch.device("meta"):
        backbone = Qwen2VLModel._from_config(model_cfg, attn_implementation=attn, dtype=dtype)
    weights = {k: v.to(dtype) if v.is_floating_point() else v for k, v in weights.items()}
    missing, unexpected = backbone.load_state_dict(weights, strict=False, assign=True)
    if missing or unexpected:
        raise ValueError(
            f"VideoAlign weights in {source} do not fit Qwen2-VL: missing {sorted(missing)[:5]}"
            f"{'...' if len(missing) > 5 else ''}, unexpected {sorted(unexpected)[:5]}"
        )
    for name, module in list(backbone.named_modules()):
        if any(b.is_meta for b in module.buffers(recurse=False)):
            parent, _, child = name.rpartition(".")
            setattr(backbone.get_submodule(parent), child, type(module)(module.config))
    return backbone


class VideoAlignReward(BaseReward):
    """VideoReward: ``video [B, T, 3, H, W]`` in [0, 1] + prompts -> axes visual/motion/text (VQ/MQ/TA), ``[B]``.

    Args:
        config: a `VideoAlignConfig` (normalisation, combination, preprocessing).
        backbone: transformers ``Qwen2VLModel`` (frozen).
        rm_head: ``Linear(hidden, 1 or 3, bias=False)``; with 3 outputs the diagonal is read (reference).
        tokenizer: Qwen2-VL tokenizer that knows the three reward tokens.
    """

    axes = ("visual", "motion", "text")
    config_class = VideoAlignConfig

    def __init__(self, config: VideoAlignConfig, backbone: nn.Module, rm_head: nn.Linear, tokenizer) -> None:
        super().__init__(config)
        self.backbone = backbone.requires_grad_(False)
        self.rm_head = rm_head.requires_grad_(False)
        self.tokenizer = tokenizer
        self.template = load_template(config.prompt_template_file)
        vision = backbone.config.vision_config
        self.merge = int(vision.spatial_merge_size)
        self.preprocess = Qwen2VLVideoPreprocessor(
            **config.video_settings(), patch_size=int(vision.patch_size),
            temporal_patch_size=int(vision.temporal_patch_size), merge_size=self.merge,
        )  # fmt: skip
        self.video_token_id = int(backbone.config.video_token_id)
        vocab = tokenizer.get_vocab()
        missing = [t for t in (*REWARD_TOKENS, "<|video_pad|>") if t not in vocab]
        if missing:
            raise ValueError(f"VideoAlign tokenizer lacks tokens {missing}")
        if vocab["<|video_pad|>"] != self.video_token_id:
            raise ValueError(
                f"tokenizer's <|video_pad|> id {vocab['<|video_pad|>']} != config video_token_id {self.video_token_id}"
            )
        self.reward_token_ids = [vocab[t] for t in REWARD_TOKENS]
        self.pad_id = int(tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0)
        self.eval()

    def train(self, mode: bool = True) -> VideoAlignReward:
        """Set the mode; with ``gradient_checkpointing`` the backbone stays in training mode, since transformers
        only checkpoints in training mode (Qwen2-VL has no dropout, so outputs are unchanged)."""
        super().train(mode)
        if self.config.gradient_checkpointing:
            self.backbone.train(True)
        return self

    @classmethod
    def from_config(cls, config: VideoAlignConfig) -> VideoAlignReward:
        """Load tokenizer, Qwen2-VL and ``rm_head`` from the local folders in ``config`` (never downloads)."""
        from tokenizers import AddedToken
        from transformers import AutoTokenizer, Qwen2VLConfig

        if not config.checkpoint_dir:
            raise ValueError("VideoAlignConfig.checkpoint_dir is required (a local folder with the weights)")
        kind, where = find_checkpoint(config.checkpoint_dir, config.checkpoint_step)
        base = Path(config.base_model_dir or config.checkpoint_dir)
        if not (base / "config.json").is_file():
            raise FileNotFoundError(f"Qwen2-VL base folder '{base}' lacks config.json (set base_model_dir)")
        folder = where.parent if kind == "full" else where
        tok_dir = next((d for d in (folder, Path(config.checkpoint_dir), base)
                        if any((d / f).is_file() for f in _TOKENIZER_FILES)), None)  # fmt: skip
        if tok_dir is None:
            raise FileNotFoundError(f"no Qwen2-VL tokenizer ({' or '.join(_TOKENIZER_FILES)}) in '{base}'")
        weights = _load_weights(kind, where, base, folder, config)
        if "rm_head.weight" not in weights:
            raise ValueError(f"VideoAlign weights in '{where}' have no rm_head.weight")
        head_w = weights.pop("rm_head.weight")

        tokenizer = AutoTokenizer.from_pretrained(
            str(tok_dir), local_files_only=True, trust_remote_code=False
        )
        new = [
            AddedToken(t, special=True, normalized=False)
            for t in REWARD_TOKENS
            if t not in tokenizer.get_vocab()
        ]
        if new:
            tokenizer.add_tokens(new, special_tokens=True)
        model_cfg = Qwen2VLConfig.from_pretrained(str(base), local_files_only=True)
        embed = weights.get("language_model.embed_tokens.weight")
        if embed is not None:
            model_cfg.text_config.vocab_size = int(embed.shape[0])
        dtype = getattr(torch, config.dtype)
        backbone = _build_backbone(model_cfg, weights, dtype, config.attn_implementation, f"'{where}'")
        if max(tokenizer.get_vocab()[t] for t in REWARD_TOKENS) >= model_cfg.text_config.vocab_size:
            raise ValueError(
                f"reward token ids exceed the embedding rows ({model_cfg.text_config.vocab_size})"
            )
        rm_head = nn.Linear(head_w.shape[1], head_w.shape[0], bias=False)
        rm_head.weight.data.copy_(head_w)
        if config.gradient_checkpointing:
            kwargs = {"use_reentrant": False}
            if hasattr(backbone, "activation_checkpointing_enable"):  # transformers >= 5.2x renamed it
                backbone.activation_checkpointing_enable(kwargs)
            else:
                backbone.gradient_checkpointing_enable(gradient_checkpointing_kwargs=kwargs)
        # the backbone is already in ``dtype``; casting the whole module would also cast RoPE buffers
        return cls(config, backbone, rm_head.to(dtype), tokenizer).to(config.device)

    def tokenize(self, prompts: list[str], n_video_tokens: int) -> tuple[Tensor, Tensor]:
        """Chat-formatted prompts -> ``(input_ids [B, L], mask [B, L] bool)``, right-padded, video pad expanded."""
        rows = []
        for prompt in prompts:
            text = format_chat(self.tokenizer, build_prompt(prompt, self.template))
            ids = self.tokenizer(text, add_special_tokens=False)["input_ids"]
            at = [i for i, t in enumerate(ids) if t == self.video_token_id]
            if len(at) != 1:
                raise ValueError(f"expected one <|video_pad|> in the formatted prompt; found {len(at)}")
            rows.append(ids[: at[0]] + [self.video_token_id] * n_video_tokens + ids[at[0] + 1 :])
        length = max(len(r) for r in rows)
        ids = torch.full((len(rows), length), self.pad_id, dtype=torch.long)
        mask = torch.zeros(len(rows), length, dtype=torch.bool)
        for i, r in enumerate(rows):
            ids[i, : len(r)] = torch.tensor(r)
            mask[i, : len(r)] = True
        return ids, mask

    def raw_scores(self, video: Tensor, prompts: list[str]) -> Tensor:
        """Un-normalised head outputs ``[B, 3]`` (VQ, MQ, TA) read at the three reward tokens."""
        device = self.rm_head.weight.device
        pixel_values, grid = self.preprocess(video.to(device))
        n_video = int(grid[0].prod()) // self.merge**2
        ids, mask = self.tokenize(prompts, n_video)
        ids, mask, grid = ids.to(device), mask.to(device), grid.to(device)
        pos = mrope_position_ids(ids, mask, grid, self.video_token_id, self.merge)
        hidden = self.backbone(
            input_ids=ids, attention_mask=mask.long(), position_ids=pos,
            pixel_values_videos=pixel_values.to(self.rm_head.weight.dtype), video_grid_thw=grid,
        ).last_hidden_state  # fmt: skip
        at = []
        for token in self.reward_token_ids:
            hits = ids == token
            if not bool((hits.sum(1) == 1).all()):
                raise ValueError(f"each prompt must contain reward token id {token} exactly once")
            at.append(hits.float().argmax(1))
        positions = torch.stack(at, 1)  # [B, 3]
        picked = hidden.gather(1, positions.unsqueeze(-1).expand(-1, -1, hidden.shape[-1]))  # [B, 3, D]
        logits = self.rm_head(picked).float()  # [B, 3, out]
        return logits[..., 0] if logits.shape[-1] == 1 else logits.diagonal(dim1=1, dim2=2)

    def score_axes(self, video: Tensor, prompts: list[str]) -> dict[str, Tensor]:
        """``{visual, motion, text}`` = VQ, MQ, TA, each ``[B]``, z-normalised when ``config.normalize``."""
        raw = self.raw_scores(video, prompts)
        if self.config.normalize:
            raw = (raw - raw.new_tensor(self.config.norm_mean)) / raw.new_tensor(self.config.norm_std)
        return {"visual": raw[:, 0], "motion": raw[:, 1], "text": raw[:, 2]}
