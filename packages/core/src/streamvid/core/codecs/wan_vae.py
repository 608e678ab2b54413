"""`WanVAECodec`: diffusers' `AutoencoderKLWan` behind the `VideoCodec` interface, with a streaming decoder.

Latents are normalised with the config's ``latents_mean`` / ``latents_std`` as in Self-Forcing's
``WanVAEWrapper``: ``normalised = (z - mean) / std`` where ``z`` is the posterior mean. Pixels in ``[0, 1]``
are mapped to the VAE's ``[-1, 1]`` and back. The streaming decoder keeps the causal-conv feature cache across
chunks and decodes one latent frame at a time, exactly as ``AutoencoderKLWan._decode`` does in one call
(streaming-anchors §3.7), so streamed output equals `decode` of the whole latent.
"""

from __future__ import annotations

from pathlib import Path

import torch
from diffusers import AutoencoderKLWan
from diffusers.models.autoencoders.autoencoder_kl_wan import WanCausalConv3d, unpatchify
from torch import Tensor, nn

from streamvid.core.codecs.base import (
    causal_num_latent_frames,
    causal_num_pixel_frames,
    check_latents,
    check_video,
)

_CONFIG_NAME = "config.json"
_WEIGHT_GLOBS = ("diffusion_pytorch_model*.safetensors", "diffusion_pytorch_model*.bin")


def _check_local_vae_dir(path: Path) -> None:
    """Raise FileNotFoundError naming ``path`` and the files a diffusers VAE folder must hold."""
    expected = f"{_CONFIG_NAME} and diffusion_pytorch_model.safetensors (or sharded / .bin weights)"
    if not path.is_dir():
        raise FileNotFoundError(f"Wan VAE directory not found: '{path}' (expected a folder with {expected})")
    has_config = (path / _CONFIG_NAME).is_file()
    has_weights = any(any(path.glob(g)) for g in _WEIGHT_GLOBS)
    if not (has_config and has_weights):
        missing = [n for n, ok in ((_CONFIG_NAME, has_config), ("weights", has_weights)) if not ok]
        raise FileNotFoundError(
            f"Wan VAE directory '{path}' is incomplete: missing {', '.join(missing)} (expected {expected})"
        )


class WanVAECodec(nn.Module):
    """`VideoCodec` over a diffusers `AutoencoderKLWan`.

    Args:
        vae: the autoencoder; its dtype is the compute dtype, and inputs must be on its device.

    Shapes: pixels ``[B, T, C, H, W]`` in ``[0, 1]`` with ``T = 1 + temporal_ratio * k``; latents
    ``[B, F, z_dim, H / spatial_ratio, W / spatial_ratio]`` with ``F = 1 + k``, normalised as above.
    Outputs are returned in the dtype of the input tensor.
    """

    def __init__(self, vae: AutoencoderKLWan) -> None:
        super().__init__()
        self.vae = vae
        cfg = vae.config
        n_up = len(cfg.dim_mult) - 1
        # Derived from the architecture, not from `scale_factor_*`, which tiny test configs leave at defaults.
        self._temporal_ratio = 2 ** sum(bool(t) for t in list(cfg.temperal_downsample)[:n_up])
        self._spatial_ratio = 2**n_up * (cfg.patch_size or 1)
        self._num_decoder_convs = sum(isinstance(m, WanCausalConv3d) for m in vae.decoder.modules())
        mean = torch.tensor(cfg.latents_mean, dtype=torch.float32)
        std = torch.tensor(cfg.latents_std, dtype=torch.float32)
        if mean.numel() != cfg.z_dim or std.numel() != cfg.z_dim:
            raise ValueError(
                f"latents_mean/latents_std have {mean.numel()}/{std.numel()} entries, expected z_dim={cfg.z_dim}"
            )
        self.register_buffer("latents_mean", mean.view(1, 1, -1, 1, 1), persistent=False)
        self.register_buffer("latents_std", std.view(1, 1, -1, 1, 1), persistent=False)

    @classmethod
    def from_pretrained(
        cls, local_dir: str | Path, dtype: torch.dtype = torch.float32, subfolder: str | None = None
    ) -> WanVAECodec:
        """Load from a local diffusers folder (``config.json`` + weights); never downloads.

        ``subfolder`` selects e.g. ``"vae"`` inside a full Wan pipeline folder.
        """
        path = Path(local_dir) / subfolder if subfolder else Path(local_dir)
        _check_local_vae_dir(path)
        vae = AutoencoderKLWan.from_pretrained(str(path), torch_dtype=dtype, local_files_only=True)
        return cls(vae.eval())

    @property
    def latent_channels(self) -> int:
        """Channels of a latent frame (``z_dim``)."""
        return int(self.vae.config.z_dim)

    @property
    def temporal_ratio(self) -> int:
        """Pixel frames per latent frame after the first (4 for Wan2.1)."""
        return self._temporal_ratio

    @property
    def spatial_ratio(self) -> int:
        """Pixels per latent cell along H and W (8 for Wan2.1)."""
        return self._spatial_ratio

    @property
    def num_decoder_convs(self) -> int:
        """Number of `WanCausalConv3d` in the decoder, i.e. the length of the feature cache (33 for Wan2.1)."""
        return self._num_decoder_convs

    def num_pixel_frames(self, num_latent_frames: int) -> int:
        """``1 + temporal_ratio * (F - 1)`` pixel frames for ``F`` latent frames."""
        return causal_num_pixel_frames(num_latent_frames, self.temporal_ratio)

    def normalize(self, z: Tensor) -> Tensor:
        """Raw posterior latents ``[B, F, c, h, w]`` -> normalised ``(z - mean) / std`` (computed in fp32)."""
        return (z.float() - self.latents_mean) / self.latents_std

    def denormalize(self, latents: Tensor) -> Tensor:
        """Normalised latents ``[B, F, c, h, w]`` -> raw ``latents * std + mean`` (computed in fp32)."""
        return latents.float() * self.latents_std + self.latents_mean

    def encode(self, video: Tensor) -> Tensor:
        """Pixels ``[B, T, C, H, W]`` in ``[0, 1]`` -> normalised latents ``[B, F, c, h, w]`` (posterior mean)."""
        check_video(video)
        num_latent = causal_num_latent_frames(video.shape[1], self.temporal_ratio)
        _, _, _, height, width = video.shape
        if height % self.spatial_ratio or width % self.spatial_ratio:
            raise ValueError(
                f"video H, W must be divisible by spatial_ratio={self.spatial_ratio}, got shape {tuple(video.shape)}"
            )
        x = (video.transpose(1, 2) * 2.0 - 1.0).to(self.vae.dtype)
        z = self.vae.encode(x).latent_dist.mode().transpose(1, 2)
        if z.shape[1] != num_latent:
            raise ValueError(
                f"VAE returned {z.shape[1]} latent frames for T={video.shape[1]}, expected {num_latent}; "
                f"AutoencoderKLWan encodes in chunks of 1, 4, 4, ... frames, so temporal_ratio must be 4 "
                f"(got {self.temporal_ratio})"
            )
        return self.normalize(z).to(video.dtype)

    def decode(self, latents: Tensor) -> Tensor:
        """Normalised latents ``[B, F, c, h, w]`` -> pixels ``[B, T, C, H, W]`` in ``[0, 1]``, one call."""
        check_latents(latents, self.latent_channels)
        z = self.denormalize(latents).transpose(1, 2).to(self.vae.dtype)
        out = self.vae.decode(z).sample  # [B, C, T, H, W], clamped to [-1, 1] by diffusers
        return ((out.transpose(1, 2) + 1.0) / 2.0).to(latents.dtype)

    def decode_stream(self) -> StreamingWanDecoder:
        """A fresh `StreamingWanDecoder` bound to this codec."""
        return StreamingWanDecoder(self)


