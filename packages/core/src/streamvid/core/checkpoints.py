"""Checkpoint files: load, convert original Wan / Self-Forcing layouts to diffusers names, save.

Every state dict inside streamvid uses the key names of diffusers' ``WanTransformer3DModel``
(``blocks.0.attn1.to_q.weight``). Checkpoints from the original Wan code and from the Self-Forcing family
(Self-Forcing, LongLive, Reward Forcing) use the original names (``model.blocks.0.self_attn.q.weight``) and
are converted once, on load (``streaming-anchors.md`` sections 1.8 and 3.2).

Typical use::

    model = WanTransformer3DModel(**config)
    load_checkpoint("checkpoints/self_forcing_dmd.pt", model)           # picks generator_ema if present
    save_model(model, "out/step_1000")                                  # model.safetensors + config.json
"""

from __future__ import annotations

import json
import os
import re
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from streamvid.core.atomic import atomic_write, file_mode

Source = Literal["auto", "wan", "self_forcing", "longlive", "reward_forcing"]
_WRAPPED_SOURCES = ("self_forcing", "longlive", "reward_forcing")
_TORCH_SUFFIXES = (".pt", ".pth", ".bin")
_DIR_SINGLE_FILES = ("diffusion_pytorch_model.safetensors", "model.safetensors")

# Wrapper artefacts removed wherever they occur (FSDP, activation checkpointing, torch.compile).
_INFIX_ARTEFACTS = ("_fsdp_wrapped_module.", "_checkpoint_wrapped_module.", "_orig_mod.")
# Leading prefixes, stripped in this order when *every* key carries them: DDP, ComfyUI, WanDiffusionWrapper.
_LEADING_PREFIXES = ("module.", "model.diffusion_model.", "model.")

_ORIGINAL_KEY = re.compile(
    r"(^|\.)(self_attn|cross_attn|time_embedding|text_embedding|time_projection|head|modulation|img_emb)(\.|$)"
)
_DIFFUSERS_KEY = re.compile(r"(^|\.)(attn1|attn2|condition_embedder|proj_out|scale_shift_table)(\.|$)")
_LORA_KEY = re.compile(r"lora_(A|B|down|up)\b")

# diffusers -> original, ordered regex rules. The inverse of diffusers' `convert_wan_transformer_to_diffusers`
# for T2V and I2V Wan2.1 transformers.
_TO_ORIGINAL_RULES: tuple[tuple[str, str], ...] = (
    (r"^condition_embedder\.time_embedder\.linear_1\.", "time_embedding.0."),
    (r"^condition_embedder\.time_embedder\.linear_2\.", "time_embedding.2."),
    (r"^condition_embedder\.text_embedder\.linear_1\.", "text_embedding.0."),
    (r"^condition_embedder\.text_embedder\.linear_2\.", "text_embedding.2."),
    (r"^condition_embedder\.time_proj\.", "time_projection.1."),
    (r"^condition_embedder\.image_embedder\.norm1\.", "img_emb.proj.0."),
    (r"^condition_embedder\.image_embedder\.ff\.net\.0\.proj\.", "img_emb.proj.1."),
    (r"^condition_embedder\.image_embedder\.ff\.net\.2\.", "img_emb.proj.3."),
    (r"^condition_embedder\.image_embedder\.norm2\.", "img_emb.proj.4."),
    (r"^scale_shift_table$", "head.modulation"),
    (r"^proj_out\.", "head.head."),
    (r"^(blocks\.\d+)\.scale_shift_table$", r"\1.modulation"),
    (r"\.ffn\.net\.0\.proj\.", ".ffn.0."),
    (r"\.ffn\.net\.2\.", ".ffn.2."),
    # Norm swap: diffusers numbers norms in order of use (norm2 = affine cross-attn pre-norm);
    # the original code calls that one norm3. The placeholder keeps the two rules from undoing each other.
    (r"^(blocks\.\d+)\.norm2\.", r"\1.norm__swap."),
    (r"^(blocks\.\d+)\.norm3\.", r"\1.norm2."),
    (r"^(blocks\.\d+)\.norm__swap\.", r"\1.norm3."),
    (r"\.attn1\.", ".self_attn."),
    (r"\.attn2\.", ".cross_attn."),
    (r"\.to_q\.", ".q."),
    (r"\.to_k\.", ".k."),
    (r"\.to_v\.", ".v."),
    (r"\.to_out\.0\.", ".o."),
    (r"\.add_k_proj\.", ".k_img."),
    (r"\.add_v_proj\.", ".v_img."),
    (r"\.norm_added_k\.", ".norm_k_img."),
)


