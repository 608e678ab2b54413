"""`DMDModule`: DMD / Stream-R1 as a thin Lightning module with manual optimisation (methods.md A.2-A.8).

It receives built modules (student, real score, critic, reward, codec, text encoder) and runs, per optimiser step
k (one `training_step`), ``gradient_accumulation_steps`` micro-steps, each

1. when k % ``dfake_gen_update_ratio`` == 0, a **generator** forward/backward: Self-Forcing rollout (exit step j
   shared by the chunks, gradient through the exit steps only), score timestep, real score with CFG and critic
   at x_t (no graph), the normalised DMD gradient in float64, the Stream-R1 weights (inter exp(beta r) per sample,
   balance penalty, intra saliency map pooled to the latent grid), and the weighted loss of A.7;
2. a **critic** forward/backward: a fresh no-grad rollout of another prompt batch, the critic's flow loss;

then one optimiser step of the single `GroupedAdamW` (param groups "generator" and "critic"; the generator's
group is active on generator steps only, so its parameters and optimizer state stay bit-identical on critic-only
steps), each group clipped to its own norm, and the EMA of the generator (from ``ema_start_step``).

Networks live in one `ModuleDict` (``nets.generator``, ``nets.critic``, frozen ``nets.real``) so DeepSpeed builds one
engine over them (ZeRO-3 partitions the frozen real score too); the reward, codec and text encoder are kept out of
the module tree (tuples), the generator's EMA too (saved in the checkpoint by `on_save_checkpoint`).

Reproducibility: every random draw of step k, micro-step i and rank r comes from generators seeded by
``(seed, k, i, r)`` (the exit step by ``(seed, k, i)``, identical on every rank), so a resumed run redraws exactly
what an uninterrupted one would, and nothing depends on the global RNG.

Failures: a reward that raises, or returns a non-finite value for a sample, leaves that sample's weights at 1
(counted in ``reward/failures``); a non-finite loss on any rank replaces that network's loss by a zero loss on
every rank (so collectives stay aligned), keeps the network out of the step and counts ``train/skipped_*``.
"""

from __future__ import annotations

import json
import math
import warnings
from collections import Counter
from pathlib import Path

import lightning.pytorch as pl
import torch

from streamvid.core.sampler import GaussianNoise, StreamingSampler
from streamvid.core.schedule import add_noise
from streamvid.core.score_model import ScoreModel
from streamvid.core.world import sample_attributes
from streamvid.distill import stream_r1_weights as srw
from streamvid.distill.dmd import critic_flow_loss, dmd_gradient, dmd_loss, dmd_timesteps
from streamvid.distill.dmd_config import AXIS_OF, DMDStageConfig
from streamvid.distill.flow_matching import EMA
from streamvid.distill.grouped_optim import find_grouped_optimizer
from streamvid.distill.rollout import draw_exit_step, self_forcing_rollout

__all__ = ["DMDModule"]