class StreamingWanDecoder:
    """Chunk-by-chunk Wan decoding that carries the causal-conv feature cache across `push` calls.

    Per latent frame it does what ``AutoencoderKLWan._decode`` does in its loop: ``post_quant_conv``, then
    ``decoder(x, feat_cache, feat_idx=[0], first_chunk=<first frame of the video>)``, then unpatchify and
    clamp to ``[-1, 1]``. The first latent frame yields 1 pixel frame, every later one ``temporal_ratio``.
    Tiling is not applied, so this matches `WanVAECodec.decode` when the VAE's tiling is off.
    Under autograd the cache keeps the graph of earlier chunks alive; call under ``torch.no_grad()`` for
    inference.
    """

    def __init__(self, codec: WanVAECodec) -> None:
        self.codec = codec
        self.reset()

    def reset(self) -> None:
        """Drop the feature cache; the next `push` starts a new video."""
        self._feat_map: list[Tensor | None] = [None] * self.codec.num_decoder_convs
        self._is_first = True
        self._frames = 0
        self._shape: tuple[int, int, int] | None = None  # (B, h, w) of the video being decoded

    @property
    def num_frames_decoded(self) -> int:
        """Latent frames pushed since the last `reset`."""
        return self._frames

    def push(self, latents: Tensor) -> Tensor:
        """Decode normalised latents ``[B, f, c, h, w]`` -> pixels ``[B, t, C, H, W]`` in ``[0, 1]``."""
        codec = self.codec
        check_latents(latents, codec.latent_channels)
        batch, num_frames, _, height, width = latents.shape
        if self._shape is None:
            self._shape = (batch, height, width)
        elif self._shape != (batch, height, width):
            raise ValueError(
                f"latent chunk shape {tuple(latents.shape)} does not match earlier chunks (B, h, w)={self._shape}; "
                "call reset() to start a new video"
            )
        vae = codec.vae
        if num_frames == 0:
            out_hw = (height * codec.spatial_ratio, width * codec.spatial_ratio)
            return latents.new_zeros(batch, 0, vae.config.out_channels, *out_hw)
        z = codec.denormalize(latents).transpose(1, 2).to(vae.dtype)  # [B, c, f, h, w]
        outs = []
        for i in range(num_frames):
            x = vae.post_quant_conv(z[:, :, i : i + 1])
            outs.append(vae.decoder(x, feat_cache=self._feat_map, feat_idx=[0], first_chunk=self._is_first))
            self._is_first = False
        self._frames += num_frames
        out = torch.cat(outs, dim=2)
        if vae.config.patch_size is not None:
            out = unpatchify(out, patch_size=vae.config.patch_size)
        out = torch.clamp(out, min=-1.0, max=1.0)
        return ((out.transpose(1, 2) + 1.0) / 2.0).to(latents.dtype)