class CheckpointFormatError(ValueError):
    """A checkpoint file or dict does not have the layout that was asked for or can be detected."""


class CheckpointMismatchError(ValueError):
    """A state dict does not fit a model: missing / unexpected keys or shape mismatches."""


def save_safetensors(
    state_dict: Mapping[str, torch.Tensor], path: str | Path, metadata: dict[str, str] | None = None
) -> Path:
    """Write ``state_dict`` to ``path`` (tensors are detached, made contiguous, moved to CPU), atomically and with
    the umask's mode (`atomic_write`; safetensors alone writes 0600)."""
    path = Path(path)
    tensors = {k: v.detach().contiguous().cpu() for k, v in state_dict.items()}
    with atomic_write(path) as tmp:
        save_file(tensors, str(tmp), metadata={"format": "pt", **(metadata or {})})
    return path


def load_safetensors(path: str | Path) -> dict[str, torch.Tensor]:
    """Read a ``.safetensors`` file onto the CPU."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"safetensors file not found: {path}")
    try:
        return load_file(str(path), device="cpu")
    except SafetensorError as err:
        raise CheckpointFormatError(f"{path} is not a readable safetensors file ({err})") from err


def load_state_dict_file(path: str | Path) -> dict[str, Any]:
    """Load a checkpoint from a file or a directory onto the CPU.

    - ``*.safetensors``: via safetensors.
    - ``*.pt`` / ``*.pth`` / ``*.bin``: ``torch.load(..., weights_only=True)`` only; pickles holding arbitrary
      Python objects are refused (``CheckpointFormatError``). May return nested dicts (``{"generator": {...}}``).
    - a directory: ``diffusion_pytorch_model.safetensors`` or ``model.safetensors``, else the shards listed by
      one ``*.safetensors.index.json`` (``{"weight_map": {key: shard_file}}``).
    """
    path = Path(path)
    if path.is_dir():
        return _load_dir(path)
    if not path.exists():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    if path.suffix == ".safetensors":
        return load_safetensors(path)
    if path.suffix in _TORCH_SUFFIXES:
        try:
            return torch.load(path, map_location="cpu", weights_only=True)
        except Exception as e:  # UnpicklingError and friends; weights_only refuses arbitrary objects
            raise CheckpointFormatError(
                f"{path}: torch.load(weights_only=True) failed; only tensors and plain containers are "
                f"loaded, never arbitrary pickled objects. Cause: {type(e).__name__}: {str(e)[:300]}"
            ) from e
    raise CheckpointFormatError(
        f"{path}: unknown checkpoint extension {path.suffix!r}; expected .safetensors, "
        f"{', '.join(_TORCH_SUFFIXES)} or a directory"
    )


def _load_dir(path: Path) -> dict[str, torch.Tensor]:
    for name in _DIR_SINGLE_FILES:
        if (path / name).is_file():
            return load_safetensors(path / name)
    indexes = sorted(path.glob("*.safetensors.index.json"))
    if len(indexes) == 1:
        weight_map = json.loads(indexes[0].read_text())["weight_map"]
        state_dict: dict[str, torch.Tensor] = {}
        for shard in sorted(set(weight_map.values())):
            state_dict.update(load_safetensors(path / shard))
        return state_dict
    hint = f"; did you mean {path / 'transformer'}?" if (path / "transformer").is_dir() else ""
    raise CheckpointFormatError(
        f"{path}: no weights found; looked for {', '.join(_DIR_SINGLE_FILES)} or exactly one "
        f"*.safetensors.index.json (found {len(indexes)}){hint}"
    )


def _strip_prefixes(state_dict: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(state_dict)
    for artefact in _INFIX_ARTEFACTS:
        out = {k.replace(artefact, ""): v for k, v in out.items()}
    for prefix in _LEADING_PREFIXES:
        if out and all(k.startswith(prefix) for k in out):
            out = {k[len(prefix) :]: v for k, v in out.items()}
    return out


def _key_format(keys: list[str]) -> Literal["original", "diffusers", "neutral"]:
    """``neutral`` = only keys both layouts share (``patch_embedding.*``), or nothing."""
    is_original = [k for k in keys if _ORIGINAL_KEY.search(k)]
    is_diffusers = [k for k in keys if _DIFFUSERS_KEY.search(k)]
    if is_original and is_diffusers:
        raise CheckpointFormatError(
            f"state dict mixes original Wan keys (e.g. {is_original[0]!r}) and diffusers keys "
            f"(e.g. {is_diffusers[0]!r}); cannot convert"
        )
    return "original" if is_original else "diffusers" if is_diffusers else "neutral"


def _pick_generator(checkpoint: Mapping[str, Any], use_ema: bool) -> Mapping[str, Any]:
    if "generator_lora" in checkpoint:
        raise CheckpointFormatError(
            "checkpoint holds 'generator_lora' (LongLive LoRA); LoRA must be merged into the base weights first"
        )
    if use_ema and "generator_ema" in checkpoint:
        return checkpoint["generator_ema"]
    if "generator" not in checkpoint:
        raise CheckpointFormatError(
            f"checkpoint has no 'generator' (use_ema={use_ema}); top-level keys: {sorted(checkpoint)[:10]}"
        )
    if use_ema:
        warnings.warn(
            "use_ema=True but the checkpoint has no 'generator_ema'; using 'generator'", stacklevel=3
        )
    return checkpoint["generator"]


def convert_original_wan(
    state_dict: Mapping[str, Any], *, source: Source = "auto", use_ema: bool = True
) -> dict[str, torch.Tensor]:
    """Convert a Wan-family checkpoint dict to diffusers ``WanTransformer3DModel`` key names.

    Args:
        state_dict: a flat ``{key: Tensor}`` dict in original Wan, ComfyUI or diffusers names, or a
            Self-Forcing-style wrapper ``{"generator": {...}, "generator_ema": {...}, "critic": {...}}``.
        source: ``"wan"`` for a flat dict; ``"self_forcing"`` / ``"longlive"`` / ``"reward_forcing"`` for a
            wrapper; ``"auto"`` decides from the top-level keys.
        use_ema: take ``generator_ema`` from a wrapper when present (warns and falls back to ``generator``).

    Examples of the mapping (prefixes ``model.``, ``module.``, ``model.diffusion_model.`` and FSDP artefacts
    are stripped first)::

        model.blocks.0.self_attn.q.weight -> blocks.0.attn1.to_q.weight
        model.blocks.0.cross_attn.o.bias  -> blocks.0.attn2.to_out.0.bias
        model.blocks.0.norm3.weight       -> blocks.0.norm2.weight      (affine cross-attn pre-norm)
        model.blocks.0.modulation         -> blocks.0.scale_shift_table
        model.head.modulation             -> scale_shift_table
        model.time_projection.1.weight    -> condition_embedder.time_proj.weight

    Already-diffusers dicts come back unchanged, so the function is idempotent. The renaming itself is
    diffusers' ``convert_wan_transformer_to_diffusers`` (single_file_utils, ordered substring rules).
    """
    if source not in ("auto", "wan", *_WRAPPED_SOURCES):
        raise ValueError(f"unknown source {source!r}; expected auto, wan, {', '.join(_WRAPPED_SOURCES)}")
    is_wrapper = any(k in state_dict for k in ("generator", "generator_ema", "generator_lora"))
    if source in _WRAPPED_SOURCES and not is_wrapper:
        raise CheckpointFormatError(
            f"source={source!r} expects a dict with 'generator'/'generator_ema'; "
            f"top-level keys: {sorted(state_dict)[:10]}"
        )
    if source == "wan" and is_wrapper:
        raise CheckpointFormatError(
            "source='wan' expects a flat state dict but got a generator/critic wrapper; use source='self_forcing'"
        )
    flat = _pick_generator(state_dict, use_ema) if is_wrapper else state_dict
    not_tensors = [k for k, v in flat.items() if not isinstance(v, torch.Tensor)]
    if not_tensors:
        raise CheckpointFormatError(
            f"expected a flat dict of tensors; non-tensor entries: {not_tensors[:10]}"
        )
    lora = [k for k in flat if _LORA_KEY.search(k)]
    if lora:
        raise CheckpointFormatError(
            f"checkpoint holds {len(lora)} LoRA keys (e.g. {lora[0]!r}); LoRA must be merged into the base "
            "weights first"
        )
    flat = _strip_prefixes(flat)
    if _key_format(list(flat)) != "original":
        return flat
    from diffusers.loaders.single_file_utils import convert_wan_transformer_to_diffusers

    return convert_wan_transformer_to_diffusers(dict(flat))  # it pops from its argument: pass a copy


def convert_diffusers_to_original(state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Inverse of :func:`convert_original_wan` for a flat diffusers dict (no ``model.`` prefix added).

    ``blocks.0.attn1.to_q.weight -> blocks.0.self_attn.q.weight``,
    ``blocks.0.norm2.weight -> blocks.0.norm3.weight``, ``proj_out.weight -> head.head.weight``.
    """
    if _key_format(list(state_dict)) == "original":
        return dict(state_dict)
    out = {}
    for key, value in state_dict.items():
        new_key = key
        for pattern, repl in _TO_ORIGINAL_RULES:
            new_key = re.sub(pattern, repl, new_key)
        out[new_key] = value
    return out


