"""Model-backed metrics on tiny random transformers checkpoints saved to temp dirs (no downloads)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from streamvid.eval.metrics import build, get_spec, list_metrics

WORDS = ["a", "red", "blue", "circle", "square", "moving", "left", "right"]
VIT = dict(image_size=32, patch_size=8, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
           num_attention_heads=2)  # fmt: skip
IMAGENET = dict(image_mean=[0.485, 0.456, 0.406], image_std=[0.229, 0.224, 0.225])


@pytest.fixture(scope="module")
def dirs(tmp_path_factory) -> dict[str, Path]:
    """vit: DINO-like ViTModel + ViT processor config (32x32); dinov2: Dinov2Model without processor config
    (VBench transform); clip: CLIPModel + word-level tokenizer + CLIP processor config (32) + aesthetic head."""
    from safetensors.torch import save_file
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import (
        CLIPConfig,
        CLIPModel,
        Dinov2Config,
        Dinov2Model,
        PreTrainedTokenizerFast,
        ViTConfig,
        ViTModel,
    )

    root = tmp_path_factory.mktemp("weights")
    out = {k: root / k for k in ("vit", "dinov2", "clip")}
    torch.manual_seed(0)
    ViTModel(ViTConfig(**VIT), add_pooling_layer=False).save_pretrained(out["vit"])
    (out["vit"] / "preprocessor_config.json").write_text(json.dumps(dict(
        image_processor_type="ViTImageProcessor", do_resize=True, size={"height": 32, "width": 32}, resample=2,
        do_normalize=True, **IMAGENET)))  # fmt: skip
    Dinov2Model(Dinov2Config(**VIT)).save_pretrained(out["dinov2"])
    vocab = {t: i for i, t in enumerate(["<pad>", "<eos>", "<unk>", *WORDS])}
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.post_processor = processors.TemplateProcessing(single="$A <eos>", special_tokens=[("<eos>", 1)])
    PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", eos_token="<eos>",
                            unk_token="<unk>").save_pretrained(out["clip"])  # fmt: skip
    text = dict(vocab_size=len(vocab), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                num_attention_heads=2, max_position_embeddings=16, eos_token_id=1, pad_token_id=0, bos_token_id=1)
    CLIPModel(CLIPConfig(text_config=text, vision_config=VIT, projection_dim=16)).save_pretrained(out["clip"])
    (out["clip"] / "preprocessor_config.json").write_text(json.dumps(dict(
        image_processor_type="CLIPImageProcessor", do_resize=True, size={"shortest_edge": 32}, resample=3,
        do_center_crop=True, crop_size={"height": 32, "width": 32}, do_normalize=True,
        image_mean=[0.48145466, 0.4578275, 0.40821073], image_std=[0.26862954, 0.26130258, 0.27577711])))
    gen = torch.Generator().manual_seed(1)
    save_file({"layers.0.weight": torch.randn(8, 16, generator=gen), "layers.0.bias": torch.randn(8, generator=gen),
               "layers.2.weight": torch.randn(1, 8, generator=gen), "layers.2.bias": torch.tensor([5.0])},
              str(out["clip"] / "aesthetic_head.safetensors"))  # fmt: skip
    return out


@pytest.fixture(scope="module")
def metrics(dirs):
    return {"subject_vit": build("subject_consistency", weights_dir=dirs["vit"]),
            "subject_dinov2": build("subject_consistency", weights_dir=dirs["dinov2"]),
            "subject_vit_vbench": build("subject_consistency", weights_dir=dirs["vit"], preprocess="vbench"),
            "background": build("background_consistency", weights_dir=dirs["clip"])}  # fmt: skip


@pytest.fixture(scope="module")
def clip_metric(dirs):
    return build("clip_score", weights_dir=dirs["clip"])


def _image(seed: int, h: int = 24, w: int = 40) -> torch.Tensor:
    """A smooth random image ``[3, h, w]`` in [0, 1] (3 x 5 noise upsampled: differs at the patch scale)."""
    low = torch.rand(1, 3, 3, 5, generator=torch.Generator().manual_seed(seed))
    return F.interpolate(low, size=(h, w), mode="bilinear", align_corners=False)[0]


def test_registration_is_lazy_and_declared():
    code = ("import sys, streamvid.eval.metrics as m; assert 'transformers' not in sys.modules; "
            "print(m.list_metrics(needs_weights=True))")  # fmt: skip
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    names = {"subject_consistency", "background_consistency", "aesthetic_quality", "clip_score"}
    assert names <= set(eval(out)) and names <= set(list_metrics(needs_weights=True))
    assert all(get_spec(n).is_factory for n in names) and get_spec("clip_score").inputs == ("frames", "prompt")
    assert get_spec("aesthetic_quality").vbench_dimension == "aesthetic_quality"


@pytest.mark.parametrize("key", ["subject_vit", "subject_dinov2", "subject_vit_vbench", "background"])
def test_static_scores_one_and_a_cut_scores_lower(metrics, key):
    metric = metrics[key]
    static = _image(0).expand(4, -1, -1, -1)
    cut = torch.cat([static[:2], _image(1).expand(2, -1, -1, -1)])
    s, c = metric(static), metric(cut)
    assert s == pytest.approx(1.0, abs=1e-6) and c < s - 1e-3
    uint8 = metric((static * 255).round().to(torch.uint8))
    assert uint8 == pytest.approx(1.0, abs=1e-6)
    batch = metric(torch.stack([static, cut]))
    assert batch.dtype == torch.float64 and torch.allclose(batch, torch.tensor([s, c], dtype=torch.float64))


def _vbench_formula(feats: torch.Tensor) -> float:
    """VBench's loop, verbatim in spirit: per-frame clamped cosines to the previous and the first frame."""
    total = 0.0
    for i in range(1, len(feats)):
        prev = max(0.0, F.cosine_similarity(feats[i - 1 : i], feats[i : i + 1]).item())
        first = max(0.0, F.cosine_similarity(feats[:1], feats[i : i + 1]).item())
        total += (prev + first) / 2
    return total / (len(feats) - 1)


