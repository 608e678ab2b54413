"""Tests for streamvid.core.checkpoints on a tiny random diffusers WanTransformer3DModel (CPU, seconds)."""

from __future__ import annotations

import json

import pytest
import torch
from diffusers import WanTransformer3DModel

from streamvid.core.checkpoints import (
    CheckpointFormatError,
    CheckpointMismatchError,
    convert_diffusers_to_original,
    convert_original_wan,
    load_checkpoint,
    load_model_weights,
    load_state_dict_file,
    save_model,
    save_safetensors,
)

# head_dim 12 -> RoPE split t/h/w = 4/4/4 (h = w = 2 * (12 // 6)), all even as the rotary pairs need.
TINY = dict(
    patch_size=(1, 2, 2), num_attention_heads=2, attention_head_dim=12, in_channels=4, out_channels=4,
    text_dim=16, freq_dim=32, ffn_dim=32, num_layers=2,
)  # fmt: skip


def tiny_model(seed: int, **overrides) -> WanTransformer3DModel:
    torch.manual_seed(seed)
    model = WanTransformer3DModel(**{**TINY, **overrides}).eval()
    with torch.no_grad():  # stock init leaves norms at 1/0 and some tables tiny: randomise everything
        for p in model.parameters():
            p.copy_(torch.randn_like(p) * 0.2)
    return model


def forward(model: WanTransformer3DModel) -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(1, 4, 2, 4, 4, generator=g)  # [B, C, F, H, W]
    text = torch.randn(1, 5, 16, generator=g)  # [B, L, text_dim]
    with torch.no_grad():
        return model(x, torch.tensor([500]), text).sample


def assert_same_state(a: dict, b: dict) -> None:
    assert sorted(a) == sorted(b)
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=0, msg=k)


def self_forcing_ckpt(generator: WanTransformer3DModel, ema: WanTransformer3DModel | None) -> dict:
    """Layout of Self-Forcing's torch.save: `model.` prefix + original names; EMA names carry FSDP artefacts."""
    ckpt = {
        "generator": {
            f"model.{k}": v for k, v in convert_diffusers_to_original(generator.state_dict()).items()
        },
        "critic": {"model.blocks.0.self_attn.q.weight": torch.zeros(3, 3)},
    }
    if ema is not None:
        ckpt["generator_ema"] = {
            f"model.{k.replace('blocks.0.', 'blocks.0._fsdp_wrapped_module.')}": v
            for k, v in convert_diffusers_to_original(ema.state_dict()).items()
        }
    return ckpt


@pytest.mark.parametrize("overrides", [{}, {"image_dim": 8, "added_kv_proj_dim": 24}], ids=["t2v", "i2v"])
def test_diffusers_original_round_trip_is_identity(overrides):
    state = tiny_model(0, **overrides).state_dict()
    original = convert_diffusers_to_original(state)
    for key in ("blocks.0.norm3.weight", "blocks.0.self_attn.q.weight", "blocks.0.cross_attn.o.bias",
                "head.head.weight", "blocks.0.modulation", "head.modulation", "blocks.0.ffn.0.weight",
                "time_projection.1.weight", "patch_embedding.weight"):  # fmt: skip
        assert key in original, key
    assert "blocks.0.norm2.weight" not in original  # the original FFN pre-norm has no affine parameters
    assert not any("attn1" in k or "condition_embedder" in k for k in original)
    assert_same_state(convert_original_wan(original), state)
    assert_same_state(convert_diffusers_to_original(original), original)  # idempotent both ways
    assert_same_state(convert_original_wan(state), state)


def test_diffusers_converter_swaps_norm2_and_norm3():
    a, b = torch.randn(4), torch.randn(4)
    out = convert_original_wan(
        {"blocks.3.norm2.weight": a, "blocks.3.norm3.weight": b, "head.head.weight": b}
    )
    assert out["blocks.3.norm3.weight"] is a  # original norm2 (FFN pre-norm) -> diffusers norm3
    assert out["blocks.3.norm2.weight"] is b  # original norm3 (affine cross-attn pre-norm) -> diffusers norm2


def test_prefixes_stripped_and_lora_refused():
    state = tiny_model(0).state_dict()
    original = convert_diffusers_to_original(state)
    assert_same_state(
        convert_original_wan({f"model.diffusion_model.{k}": v for k, v in original.items()}), state
    )
    assert_same_state(convert_original_wan({f"module.model.{k}": v for k, v in original.items()}), state)
    with pytest.raises(CheckpointFormatError, match="LoRA must be merged"):
        convert_original_wan({**original, "blocks.0.self_attn.q.lora_A.weight": torch.zeros(2, 24)})
    with pytest.raises(CheckpointFormatError, match="LoRA must be merged"):
        convert_original_wan({"generator_lora": {}, "critic_lora": {}})
    with pytest.raises(CheckpointFormatError, match="mixes original Wan keys"):
        convert_original_wan({**original, "blocks.0.attn1.to_q.weight": torch.zeros(1)})