PROMPT_POOL = 1_000_000
"""Train prompts are items 0 .. PROMPT_POOL - 1 of the world's train split (drawn per step)."""


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
        sample_dir: where fixed-seed sample grids and weight maps go (rank 0).
    """

    def __init__(self, student, real, critic, reward, codec, text, cfg: DMDStageConfig,
                 sample_dir: str | Path | None = None):
        super().__init__()
        self.automatic_optimization = False
        self.cfg = cfg
        real.requires_grad_(False).eval()
        self.nets = torch.nn.ModuleDict({"generator": student, "critic": critic, "real": real})
        self._reward, self._codec, self._text = (reward,), (codec,), (text,)
        self._ema_box: list[EMA] = []  # a list keeps the EMA out of the module tree (and out of the DeepSpeed engine)
        self.sampler = StreamingSampler.from_config(student, cfg.sampler)
        height, width = cfg.video_size
        self.latent_shape = (codec.latent_channels, height // codec.spatial_ratio, width // codec.spatial_ratio)
        self._prompt_list = _read_prompts(cfg.prompts) if cfg.prompts else None
        r1 = cfg.stream_r1
        self.balance = srw.BalancePenalty(r1.reward_balance_window, r1.reward_balance_warmup,
                                          r1.reward_balance_lambda)
        self.counters: Counter[str] = Counter()
        self.sample_dir = Path(sample_dir) if sample_dir is not None else None
        self._last_weights: dict | None = None  # frames + intra map of the last generator micro-step (for images)
        self._exit_steps: list[int] = []  # exit steps of the generator steps (a histogram in TensorBoard)

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
        states = self._text[0](prompts)
        states = getattr(states, "states", states)
        return states.to(self.device)

    def draw_prompts(self, generator: torch.Generator, n: int) -> list[str]:
        """``n`` training prompts: from the prompt file when given, else the shapes world's train split."""
        if self._prompt_list is not None:
            idx = torch.randint(len(self._prompt_list), (n,), generator=generator).tolist()
            return [self._prompt_list[i] for i in idx]
        idx = torch.randint(PROMPT_POOL, (n,), generator=generator).tolist()
        return [sample_attributes(self.cfg.world, "train", i)[1] for i in idx]

    def _score_sigma(self, batch: int, generator: torch.Generator) -> torch.Tensor:
        d = self.cfg.dmd
        t = dmd_timesteps(batch, generator, shift=d.timestep_shift, min_t=d.min_score_timestep,
                          max_t=d.num_train_timestep, min_step=d.min_step, max_step=d.max_step,
                          num_train_timesteps=d.num_train_timestep)
        return (t / d.num_train_timestep).to(self.device)

    def _exit_step(self, generator: torch.Generator) -> int:
        steps = len(self.sampler.schedule)
        return steps - 1 if self.cfg.dmd.last_step_only else draw_exit_step(steps, generator)

    def _rollout(self, prompts: list[str], exit_step: int, noise_seed: int, grad: bool) -> torch.Tensor:
        with torch.set_grad_enabled(grad):
            text = self.encode(prompts)
        return self_forcing_rollout(self.sampler, text, self.latent_shape, self.cfg.latent_frames, exit_step,
                                    GaussianNoise(noise_seed), grad=grad)

    # ------------------------------------------------------------------ the two losses
    def generator_loss(self, prompts: list[str], gen: torch.Generator, exit_step: int, noise_seed: int):
        """(loss, logs) of one generator micro-step: rollout, DMD gradient, Stream-R1 weights (A.2.2, A.4-A.7)."""
        b = len(prompts)
        x = self._rollout(prompts, exit_step, noise_seed, grad=True)  # [B, F, C, h, w]
        sigma = self._score_sigma(b, gen)
        eps = torch.randn(x.shape, generator=gen).to(x)
        cond, uncond = self.encode(prompts), self.encode([self.cfg.dmd.negative_prompt] * b)
        with torch.no_grad():
            x_t = add_noise(x.detach(), eps, sigma.view(b, 1, 1, 1, 1).to(x.dtype))
            xt = x_t.transpose(1, 2)  # score models take [B, C, F, h, w]
            real = ScoreModel(self.nets["real"]).x0(xt, sigma, cond, uncond, self.cfg.dmd.guidance_scale)
            fake = ScoreModel(self.nets["critic"]).x0(xt, sigma, cond)
            grad = dmd_gradient(x.detach(), fake.transpose(1, 2), real.transpose(1, 2))
        inter, intra, logs = self.reward_weights(x.detach(), prompts)
        loss = dmd_loss(x, grad, inter, intra)
        logs |= {"dmd_gradient_norm": float(grad.abs().mean()), "exit_step": float(exit_step),
                 "score_sigma": float(sigma.mean())}
        return loss, logs

    def critic_loss(self, prompts: list[str], gen: torch.Generator, exit_step: int, noise_seed: int):
        """(loss, logs) of one critic micro-step: fresh no-grad rollout, flow loss at a score timestep (A.2.3)."""
        b = len(prompts)
        with torch.no_grad():
            x = self._rollout(prompts, exit_step, noise_seed, grad=False)
        sigma = self._score_sigma(b, gen)
        eps = torch.randn(x.shape, generator=gen).to(x)
        x_t = add_noise(x, eps, sigma.view(b, 1, 1, 1, 1).to(x.dtype))
        v = ScoreModel(self.nets["critic"]).flow(x_t.transpose(1, 2), sigma, self.encode(prompts))
        return critic_flow_loss(v.transpose(1, 2), x, eps), {}

    # ------------------------------------------------------------------ Stream-R1 weights
    def reward_weights(self, x: torch.Tensor, prompts: list[str]):
        """Inter ``[B]`` and intra ``[B, F, 1, h, w]`` weights of a rollout (None when off), and their logs.

        A reward that raises, or a non-finite reward of a sample, sets that sample's weights to 1 (counted)."""
        r1, logs = self.cfg.stream_r1, {}
        if not r1.uses_reward or self._reward[0] is None:
            return None, None, logs
        b = x.shape[0]
        pixels = self._codec[0].decode(x).clamp(0, 1)
        try:
            with torch.no_grad():
                out = self._reward[0](pixels, prompts)
            axes = {k: v.detach().double().cpu() for k, v in out.axes.items()}
        except Exception as err:  # noqa: BLE001 - any reward failure leaves the step at plain DMD
            self._count("reward/failures", b, f"reward failed ({type(err).__name__}: {err}); weights set to 1")
            return None, None, logs
        norm = {k: tuple(v) for k, v in r1.reward_norm.items()} if r1.reward_norm else None
        r = srw.normalise_rewards(axes, norm)
        ok = torch.stack([torch.isfinite(r[AXIS_OF[d]]) for d in AXIS_OF if AXIS_OF[d] in r]).all(0)
        if not bool(ok.all()):
            self._count("reward/failures", int((~ok).sum()), "non-finite reward; those samples' weights set to 1")
        for dim, axis in AXIS_OF.items():
            if axis in r:
                logs[f"reward_{dim.lower()}"] = float(r[axis][ok].mean()) if ok.any() else math.nan
        inter = None
        if r1.reward_weighting:
            base = srw.base_reward(r, r1.reward_mode, r1.reward_dims)
            penalty = torch.zeros_like(base)
            if r1.uses_balance:  # A.5: one penalty update per (finite) sample, in batch order
                for i in torch.nonzero(ok).flatten().tolist():
                    penalty[i] = self.balance.update(*(float(r[AXIS_OF[d]][i]) for d in ("VQ", "MQ", "TA")))
            final = srw.final_reward(base, penalty, r1.reward_balance_lambda) if r1.uses_balance else base
            inter = torch.where(ok, srw.inter_weight(final, r1.beta), torch.ones_like(final))
            logs |= {"reward_weight": float(inter.mean()), "reward_balance_penalty": float(penalty.mean())}
            self._per_sample = {"prompt": prompts, "reward_final": final.tolist(), "reward_weight": inter.tolist(),
                                **{f"reward_{d.lower()}": r[a].tolist() for d, a in AXIS_OF.items() if a in r}}
            inter = inter.float().to(x.device)
        intra = None
        if r1.spatial_reward:
            intra, wlogs = self.intra_weights(pixels, prompts, r, ok, x.shape)
            logs |= wlogs
        return inter, intra, logs

    def intra_weights(self, pixels, prompts, r, ok, latent_shape):
        """``[B, F, 1, h, w]`` intra-perplexity weights from per-axis reward saliency (A.6), 1 where not ok."""
        from streamvid.core.rewards.saliency import saliency

        r1 = self.cfg.stream_r1
        axes = [AXIS_OF[m] for m in r1.spatial_reward_metrics]
        try:
            maps = saliency(self._reward[0], pixels.detach(), prompts, axes)
        except Exception as err:  # noqa: BLE001
            self._count("reward/failures", len(prompts), f"saliency failed ({type(err).__name__}: {err})")
            return None, {}
        s = srw.stack_saliency(maps, r1.spatial_reward_metrics).double().cpu().nan_to_num(0.0)  # [B, M, T, H, W]
        rm = srw.stack_rewards(r, r1.spatial_reward_metrics).nan_to_num(0.0)  # [B, M], before the penalty
        fused = srw.fuse_saliency(s, srw.fusion_weights(rm, r1.spatial_reward_temperature),
                                  r1.spatial_reward_combination)  # [B, T, H, W]
        _, f, _, h, wd = latent_shape
        # Pool the fused saliency to the latent grid first (RMS of per-pixel L2 norms: the cell's gradient L2 up
        # to a constant, the reference's per-patch norm), then the factors of A.6 steps 4-7 on that grid.
        cells = srw.pool_frames_to_latent(fused, f, h, wd, how="rms")  # [B, F, h, w]
        w = srw.intra_weight(cells, r1.temporal_saliency_weighting, r1.temporal_saliency_strength,
                             r1.temporal_saliency_min_weight, r1.spatial_reward_strength, r1.spatial_reward_min_weight)
        lat = w.unsqueeze(2)  # [B, F, 1, h, w]
        lat = torch.where(ok.view(-1, 1, 1, 1, 1), lat, torch.ones_like(lat))
        logs = {}
        for name, t in (("spatial_weight", lat), ("temporal_sal_weight", lat.mean(dim=(2, 3, 4)))):
            logs |= {f"{name}_min": float(t.min()), f"{name}_max": float(t.max()), f"{name}_std": float(t.std())}
        if pixels.shape[1] == f:  # one latent frame per pixel frame (pixel codec): draw the map beside them
            self._last_weights = {"pixels": pixels[:1].detach().cpu(), "weights": w[:1].float(), "prompt": prompts[0]}
        return lat.float().to(pixels.device), logs

    # ------------------------------------------------------------------ the optimiser step
    def training_step(self, batch: dict, batch_idx: int) -> None:
        cfg, d = self.cfg, self.cfg.dmd
        step, rank = int(batch["step"]), self.global_rank
        opt = self.optimizers()
        accum, b = d.gradient_accumulation_steps, cfg.trainer.batch_size
        gen_step = step % d.dfake_gen_update_ratio == 0
        logs: dict[str, list[float]] = {}
        ok = {"generator": True, "critic": True}
        self._per_sample = {}
        for i in range(accum):
            last = i == accum - 1
            if gen_step:
                g = _gen(cfg.seed, step, i, rank, 1)
                prompts = self.draw_prompts(g, b)
                loss, glogs = self.generator_loss(prompts, g, self._exit_step(_gen(cfg.seed, step, i, 1)),
                                                  _seed(cfg.seed, step, i, rank, 2))
                ok["generator"] &= self._backward("generator", loss, accum, boundary=False)
                for k, v in (glogs | {"generator_loss": float(loss.detach())}).items():
                    logs.setdefault(k, []).append(v)
            g = _gen(cfg.seed, step, i, rank, 3)
            prompts = self.draw_prompts(g, b)
            loss, _ = self.critic_loss(prompts, g, self._exit_step(_gen(cfg.seed, step, i, 4)),
                                       _seed(cfg.seed, step, i, rank, 5))
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
    def _log_step(self, logs: dict[str, list[float]], norms: dict[str, float], gen_step: bool) -> None:
        row = {k: sum(v) / len(v) for k, v in logs.items() if v}
        for net in ("generator", "critic"):
            if net in norms:
                row[f"{net}_grad_norm"] = float(norms[net])
        row |= {k: float(v) for k, v in self.counters.items()}
        row["generator_step"] = float(gen_step)
        # Straight to the loggers (CSV, TensorBoard): one row per optimiser step holding exactly this step's
        # quantities (generator columns stay empty on critic-only steps instead of repeating stale values).
        if self.global_rank == 0:
            for logger in self.loggers:
                logger.log_metrics({f"train/{k}": v for k, v in row.items() if math.isfinite(v)}, step=self.global_step)
            if "exit_step" in row:
                self._exit_steps.append(int(row["exit_step"]))
                for tb in self._tensorboards():  # the exit-step histogram so far (A.2.1: uniform over the steps)
                    tb.add_histogram("train/exit_step_hist", torch.tensor(self._exit_steps), self.global_step,
                                     bins=torch.arange(len(self.sampler.schedule) + 1).float() - 0.5)
        if self._per_sample and self.sample_dir is not None:
            self.sample_dir.mkdir(parents=True, exist_ok=True)
            with open(self.sample_dir / f"per_sample_rank{self.global_rank}.jsonl", "a") as f:
                f.write(json.dumps({"step": self.global_step, **self._per_sample}) + "\n")

    def on_fit_start(self) -> None:
        """Move the parts kept outside the module tree (codec, text encoder, reward) to this rank's device."""
        for part in (*self._codec, *self._text, *self._reward):
            if isinstance(part, torch.nn.Module):
                part.to(self.device)

    def on_train_batch_end(self, outputs, batch, batch_idx) -> None:
        step = self.global_step
        if self.cfg.sample_prompts and (step == 1 or step % self.cfg.sample_every == 0):
            self.write_samples(step)

    @torch.no_grad()
    def write_samples(self, step: int) -> dict[str, float]:
        """Fixed-seed videos of the first ``sample_prompts`` val prompts from the exported model (EMA once it
        exists), read by the pixel oracle; a grid PNG (and the last intra weight map) under ``sample_dir`` and the
        oracle's means in the logs. Runs on every rank (ZeRO-3 gathers parameters collectively); rank 0 writes."""
        from streamvid.distill.shapes_eval import evaluate_videos, sample_student, write_grid

        prompts = [sample_attributes(self.cfg.world, "val", i)[1] for i in range(self.cfg.sample_prompts)]
        model = self.exported_model()
        was_training = model.training
        model.eval()
        videos = sample_student(model, self.cfg.sampler, prompts, seed=self.cfg.seed)
        model.train(was_training)
        metrics, rows = evaluate_videos(videos, prompts)
        keep = ("colour_accuracy", "shape_accuracy", "direction_accuracy", "mean_text", "mean_motion", "mean_visual")
        logged = {f"samples/oracle_{k}": float(metrics[k]) for k in keep}
        if self.global_rank == 0:
            for logger in self.loggers:
                logger.log_metrics(logged, step=step)
        if self.global_rank == 0 and self.sample_dir is not None:
            images = {"samples": self.sample_dir / f"samples_step{step:06d}.png"}
            write_grid(videos, prompts, rows, images["samples"])
            if self._last_weights is not None:
                images["intra_weights"] = self.sample_dir / f"weights_step{step:06d}.png"
                write_weight_map(self._last_weights, images["intra_weights"])
            for tb in self._tensorboards():
                for name, path in images.items():
                    tb.add_image(f"samples/{name}", _read_png(path), step, dataformats="HWC")
        return logged

    def _tensorboards(self) -> list:
        """The SummaryWriters of this run's TensorBoard loggers (rank 0)."""
        from lightning.pytorch.loggers import TensorBoardLogger

        return [lg.experiment for lg in self.loggers if isinstance(lg, TensorBoardLogger)]

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
        checkpoint["balance"] = self.balance.state_dict()
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
        self.balance.load_state_dict(checkpoint.get("balance", self.balance.state_dict()))
        self.counters = Counter(checkpoint.get("counters", {}))
        sd = checkpoint.get("state_dict")
        if sd is not None:  # put the (unchanged, frozen) real score back so strict loading holds
            for k, v in self.nets["real"].state_dict().items():
                sd.setdefault(f"nets.real.{k}", v)


