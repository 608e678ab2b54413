"""`DMDModule`: DMD / Stream-R1 as a thin Lightning module with manual optimisation (methods.md A.2-A.8).

It receives built modules (student, real score, critic, reward, codec, text encoder) and runs, per optimiser step
k (one `training_step`), ``gradient_accumulation_steps`` micro-steps, each

1. when k % ``dfake_gen_update_ratio`` == 0, a **generator** forward/backward: Self-Forcing rollout (exit step j
   shared by the chunks, gradient through the exit steps only), score timestep, real score with CFG and critic
   at x_t (no graph), the normalised DMD gradient in float64, the Stream-R1 weights (`StreamR1Weighting`: inter
   exp(beta r) per sample, balance penalty, intra saliency map pooled to the latent grid), and the weighted loss
   of A.7;
2. a **critic** forward/backward: a fresh no-grad rollout of another prompt batch, the critic's flow loss;

then one optimiser step of the single `GroupedAdamW` (param groups "generator" and "critic"; the generator's
group is active on generator steps only, so its parameters and optimizer state stay bit-identical on critic-only
steps), each group clipped to its own norm, and the EMA of the generator (from ``ema_start_step``).

Networks live in one `ModuleDict` (``nets.generator``, ``nets.critic``, frozen ``nets.real``) so DeepSpeed builds one
engine over them (ZeRO-3 partitions the frozen real score too); the reward, codec and text encoder are kept out of
the module tree (tuples), the generator's EMA too (saved in the checkpoint by `on_save_checkpoint`). Under ZeRO-3
the networks are not passed built but as a ``build_networks`` callable, which `configure_model` calls inside
Lightning's ``deepspeed.zero.Init`` context, so they are partitioned as they are constructed.

What the module is given rather than knows: its prompts (a `PromptSource`: a prompt file or the shapes world)
and, as a `Callback` (`streamvid.distill.dmd_callbacks.DMDSamples`), everything written beside training (sample
grids, weight maps, per-sample JSONL), which reads the diagnostics `training_step` returns.

Reproducibility: every random draw of step k, micro-step i and rank r comes from generators seeded by
``(seed, k, i, r)`` (the exit step by ``(seed, k, i)``, identical on every rank), so a resumed run redraws exactly
what an uninterrupted one would, and nothing depends on the global RNG.

Failures: a reward that raises, or returns a non-finite value for a sample, leaves that sample's weights at 1
(counted in ``reward/failures``); a non-finite loss on any rank replaces that network's loss by a zero loss on
every rank (so collectives stay aligned), keeps the network out of the step and counts ``train/skipped_*``.
"""

from __future__ import annotations

import math
import warnings
from collections import Counter
from collections.abc import Callable

import lightning.pytorch as pl
import torch

from streamvid.core.sampler import GaussianNoise, StreamingSampler
from streamvid.core.schedule import add_noise
from streamvid.core.score_model import ScoreModel
from streamvid.distill.dmd import critic_flow_loss, dmd_gradient, dmd_loss, dmd_timesteps
from streamvid.distill.dmd_config import DMDStageConfig
from streamvid.distill.flow_matching import EMA
from streamvid.distill.grouped_optim import find_grouped_optimizer
from streamvid.distill.networks import plain_copy
from streamvid.distill.prompts import PromptSource
from streamvid.distill.rollout import draw_exit_step, self_forcing_rollout
from streamvid.distill.stream_r1_weighting import StreamR1Weighting, WeightOutput
from streamvid.distill.trainer import tensorboard_writers

__all__ = ["DMDModule"]


def _seed(*parts: int) -> int:
    """A 63-bit seed from integers (distinct tuples -> distinct seeds with overwhelming probability)."""
    h = 1469598103934665603
    for p in parts:
        h = ((h ^ (int(p) & 0xFFFFFFFFFFFF)) * 1099511628211) % (2**63)
    return h


def _gen(*parts: int) -> torch.Generator:
    return torch.Generator().manual_seed(_seed(*parts))