def test_self_forcing_checkpoint_picks_ema_and_matches_forward(tmp_path):
    gen, ema = tiny_model(1), tiny_model(2)
    path = tmp_path / "self_forcing_dmd.pt"
    torch.save(self_forcing_ckpt(gen, ema), path)

    loaded_ema = load_checkpoint(path, tiny_model(3))
    torch.testing.assert_close(forward(loaded_ema), forward(ema), rtol=0, atol=0)
    loaded_gen = load_checkpoint(path, tiny_model(3), source="self_forcing", use_ema=False)
    torch.testing.assert_close(forward(loaded_gen), forward(gen), rtol=0, atol=0)
    assert not torch.equal(forward(loaded_ema), forward(loaded_gen))

    with pytest.raises(CheckpointFormatError, match="source='wan' expects a flat"):
        load_checkpoint(path, tiny_model(3), source="wan")


def test_missing_ema_warns_and_falls_back(tmp_path):
    gen = tiny_model(1)
    with pytest.warns(UserWarning, match="no 'generator_ema'"):
        state = convert_original_wan(self_forcing_ckpt(gen, None), source="longlive")
    assert_same_state(state, gen.state_dict())
    with pytest.raises(CheckpointFormatError, match="no 'generator' \\(use_ema=False\\)"):
        convert_original_wan({"generator_ema": {}, "critic": {}}, use_ema=False)


def test_mismatch_error_names_keys_and_shapes():
    model = tiny_model(0)
    state = dict(model.state_dict())
    del state["blocks.1.attn2.to_k.bias"]
    state["proj_out.weight"] = torch.zeros(8, 24)
    state["blocks.0.extra.weight"] = torch.zeros(1)
    with pytest.raises(CheckpointMismatchError) as err:
        load_model_weights(model, state)
    msg = str(err.value)
    assert "1 missing keys: blocks.1.attn2.to_k.bias" in msg
    assert "1 unexpected keys: blocks.0.extra.weight" in msg
    assert "proj_out.weight: expected (16, 24), got (8, 24)" in msg
    assert isinstance(err.value, ValueError)
    # non-strict tolerates missing / unexpected keys but never a wrong shape
    with pytest.raises(CheckpointMismatchError, match="shape mismatches") as err:
        load_model_weights(model, state, strict=False)
    assert "missing" not in str(err.value)
    state["proj_out.weight"] = model.state_dict()["proj_out.weight"]
    result = load_model_weights(model, state, strict=False)
    assert result.missing_keys == ["blocks.1.attn2.to_k.bias"]


class _NotATensor:
    def __init__(self) -> None:
        self.payload = [1, 2, 3]


class _RunsCodeOnUnpickle:
    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))  # a full unpickler would create the marker file


def test_torch_files_are_loaded_with_weights_only(tmp_path):
    marker = tmp_path / "executed"
    for i, obj in enumerate([_NotATensor(), _RunsCodeOnUnpickle(str(marker))]):
        path = tmp_path / f"evil{i}.pt"
        torch.save({"generator": {"x": torch.zeros(1)}, "extra": obj}, path)
        with pytest.raises(CheckpointFormatError, match=r"weights_only=True\) failed"):
            load_state_dict_file(path)
    assert not marker.exists()


def test_file_dispatch_and_errors(tmp_path):
    state = tiny_model(0).state_dict()
    save_safetensors(state, tmp_path / "w.safetensors", metadata={"step": "7"})
    assert_same_state(load_state_dict_file(tmp_path / "w.safetensors"), state)
    torch.save(state, tmp_path / "w.bin")
    assert_same_state(load_state_dict_file(tmp_path / "w.bin"), state)

    with pytest.raises(FileNotFoundError, match="nope.safetensors"):
        load_state_dict_file(tmp_path / "nope.safetensors")
    (tmp_path / "w.ckpt").write_bytes(b"")
    with pytest.raises(CheckpointFormatError, match="unknown checkpoint extension '.ckpt'"):
        load_state_dict_file(tmp_path / "w.ckpt")
    (tmp_path / "empty" / "transformer").mkdir(parents=True)
    with pytest.raises(CheckpointFormatError, match="did you mean .*transformer"):
        load_state_dict_file(tmp_path / "empty")


def test_sharded_directory(tmp_path):
    state = tiny_model(0).state_dict()
    keys = sorted(state)
    shards = {"diffusion_pytorch_model-00001-of-00002.safetensors": keys[:20],
              "diffusion_pytorch_model-00002-of-00002.safetensors": keys[20:]}  # fmt: skip
    for name, shard_keys in shards.items():
        save_safetensors({k: state[k] for k in shard_keys}, tmp_path / name)
    weight_map = {k: name for name, shard_keys in shards.items() for k in shard_keys}
    (tmp_path / "diffusion_pytorch_model.safetensors.index.json").write_text(
        json.dumps({"weight_map": weight_map})
    )
    assert_same_state(load_state_dict_file(tmp_path), state)


@pytest.mark.parametrize("diffusers_format", [False, True])
def test_save_model_round_trip(tmp_path, diffusers_format):
    model = tiny_model(5)
    weights = save_model(model, tmp_path, diffusers_format=diffusers_format)
    assert weights.is_file()
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["_class_name"] == "WanTransformer3DModel" and config["ffn_dim"] == 32
    fresh = WanTransformer3DModel(**{k: v for k, v in config.items() if not k.startswith("_")})
    torch.testing.assert_close(
        forward(load_checkpoint(tmp_path, fresh.eval())), forward(model), rtol=0, atol=0
    )
