"""Codecs: PixelCodec exactness, WanVAECodec streaming == full decode on a tiny random AutoencoderKLWan."""

from __future__ import annotations

import pytest
import torch

from streamvid.core.codecs import PixelCodec, StreamDecoder, VideoCodec

Z_DIM = 4
MEAN = [0.1, -0.2, 0.3, 0.0]
STD = [1.5, 0.5, 2.0, 1.0]


@pytest.fixture(scope="module")
def tiny_vae():
    from diffusers import AutoencoderKLWan

    torch.manual_seed(0)
    # dim_mult of length 3 -> 2 down/up stages: spatial ratio 4, both temporal -> ratio 4 (as in Wan2.1).
    return AutoencoderKLWan(
        base_dim=8,
        z_dim=Z_DIM,
        dim_mult=[1, 1, 1],
        num_res_blocks=1,
        temperal_downsample=[True, True],
        latents_mean=MEAN,
        latents_std=STD,
    ).eval()


@pytest.fixture(scope="module")
def wan_codec(tiny_vae):
    from streamvid.core.codecs import WanVAECodec

    return WanVAECodec(tiny_vae)


# ---------------------------------------------------------------- PixelCodec


def test_pixel_codec_shapes_range_and_exact_round_trip():
    codec = PixelCodec(patch=2)
    assert isinstance(codec, VideoCodec)
    video = torch.rand(2, 5, 3, 8, 12)
    z = codec.encode(video)
    assert z.shape == (2, 5, 12, 4, 6)
    assert codec.latent_channels == 12 and codec.spatial_ratio == 2 and codec.temporal_ratio == 1
    assert z.min() >= -1.0 and z.max() <= 1.0
    assert torch.equal(codec.decode(z), video)
    grid = torch.randint(0, 257, (1, 2, 3, 4, 4)) / 256.0  # values on a 2**-8 grid, including 0 and 1
    assert torch.equal(codec.decode(codec.encode(grid)), grid)
    assert codec.num_pixel_frames(7) == 7


def test_pixel_codec_layout_is_space_to_depth_with_affine_map():
    codec = PixelCodec(patch=2, channels=1)
    video = torch.arange(16, dtype=torch.float32).reshape(1, 1, 1, 4, 4) / 15.0
    z = codec.encode(video)
    # channel i*p + j holds pixel (y*p + i, x*p + j); value mapped by 2x - 1
    assert torch.allclose(z[0, 0, :, 0, 0], torch.tensor([0.0, 1.0, 4.0, 5.0]) / 15.0 * 2 - 1)
    assert z[0, 0, 0, 0, 0] == -1.0 and z[0, 0, 3, 1, 1] == 1.0


def test_pixel_codec_stream_equals_decode_and_errors():
    codec = PixelCodec(patch=4)
    z = codec.encode(torch.rand(1, 6, 3, 8, 8))
    stream = codec.decode_stream()
    assert isinstance(stream, StreamDecoder)
    out = torch.cat([stream.push(z[:, a:b]) for a, b in [(0, 1), (1, 3), (3, 6)]], dim=1)
    assert torch.equal(out, codec.decode(z))
    with pytest.raises(ValueError, match=r"\(1, 2, 3, 9, 8\)"):
        codec.encode(torch.rand(1, 2, 3, 9, 8))
    with pytest.raises(ValueError, match="channels"):
        codec.encode(torch.rand(1, 2, 1, 8, 8))


# ---------------------------------------------------------------- WanVAECodec


def test_wan_codec_ratios_and_conv_count(wan_codec, tiny_vae):
    from diffusers.models.autoencoders.autoencoder_kl_wan import WanCausalConv3d

    assert isinstance(wan_codec, VideoCodec)
    assert wan_codec.latent_channels == Z_DIM
    assert wan_codec.temporal_ratio == 4 and wan_codec.spatial_ratio == 4
    assert wan_codec.num_decoder_convs == sum(
        isinstance(m, WanCausalConv3d) for m in tiny_vae.decoder.modules()
    )
    assert wan_codec.num_decoder_convs == tiny_vae._cached_conv_counts["decoder"]
    assert [wan_codec.num_pixel_frames(f) for f in (0, 1, 2, 21)] == [0, 1, 5, 81]