class DMDModule(pl.LightningModule):
    """DMD / Stream-R1 training of a causal student (see the module docstring).

    Args:
        student: the causal `CausalWanModel` (trained; its EMA is exported).
        real: the frozen teacher (any `ScoreModel`-compatible flow network).
        critic: the fake score (trained), initialised by the caller (a copy of the teacher by default).
        reward: a `RewardModel` (frozen), or None for plain DMD.
        codec: latents -> pixels (`decode`: ``[B, F, C, h, w]`` -> ``[B, T, 3, H, W]`` in [0, 1]).
        text: the text encoder (prompts -> ``[B, L, D]`` states or a `TextEmbedding`).
        cfg: the stage config.
        prompts: the training prompts (`streamvid.distill.prompts.prompt_source(cfg)`).
    """

    def __init__(self, student, real, critic, reward, codec, text, cfg: DMDStageConfig, prompts: PromptSource,
                 build_networks: Callable[[], tuple[torch.nn.Module, torch.nn.Module, torch.nn.Module]] | None = None):
        super().__init__()
        self.automatic_optimization = False
        self.cfg = cfg
        self._build_networks = build_networks
        if student is not None:
            self._attach(student, real, critic)
        elif build_networks is None:
            raise ValueError("DMDModule needs the networks (student, real, critic) or build_networks")
        self._reward, self._codec, self._text = (reward,), (codec,), (text,)
        self._ema_box: list[EMA] = []  # a list keeps the EMA out of the module tree (and out of the DeepSpeed engine)
        height, width = cfg.video_size
        self.latent_shape = (codec.latent_channels, height // codec.spatial_ratio, width // codec.spatial_ratio)
        self.prompts = prompts
        self.weighting = StreamR1Weighting(cfg.stream_r1)
        self.counters: Counter[str] = Counter()
        self._exit_steps: list[int] = []  # exit steps of the generator steps (a histogram in TensorBoard)
        self.progress_metrics = {}

    def _attach(self, student: torch.nn.Module, real: torch.nn.Module, critic: torch.nn.Module) -> None:
        real.requires_grad_(False).eval()
        self.nets = torch.nn.ModuleDict({"generator": student, "critic": critic, "real": real})
        self.sampler = StreamingSampler.from_config(student, self.cfg.sampler)

    def configure_model(self) -> None:
        """Build the networks from ``build_networks`` when they were not given: Lightning calls this inside
        ``deepspeed.zero.Init`` under ZeRO-3 (each parameter partitioned as it is created), once per fit."""
        if self._build_networks is not None and "nets" not in self._modules:
            self._attach(*self._build_networks())

    # ------------------------------------------------------------------ parts
    @property
    def student(self) -> torch.nn.Module:
        return self.nets["generator"]

    @property
    def ema(self) -> EMA | None:
        """The generator's EMA (from ``dmd.ema_start_step`` on), else None."""
        return self._ema_box[0] if self._ema_box else None

    def exported_model(self) -> torch.nn.Module:
        """The model to export: the generator's EMA once it exists, else the generator."""
        return self.ema.module if self.ema is not None else self.student

    def encode(self, prompts: list[str]) -> torch.Tensor:
        """Text states ``[B, L, D]`` in float32 on the module's device (a bf16 text encoder's too, so the
        networks see the same input dtype whatever the encoder's ``text_encoder.dtype``)."""
        return self._text[0](prompts).to(device=self.device, dtype=torch.float32)

    def _score_sigma(self, batch: int, generator: torch.Generator) -> torch.Tensor:
        d = self.cfg.dmd
        t = dmd_timesteps(batch, generator, shift=d.timestep_shift, min_t=d.min_score_timestep,
                          max_t=d.num_train_timestep, min_step=d.min_step, max_step=d.max_step,
                          num_train_timesteps=d.num_train_timestep)
        return (t / d.num_train_timestep).to(self.device)

    def _exit_step(self, generator: torch.Generator) -> int:
        steps = len(self.sampler.schedule)
        return steps - 1 if self.cfg.dmd.last_step_only else draw_exit_step(steps, generator)

    def _rollout(self, prompts: list[str], exit_step: int, noise_seed: int, grad: bool,
                 long_gen: torch.Generator | None = None) -> tuple[torch.Tensor, list[str]]:
        """The rollout's supervised window ``[B, F, C, h, w]`` and the prompts it was generated under.

        With long tuning, the window starts at a frame drawn from ``long_gen`` (uniform over
        `DMDStageConfig.window_starts`) and, with probability ``switch_probability`` when it does not start at 0,
        the rollout switches to `PromptSource.switch_targets` at the window's start; ``long_gen`` is read only
        then, so runs without long tuning draw exactly what they drew before it existed."""
        start, window_prompts, switch_text = 0, prompts, None
        lt = self.cfg.long_tuning
        if lt.enabled:
            if long_gen is None:
                raise ValueError("long tuning draws its window from long_gen; pass a seeded generator")
            starts = self.cfg.window_starts
            start = starts[int(torch.randint(len(starts), (1,), generator=long_gen))]
            if start > 0 and float(torch.rand((), generator=long_gen)) < lt.switch_probability:
                window_prompts = self.prompts.switch_targets(long_gen, prompts)
        with torch.set_grad_enabled(grad):
            text = self.encode(prompts)
            if window_prompts is not prompts:
                switch_text = self.encode(window_prompts)
        x = self_forcing_rollout(self.sampler, text, self.latent_shape, self.cfg.latent_frames, exit_step,
                                 GaussianNoise(noise_seed), grad=grad, window_start=start, switch_text=switch_text)
        return x, window_prompts

    # ------------------------------------------------------------------ the two losses
    def generator_loss(self, prompts: list[str], gen: torch.Generator, exit_step: int, noise_seed: int,
                       long_gen: torch.Generator | None = None):
        """(loss, logs, diagnostics) of one generator micro-step: rollout, DMD gradient, Stream-R1 weights
        (A.2.2, A.4-A.7). ``diagnostics``: ``per_sample`` (prompts, rewards, weights) when the inter weight was
        computed, ``weight_map`` (the first rollout's pixels ``[1, T, 3, H, W]`` and intra map ``[1, F, h, w]``)
        when the intra weight was and each latent frame is one pixel frame (a pixel codec; drawn side by side).
        ``long_gen``: the long-tuning draws (window start, switch; `_rollout`). After a switch, the window is
        scored, and rewarded, under the prompts it switched to."""
        b = len(prompts)
        x, prompts = self._rollout(prompts, exit_step, noise_seed, True, long_gen)  # [B, F, C, h, w]
        sigma = self._score_sigma(b, gen)
        eps = torch.randn(x.shape, generator=gen).to(x)
        cond, uncond = self.encode(prompts), self.encode([self.cfg.dmd.negative_prompt] * b)
        with torch.no_grad():
            x_t = add_noise(x.detach(), eps, sigma.view(b, 1, 1, 1, 1).to(x.dtype))
            xt = x_t.transpose(1, 2)  # score models take [B, C, F, h, w]
            real = ScoreModel(self.nets["real"]).x0(xt, sigma, cond, uncond, self.cfg.dmd.guidance_scale)
            fake = ScoreModel(self.nets["critic"]).x0(xt, sigma, cond)
            grad = dmd_gradient(x.detach(), fake.transpose(1, 2), real.transpose(1, 2))
        diagnostics, weights = {}, None
        if self.uses_reward:
            pixels = self._codec[0].decode(x.detach()).clamp(0, 1)  # [B, T, 3, H, W]
            weights = self.reward_weights(pixels, prompts, x.shape)
        inter, intra = (None, None) if weights is None else (weights.inter, weights.intra)
        loss = dmd_loss(x, grad, _to(inter, x.device), _to(intra, x.device))
        logs = {} if weights is None else dict(weights.logs)
        if weights is not None and weights.per_sample:
            diagnostics["per_sample"] = {"prompt": prompts, **weights.per_sample}
        if intra is not None and pixels.shape[1] == intra.shape[1]:  # pixel codec: one latent frame per frame
            diagnostics["weight_map"] = {"pixels": pixels[:1].detach().cpu(), "weights": intra[:1, :, 0],
                                         "prompt": prompts[0]}
        logs |= {"dmd_gradient_norm": float(grad.abs().mean()), "exit_step": float(exit_step),
                 "score_sigma": float(sigma.mean())}
        return loss, logs, diagnostics

    def critic_loss(self, prompts: list[str], gen: torch.Generator, exit_step: int, noise_seed: int,
                    long_gen: torch.Generator | None = None):
        """(loss, logs) of one critic micro-step: fresh no-grad rollout (its window, under long tuning), flow loss
        at a score timestep (A.2.3)."""
        b = len(prompts)
        with torch.no_grad():
            x, prompts = self._rollout(prompts, exit_step, noise_seed, False, long_gen)
        sigma = self._score_sigma(b, gen)
        eps = torch.randn(x.shape, generator=gen).to(x)
        x_t = add_noise(x, eps, sigma.view(b, 1, 1, 1, 1).to(x.dtype))
        v = ScoreModel(self.nets["critic"]).flow(x_t.transpose(1, 2), sigma, self.encode(prompts))
        return critic_flow_loss(v.transpose(1, 2), x, eps), {}

    # ------------------------------------------------------------------ Stream-R1 weights
    @property
    def uses_reward(self) -> bool:
        """Whether generator steps call the reward (Stream-R1 flags on and a reward given)."""
        return self.cfg.stream_r1.uses_reward and self._reward[0] is not None

    def reward_weights(self, pixels: torch.Tensor, prompts: list[str], latent_shape) -> WeightOutput | None:
        """The reward forward (no grad) and, for the intra weight, the saliency backward of a decoded rollout
        ``pixels [B, T, 3, H, W]``, composed into weights by `StreamR1Weighting` (A.4-A.6) on the latent grid
        of ``latent_shape`` ``[B, F, C, h, w]``.

        A reward that raises gives None (weights 1, counted); a failed saliency leaves the intra weight off for
        the step (counted); a sample with a non-finite reward keeps weight 1 (counted)."""
        from streamvid.core.rewards.saliency import saliency

        reward, b = self._reward[0], len(prompts)
        try:
            with torch.no_grad():
                axes = reward(pixels, prompts).axes
            axes = {k: v.detach() for k, v in axes.items()}
        except Exception as err:  # noqa: BLE001 - any reward failure leaves the step at plain DMD
            self._count("reward/failures", b, f"reward failed ({type(err).__name__}: {err}); weights set to 1")
            return None
        maps = None
        if self.cfg.stream_r1.spatial_reward:
            try:
                maps = saliency(reward, pixels.detach(), prompts, list(self.weighting.saliency_axes))
            except Exception as err:  # noqa: BLE001
                self._count("reward/failures", b, f"saliency failed ({type(err).__name__}: {err})")
        out = self.weighting(axes, maps, latent_shape)
        if not bool(out.valid.all()):
            self._count("reward/failures", int((~out.valid).sum()),
                        "non-finite reward; those samples' weights set to 1")
        return out

    # ------------------------------------------------------------------ the optimiser step
    def training_step(self, batch: dict, batch_idx: int) -> dict:
        cfg, d = self.cfg, self.cfg.dmd
        step, rank = int(batch["step"]), self.global_rank
        opt = self.optimizers()
        accum, b = d.gradient_accumulation_steps, cfg.trainer.batch_size
        gen_step = step % d.dfake_gen_update_ratio == 0
        logs: dict[str, list[float]] = {}
        ok = {"generator": True, "critic": True}
        diagnostics: dict = {}  # of the last generator micro-step that produced them (read by `DMDSamples`)
        for i in range(accum):
            last = i == accum - 1
            if gen_step:
                g = _gen(cfg.seed, step, i, rank, 1)
                prompts = self.prompts.draw(g, b)
                loss, glogs, diag = self.generator_loss(prompts, g, self._exit_step(_gen(cfg.seed, step, i, 1)),
                                                        _seed(cfg.seed, step, i, rank, 2),
                                                        _gen(cfg.seed, step, i, rank, 6))
                diagnostics |= diag
                ok["generator"] &= self._backward("generator", loss, accum, boundary=False)
                for k, v in (glogs | {"generator_loss": float(loss.detach())}).items():
                    logs.setdefault(k, []).append(v)
            g = _gen(cfg.seed, step, i, rank, 3)
            prompts = self.prompts.draw(g, b)
            loss, _ = self.critic_loss(prompts, g, self._exit_step(_gen(cfg.seed, step, i, 4)),
                                       _seed(cfg.seed, step, i, rank, 5), _gen(cfg.seed, step, i, rank, 7))
            ok["critic"] &= self._backward("critic", loss, accum, boundary=last)
            logs.setdefault("critic_loss", []).append(float(loss.detach()))
        grouped = find_grouped_optimizer(opt)
        active = {"critic"} if ok["critic"] else set()
        if gen_step and ok["generator"]:
            active.add("generator")
        grouped.active = active
        opt.step()
        opt.zero_grad(set_to_none=True)
        norms = {k: float(v) for k, v in grouped.grad_norms.items() if k in active}
        if "generator" in active:
            self._update_ema(step + 1)
        self._log_step(logs, norms, gen_step)
        return diagnostics

    def _backward(self, net: str, loss: torch.Tensor, accum: int, boundary: bool) -> bool:
        """``manual_backward(loss / accum)`` when the loss is finite on every rank, else a zero loss (counted)."""
        from streamvid.distill.deepspeed_cpu import set_accumulation_boundary

        finite = bool(torch.isfinite(loss.detach()).all())
        finite = self.trainer.strategy.reduce_boolean_decision(finite, all=True)
        if not finite:
            self._count(f"train/skipped_{net}", 1, f"non-finite {net} loss; {net} update skipped")
            loss = sum(p.sum() for p in self.nets[net].parameters() if p.requires_grad) * 0.0
        set_accumulation_boundary(self.trainer, boundary)
        self.manual_backward(loss / accum)
        return finite

    def _update_ema(self, done_steps: int) -> None:
        d = self.cfg.dmd
        if done_steps < d.ema_start_step:
            return
        from streamvid.distill.deepspeed_cpu import gathered

        with gathered(self.student):
            if self.ema is None:
                self._ema_box.append(EMA(plain_copy(self.student), d.ema_weight, warmup=False).to(self.device))
            else:
                self.ema.update(self.student)

    def _count(self, key: str, n: int, message: str) -> None:
        self.counters[key] += n
        warnings.warn(f"step {self.global_step}: {message} (total {self.counters[key]})", stacklevel=2)

    # ------------------------------------------------------------------ logging
    progress_metrics: dict[str, str]
    """The progress bar's postfix (`trainer.StepProgressBar`): the last generator and critic losses and mean reward."""

    def _log_step(self, logs: dict[str, list[float]], norms: dict[str, float], gen_step: bool) -> None:
        row = {k: sum(v) / len(v) for k, v in logs.items() if v}
        for net in ("generator", "critic"):
            if net in norms:
                row[f"{net}_grad_norm"] = float(norms[net])
        row |= {k: float(v) for k, v in self.counters.items()}
        row["generator_step"] = float(gen_step)
        self.progress_metrics.update(progress_postfix(row))
        # Straight to the loggers (CSV, TensorBoard): one row per optimiser step holding exactly this step's
        # quantities (generator columns stay empty on critic-only steps instead of repeating stale values).
        if self.global_rank == 0:
            for logger in self.loggers:
                logger.log_metrics({f"train/{k}": v for k, v in row.items() if math.isfinite(v)}, step=self.global_step)
            if "exit_step" in row:
                self._exit_steps.append(int(row["exit_step"]))
                for tb in tensorboard_writers(self.loggers):  # the exit-step histogram so far (A.2.1: uniform over the steps)
                    tb.add_histogram("train/exit_step_hist", torch.tensor(self._exit_steps), self.global_step,
                                     bins=torch.arange(len(self.sampler.schedule) + 1).float() - 0.5)

    def on_fit_start(self) -> None:
        """Move the parts kept outside the module tree (codec, text encoder, reward) to this rank's device."""
        for part in (*self._codec, *self._text, *self._reward):
            if isinstance(part, torch.nn.Module):
                part.to(self.device)

    # ------------------------------------------------------------------ optimiser and checkpoints
    def configure_optimizers(self):
        from streamvid.distill.grouped_optim import build_grouped_adamw

        g, c = self.cfg.generator_optim, self.cfg.critic_optim
        return build_grouped_adamw(
            self.nets["generator"], self.nets["critic"],
            {"lr": g.lr, "betas": tuple(g.betas), "weight_decay": g.weight_decay, "max_grad_norm": g.max_grad_norm},
            {"lr": c.lr, "betas": tuple(c.betas), "weight_decay": c.weight_decay, "max_grad_norm": c.max_grad_norm},
        )

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        checkpoint["ema"] = None if self.ema is None else self.ema.state_dict()
        checkpoint["balance"] = self.weighting.state_dict()
        checkpoint["counters"] = dict(self.counters)
        sd = checkpoint.get("state_dict")
        if sd is not None:  # the frozen real score is an input of the run, not saved with it
            for k in [k for k in sd if k.startswith("nets.real.")]:
                del sd[k]

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        if checkpoint.get("ema") is not None:
            ema = EMA(plain_copy(self.student, values=False), self.cfg.dmd.ema_weight, warmup=False).to(self.device)
            ema.load_state_dict(checkpoint["ema"])
            self._ema_box[:] = [ema]
        if "balance" in checkpoint:
            self.weighting.load_state_dict(checkpoint["balance"])
        self.counters = Counter(checkpoint.get("counters", {}))
        sd = checkpoint.get("state_dict")
        if sd is not None:  # put the (unchanged, frozen) real score back so strict loading holds
            for k, v in self.nets["real"].state_dict().items():
                sd.setdefault(f"nets.real.{k}", v)


def _to(t: torch.Tensor | None, device) -> torch.Tensor | None:
    return None if t is None else t.to(device)


def progress_postfix(row: dict[str, float]) -> dict[str, str]:
    """The progress bar's view of one logged step: ``g_loss`` / ``c_loss`` (generator and critic losses) and
    ``reward`` (the mean of the per-axis mean rewards, A.9's ``reward_vq / mq / ta``), those the step has."""
    out = {}
    if "generator_loss" in row:
        out["g_loss"] = f"{row['generator_loss']:.4g}"
    if "critic_loss" in row:
        out["c_loss"] = f"{row['critic_loss']:.4g}"
    axes = [v for k, v in row.items() if k in ("reward_vq", "reward_mq", "reward_ta") and math.isfinite(v)]
    if axes:
        out["reward"] = f"{sum(axes) / len(axes):.3f}"
    return out