def load_model_weights(
    model: torch.nn.Module, state_dict: Mapping[str, torch.Tensor], *, strict: bool = True
) -> torch.nn.modules.module._IncompatibleKeys:
    """``model.load_state_dict`` with one readable error.

    Raises ``CheckpointMismatchError`` listing missing / unexpected keys (first 10 of each, with counts;
    only when ``strict``) and shape mismatches (always; first 10, with the count) as
    ``key: expected (..), got (..)``.
    Returns torch's ``(missing_keys, unexpected_keys)`` tuple.
    """
    expected = model.state_dict()
    missing = [k for k in expected if k not in state_dict]
    unexpected = [k for k in state_dict if k not in expected]
    shapes = [
        f"{k}: expected {tuple(expected[k].shape)}, got {tuple(v.shape)}"
        for k, v in state_dict.items()
        if k in expected and tuple(v.shape) != tuple(expected[k].shape)
    ]
    if shapes or (strict and (missing or unexpected)):
        lines = [f"state dict does not fit {type(model).__name__}:"]
        for label, keys in (("missing", missing), ("unexpected", unexpected)):
            if keys and strict:
                more = f", ... (+{len(keys) - 10} more)" if len(keys) > 10 else ""
                lines.append(f"  {len(keys)} {label} keys: {', '.join(keys[:10])}{more}")
        if shapes:
            more = f" (first 10 of {len(shapes)} shown)" if len(shapes) > 10 else ""
            lines.append(f"  {len(shapes)} shape mismatches{more}:")
            lines += [f"    {s}" for s in shapes[:10]]
        raise CheckpointMismatchError("\n".join(lines))
    return model.load_state_dict(dict(state_dict), strict=strict)