@pytest.mark.parametrize("chunks", [[1, 1, 1, 1, 1], [1, 2, 2], [3, 2], [2, 3]])
def test_wan_streaming_decode_equals_full_decode(wan_codec, chunks):
    torch.manual_seed(1)
    z = torch.randn(2, sum(chunks), Z_DIM, 3, 5)
    with torch.no_grad():
        full = wan_codec.decode(z)
        stream = wan_codec.decode_stream()
        outs, start = [], 0
        for n in chunks:
            outs.append(stream.push(z[:, start : start + n]))
            start += n
    assert full.shape == (2, 17, 3, 12, 20)
    assert [o.shape[1] for o in outs] == [1 + 4 * (chunks[0] - 1)] + [4 * n for n in chunks[1:]]
    assert torch.allclose(torch.cat(outs, dim=1), full, atol=1e-5, rtol=0)
    assert full.min() >= 0.0 and full.max() <= 1.0


def test_wan_stream_reset_and_shape_check(wan_codec):
    z = torch.randn(1, 2, Z_DIM, 2, 2)
    with torch.no_grad():
        stream = wan_codec.decode_stream()
        first = stream.push(z)
        with pytest.raises(ValueError, match="reset"):
            stream.push(torch.randn(2, 1, Z_DIM, 2, 2))
        stream.reset()
        again = stream.push(z)
    assert first.shape[1] == 5 and torch.equal(first, again)


def test_wan_latent_normalisation_matches_self_forcing(wan_codec, tiny_vae):
    torch.manual_seed(2)
    video = torch.rand(1, 5, 3, 8, 8)
    with torch.no_grad():
        z = wan_codec.encode(video)
        raw = tiny_vae.encode(video.transpose(1, 2) * 2 - 1).latent_dist.mode().transpose(1, 2)
    mean, std = torch.tensor(MEAN).view(1, 1, -1, 1, 1), torch.tensor(STD).view(1, 1, -1, 1, 1)
    assert z.shape == (1, 2, Z_DIM, 2, 2)
    assert torch.allclose(z, (raw - mean) / std, atol=1e-6)
    with torch.no_grad():
        pixels = wan_codec.decode(z)
        ref = (tiny_vae.decode(raw.transpose(1, 2)).sample.transpose(1, 2) + 1) / 2
    assert pixels.shape == video.shape
    assert torch.allclose(pixels, ref, atol=1e-5)


def test_wan_encode_rejects_bad_frame_count(wan_codec):
    with pytest.raises(ValueError, match="T=4"):
        wan_codec.encode(torch.rand(1, 4, 3, 8, 8))
    with pytest.raises(ValueError, match="spatial_ratio"):
        wan_codec.encode(torch.rand(1, 5, 3, 6, 8))


def test_wan_codec_save_and_from_pretrained(wan_codec, tiny_vae, tmp_path):
    from streamvid.core.codecs import WanVAECodec

    tiny_vae.save_pretrained(tmp_path / "vae")
    loaded = WanVAECodec.from_pretrained(tmp_path, subfolder="vae")
    assert loaded.latent_channels == Z_DIM and loaded.num_decoder_convs == wan_codec.num_decoder_convs
    z = torch.randn(1, 2, Z_DIM, 2, 2)
    with torch.no_grad():
        assert torch.equal(loaded.decode(z), wan_codec.decode(z))
    half = WanVAECodec.from_pretrained(tmp_path / "vae", dtype=torch.bfloat16)
    assert half.vae.dtype == torch.bfloat16
    with torch.no_grad():
        out = half.decode(z)
    assert out.dtype == torch.float32 and out.shape == (1, 5, 3, 8, 8)


def test_wan_from_pretrained_missing_files(tmp_path):
    from streamvid.core.codecs import WanVAECodec

    with pytest.raises(FileNotFoundError, match="nowhere"):
        WanVAECodec.from_pretrained(tmp_path / "nowhere")
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(FileNotFoundError, match=r"missing weights.*diffusion_pytorch_model\.safetensors"):
        WanVAECodec.from_pretrained(tmp_path)
