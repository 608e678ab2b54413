"""Self-Forcing's training rollout ("backward simulation", methods.md A.2.1) on the chunk loop's public steps.

For every chunk the `StreamSession` opens the chunk, draws its initial noise, runs the few-step steps
0 .. j-1 without gradient (x0 prediction, then re-noising with fresh noise), the **exit step** j with gradient,
and commits the exit step's x0 with the clean commit pass (t = ``context_noise``, no gradient). The exit step j
is drawn once per rollout and shared by every chunk (``same_step_across_blocks``). Gradients therefore reach the
student only through each chunk's exit-step forward: the cached history K/V are constants.

LongLive's long tuning (``DMDStageConfig.long_tuning``) uses the same loop: ``window_start`` latent frames roll
out first without gradient (the cache's sink and window carry them, as at inference), then the supervised window;
switch training switches the prompt (with the sampler's KV re-cache) at the window's start.

There is no second chunk loop here: the steps are `StreamSession.open_chunk / initial_noise / denoise / renoise /
commit`, as in inference and search.
"""

from __future__ import annotations

import torch

from streamvid.core.sampler import NoiseSource, StreamingSampler

__all__ = ["draw_exit_step", "self_forcing_rollout"]


def draw_exit_step(num_steps: int, generator: torch.Generator) -> int:
    """j ~ U{0, ..., num_steps - 1} (A.2.1 step 3). The reference draws it on rank 0 and broadcasts it; callers
    pass a generator seeded identically on every rank (by the optimiser step), which gives the same j everywhere
    without communication."""
    return int(torch.randint(num_steps, (1,), generator=generator))


def self_forcing_rollout(
    sampler: StreamingSampler,
    text: torch.Tensor,
    latent_shape: tuple[int, int, int],
    num_frames: int,
    exit_step: int,
    noise: NoiseSource,
    *,
    grad: bool = True,
    window_start: int = 0,
    switch_text: torch.Tensor | None = None,
) -> torch.Tensor:
    """Generate ``window_start + num_frames`` latent frames chunk by chunk and return the last ``num_frames``
    (the supervised window), keeping the graph of every exit step of the window.

    Args:
        sampler: the student's `StreamingSampler` (its few-step schedule and cache layout).
        text: text-encoder states ``[B, L, D]`` (encoded by the session under the current grad mode, so the text
            projections train when gradients are on).
        latent_shape: ``(C, h, w)`` of one latent frame.
        num_frames: frames of the supervised window, a multiple of the chunk size.
        exit_step: j, the step whose x0 is the chunk's output.
        noise: the session's noise source (per-rank, per-step seeded for reproducibility).
        grad: build the window's exit steps' graph (False: the critic's fresh rollout, A.2.3).
        window_start: latent frames rolled out before the window, without gradient (long tuning; a multiple of
            the chunk size).
        switch_text: ``[B, L, D]`` states of the prompts the window switches to at its start (switch training;
            needs ``window_start > 0``), or None.
    Returns:
        ``[B, num_frames, C, h, w]`` clean latents (exit-step x0 of every chunk of the window).
    """
    steps = len(sampler.schedule)
    if not 0 <= exit_step < steps:
        raise ValueError(f"exit_step {exit_step} outside the sampler's {steps} steps")
    for name, frames in (("num_frames", num_frames), ("window_start", window_start)):
        if frames % sampler.chunk_frames or frames < 0:
            raise ValueError(f"{name}={frames} is not a non-negative multiple of chunk_frames={sampler.chunk_frames}")
    if switch_text is not None and window_start == 0:
        raise ValueError("a prompt switch needs chunks before the window (window_start > 0)")
    with torch.set_grad_enabled(grad):
        session = sampler.session(text, latent_shape, batch_size=text.shape[0], noise=noise)
    first = window_start // sampler.chunk_frames
    chunks = []
    for c in range(first + num_frames // sampler.chunk_frames):
        in_window = c >= first
        if c == first and switch_text is not None:
            with torch.set_grad_enabled(grad):
                session.switch_prompt(switch_text)
        session.open_chunk()
        x = session.initial_noise()
        for j in range(exit_step):
            x = session.renoise(session.denoise(x, j), j)
        x0 = session.denoise(x, exit_step, grad=grad and in_window)
        latents = session.commit(x0).latents
        if in_window:
            chunks.append(latents)
    return torch.cat(chunks, dim=1)