def write_weight_map(last: dict, path: Path, scale: int = 4) -> None:
    """PNG: the frames of one rollout (top row) and its intra weight map W on the latent grid (bottom row, grey,
    max -> white), one latent frame under each pixel frame."""
    from PIL import Image

    pixels, weights = last["pixels"][0], last["weights"][0]  # [T, 3, H, W], [T, h, w] (latent grid)
    t, _, h, w = pixels.shape
    weights = torch.nn.functional.interpolate(weights[None], size=(h, w), mode="nearest")[0]
    frames = pixels.permute(2, 0, 3, 1).reshape(h, t * w, 3)
    heat = (weights / weights.max().clamp_min(1e-8)).permute(1, 0, 2).reshape(h, t * w, 1).expand(h, t * w, 3)
    img = torch.cat([frames, heat.to(frames.dtype)], dim=0).clamp(0, 1)
    image = Image.fromarray((img * 255).round().byte().numpy()).resize((t * w * scale, 2 * h * scale), 0)
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path, optimize=True)


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
    fresh = fresh.to(next(module.parameters()).dtype)
    if values:
        with torch.no_grad():
            for dst, src in zip(fresh.parameters(), module.parameters(), strict=True):
                dst.copy_(src.detach().reshape(dst.shape))
            for dst, src in zip(fresh.buffers(), module.buffers(), strict=True):
                dst.copy_(src.detach().reshape(dst.shape))
    return fresh


def _read_png(path: Path):
    """``[H, W, 3]`` uint8 numpy array of a PNG (for TensorBoard images)."""
    import numpy as np
    from PIL import Image

    return np.asarray(Image.open(path).convert("RGB"))


def _read_prompts(path: str) -> list[str]:
    return [line.strip() for line in Path(path).read_text().splitlines() if line.strip()]


