"""Text encoders: UMT5 (tiny random model + offline tokenizer) and the learned word-level encoder."""

from __future__ import annotations

import pytest
import torch
from reward_helpers import word_level_tokenizer

from streamvid.core.text import LearnedTextEncoder, TextEmbedding, TextEncoder

WORDS = ["a", "red", "blue", "green", "circle", "square", "moving", "left", "right", "then", "turns", "up"]
PROMPTS = ["a red circle moving left", "a blue square then turns up up up", "green"]


@pytest.fixture(scope="module")
def umt5_dir(tmp_path_factory):
    """A tiny random UMT5 encoder and a WordLevel tokenizer saved like a Wan ``text_encoder/`` folder."""
    from transformers import UMT5Config, UMT5EncoderModel

    root = tmp_path_factory.mktemp("umt5")
    vocab, fast = word_level_tokenizer(WORDS, "</s>")
    fast.save_pretrained(root / "tokenizer")
    config = UMT5Config(
        vocab_size=len(vocab), d_model=32, d_kv=8, d_ff=64, num_layers=2, num_heads=4,
        relative_attention_num_buckets=8, relative_attention_max_distance=16, pad_token_id=0, eos_token_id=1,
    )  # fmt: skip
    torch.manual_seed(0)
    UMT5EncoderModel(config).save_pretrained(root / "text_encoder")
    return root


@pytest.fixture(scope="module")
def umt5(umt5_dir):
    from streamvid.core.text import UMT5TextEncoder

    return UMT5TextEncoder.from_pretrained(
        umt5_dir, max_length=16, subfolder="text_encoder", tokenizer_subfolder="tokenizer"
    )


def test_umt5_shapes_mask_and_zero_padding(umt5):
    assert isinstance(umt5, TextEncoder)
    assert umt5.embed_dim == 32 and umt5.max_length == 16
    out = umt5.encode(PROMPTS)
    assert out.embeddings.shape == (3, 16, 32) and out.mask.shape == (3, 16)
    assert out.lengths.tolist() == [6, 9, 2]  # words + </s>
    assert torch.all(out.embeddings[~out.mask] == 0)
    assert torch.all(out.embeddings[out.mask].abs().sum(-1) > 0)


def test_umt5_deterministic_and_batch_independent(umt5):
    batch = umt5.encode(PROMPTS)
    assert torch.equal(batch.embeddings, umt5.encode(PROMPTS).embeddings)
    for i, prompt in enumerate(PROMPTS):
        alone = umt5.encode([prompt])
        assert torch.equal(alone.mask, batch.mask[i : i + 1])
        assert torch.allclose(alone.embeddings, batch.embeddings[i : i + 1], atol=1e-5)


def test_umt5_matches_diffusers_wan_convention(umt5):
    """Wan: run with the attention mask, keep the first seq_len rows, zero-pad to max_length; cleaned prompt."""
    tok = umt5.tokenizer(["a red circle"], padding="max_length", max_length=16, return_tensors="pt")
    with torch.no_grad():
        ref = umt5.model(tok.input_ids, tok.attention_mask).last_hidden_state[0]
    out = umt5.encode(["  a   red\ncircle "])  # whitespace is collapsed like diffusers' prompt_clean
    n = int(tok.attention_mask.sum())
    assert torch.allclose(out.embeddings[0, :n], ref[:n], atol=1e-6)
    assert torch.all(out.embeddings[0, n:] == 0)


def test_umt5_truncates_to_max_length(umt5):
    out = umt5.encode([" ".join(["red"] * 40)])
    assert out.embeddings.shape == (1, 16, 32) and bool(out.mask.all())


def test_umt5_missing_dir_names_it(tmp_path):
    from streamvid.core.text import UMT5TextEncoder

    with pytest.raises(FileNotFoundError, match="absent"):
        UMT5TextEncoder.from_pretrained(tmp_path / "absent")
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(FileNotFoundError, match="no weights"):
        UMT5TextEncoder.from_pretrained(tmp_path)