def test_consistency_equals_hand_computed_formula(dirs, metrics):
    from streamvid.eval.metrics.consistency import consistency_from_features

    video = torch.rand(5, 3, 20, 36, generator=torch.Generator().manual_seed(3))
    metric = metrics["subject_vit"]
    pixels = F.interpolate(video, size=(32, 32), mode="bilinear", antialias=True, align_corners=False)
    pixels = (pixels - torch.tensor(IMAGENET["image_mean"]).view(1, 3, 1, 1)) / torch.tensor(
        IMAGENET["image_std"]).view(1, 3, 1, 1)
    with torch.no_grad():
        feats = metric.fn.encoder.model(pixel_values=pixels).last_hidden_state[:, 0]
    assert metric(video) == pytest.approx(_vbench_formula(feats), abs=1e-5)
    chunked = build("subject_consistency", weights_dir=dirs["vit"], batch_size=2)  # frames encoded 2 at a time
    assert chunked(video) == pytest.approx(metric(video), abs=1e-6)
    # clamping happens per cosine, before averaging: [1,0] [1,1] [0,1] -> ((c + c)/2 + (c + 0)/2) / 2, c = 1/sqrt2
    c = 2**-0.5
    assert consistency_from_features(torch.tensor([[1.0, 0], [1, 1], [0, 1]])) == pytest.approx((c + c / 2) / 2)
    assert consistency_from_features(torch.tensor([[1.0, 0], [0, 1], [-1, 0]])) == 0.0
    with pytest.raises(ValueError, match="T >= 2"):
        metric(video[:1])


