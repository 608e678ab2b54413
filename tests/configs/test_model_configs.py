"""The shipped backbone sizes build the diffusers Wan transformer with the intended parameter counts."""

from __future__ import annotations

import inspect
from pathlib import Path

import diffusers
import pytest
import torch

from streamvid.core.config import load_config
from streamvid.core.model_config import WanModelConfig

MODEL_DIR = Path(__file__).resolve().parents[2] / "configs" / "model"


def load(name: str) -> WanModelConfig:
    return load_config(MODEL_DIR / f"{name}.yaml", schema=WanModelConfig)


def num_parameters(cfg: WanModelConfig) -> int:
    """Parameter count of `WanTransformer3DModel(cfg)`, built on the meta device (no memory, no init)."""
    with torch.device("meta"):
        model = diffusers.WanTransformer3DModel(**cfg.to_diffusers_kwargs())
    return sum(p.numel() for p in model.parameters())


def test_schema_fields_are_the_diffusers_constructor_arguments() -> None:
    kwargs = WanModelConfig().to_diffusers_kwargs()
    params = inspect.signature(diffusers.WanTransformer3DModel.__init__).parameters
    assert list(kwargs) == [name for name in params if name != "self"]
    assert isinstance(kwargs["patch_size"], tuple)


def test_wan_1_3b_yaml_equals_schema_defaults_and_has_1_419e9_parameters() -> None:
    cfg = load("wan2.1_t2v_1.3b")
    assert cfg == WanModelConfig()
    assert cfg.dim == 1536
    assert num_parameters(cfg) == pytest.approx(1.419e9, rel=5e-3)


@pytest.mark.parametrize(("name", "low", "high"), [("tiny", 1e6, 5e6), ("small", 15e6, 30e6)])
def test_reduced_sizes_parameter_counts(name: str, low: float, high: float) -> None:
    assert low <= num_parameters(load(name)) <= high


def test_tiny_forward_on_cpu_keeps_the_latent_shape() -> None:
    cfg = load("tiny")
    torch.manual_seed(0)
    model = diffusers.WanTransformer3DModel(**cfg.to_diffusers_kwargs()).eval()
    latents = torch.randn(1, cfg.in_channels, 3, 8, 8)
    text = torch.randn(1, 5, cfg.text_dim)
    with torch.no_grad():
        out = model(latents, torch.tensor([500]), text).sample
    assert out.shape == (1, cfg.out_channels, 3, 8, 8) and torch.isfinite(out).all()


def test_causal_wan_1_3b_has_the_stock_state_dict() -> None:
    """CausalWanModel at Wan2.1-1.3B size: same keys and shapes as stock diffusers, so its weights load as is."""
    from streamvid.core.causal_wan import CausalWanModel

    kwargs = load("wan2.1_t2v_1.3b").to_diffusers_kwargs()
    with torch.device("meta"):
        causal, stock = CausalWanModel(**kwargs), diffusers.WanTransformer3DModel(**kwargs)
    ours = {k: tuple(v.shape) for k, v in causal.state_dict().items()}
    theirs = {k: tuple(v.shape) for k, v in stock.state_dict().items()}
    assert ours == theirs
    assert sum(p.numel() for p in causal.parameters()) == pytest.approx(1.419e9, rel=5e-3)
