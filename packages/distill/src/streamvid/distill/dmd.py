"""Distribution matching distillation (DMD) as Self-Forcing / Reward Forcing / Stream-R1 run it: small callables,
one per equation of methods.md A.2.2-A.2.3 and A.7.

Notation: x is the student's rollout (clean latents, carrying the exit steps' autograd graph), eps fresh noise,
sigma the noise level of a score timestep t (sigma = t / 1000 on the shifted 1000-entry grid),
x_t = (1 - sigma) x + sigma eps, and x0_real / x0_fake the clean predictions of the frozen teacher ("real score",
with CFG) and of the critic ("fake score", without).

* `dmd_timesteps`: t ~ U{min_t, ..., max_t - 1}, shifted t <- 1000 * shift u / (1 + (shift - 1) u) with
  u = t / 1000, clamped to [min_step, max_step], then snapped to the nearest entry of the shifted timestep
  table (what ``scheduler.add_noise`` does). One t per sample, shared by its frames (``uniform_timestep``).
* `dmd_gradient`: grad = (x0_fake - x0_real) / mean_{F,C,H,W} |x - x0_real| per sample, in float64,
  ``nan_to_num``'d (A.2.2).
* `dmd_loss`: L = 0.5 * mean_b [ w_b * mean_{f,c,h,w} ( W * (x - sg(x - grad))^2 ) ] in float64 (A.7): w_b the
  per-sample inter weight exp(beta r_b) (1 for plain DMD), W the intra weight map (1 for plain DMD). Its
  gradient w.r.t. x is w_b W grad / N, so all weights 1 is exactly the vanilla DMD loss 0.5 MSE(x, sg(x - grad)).
* `critic_flow_loss`: mean || v_fake(x_t) - (eps - x) ||^2 on a fresh rollout (A.2.3, ``denoising_loss_type:
  flow``). Our critic predicts the flow directly; the reference's x0 -> flow conversion
  v = (x_t - x0) / sigma is the identity on it.

All tensors are elementwise here, so any layout works as long as the batch is dimension 0; the Lightning module
uses the frame-major `[B, F, C, h, w]` of the chunk loop.
"""

from __future__ import annotations

import torch

from streamvid.core.schedule import shift_sigma, shifted_timestep_table

__all__ = ["critic_flow_loss", "dmd_gradient", "dmd_loss", "dmd_timesteps", "per_sample_view"]


def dmd_timesteps(
    batch: int,
    generator: torch.Generator | None = None,
    *,
    shift: float = 5.0,
    min_t: int = 0,
    max_t: int = 1000,
    min_step: int = 20,
    max_step: int = 980,
    num_train_timesteps: int = 1000,
) -> torch.Tensor:
    """``[batch]`` score timesteps t in (0, 1000], on the shifted grid (methods.md A.2.2 "Timestep").

    Args:
        batch: one timestep per sample.
        generator: torch RNG for the draw (reproducible runs pass a seeded one).
        shift: ``timestep_shift`` (5 in Stream-R1): t <- 1000 * shift_sigma(t / 1000).
        min_t, max_t: the uniform draw's range [min_t, max_t) (``min_score_timestep`` = 0, 1000: no ts_schedule).
        min_step, max_step: the clamp after the shift (0.02 and 0.98 of 1000).
    Returns:
        float32 timesteps, each an entry of ``shifted_timestep_table(shift)``; sigma = t / num_train_timesteps.
    """
    if not 0 <= min_t < max_t <= num_train_timesteps:
        raise ValueError(f"need 0 <= min_t < max_t <= {num_train_timesteps}; got min_t={min_t}, max_t={max_t}")
    t = torch.randint(min_t, max_t, (batch,), generator=generator).double()
    u = t / num_train_timesteps
    t = (num_train_timesteps * shift_sigma(u, shift)).clamp(min_step, max_step)
    table = shifted_timestep_table(shift, num_train_timesteps).double()
    nearest = (table[None, :] - t[:, None]).abs().argmin(dim=1)
    return table[nearest].float()


def per_sample_view(w: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """``[B]`` -> ``[B, 1, ..., 1]`` broadcastable against ``like``."""
    return w.reshape(w.shape[0], *([1] * (like.dim() - 1)))


@torch.no_grad()
def dmd_gradient(x: torch.Tensor, x0_fake: torch.Tensor, x0_real: torch.Tensor) -> torch.Tensor:
    """The normalised DMD gradient (methods.md A.2.2 "Gradient"), float64, no graph.

    grad = (x0_fake - x0_real) / mean_{all but batch} |x - x0_real|, then ``nan_to_num``.

    Args:
        x, x0_fake, x0_real: ``[B, ...]`` the rollout and the two clean predictions at its noised x_t.
    Returns:
        ``[B, ...]`` float64.
    """
    x, fake, real = x.double(), x0_fake.double(), x0_real.double()
    norm = (x - real).abs().flatten(1).mean(dim=1)
    return torch.nan_to_num((fake - real) / per_sample_view(norm, x))


def dmd_loss(
    x: torch.Tensor,
    grad: torch.Tensor,
    inter: torch.Tensor | None = None,
    intra: torch.Tensor | None = None,
) -> torch.Tensor:
    """The (reward-weighted) DMD generator loss of methods.md A.7, float64 scalar.

    L = 0.5 * mean_b [ inter_b * mean_{rest} ( intra * (x - sg(x - grad))^2 ) ]

    Args:
        x: ``[B, ...]`` the rollout, with graph.
        grad: ``[B, ...]`` `dmd_gradient` (constant).
        inter: ``[B]`` per-sample weights exp(beta r_final) (None: 1; constant).
        intra: weights broadcastable to x, e.g. ``[B, F, 1, h, w]`` with mean 1 per sample (None: 1; constant).
    """
    x64 = x.double()
    target = (x64 - grad.double()).detach()
    err = (x64 - target) ** 2
    if intra is not None:
        err = err * intra.detach().double()
    per_sample = err.flatten(1).mean(dim=1)
    if inter is not None:
        per_sample = per_sample * inter.detach().double()
    return 0.5 * per_sample.mean()


def critic_flow_loss(v_fake: torch.Tensor, x: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
    """Flow-matching loss of the critic (methods.md A.2.3): mean (v_fake - (eps - x))^2, float32.

    Args:
        v_fake: ``[B, ...]`` the critic's flow at x_t = (1 - sigma) x + sigma eps (with graph).
        x: the fresh rollout (constant); noise: eps.
    """
    target = (noise - x).detach().float()
    return torch.mean((v_fake.float() - target) ** 2)
