"""`ScoreModel`: a flow-matching video transformer as the teacher ("real score") or critic ("fake score").

It wraps a diffusers-style flow network and predicts, at per-frame noise levels sigma `[B, F]` in [0, 1],

* the flow  v = eps - x0,
* the clean sample  x0 = x_t - sigma * v,

for x_t = (1 - sigma) x0 + sigma * eps (flow matching; the model's timestep is t = 1000 * sigma), optionally with
classifier-free guidance in the DMD convention of methods.md A.2.2:

    pred = c + g * (c - u)        (c, u: conditional and unconditional / negative-prompt predictions)

which is standard CFG `u + s * (c - u)` with scale s = g + 1 (Self-Forcing / Stream-R1: g = 3, i.e. s = 4). x0 is
affine in v at fixed (x_t, sigma), so guiding the flow and guiding x0 give the same x0.

**Tensor layout at the boundary: diffusers' `[B, C, F, H, W]`** (the model's own layout; the streaming sampler's
frame-major `[B, F, C, H, W]` is `x.transpose(1, 2)` of it). sigma is `[B, F]` (one level per latent frame), `[B]`
or a float (one level per sample).

Wrapped models, by how they take timesteps:

* `per_token`: the stock `diffusers.WanTransformer3DModel`. Its `forward` takes `timestep` `[B]` or, in diffusers
  >= 0.33 (the Wan2.2 TI2V `ts_seq_len` path), `[B, seq_len]` with one timestep per patch token; per-frame levels
  are expanded to the frame's tokens, and a sample whose frames share one level gets the cheaper `[B]` form.
* `per_frame`: `CausalWanModel` (`[B, F']` with F' = F / patch_t; also the block-causal path via
  `block_causal=`) and any module with its call signature
  `model(x, timestep [B, F] in [0, 1000], encoder_hidden_states=..., return_dict=False)` returning the flow
  (or a tuple / output with `.sample` holding it), such as a small conv flow net used as a shapes-world teacher.

The wrapper adds no gradient control: run a frozen teacher under `torch.no_grad()`, a critic being trained with
gradients. Conditions are text-encoder states `[B, L, D]` (batch 1 broadcasts), or for `CausalWanModel` a
precomputed `TextContext`.
"""

from __future__ import annotations

from typing import Any

import torch
from diffusers import WanTransformer3DModel

from streamvid.core.causal_wan import CausalWanModel, TextContext

__all__ = ["Condition", "ScoreModel", "add_frame_noise", "cfg_combine", "frame_sigma"]

Condition = torch.Tensor | TextContext
"""Text condition: encoder states `[B or 1, L, text_dim]`, or a `TextContext` for `CausalWanModel`."""

TIMESTEP_LAYOUTS = ("per_token", "per_frame")


def frame_sigma(sigma: float | torch.Tensor, batch: int, frames: int, device: torch.device | None = None) -> torch.Tensor:
    """Noise levels as a float32 `[B, F]` tensor, from a float, `[B]`, or `[B, F]`."""
    s = torch.as_tensor(sigma, dtype=torch.float32, device=device)
    if s.ndim == 0:
        s = s.expand(batch)
    if s.ndim == 1:
        if s.shape[0] != batch:
            raise ValueError(f"sigma has {s.shape[0]} entries, the batch has {batch}")
        s = s[:, None].expand(batch, frames)
    if s.shape != (batch, frames):
        raise ValueError(f"sigma must be a float, [B] or [B, F]=[{batch}, {frames}]; got {list(s.shape)}")
    if (s < 0).any() or (s > 1).any():
        raise ValueError("sigma must lie in [0, 1]")
    return s