# ---------------------------------------------------------------- LearnedTextEncoder


def _learned(**kw) -> LearnedTextEncoder:
    return LearnedTextEncoder(
        WORDS, embed_dim=16, max_length=8, num_heads=2, seed=kw.pop("seed", 0), **kw
    ).eval()


def test_learned_shapes_mask_unknown_words():
    enc = _learned()
    assert isinstance(enc, TextEncoder) and enc.embed_dim == 16 and enc.max_length == 8
    ids, mask = enc.tokenize(["A RED Zebra", "", "red red red red red red red red red red"])
    unk, eos, red = enc.word_to_id["<unk>"], enc.word_to_id["<eos>"], enc.word_to_id["red"]
    assert ids[0, :4].tolist() == [enc.word_to_id["a"], red, unk, eos] and ids[0, 4:].eq(0).all()
    assert ids[1, 0] == eos and mask[1].sum() == 1
    assert mask[2].all() and ids[2, -1] == eos  # truncated, eos kept
    out = enc.encode(["A RED Zebra", "", "red red red red red red red red red red"])
    assert out.embeddings.shape == (3, 8, 16)
    assert torch.equal(out.mask, mask)
    assert torch.all(out.embeddings[~out.mask] == 0) and torch.isfinite(out.embeddings).all()
    assert torch.equal(enc.encode(["a red zebra"]).embeddings, enc.encode(["a red unicorn"]).embeddings)


def test_learned_seeded_and_batch_independent():
    state = torch.random.get_rng_state()
    a, b, c = _learned(seed=3), _learned(seed=3), _learned(seed=4)
    assert torch.equal(state, torch.random.get_rng_state())  # construction leaves the global RNG alone
    with torch.no_grad():
        ea, eb, ec = (m.encode(PROMPTS).embeddings for m in (a, b, c))
        alone = a.encode(PROMPTS[1:2]).embeddings
    assert torch.equal(ea, eb) and not torch.allclose(ea, ec)
    assert torch.allclose(alone, ea[1:2], atol=1e-5)


def test_learned_is_trainable():
    enc = _learned().train()
    out = enc.encode(PROMPTS)
    out.embeddings.square().mean().backward()
    assert enc.token_embedding.weight.grad is not None
    assert enc.token_embedding.weight.grad[enc.word_to_id["red"]].abs().sum() > 0


def test_learned_save_load_round_trip(tmp_path):
    enc = _learned(seed=5)
    enc.save(tmp_path / "te")
    assert (tmp_path / "te" / "text_encoder.safetensors").is_file()
    assert (tmp_path / "te" / "text_encoder.json").is_file()
    loaded = LearnedTextEncoder.load(tmp_path / "te").eval()
    assert loaded.vocab == enc.vocab and loaded.config == enc.config
    for k, v in enc.state_dict().items():
        assert torch.equal(v, loaded.state_dict()[k]), k
    with torch.no_grad():
        assert torch.equal(loaded.encode(PROMPTS).embeddings, enc.encode(PROMPTS).embeddings)
    with pytest.raises(FileNotFoundError, match="text_encoder.json"):
        LearnedTextEncoder.load(tmp_path)


def test_text_embedding_helpers_and_validation():
    emb = TextEmbedding(torch.ones(3, 4, 2), torch.tensor([[1, 1, 0, 0]] * 3).bool())
    assert emb[1].embeddings.shape == (1, 4, 2) and emb.lengths.tolist() == [2, 2, 2]
    assert TextEmbedding.cat([emb[0], emb[1:]]).embeddings.shape == (3, 4, 2)
    assert emb.to(dtype=torch.float64).embeddings.dtype == torch.float64
    with pytest.raises(ValueError, match="bool mask"):
        TextEmbedding(torch.ones(3, 4, 2), torch.ones(3, 5).bool())
