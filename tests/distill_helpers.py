"""Scaffolding of the grouped-optimiser / DeepSpeed tests: a tiny two-network (generator + critic) DMD-like
LightningModule with manual optimisation, TTUR and gradient accumulation, and a worker entry point.

``python tests/distill_helpers.py --mode zero2 --out DIR [...]`` runs one Lightning fit with
``Trainer(accelerator="cpu", devices=N, strategy=CPUDeepSpeedStrategy(...))`` (Lightning relaunches this
command for the other ranks) and writes ``DIR/rank{r}.pt`` with the per-step losses, the gathered final
parameters and whatever checks the mode asked for. ``--mode plain`` is the 1-process reference (no DeepSpeed).

The batch of a step is a pure function of the step: ``n`` samples per accumulation micro-step, of which rank r
of W takes rows ``r*n/W .. (r+1)*n/W``, so a W-rank run sees exactly the 1-process batch.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("DS_ACCELERATOR", "cpu")
os.environ.setdefault("OMP_NUM_THREADS", "1")

import lightning.pytorch as pl  # noqa: E402
import torch  # noqa: E402

from streamvid.distill.grouped_optim import build_grouped_adamw, find_grouped_optimizer  # noqa: E402

DIM, HIDDEN = 8, 16
GEN = dict(lr=1e-2, betas=(0.0, 0.999), weight_decay=0.01, max_grad_norm=0.03)  # clips every step
CRITIC = dict(lr=5e-3, betas=(0.0, 0.999), weight_decay=0.01, max_grad_norm=0.25)  # clips some steps


def mlp(out: int = DIM) -> torch.nn.Sequential:
    return torch.nn.Sequential(torch.nn.Linear(DIM, HIDDEN), torch.nn.SiLU(), torch.nn.Linear(HIDDEN, out))


def make_nets(seed: int = 0, real: bool = False) -> torch.nn.ModuleDict:
    torch.manual_seed(seed)
    nets = {"generator": mlp(), "critic": mlp()}
    if real:
        nets["real"] = mlp().requires_grad_(False)
    return torch.nn.ModuleDict(nets)


def step_batch(step: int, accumulate: int, n: int) -> dict[str, torch.Tensor]:
    """The full batch of one step: ``z``, ``y`` of shape [accumulate, n, DIM]."""
    g = torch.Generator().manual_seed(1000 + step)
    return {"z": torch.randn(accumulate, n, DIM, generator=g), "y": torch.randn(accumulate, n, DIM, generator=g)}


class TwoNetModule(pl.LightningModule):
    """Generator + critic (+ optional frozen ``real``) in one ``ModuleDict``; one `GroupedAdamW`.

    Step s: the critic always steps; the generator when ``s % ratio == 0`` (TTUR). Each step accumulates
    ``accumulate`` micro-steps (generator backward first, then critic backward, each ``loss / accumulate``);
    the DeepSpeed accumulation boundary is True only for the last backward of the step.

    * critic loss: ``mean((critic(sg(G(z))) - y)^2)``;
    * generator loss (DMD-like, critic and real frozen in it): ``0.5 mean((x - sg(x - g))^2)`` with
      ``x = G(z)``, ``g = critic(x) - real(x)`` (``critic(x)`` without ``real``) under no_grad.
    """

    def __init__(self, accumulate: int = 2, ratio: int = 2, n: int = 8, real: bool = False, seed: int = 0,
                 probe: str = "") -> None:
        super().__init__()
        self.nets = make_nets(seed, real)
        self.accumulate, self.ratio, self.n, self.probe = accumulate, ratio, n, probe
        self.automatic_optimization = False
        self.records: list[dict[str, Any]] = []
        self.checks: dict[str, Any] = {}

    def configure_optimizers(self):
        return build_grouped_adamw(self.nets["generator"], self.nets["critic"], GEN, CRITIC)

    # ---- losses ----------------------------------------------------------------------------------------------

    def local(self, t: torch.Tensor) -> torch.Tensor:
        world, rank = self.trainer.world_size, self.trainer.global_rank
        size = t.shape[0] // world
        return t[rank * size:(rank + 1) * size]

    def critic_loss(self, z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            x = self.nets["generator"](z)
        return (self.nets["critic"](x) - y).square().mean()

    def generator_loss(self, z: torch.Tensor) -> torch.Tensor:
        x = self.nets["generator"](z)
        with torch.no_grad():
            g = self.nets["critic"](x)
            if "real" in self.nets:
                g = g - self.nets["real"](x)
        return 0.5 * (x - (x - g).detach()).square().mean()

    # ---- step ------------------------------------------------------------------------------------------------

    def training_step(self, batch: Any, batch_idx: int) -> None:
        from streamvid.distill.deepspeed_cpu import set_accumulation_boundary

        step = self.trainer.global_step  # optimiser steps so far (manual optimisation: one per training_step)
        full = step_batch(step, self.accumulate, self.n)
        opt = self.optimizers()
        grouped = find_grouped_optimizer(opt)
        gen_step = step % self.ratio == 0
        grouped.active = {"critic", "generator"} if gen_step else {"critic"}
        calls = []
        for i in range(self.accumulate):
            z, y = self.local(full["z"][i]), self.local(full["y"][i])
            if gen_step:
                calls.append(("generator", lambda z=z: self.generator_loss(z)))
            calls.append(("critic", lambda z=z, y=y: self.critic_loss(z, y)))
        losses = {"generator": 0.0, "critic": 0.0}
        for j, (name, fn) in enumerate(calls):
            set_accumulation_boundary(self.trainer, j == len(calls) - 1)
            loss = fn() / self.accumulate
            self.manual_backward(loss)
            losses[name] = losses[name] + loss.detach()
        if self.probe == "inactive" and step == 1:
            self.checks["before"] = snapshot(self)
        opt.step()
        opt.zero_grad()
        if self.probe == "inactive" and step == 1:
            self.checks["after"] = snapshot(self)
        record = {"step": step}
        for name, value in losses.items():
            value = torch.as_tensor(value, dtype=torch.float32)
            record[f"{name}_loss"] = float(self.trainer.strategy.reduce(value, reduce_op="mean"))
        record.update({f"{k}_grad_norm": float(v) for k, v in grouped.grad_norms.items()})
        self.records.append(record)


# ---- reading the state back ----------------------------------------------------------------------------------


def full_params(module: TwoNetModule) -> dict[str, torch.Tensor]:
    """All parameters of the nets, full tensors (gathered under ZeRO-3), cloned."""
    from streamvid.distill.deepspeed_cpu import gathered

    out = {}
    for name, net in module.nets.items():
        with gathered(net):
            out.update({f"{name}.{k}": p.detach().clone() for k, p in net.named_parameters()})
    return out


def group_state(module: TwoNetModule) -> dict[str, dict[str, torch.Tensor]]:
    """Per group name, this rank's optimiser view: the flat fp32 master partition(s) and AdamW state, cloned.

    Plain torch: the parameters themselves. ZeRO-1/2: ``param_groups[i]["params"]`` (this rank's flat fp32
    partition). ZeRO-3: ``fp32_partitioned_groups_flat[sub_group]`` (``param_groups[i]["params"]`` is empty
    outside ``step()``).
    """
    opt = module.trainer.strategy.optimizers[0]
    ds_opt = getattr(opt, "_optimizer", opt)
    grouped = find_grouped_optimizer(opt)
    tensors: dict[str, list[torch.Tensor]] = {g["name"]: list(g["params"]) for g in grouped.param_groups}
    if hasattr(ds_opt, "fp32_partitioned_groups_flat"):  # ZeRO-3
        tensors = {g["name"]: [] for g in grouped.param_groups}
        for sub, group_id in ds_opt.sub_group_to_group_id.items():
            tensors[grouped.param_groups[group_id]["name"]].append(ds_opt.fp32_partitioned_groups_flat[sub])
    out = {}
    for name, ts in tensors.items():
        entry = {}
        for i, t in enumerate(ts):
            entry[f"param{i}"] = t.detach().clone()
            for k, v in grouped.state.get(t, {}).items():
                entry[f"param{i}.{k}"] = v.detach().clone() if torch.is_tensor(v) else torch.tensor(v)
        out[name] = entry
    return out


def snapshot(module: TwoNetModule) -> dict[str, Any]:
    return {"params": full_params(module), "state": group_state(module)}


# ---- worker ----------------------------------------------------------------------------------------------------


class Steps(torch.utils.data.Dataset):
    def __init__(self, n: int) -> None:
        self.n = n

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> int:
        return i


def build_trainer(mode: str, steps: int, devices: int, root: Path, **strategy_kwargs: Any) -> pl.Trainer:
    kwargs: dict[str, Any] = dict(accelerator="cpu", devices=devices, max_steps=steps, max_epochs=-1, logger=False,
                                  enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                                  use_distributed_sampler=False, num_sanity_val_steps=0, limit_val_batches=0,
                                  default_root_dir=str(root))
    if mode != "plain":
        from streamvid.distill.deepspeed_cpu import CPUDeepSpeedStrategy, deepspeed_config

        stage = int(mode[-1])
        config = deepspeed_config(stage, param_persistence_threshold=0 if stage == 3 else None)
        kwargs["strategy"] = CPUDeepSpeedStrategy(config=config, logging_level=40, **strategy_kwargs)
    return pl.Trainer(**kwargs)


def loader(steps: int) -> torch.utils.data.DataLoader:
    return torch.utils.data.DataLoader(Steps(steps), batch_size=None, shuffle=False)


def run(mode: str, out: Path, steps: int, devices: int, accumulate: int, ratio: int, n: int, real: bool,
        probe: str, resume: bool) -> dict[str, Any]:
    t0 = time.perf_counter()
    torch.set_num_threads(1)
    module = TwoNetModule(accumulate=accumulate, ratio=ratio, n=n, real=real, probe=probe)
    initial = {k: v.detach().clone() for k, v in module.nets.state_dict().items()}
    trainer = build_trainer(mode, steps, devices, out)
    trainer.fit(module, loader(steps))
    result: dict[str, Any] = {"records": module.records, "checks": module.checks, "initial": initial,
                              "final": full_params(module), "world": trainer.world_size,
                              "rank": trainer.global_rank}
    if resume:
        ckpt = out / "ckpt"
        trainer.save_checkpoint(ckpt)
        result["saved_files"] = sorted(str(p.relative_to(ckpt)) for p in ckpt.rglob("*") if p.is_file())
        module_files = [p for p in ckpt.rglob("*model_states.pt")]
        saved = {}
        for path in module_files:
            saved.update(torch.load(path, map_location="cpu", weights_only=True)["module"])
        result["saved_module_keys"] = sorted(saved)
        # A fresh module (other seed: different weights) resumes from the checkpoint for one more step.
        resumed = TwoNetModule(accumulate=accumulate, ratio=ratio, n=n, real=real, seed=1, probe=probe)
        resumed_frozen = {k: v.clone() for k, v in resumed.nets.state_dict().items() if k.startswith("real.")}

        class Probe(pl.Callback):
            def on_train_start(self, trainer, pl_module):
                result["resumed_start"] = full_params(pl_module)
                result["resumed_step"] = trainer.global_step

        trainer2 = build_trainer(mode, steps + 1, devices, out)
        trainer2.callbacks.append(Probe())
        trainer2.fit(resumed, loader(steps + 1), ckpt_path=str(ckpt))
        result["resumed_records"] = resumed.records
        result["resumed_final"] = full_params(resumed)
        result["resumed_frozen_init"] = resumed_frozen
    result["wall_s"] = time.perf_counter() - t0
    torch.save(result, out / f"rank{trainer.global_rank}.pt")
    return result


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--mode", choices=["plain", "zero2", "zero3"], required=True)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--steps", type=int, default=4)
    p.add_argument("--devices", type=int, default=2)
    p.add_argument("--accumulate", type=int, default=2)
    p.add_argument("--ratio", type=int, default=2)
    p.add_argument("--n", type=int, default=8)
    p.add_argument("--real", action="store_true")
    p.add_argument("--probe", default="")
    p.add_argument("--resume", action="store_true")
    a = p.parse_args(argv)
    a.out.mkdir(parents=True, exist_ok=True)
    try:
        run(a.mode, a.out, a.steps, a.devices, a.accumulate, a.ratio, a.n, a.real, a.probe, a.resume)
    finally:
        # Tear the gloo process group down before interpreter exit: left to the exit handlers, its threads can
        # be destroyed while joinable ("terminate called without an active exception", SIGABRT) on a busy CPU.
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()


if __name__ == "__main__":
    sys.exit(main())