def _frame_view(sigma_bf: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """`[B, F]` levels as `[B, 1, F, 1, 1]` in `x`'s dtype and device, to broadcast over `[B, C, F, H, W]`."""
    return sigma_bf.to(device=x.device, dtype=x.dtype)[:, None, :, None, None]


def add_frame_noise(x0: torch.Tensor, noise: torch.Tensor, sigma: float | torch.Tensor) -> torch.Tensor:
    """x_t = (1 - sigma) x0 + sigma * eps per frame; `x0`, `noise` `[B, C, F, H, W]`, sigma float / `[B]` / `[B, F]`."""
    s = _frame_view(frame_sigma(sigma, x0.shape[0], x0.shape[2], x0.device), x0)
    return (1 - s) * x0 + s * noise


def cfg_combine(cond: torch.Tensor, uncond: torch.Tensor, guidance: float) -> torch.Tensor:
    """c + g * (c - u)   (methods.md A.2.2; = u + (g + 1) * (c - u), standard CFG with scale g + 1).

    The one guidance convention of the package: every guided prediction goes through here and every config
    field names g (`DMDConfig.guidance_scale`, the ODE-pairs and flow-distill ``guidance_scale``). g, not the
    standard scale s = g + 1, because it is the convention of methods.md A.2.2 and of Self-Forcing / Stream-R1's
    shipped ``guidance_scale: 3.0``, a reference flag copied as is; 0 means unguided.
    """
    return cond + guidance * (cond - uncond)


class ScoreModel(torch.nn.Module):
    """Flow and x0 prediction of a flow network at per-frame noise levels, with CFG (see the module docstring).

    Args:
        model: a `WanTransformer3DModel`, a `CausalWanModel`, or any module with `CausalWanModel`'s call signature.
        timestep_layout: `per_token` or `per_frame`; None infers it from the class (stock Wan -> per_token,
            anything else -> per_frame).
        num_train_timesteps: the model's timestep scale, t = num_train_timesteps * sigma (Wan: 1000).
    """

    def __init__(self, model: torch.nn.Module, timestep_layout: str | None = None, num_train_timesteps: int = 1000):
        super().__init__()
        if timestep_layout is None:
            stock = isinstance(model, WanTransformer3DModel) and not isinstance(model, CausalWanModel)
            timestep_layout = "per_token" if stock else "per_frame"
        if timestep_layout not in TIMESTEP_LAYOUTS:
            raise ValueError(f"timestep_layout must be one of {TIMESTEP_LAYOUTS}, got {timestep_layout!r}")
        if timestep_layout == "per_token" and not isinstance(model, WanTransformer3DModel):
            raise TypeError(f"per_token timesteps need a WanTransformer3DModel, got {type(model).__name__}")
        self.model, self.timestep_layout, self.num_train_timesteps = model, timestep_layout, num_train_timesteps

    # ------------------------------------------------------------------ predictions
    def flow(
        self,
        x_t: torch.Tensor,
        sigma: float | torch.Tensor,
        cond: Condition,
        uncond: Condition | None = None,
        guidance: float = 0.0,
        **model_kwargs: Any,
    ) -> torch.Tensor:
        """Flow v = eps - x0 at x_t, guided as c + g (c - u) when `guidance` != 0.

        Args:
            x_t: `[B, C, F, H, W]` noisy latents.
            sigma: noise levels in [0, 1]: a float, `[B]` or `[B, F]`.
            cond: the prompt condition; `uncond`: the unconditional / negative-prompt condition (needed when
                `guidance` != 0, ignored otherwise).
            guidance: g of methods.md A.2.2 (0 = conditional only; 3 = standard CFG scale 4).
            model_kwargs: passed to the wrapped model (e.g. `block_causal=` for `CausalWanModel`).
        Returns:
            `[B, C, F, H, W]` flow, in `x_t`'s dtype.
        """
        s = frame_sigma(sigma, x_t.shape[0], x_t.shape[2], x_t.device)
        v_cond = self._flow(x_t, s, cond, model_kwargs)
        if guidance == 0:
            return v_cond
        if uncond is None:
            raise ValueError(f"guidance={guidance} needs an unconditional condition (uncond)")
        return cfg_combine(v_cond, self._flow(x_t, s, uncond, model_kwargs), guidance)

    def x0(
        self,
        x_t: torch.Tensor,
        sigma: float | torch.Tensor,
        cond: Condition,
        uncond: Condition | None = None,
        guidance: float = 0.0,
        **model_kwargs: Any,
    ) -> torch.Tensor:
        """Clean-sample prediction x0 = x_t - sigma * v (guided v gives c + g (c - u) on x0 too).

        Same arguments as `flow`; returns `[B, C, F, H, W]` in `x_t`'s dtype.
        """
        v = self.flow(x_t, sigma, cond, uncond, guidance, **model_kwargs)
        return self.flow_to_x0(x_t, v, sigma)

    def forward(self, x_t, sigma, cond, uncond=None, guidance: float = 0.0, **model_kwargs) -> torch.Tensor:
        """`x0(...)`: the score model's output is its clean-sample prediction (DMD's x0_real / x0_fake)."""
        return self.x0(x_t, sigma, cond, uncond, guidance, **model_kwargs)

    # ------------------------------------------------------------------ conversions (flow matching)
    @staticmethod
    def flow_to_x0(x_t: torch.Tensor, flow: torch.Tensor, sigma: float | torch.Tensor) -> torch.Tensor:
        """x0 = x_t - sigma * v, per frame; tensors `[B, C, F, H, W]`."""
        return x_t - _frame_view(frame_sigma(sigma, x_t.shape[0], x_t.shape[2], x_t.device), x_t) * flow

    @staticmethod
    def x0_to_flow(x_t: torch.Tensor, x0: torch.Tensor, sigma: float | torch.Tensor) -> torch.Tensor:
        """v = (x_t - x0) / sigma, per frame (undefined at sigma = 0); tensors `[B, C, F, H, W]`."""
        return (x_t - x0) / _frame_view(frame_sigma(sigma, x_t.shape[0], x_t.shape[2], x_t.device), x_t)

    # ------------------------------------------------------------------ internals
    def _flow(self, x_t: torch.Tensor, sigma: torch.Tensor, cond: Condition, model_kwargs: dict) -> torch.Tensor:
        """One forward of the wrapped model on `[B, C, F, H, W]` at `[B, F]` levels."""
        batch, _, frames, height, width = x_t.shape
        param = next(self.model.parameters(), None)
        dtype = x_t.dtype if param is None else param.dtype
        t = sigma * self.num_train_timesteps  # [B, F], the model's timestep scale
        x_in = x_t.to(dtype)
        kwargs = dict(model_kwargs)
        if isinstance(cond, TextContext):
            if not isinstance(self.model, CausalWanModel):
                raise TypeError("a TextContext condition needs a CausalWanModel; give text-encoder states instead")
            if cond.batch_size not in (1, batch):
                raise ValueError(f"condition batch {cond.batch_size} does not match the latents' batch {batch}")
            kwargs["text_context"] = cond
            text = None
        else:
            if cond.shape[0] not in (1, batch):
                raise ValueError(f"condition batch {cond.shape[0]} does not match the latents' batch {batch}")
            text = cond.to(dtype).expand(batch, *cond.shape[1:])

        if self.timestep_layout == "per_token":
            timestep = self._per_token(t, frames, height, width)
        else:
            timestep = self._patch_frames(t) if isinstance(self.model, CausalWanModel) else t
        out = self.model(x_in, timestep, encoder_hidden_states=text, return_dict=False, **kwargs)
        if isinstance(out, (tuple, list)):
            out = out[0]
        elif hasattr(out, "sample"):
            out = out.sample
        return out.to(x_t.dtype)

    def _patch_frames(self, t: torch.Tensor) -> torch.Tensor:
        """`[B, F]` per latent frame -> `[B, F / patch_t]` per temporal patch (levels must agree within a patch)."""
        p_t = self.model.config.patch_size[0]
        if p_t == 1:
            return t
        if t.shape[1] % p_t or (t.unflatten(1, (-1, p_t)) != t[:, ::p_t, None]).any():
            raise ValueError(f"per-frame levels must be constant within each temporal patch of {p_t} frames")
        return t[:, ::p_t]

    def _per_token(self, t: torch.Tensor, frames: int, height: int, width: int) -> torch.Tensor:
        """The stock model's timesteps: `[B]` when every frame of a sample shares its level, else `[B, seq_len]`
        with each frame's level repeated over its H'W' patch tokens (diffusers' `ts_seq_len` path)."""
        if (t == t[:, :1]).all():
            return t[:, 0]
        _, p_h, p_w = self.model.config.patch_size
        per_patch = self._patch_frames(t)
        return per_patch.repeat_interleave((height // p_h) * (width // p_w), dim=1)