def save_model(
    model: torch.nn.Module,
    out_dir: str | Path,
    config: Mapping[str, Any] | None = None,
    *,
    diffusers_format: bool = False,
) -> Path:
    """Save weights and the resolved config; returns the weights path.

    Default: ``out_dir/model.safetensors`` + ``out_dir/config.json`` holding ``config`` (or, when ``None``,
    the model's diffusers ``config`` without private ``_`` keys) plus ``"_class_name"``.
    ``diffusers_format=True``: ``model.save_pretrained(out_dir)`` (``diffusion_pytorch_model.safetensors`` +
    diffusers ``config.json``, readable by ``from_pretrained``); needs a diffusers ``ModelMixin`` and no ``config``.
    Both layouts load back with :func:`load_checkpoint`.
    """
    out_dir = Path(out_dir)
    if diffusers_format:
        if not hasattr(model, "save_pretrained") or config is not None:
            raise ValueError("diffusers_format=True needs a diffusers ModelMixin and config=None")
        model.save_pretrained(out_dir, safe_serialization=True)
        weights = out_dir / "diffusion_pytorch_model.safetensors"
        os.chmod(weights, file_mode())  # safetensors writes its file 0600
        return weights
    if config is None:
        config = {
            k: v for k, v in dict(getattr(model, "config", None) or {}).items() if not k.startswith("_")
        }
    weights = save_safetensors(model.state_dict(), out_dir / "model.safetensors")
    resolved = {"_class_name": type(model).__name__, **config}
    (out_dir / "config.json").write_text(json.dumps(resolved, indent=2, sort_keys=True) + "\n")
    return weights


def load_checkpoint(
    path: str | Path,
    model: torch.nn.Module,
    *,
    source: Source = "auto",
    use_ema: bool = True,
    strict: bool = True,
) -> torch.nn.Module:
    """``load_state_dict_file`` -> ``convert_original_wan`` -> ``load_model_weights``; returns ``model``."""
    state_dict = convert_original_wan(load_state_dict_file(path), source=source, use_ema=use_ema)
    load_model_weights(model, state_dict, strict=strict)
    return model