def test_vbench_default_transform_and_processor_parity(dirs, metrics):
    from transformers import AutoImageProcessor

    enc = metrics["subject_dinov2"].fn.encoder  # no preprocessor_config.json: VBench DINO transform
    assert enc.preprocess(torch.rand(2, 3, 20, 36)).shape == (2, 3, 224, 403)
    ours = metrics["background"].fn.encoder.preprocess  # from the CLIP processor config: no resize needed at 32 x 48
    u8 = torch.randint(0, 256, (2, 3, 32, 48), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    ref = AutoImageProcessor.from_pretrained(str(dirs["clip"]), local_files_only=True)(
        images=list(u8), return_tensors="pt")["pixel_values"]
    assert torch.allclose(ours(u8.float() / 255), ref, atol=1e-5)


def _manual_cosines(metric, video: torch.Tensor, prompt: str) -> torch.Tensor:
    """Text-frame cosines straight from CLIPModel.forward (logits / logit scale)."""
    metric = metric.fn
    tok = metric.tokenizer([prompt], return_tensors="pt")
    with torch.no_grad():
        out = metric.model(input_ids=tok["input_ids"], attention_mask=tok["attention_mask"],
                           pixel_values=metric.encoder.preprocess(video))  # fmt: skip
        return (out.logits_per_image[:, 0] / metric.model.logit_scale.exp()).double()


def test_clip_score_matches_manual_and_invariances(dirs, clip_metric):
    gen = torch.Generator().manual_seed(4)
    videos = torch.rand(2, 4, 3, 40, 56, generator=gen)
    prompts = ["a red circle moving left", "a blue square"]
    single = [clip_metric(v, prompt=p) for v, p in zip(videos, prompts)]
    for v, p, s in zip(videos, prompts, single):
        assert s == pytest.approx(float(_manual_cosines(clip_metric, v, p).mean()), abs=1e-5)
    assert clip_metric(videos[0].flip(0), prompt=prompts[0]) == pytest.approx(single[0], abs=1e-6)
    batch = clip_metric(videos, prompt=prompts)
    assert batch.shape == (2,) and torch.allclose(batch, torch.tensor(single, dtype=torch.float64), atol=1e-6)
    alone = clip_metric.fn.text_embeds([prompts[1]])
    clip_metric.fn._cache.clear()
    padded = clip_metric.fn.text_embeds(prompts)  # encoded together, padded to the longer prompt
    assert torch.allclose(alone[0], padded[1], atol=1e-5)
    built = build("clip_score", weights_dir=dirs["clip"], scale=2.5, clamp_negative=True)
    expect = 2.5 * _manual_cosines(built, videos[0], prompts[0]).clamp_min(0).mean()
    assert built(videos[0], prompt=prompts[0]) == pytest.approx(float(expect), abs=1e-5)
    with pytest.raises(ValueError, match="2 videos but 1 prompts"):
        clip_metric(videos, prompt=prompts[:1])


def test_clip_score_is_one_for_the_matching_text(dirs):
    """Rank-1 visual projection mapping this static video's pooled feature onto the text embedding of prompt 0."""
    metric = build("clip_score", weights_dir=dirs["clip"]).fn
    video = _image(5).expand(3, -1, -1, -1)
    prompts = ["a red circle", "a blue square moving right"]
    target = metric.text_embeds(prompts[:1])[0]
    with torch.no_grad():
        h = metric.model.vision_model(pixel_values=metric.encoder.preprocess(video[:1])).pooler_output[0]
        metric.model.visual_projection.weight.copy_(torch.outer(target, h) / h.dot(h))
    match, other = (metric(video, prompt=p) for p in prompts)
    assert match == pytest.approx(1.0, abs=1e-5) and other < match - 1e-3
    assert other == pytest.approx(float(target @ metric.text_embeds(prompts[1:])[0]), abs=1e-5)


def test_aesthetic_head_round_trip_and_mapping(dirs, tmp_path):
    from safetensors.torch import save_file

    from streamvid.eval.metrics.aesthetic import AestheticHead, load_aesthetic_head

    head = load_aesthetic_head(dirs["clip"] / "aesthetic_head.safetensors")
    assert [layer.out_features for layer in head.layers] == [8, 1]
    save_file(head.state_dict(), str(tmp_path / "h.safetensors"))
    x = torch.randn(5, 16)
    assert torch.equal(load_aesthetic_head(tmp_path / "h.safetensors")(x), head(x))
    keys = {f"layers.{i}.weight": torch.eye(16) for i in (2, 10)} | {"layers.11.weight": torch.ones(1, 16)}
    chained = AestheticHead.from_state_dict(keys)  # natural order: 2, 10, 11 (not 10, 11, 2)
    assert torch.allclose(chained(x), x.sum(-1))
    with pytest.raises(ValueError, match="prefix"):
        AestheticHead.from_state_dict({"weight": torch.ones(1, 16), "scale": torch.ones(1)})

    video = torch.rand(4, 3, 32, 40, generator=torch.Generator().manual_seed(6))
    metric = build("aesthetic_quality", weights_dir=dirs["clip"])
    enc = metric.fn.encoder
    with torch.no_grad():
        emb = enc.model.get_image_features(pixel_values=enc.preprocess(video)).pooler_output
        expect = float(head(F.normalize(emb, dim=-1)).mean() / 10)
    assert metric(video) == pytest.approx(expect, abs=1e-5)
    for bias, clamp, expect in ((7.3, False, 0.73), (12.0, False, 1.2), (12.0, True, 1.0), (-3.0, True, 0.0)):
        save_file({"weight": torch.zeros(1, 16), "bias": torch.tensor([bias])}, str(tmp_path / "lin.safetensors"))
        built = build("aesthetic_quality", weights_dir=dirs["clip"], head_file=tmp_path / "lin.safetensors",
                      clamp=clamp)  # fmt: skip
        assert built(video) == pytest.approx(expect, abs=1e-6)
    save_file({"weight": torch.zeros(1, 8)}, str(tmp_path / "bad.safetensors"))
    with pytest.raises(ValueError, match="expects 8-d"):
        build("aesthetic_quality", weights_dir=dirs["clip"], head_file=tmp_path / "bad.safetensors")(video)


def test_missing_weights_are_clear_errors(dirs, tmp_path):
    missing = tmp_path / "nope"
    for name in ("subject_consistency", "background_consistency", "aesthetic_quality", "clip_score"):
        with pytest.raises(FileNotFoundError, match=rf"{name}.*nope.*does not exist.*config\.json"):
            build(name, weights_dir=missing)
        with pytest.raises(FileNotFoundError, match="needs weights_dir"):
            build(name)
    (tmp_path / "half").mkdir()
    (tmp_path / "half" / "config.json").write_text("{}")
    with pytest.raises(FileNotFoundError, match=r"half.*incomplete.*model\.safetensors.*found \['config.json'\]"):
        build("subject_consistency", weights_dir=tmp_path / "half")
    with pytest.raises(FileNotFoundError, match=r"vit.*tokenizer\.json"):
        build("clip_score", weights_dir=dirs["vit"])
    with pytest.raises(FileNotFoundError, match=r"aesthetic head .*missing\.safetensors.*weights directory"):
        build("aesthetic_quality", weights_dir=dirs["clip"], head_file="missing.safetensors")
