"""Networks of the training stages: build from a config, check and load diffusers directories, export atomically.

Every model a stage writes is a diffusers directory (`save_pretrained`: ``config.json`` +
``diffusion_pytorch_model.safetensors``) that loads back with ``<Class>.from_pretrained(path)``:
`ConvFlowNet` (the shapes-world teacher) or `CausalWanModel` (a Wan teacher, the causal student).

The checks here read only ``config.json`` (no weights, no diffusers import), so a stage reports a missing or
mismatched directory before it builds anything.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import torch

from streamvid.core.atomic import file_mode
from streamvid.core.config import ConfigError
from streamvid.core.model_config import CAUSAL_ONLY_FIELDS, WanModelConfig

__all__ = [
    "MODEL_CLASSES",
    "build_conv",
    "build_wan",
    "check_model_dir",
    "check_same_config",
    "export_model",
    "load_model_dir",
    "load_model_dir_partitioned",
    "plain_copy",
    "stored_dtype",
    "wan_sizes",
    "zero_init_wan",
]

MODEL_CLASSES = ("ConvFlowNet", "CausalWanModel", "WanTransformer3DModel")
"""`_class_name`s of the diffusers directories the stages read (a stock Wan loads as `CausalWanModel`)."""
WEIGHT_FILES = ("diffusion_pytorch_model.safetensors", "diffusion_pytorch_model.safetensors.index.json")


def check_model_dir(path: str | os.PathLike, key: str) -> dict[str, Any]:
    """The ``config.json`` of the diffusers model directory ``path`` (set by config key ``key``).

    Raises `ConfigError` naming the key and the path when the directory, its config or its weights are
    missing, or when its class is not one of `MODEL_CLASSES`.
    """
    path = Path(path)
    if not path.exists():
        raise ConfigError(f"{key}: model directory not found: {path}")
    if not path.is_dir():
        raise ConfigError(f"{key}: {path} is a file; expected a diffusers model directory (save_pretrained)")
    config_file = path / "config.json"
    if not config_file.is_file():
        raise ConfigError(f"{key}: {path} has no config.json; expected a diffusers model directory")
    if not any((path / name).is_file() for name in WEIGHT_FILES):
        raise ConfigError(f"{key}: {path} has no weights ({' or '.join(WEIGHT_FILES)})")
    try:
        config = json.loads(config_file.read_text())
    except (OSError, ValueError) as err:
        raise ConfigError(f"{key}: cannot read {config_file}: {err}") from None
    name = config.get("_class_name") if isinstance(config, dict) else None
    if name not in MODEL_CLASSES:
        raise ConfigError(f"{key}: {config_file} describes a {name!r}; expected one of {', '.join(MODEL_CLASSES)}")
    return config


def check_same_config(found: dict[str, Any], wanted: dict[str, Any], where: str, key: str) -> None:
    """Raise `ConfigError` when a saved model's ``config.json`` (``found``) differs from the sizes the stage
    config builds (``wanted``): "checkpoint of another model size". A key missing from ``found`` counts as
    ``wanted``'s default when ``wanted`` comes from `wan_sizes` (stock Wan configs lack the causal-only keys)."""
    diffs = []
    for name, value in wanted.items():
        saved = found.get(name, WAN_OPTIONAL_DEFAULTS.get(name))
        if isinstance(value, tuple) or isinstance(saved, list):
            value, saved = list(value) if value is not None else None, list(saved) if saved is not None else None
        if saved != value:
            diffs.append(f"{name}={saved!r} there, {value!r} in the config")
    if diffs:
        shown = "; ".join(diffs[:4]) + (f"; and {len(diffs) - 4} more" if len(diffs) > 4 else "")
        raise ConfigError(f"{key}: {where} is another model size: {shown}")


WAN_OPTIONAL_DEFAULTS = {name: getattr(WanModelConfig, name) for name in CAUSAL_ONLY_FIELDS}
"""`CausalWanModel`-only sizes, absent from a stock Wan's config.json."""


def wan_sizes(cfg: WanModelConfig) -> dict[str, Any]:
    """Every `WanModelConfig` field (the causal-only ones too, unlike `to_diffusers_kwargs`), to compare with a
    saved model's config.json."""
    return {f.name: getattr(cfg, f.name) for f in dataclasses.fields(cfg)}


def conv_kwargs(cfg, in_channels: int) -> dict[str, Any]:
    """`ConvFlowNet` constructor arguments from a `ConvNetConfig`."""
    return {
        "in_channels": in_channels,
        "text_dim": cfg.text_dim,
        "width": cfg.width,
        "cond_dim": cfg.cond_dim,
        "freq_dim": cfg.freq_dim,
    }


def build_conv(cfg, in_channels: int) -> torch.nn.Module:
    from streamvid.core.conv_flow import ConvFlowNet

    return ConvFlowNet(**conv_kwargs(cfg, in_channels))


def build_wan(cfg: WanModelConfig, zero_init: bool = True) -> torch.nn.Module:
    from streamvid.core.causal_wan import CausalWanModel

    model = CausalWanModel(**cfg.to_diffusers_kwargs())
    if zero_init:
        zero_init_wan(model)
    return model


def zero_init_wan(model: torch.nn.Module) -> None:
    """Zero the output head and every block's residual-branch output projection (DiT's adaLN-Zero): each block
    starts as the identity and the first prediction is 0, which speeds up early training (the bench's recipe)."""
    for block in model.blocks:
        for layer in (block.attn1.to_out[0], block.attn2.to_out[0], block.ffn.net[-1]):
            torch.nn.init.zeros_(layer.weight)
            torch.nn.init.zeros_(layer.bias)
    torch.nn.init.zeros_(model.proj_out.weight)
    torch.nn.init.zeros_(model.proj_out.bias)


def load_model_dir(path: str | os.PathLike, key: str, dtype: torch.dtype | None = None) -> torch.nn.Module:
    """Load a diffusers directory checked by `check_model_dir` with its own class (stock Wan -> CausalWanModel).

    With ``dtype`` the weights are read straight into it: diffusers builds the model on the meta device and
    loads the safetensors into ``dtype`` (``low_cpu_mem_usage``), so no float32 copy of a bf16 network is made.
    The modules diffusers keeps in float32 are copied out of the memory-mapped file, which is then released (as
    views they kept an fp32 file of the whole network resident: measured by ``bench/memory_plan.py``).
    """
    cls = _model_class(check_model_dir(path, key))
    if dtype is None:
        return cls.from_pretrained(str(path))
    model = cls.from_pretrained(str(path), torch_dtype=dtype, low_cpu_mem_usage=True)
    for tensor in (*model.parameters(), *model.buffers()):
        if tensor.dtype != dtype:  # kept in float32 (diffusers' `_keep_in_fp32_modules`): a view of the mapped
            tensor.data = tensor.data.clone()  # safetensors file, which would keep the whole file resident
    return model


def _model_class(config: dict[str, Any]) -> type:
    """The class `load_model_dir` builds for a checked ``config.json`` (a stock Wan loads as `CausalWanModel`)."""
    if config["_class_name"] == "ConvFlowNet":
        from streamvid.core.conv_flow import ConvFlowNet

        return ConvFlowNet
    from streamvid.core.causal_wan import CausalWanModel

    return CausalWanModel


def _weight_files(path: Path) -> dict[str, Path]:
    """Tensor name -> the safetensors file holding it (one file, or the shards of an index)."""
    from safetensors import safe_open

    index = path / WEIGHT_FILES[1]
    if index.is_file():
        return {name: path / file for name, file in json.loads(index.read_text())["weight_map"].items()}
    with safe_open(str(path / WEIGHT_FILES[0]), framework="pt") as f:
        return dict.fromkeys(f.keys(), path / WEIGHT_FILES[0])


def _constructed_buffers(cls: type, kwargs: dict[str, Any]) -> dict[str, torch.Tensor]:
    """The buffers ``cls(**kwargs)`` computes, built with zero.Init's wrappers switched off and the parameters
    on the meta device (no memory): under the wrappers every floating tensor the constructor makes is cast to
    the engine's dtype as it is created, so the float64 rope tables would be computed in float32 (or bf16)."""
    from accelerate import init_empty_weights
    from deepspeed.runtime.zero.partition_parameters import restore_init_context, shutdown_init_context

    shutdown_init_context()
    try:
        with init_empty_weights(include_buffers=False):
            reference = cls(**kwargs)
    finally:
        restore_init_context()
    return dict(reference.named_buffers())


def load_model_dir_partitioned(path: str | os.PathLike, key: str) -> torch.nn.Module:
    """`load_model_dir` for ZeRO-3: called inside an active ``deepspeed.zero.Init`` (Lightning's
    ``configure_model`` hook under `DeepSpeedStrategy`), so every parameter is partitioned over the ranks as the
    module is constructed and no rank ever holds the whole network.

    The weights are then copied in one submodule at a time (the HF-transformers recipe for ZeRO-3 checkpoints):
    the submodule's own parameters are gathered (``deepspeed.zero.GatheredParameters(modifier_rank=0)``), rank 0
    reads them from the safetensors files and converts them to the parameters' dtype (zero.Init's: the engine's
    weight dtype), and leaving the context re-partitions rank 0's values over every rank. Buffers are not
    partitioned and are read on every rank. Per rank the peak is the network's partition (its size / world size)
    plus one submodule in full; each file is opened per submodule, so its mapped pages do not accumulate.

    A name the network has but the files lack keeps its constructed value (as diffusers' ``from_pretrained``
    does for the causal-only parameters of a stock Wan); a tensor the network does not have, or one of another
    shape, is a `ConfigError` naming ``key`` and the directory.
    """
    import deepspeed
    from deepspeed.runtime.zero import partition_parameters
    from safetensors import safe_open

    if partition_parameters.zero_init_context == 0:
        raise RuntimeError("load_model_dir_partitioned needs an active deepspeed.zero.Init context")
    path = Path(path)
    config = check_model_dir(path, key)
    cls, kwargs = _model_class(config), {k: v for k, v in config.items() if not k.startswith("_")}
    model = cls(**kwargs)
    with torch.no_grad():  # buffers computed by the constructor (rope tables): zero.Init's tensor wrappers
        computed = _constructed_buffers(cls, kwargs)  # cast its float64 intermediates to the engine dtype
        for name, buffer in model.named_buffers():
            buffer.copy_(computed[name].to(buffer.dtype))
    files = _weight_files(path)
    names = {p_name for p_name, _ in model.named_parameters()} | {b_name for b_name, _ in model.named_buffers()}
    if unknown := sorted(set(files) - names):
        raise ConfigError(f"{key}: {path} holds tensors the {config['_class_name']} does not have: "
                          f"{', '.join(unknown[:4])}{' ...' if len(unknown) > 4 else ''}")
    rank = torch.distributed.get_rank() if torch.distributed.is_initialized() else 0

    def read(names_in_file: list[str], targets: list[torch.Tensor]) -> None:
        by_file: dict[Path, list[tuple[str, torch.Tensor]]] = {}
        for name, target in zip(names_in_file, targets, strict=True):
            by_file.setdefault(files[name], []).append((name, target))
        for file, pairs in by_file.items():
            with safe_open(str(file), framework="pt") as f:
                for name, target in pairs:
                    value = f.get_tensor(name)
                    if value.shape != target.shape:
                        raise ConfigError(f"{key}: {path}: {name} has shape {tuple(value.shape)}, the "
                                          f"{config['_class_name']} {tuple(target.shape)}")
                    target.copy_(value.to(target.dtype))

    with torch.no_grad():
        for prefix, module in model.named_modules():
            own = [(f"{prefix}.{n}" if prefix else n, p) for n, p in module.named_parameters(recurse=False)]
            own = [(n, p) for n, p in own if n in files]
            if own:
                with deepspeed.zero.GatheredParameters([p for _, p in own], modifier_rank=0):
                    if rank == 0:
                        read([n for n, _ in own], [p.data for _, p in own])
            buffers = [(f"{prefix}.{n}" if prefix else n, b) for n, b in module.named_buffers(recurse=False)]
            buffers = [(n, b) for n, b in buffers if b is not None and n in files]
            if buffers:
                read([n for n, _ in buffers], [b for _, b in buffers])
    return model


def stored_dtype(path: str | os.PathLike) -> str:
    """The dtype of the first tensor in a diffusers directory's safetensors (read from the header only)."""
    from safetensors import safe_open

    name, file = next(iter(_weight_files(Path(path)).items()))
    with safe_open(str(file), framework="pt") as f:
        return str(f.get_slice(name).get_dtype())


def export_model(model: torch.nn.Module, out_dir: str | os.PathLike) -> Path:
    """``model.save_pretrained`` into ``out_dir``, atomically per file.

    Everything is written to a temporary folder inside ``out_dir`` first and then renamed into place
    (`os.replace`), the weights last: an interrupted export leaves the previous files complete. Other files in
    ``out_dir`` (the resolved config, a run folder) are kept.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=out_dir, prefix=".export-"))
    try:
        model.save_pretrained(str(tmp), safe_serialization=True)
        for name in sorted(os.listdir(tmp), key=lambda n: (n.endswith(".safetensors"), n)):
            os.chmod(tmp / name, file_mode())  # safetensors writes its file 0600
            os.replace(tmp / name, out_dir / name)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out_dir


def plain_copy(module: torch.nn.Module, values: bool = True) -> torch.nn.Module:
    """A hook-free copy of a diffusers model: a fresh instance built from its config, with (``values``) its
    parameter and buffer values.

    ``copy.deepcopy`` would also copy the forward hooks DeepSpeed ZeRO-3 registers on every submodule (and
    diffusers' ``from_config`` builds under ``zero.Init`` when ZeRO-3 is on), so the copy is built by calling the
    class; call this inside `gathered(module)` under ZeRO-3, where the parameters hold their full values."""
    if not hasattr(module, "config"):
        import copy

        return copy.deepcopy(module)
    fresh = type(module)(**{k: v for k, v in module.config.items() if not k.startswith("_")})
    dtype = next(module.parameters()).dtype
    if dtype != next(fresh.parameters()).dtype:  # (diffusers warns at every cast, needed or not)
        fresh = fresh.to(dtype)
    if values:
        with torch.no_grad():
            for dst, src in zip(fresh.parameters(), module.parameters(), strict=True):
                dst.copy_(src.detach().reshape(dst.shape))
            for dst, src in zip(fresh.buffers(), module.buffers(), strict=True):
                dst.copy_(src.detach().reshape(dst.shape))
    return fresh
