"""DMD / Stream-R1 training cost on CPU: generator step overhead of the reward weights, ZeRO-2 optimizer-state
bytes per rank, and steps per second of plain / DeepSpeed runs (methods.md A.2-A.7).

    DS_ACCELERATOR=cpu OMP_NUM_THREADS=1 .venv/bin/python bench/distill_step.py \
        --out outputs/bench/distill_step.json [--parts generator,runs] [--draws 4] [--reps 5] [--run-steps 15]

Everything below is measured in one run of this script; every ratio divides two numbers of that run (timings
taken close together, interleaved where possible, so machine load affects both sides alike). No assertion is
made on any time: the targets are reported next to the measured ratios.

1. **Generator step** (``--parts generator``), in this process, ``torch.set_num_threads(--threads)`` (1):
   `build_modules` of ``configs/train/shapes_r1.yaml`` (shipped student ``assets/shapes/student`` 0.97 M
   parameters, teacher ``assets/shapes/teacher``, critic = a copy of the teacher, learned shapes reward, batch 4)
   and two `DMDModule` s over the *same* modules: Stream-R1 (the config's shipped flags) and plain DMD
   (``reward_weighting``, ``spatial_reward``, ``temporal_saliency_weighting`` false). One timed step is
   ``generator_loss(...)`` then ``loss.backward()`` (grads zeroed before, outside the timer) inside
   ``torch.autocast("cpu", torch.bfloat16)`` (what Lightning's ``precision: bf16-mixed`` of the shapes config
   wraps around ``training_step``; ``--precision 32-true`` turns it off). Draws: ``--draws`` prompt batches
   from the train split with the exit step cycling 0, 1, 2, 3 (so every exit step, i.e. every rollout length,
   weighs equally, as under the uniform draw of training) and one noise seed per draw; each draw is timed
   ``--reps`` times per variant after one untimed warm-up step per variant, plain and Stream-R1 alternating
   (order swapped every repetition). Per draw the median of each variant; the headline ratio is
   sum over draws of the Stream-R1 medians / the same sum for plain (the expected cost per generator step under
   the uniform exit step); the median of the per-draw ratios is reported too.
   The pieces of the Stream-R1 overhead are timed separately on the same draws' rollouts (a no-grad rollout
   under the same autocast, so the same latents and dtype as the step's ``x.detach()``): decode (pixel codec),
   reward forward (no grad), saliency (`streamvid.core.rewards.saliency.saliency`: a grad-enabled reward forward
   plus one ``autograd.grad`` per axis; its forward alone is timed too, and saliency backward = saliency - that
   forward), and the weight computation (inter: normalise, base reward, balance penalty, exp; intra:
   stack, fusion weights, fuse, pool to the latent grid, temporal x spatial factors), plus the whole
   ``reward_weights`` call. Shares are each piece's summed median / the Stream-R1 step's summed median.
   Because the overhead is small next to the load-induced spread of whole steps (other jobs share the cores),
   the ratio is also estimated from the pieces: (plain step + the whole ``reward_weights`` call) / plain step
   (``stream_r1_over_plain_from_pieces``).
   The same again for a ~20 M-parameter student (``wide_20m``, skipped by ``--no-wide``: a random-init
   `CausalWanModel` with the shapes probe's channels, patch, text and positions but 6 heads x 64, ffn 1536,
   8 layers; ``--wide-draws`` / ``--wide-reps``), same teacher / critic / reward.
   TTUR cycle (``dfake_gen_update_ratio`` 5: one generator + critic step, four critic-only steps):
   ``critic_loss`` + backward is timed on the same draws too (it is the same code with or without rewards),
   and the cycle ratio is (gen_R1 + 5 critic) / (gen_plain + 5 critic), optimizer steps and EMA not included.

2. **Optimizer-state bytes per rank** and 3. **steps per second** (``--parts runs``): three short real
   trainings through the same code as ``streamvid-train r1`` (`r1_stage.run_r1`, launched as a subprocess of
   this script; Lightning re-launches the script for the second DeepSpeed rank), with a Lightning callback
   passed to the stage (``run_r1(cfg, callbacks=[probe])``) that records ``time.perf_counter()`` after every optimiser
   step and, at the end of training, the AdamW state each rank holds:

   * ``plain``: one process, no DeepSpeed, batch 4;
   * ``ds1``: DeepSpeed ZeRO-2 (`CPUDeepSpeedStrategy`, gloo), one process, batch 4;
   * ``ds2``: DeepSpeed ZeRO-2, two processes, batch 2 each (the same 4 rollouts per optimiser step);
   * ``plain_bf16`` (optional, ``--runs plain,plain_bf16``): the plain run with bf16 autocast, the shapes
     config's own precision (the DeepSpeed CPU path has none).

   All three with ``trainer.precision=32-true`` (the DeepSpeed CPU path trains in fp32; the same precision for
   the plain run keeps the comparison fair), ``sample_prompts=0``, no checkpoint before the end, one torch
   thread per process. Steps per second: (``--run-steps`` - ``--run-warmup``) / the wall time on rank 0 from
   ``global_step == --run-warmup`` to the end of the last step (defaults 15 and 5: 0-based steps 5..14, two
   whole TTUR cycles with two generator steps; start-up, the first generator step and the final checkpoint are
   outside the window). On 2 cores shared with other jobs, the 2-process run competes with them for cores.

   Optimizer state, counted from the live objects (not from checkpoint files; those sizes are listed as a
   cross-check): the ``exp_avg`` / ``exp_avg_sq`` tensors of `GroupedAdamW.state` ("Adam moments"; under ZeRO
   these are keyed by this rank's flat fp32 partition), the ``step`` counters (reported apart, a few bytes),
   and DeepSpeed's fp32 master partition ``single_partition_of_fp32_groups`` (a clone, even for fp32 training).
   Ratios ds2 (max over ranks) / plain: ``moments_only`` (the target <= 0.6 refers to this one: the optimizer
   state AdamW itself keeps, like for like; 0.5 plus padding at 2 ranks), ``moments_plus_master`` (ZeRO's
   fp32 master counted on the ZeRO side only; a plain fp32 run has no separate master copy, so this is 0.75 at
   2 ranks by construction) and ``moments_plus_master_vs_plain_params_as_master`` (the plain run's fp32
   parameters counted as its master copy, ZeRO's "optimizer states" accounting: 0.5 at 2 ranks).
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from streamvid.distill.bench_stats import exit_steps, steps_per_second, tensor_bytes, ttur_cycle_ratio

REPO = Path(__file__).resolve().parents[1]
CONFIG = "configs/train/shapes_r1.yaml"
WIDE = {"num_attention_heads": 6, "attention_head_dim": 64, "ffn_dim": 1536, "num_layers": 8}
PLAIN_FLAGS = {"reward_weighting": False, "spatial_reward": False, "temporal_saliency_weighting": False}
RUNS = {  # name -> overrides of the shapes config (batch per process keeps 4 rollouts per optimiser step)
    "plain": ["trainer.batch_size=4"],
    "ds1": ["deepspeed.enabled=true", "deepspeed.zero_stage=2", "trainer.devices=1", "trainer.batch_size=4"],
    "ds2": ["deepspeed.enabled=true", "deepspeed.zero_stage=2", "trainer.devices=2", "trainer.batch_size=2"],
    "plain_bf16": ["trainer.batch_size=4", "trainer.precision=bf16-mixed"],
}
TARGETS = {"generator_step_r1_over_plain": 1.3, "zero2_2proc_optimizer_state_over_plain": 0.6}


def _median(xs: list[float]) -> float:
    return statistics.median(xs)


def _timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def _machine() -> dict:
    return {"platform": platform.platform(), "processor": platform.processor() or platform.machine(),
            "cpu_count": os.cpu_count(), "affinity_cpus": len(os.sched_getaffinity(0)),
            "torch": torch.__version__, "torch_threads": torch.get_num_threads(),
            "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS"),
            "DS_ACCELERATOR": os.environ.get("DS_ACCELERATOR")}


# ------------------------------------------------------------------------------------------------ part 1
def _autocast(precision: str):
    return torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision.startswith("bf16"))


def _pieces(module, x, prompts, precision: str, reps: int) -> dict[str, float]:
    """Median seconds of the pieces of `DMDModule.reward_weights` on one rollout (the module's own calls; the
    weights through copies of its `StreamR1Weighting`, so its balance-penalty state is not advanced)."""
    from streamvid.core.rewards.saliency import saliency
    from streamvid.distill.stream_r1_inter import normalise_rewards
    from streamvid.distill.stream_r1_weighting import StreamR1Weighting

    r1, reward, codec = module.cfg.stream_r1, module._reward[0], module._codec[0]
    inter_only = StreamR1Weighting(dataclasses.replace(r1, spatial_reward=False))
    inter_only.load_state_dict(module.weighting.state_dict())
    state: dict = {}

    def decode():
        state["pixels"] = codec.decode(x).clamp(0, 1)

    def reward_forward():
        with torch.no_grad():
            out = reward(state["pixels"], prompts)
        state["axes"] = {k: v.detach() for k, v in out.axes.items()}

    def saliency_forward():  # the grad-enabled forward saliency runs before its autograd.grad calls
        with torch.enable_grad():
            reward(state["pixels"].detach().clone().requires_grad_(True), prompts)

    def saliency_all():
        state["maps"] = saliency(reward, state["pixels"].detach(), prompts, list(module.weighting.saliency_axes))

    def inter():  # normalise, base reward, balance penalty, exp (A.4-A.5)
        out = copy.deepcopy(inter_only)(state["axes"], None, x.shape)
        state["valid"] = out.valid
        state["r"] = normalise_rewards({k: v.double().cpu() for k, v in state["axes"].items()}, r1.norm)

    def intra():  # stack, fusion weights, fuse, pool to the latent grid, temporal x spatial factors (A.6)
        module.weighting.intra_weights(state["r"], state["maps"], x.shape, state["valid"])

    def whole():
        weighting = copy.deepcopy(module.weighting)
        try:
            module.reward_weights(codec.decode(x).clamp(0, 1), prompts, x.shape)
        finally:
            module.weighting = weighting

    order = {"decode": decode, "reward_forward": reward_forward, "saliency_total": saliency_all,
             "saliency_forward_with_grad": saliency_forward, "weights_inter": inter, "weights_intra": intra,
             "reward_weights_total": whole}
    times: dict[str, list[float]] = {k: [] for k in order}
    with _autocast(precision):
        for fn in order.values():  # warm-up (and fills `state` in dependency order)
            fn()
        for _ in range(reps):
            for name, fn in order.items():
                times[name].append(_timed(fn))
    return {k: _median(v) for k, v in times.items()}


def bench_generator(cfg, label: str, wide: bool, draws: int, reps: int, precision: str, seed: int) -> dict:
    from streamvid.core.causal_wan import CausalWanModel
    from streamvid.distill.dmd_module import DMDModule, _gen
    from streamvid.distill.prompts import prompt_source
    from streamvid.distill.r1_stage import build_modules

    student, real, critic, reward, codec, text = build_modules(cfg)
    prompts = prompt_source(cfg)
    if wide:
        torch.manual_seed(seed)
        student = CausalWanModel(**dataclasses.replace(cfg.model, **WIDE).to_diffusers_kwargs()).float().train()
    plain_cfg = dataclasses.replace(cfg, stream_r1=dataclasses.replace(cfg.stream_r1, **PLAIN_FLAGS))
    modules = {"stream_r1": DMDModule(student, real, critic, reward, codec, text, cfg, prompts),
               "plain": DMDModule(student, real, critic, None, codec, text, plain_cfg, prompts)}
    r1 = modules["stream_r1"]
    b = cfg.trainer.batch_size
    n_params = {"student": sum(p.numel() for p in student.parameters()),
                "critic": sum(p.numel() for p in critic.parameters()),
                "real": sum(p.numel() for p in real.parameters()),
                "reward": sum(p.numel() for p in reward.parameters()) if isinstance(reward, torch.nn.Module) else None}
    steps = len(r1.sampler.schedule)
    plan = [(prompts.draw(_gen(seed, d, 1), b), e, 1000 * seed + d) for d, e in enumerate(exit_steps(draws, steps))]

    def gen_step(name: str, prompts, exit_step: int, noise_seed: int) -> float:
        module = modules[name]
        module.nets.zero_grad(set_to_none=True)
        start = time.perf_counter()
        with _autocast(precision):
            loss, _, _ = module.generator_loss(prompts, _gen(noise_seed, 7), exit_step, noise_seed)
            loss.backward()
        return time.perf_counter() - start

    def critic_step(prompts, exit_step: int, noise_seed: int) -> float:
        r1.nets.zero_grad(set_to_none=True)
        start = time.perf_counter()
        with _autocast(precision):
            loss, _ = r1.critic_loss(prompts, _gen(noise_seed, 8), exit_step, noise_seed)
            loss.backward()
        return time.perf_counter() - start

    warm = plan[-1]  # the longest rollout among the draws when draws >= steps
    for name in modules:
        gen_step(name, *warm)
    critic_step(*warm)
    per_draw = []
    for prompts, exit_step, noise_seed in plan:
        t = {"plain": [], "stream_r1": []}
        for rep in range(reps):
            for name in (("plain", "stream_r1") if rep % 2 == 0 else ("stream_r1", "plain")):
                t[name].append(gen_step(name, prompts, exit_step, noise_seed))
        critic = [critic_step(prompts, exit_step, noise_seed + 500) for _ in range(reps)]
        with torch.no_grad(), _autocast(precision):
            x, _ = r1._rollout(prompts, exit_step, noise_seed, grad=False)
        pieces = _pieces(r1, x, prompts, precision, reps)
        row = {"exit_step": exit_step, "noise_seed": noise_seed, "prompts": prompts,
               "plain_s": t["plain"], "stream_r1_s": t["stream_r1"], "critic_s": critic,
               "plain_median_s": _median(t["plain"]), "stream_r1_median_s": _median(t["stream_r1"]),
               "critic_median_s": _median(critic), "pieces_median_s": pieces}
        row["ratio"] = row["stream_r1_median_s"] / row["plain_median_s"]
        per_draw.append(row)
        r1.nets.zero_grad(set_to_none=True)
        print(f"  [{label}] exit {exit_step}: plain {row['plain_median_s']:.3f}s  stream_r1 "
              f"{row['stream_r1_median_s']:.3f}s  ratio {row['ratio']:.3f}  critic {row['critic_median_s']:.3f}s",
              flush=True)

    def total(key: str) -> float:
        return sum(r[key] for r in per_draw)

    gen_plain, gen_r1, critic = total("plain_median_s"), total("stream_r1_median_s"), total("critic_median_s")
    piece_sum = {k: sum(r["pieces_median_s"][k] for r in per_draw) for k in per_draw[0]["pieces_median_s"]}
    piece_sum["saliency_backward"] = piece_sum["saliency_total"] - piece_sum["saliency_forward_with_grad"]
    piece_sum["weights_total"] = piece_sum["weights_inter"] + piece_sum["weights_intra"]
    n = len(per_draw)
    return {
        "student": "random-init CausalWanModel " + json.dumps(WIDE) if wide else cfg.student,
        "parameters": n_params,
        "batch": b,
        "draws": n,
        "reps_per_draw_and_variant": reps,
        "generator_step_mean_over_draws_s": {"plain": gen_plain / n, "stream_r1": gen_r1 / n},
        "stream_r1_over_plain": gen_r1 / gen_plain,
        "stream_r1_over_plain_median_of_draws": _median([r["ratio"] for r in per_draw]),
        "stream_r1_over_plain_from_pieces": (gen_plain + piece_sum["reward_weights_total"]) / gen_plain,
        "overhead_s_per_step": (gen_r1 - gen_plain) / n,
        "pieces_mean_over_draws_s": {k: v / n for k, v in piece_sum.items()},
        "share_of_stream_r1_step": {
            "reward_forward": piece_sum["reward_forward"] / gen_r1,
            "saliency_total": piece_sum["saliency_total"] / gen_r1,
            "saliency_backward": piece_sum["saliency_backward"] / gen_r1,
            "saliency_forward_with_grad": piece_sum["saliency_forward_with_grad"] / gen_r1,
            "weight_computation": piece_sum["weights_total"] / gen_r1,
            "decode": piece_sum["decode"] / gen_r1,
            "reward_weights_total": piece_sum["reward_weights_total"] / gen_r1,
            "overhead_measured_as_step_difference": (gen_r1 - gen_plain) / gen_r1,
        },
        "critic_step_mean_over_draws_s": critic / n,
        "ttur_cycle": {"definition": "1 generator step + 5 critic steps (gen + critic, then 4 critic-only)",
                       "plain_s": (gen_plain + 5 * critic) / n, "stream_r1_s": (gen_r1 + 5 * critic) / n,
                       "stream_r1_over_plain": ttur_cycle_ratio(gen_r1, gen_plain, critic)},
        "per_draw": per_draw,
    }


# ------------------------------------------------------------------------------------------------ parts 2 and 3
def _probe_callback(out_dir: Path):
    import lightning.pytorch as pl

    from streamvid.distill.grouped_optim import find_grouped_optimizer

    class Probe(pl.Callback):
        """Wall clock after every optimiser step; per-rank optimizer-state bytes at the end of training."""

        def __init__(self) -> None:
            self.times: dict[int, float] = {}

        def on_train_start(self, trainer, pl_module) -> None:
            self.times[int(trainer.global_step)] = time.perf_counter()

        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
            self.times[int(trainer.global_step)] = time.perf_counter()

        def on_train_end(self, trainer, pl_module) -> None:
            opt = trainer.strategy.optimizers[0]
            inner = find_grouped_optimizer(opt)
            groups = {}
            for g in inner.param_groups:
                states = [inner.state[p] for p in g["params"] if p in inner.state]
                groups[g["name"]] = {
                    "exp_avg_bytes": tensor_bytes(s.get("exp_avg") for s in states),
                    "exp_avg_sq_bytes": tensor_bytes(s.get("exp_avg_sq") for s in states),
                    "step_bytes": tensor_bytes(s.get("step") for s in states),
                    "optimizer_param_elements": sum(p.numel() for p in g["params"]),
                }
            master = getattr(opt, "single_partition_of_fp32_groups", None) or []
            nets = pl_module.nets
            trainable = [p for k in ("generator", "critic") for p in nets[k].parameters() if p.requires_grad]
            row = {
                "rank": int(trainer.global_rank), "world_size": int(trainer.world_size),
                "optimizer_class": type(opt).__name__,
                "groups": groups,
                "adam_moment_bytes": sum(g["exp_avg_bytes"] + g["exp_avg_sq_bytes"] for g in groups.values()),
                "step_counter_bytes": sum(g["step_bytes"] for g in groups.values()),
                "fp32_master_partition_bytes": tensor_bytes(master),
                "fp32_master_partition_elements": sum(t.numel() for t in master),
                "trainable_parameters": sum(p.numel() for p in trainable),
                "trainable_parameter_bytes": tensor_bytes(trainable),
                "times": {str(k): v for k, v in sorted(self.times.items())},
            }
            row["moments_plus_master_bytes"] = row["adam_moment_bytes"] + row["fp32_master_partition_bytes"]
            (out_dir / f"rank{row['rank']}.json").write_text(json.dumps(row, indent=2))

    return Probe()


def worker(args, overrides: list[str]) -> int:
    """One training run (`r1_stage.run_r1`) with the probe callback; also what Lightning re-launches per rank."""
    from streamvid.core.config import load_config
    from streamvid.distill.dmd_config import DMDStageConfig
    from streamvid.distill.r1_stage import run_r1

    cfg = load_config(REPO / CONFIG, overrides, schema=DMDStageConfig)
    run_r1(dataclasses.replace(cfg, resume="never"), callbacks=[_probe_callback(Path(args.worker_dir))])
    return 0


def bench_runs(names: list[str], steps: int, warm: int, work: Path, timeout: float) -> dict:
    results = {}
    for name in names:
        run_dir = work / name
        run_dir.mkdir(parents=True, exist_ok=True)
        precision = [] if any(o.startswith("trainer.precision=") for o in RUNS[name]) else ["trainer.precision=32-true"]
        overrides = [*precision, *RUNS[name], f"trainer.max_steps={steps}", "trainer.threads=1",
                     f"trainer.checkpoint_every={steps + 1000}", "trainer.progress_bar=false", "sample_prompts=0",
                     f"output_dir={run_dir / 'out'}"]
        cmd = [sys.executable, str(Path(__file__).resolve()), "--worker-dir", str(run_dir),
               *[a for o in overrides for a in ("--set", o)]]
        env = dict(os.environ, DS_ACCELERATOR=os.environ.get("DS_ACCELERATOR", "cpu"), OMP_NUM_THREADS="1")
        start = time.perf_counter()
        proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout)
        wall = time.perf_counter() - start
        (run_dir / "log.txt").write_text(proc.stdout + proc.stderr)
        ranks = sorted(run_dir.glob("rank*.json"))
        if proc.returncode != 0 or not ranks:
            results[name] = {"error": f"exit code {proc.returncode}", "log_tail": (proc.stdout + proc.stderr)[-3000:]}
            print(f"  [{name}] failed (exit {proc.returncode}); log {run_dir / 'log.txt'}", flush=True)
            continue
        rows = [json.loads(p.read_text()) for p in ranks]
        times = {int(k): v for k, v in rows[0]["times"].items()}
        sps = steps_per_second(times, warm, steps)
        batch = int(next(o for o in RUNS[name] if o.startswith("trainer.batch_size=")).split("=")[1])
        world = rows[0]["world_size"]
        ckpt = run_dir / "out" / "run" / "checkpoints" / "last.ckpt"
        files = {}
        if ckpt.is_dir():
            files = {str(p.relative_to(ckpt)): p.stat().st_size for p in ckpt.rglob("*optim_states.pt")}
        elif ckpt.is_file():
            files = {"last.ckpt (whole Lightning checkpoint)": ckpt.stat().st_size}
        results[name] = {
            "overrides": overrides,
            "processes": world,
            "batch_per_process": batch,
            "rollouts_per_optimiser_step": batch * world,
            "steps_per_second": sps,
            "rollouts_per_second": sps * batch * world,
            "timed_window": f"rank 0, global_step {warm} -> {steps}: optimiser steps {warm}..{steps - 1} (0-based)",
            "process_wall_s": wall,
            "ranks": [{k: v for k, v in r.items() if k != "times"} for r in rows],
            "step_end_times_rank0_s": {k: v - times[0] for k, v in sorted(times.items())},
            "checkpoint_optimizer_file_bytes": files,
        }
        print(f"  [{name}] {sps:.3f} steps/s ({world} process(es) x batch {batch}); moments "
              f"{[r['adam_moment_bytes'] for r in rows]} B, master {[r['fp32_master_partition_bytes'] for r in rows]} "
              f"B; wall {wall:.0f}s", flush=True)
    out: dict = {"runs": results}
    ok = {k for k, v in results.items() if "error" not in v}
    if {"plain", "ds2"} <= ok:
        plain = results["plain"]["ranks"][0]
        ranks = results["ds2"]["ranks"]
        moments = max(r["adam_moment_bytes"] for r in ranks)
        both = max(r["moments_plus_master_bytes"] for r in ranks)
        plain_master = plain["trainable_parameter_bytes"]
        out["optimizer_state_per_rank"] = {
            "plain_1proc": {"adam_moment_bytes": plain["adam_moment_bytes"], "fp32_master_bytes": 0,
                            "fp32_parameter_bytes": plain_master},
            "zero2_2proc_max_rank": {"adam_moment_bytes": moments, "moments_plus_master_bytes": both},
            "ratio_moments_only": moments / plain["adam_moment_bytes"],
            "ratio_moments_plus_master": both / plain["adam_moment_bytes"],
            "ratio_moments_plus_master_vs_plain_params_as_master": both / (plain["adam_moment_bytes"] + plain_master),
            "target": TARGETS["zero2_2proc_optimizer_state_over_plain"],
            "target_refers_to": "ratio_moments_only",
        }
        if "ds1" in ok:
            ds1 = results["ds1"]["ranks"][0]
            out["optimizer_state_per_rank"]["zero2_1proc"] = {
                "adam_moment_bytes": ds1["adam_moment_bytes"],
                "moments_plus_master_bytes": ds1["moments_plus_master_bytes"],
            }
    if "plain" in ok:
        base = results["plain"]["steps_per_second"]
        out["steps_per_second_over_plain"] = {k: results[k]["steps_per_second"] / base for k in sorted(ok)}
    return out


# ------------------------------------------------------------------------------------------------ main
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="outputs/bench/distill_step.json")
    parser.add_argument("--parts", default="generator,runs", help="comma list of: generator, runs")
    parser.add_argument("--threads", type=int, default=1, help="torch threads of this process (part 1)")
    parser.add_argument("--precision", default="bf16-mixed", choices=("bf16-mixed", "32-true"),
                        help="part 1: bf16 autocast (the shapes config's precision) or fp32")
    parser.add_argument("--draws", type=int, default=4, help="part 1: prompt / exit-step / noise draws per scale")
    parser.add_argument("--reps", type=int, default=5, help="part 1: timed repetitions per draw and variant")
    parser.add_argument("--wide-draws", type=int, default=4, help="part 1, ~20 M student: draws")
    parser.add_argument("--wide-reps", type=int, default=3, help="part 1, ~20 M student: repetitions")
    parser.add_argument("--no-wide", action="store_true", help="part 1: skip the ~20 M-parameter student")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--runs", default="plain,ds1,ds2", help=f"parts 2-3: comma list of {list(RUNS)}")
    parser.add_argument("--run-steps", type=int, default=15, help="parts 2-3: optimiser steps per run")
    parser.add_argument("--run-warmup", type=int, default=5, help="parts 2-3: steps before the timed window")
    parser.add_argument("--run-timeout", type=float, default=420.0, help="parts 2-3: seconds per run")
    parser.add_argument("--keep-runs", default=None, help="keep the run directories here (default: a temp dir)")
    parser.add_argument("--worker-dir", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--set", dest="overrides", action="append", default=[], help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    os.environ.setdefault("DS_ACCELERATOR", "cpu")
    os.chdir(REPO)
    if args.worker_dir is not None:
        return worker(args, args.overrides)

    torch.set_num_threads(args.threads)
    parts = {p.strip() for p in args.parts.split(",") if p.strip()}
    wall_start, load_before = time.perf_counter(), os.getloadavg()
    report: dict = {
        "machine": _machine(),
        "config": {"file": CONFIG, "part1_precision": args.precision,
                   "part1_autocast": "torch.autocast('cpu', torch.bfloat16) around generator_loss + backward"
                   if args.precision == "bf16-mixed" else "none (fp32)",
                   "plain_dmd_flags": PLAIN_FLAGS, "wide_student": WIDE,
                   "runs_precision": "32-true", "runs": {k: RUNS[k] for k in args.runs.split(",")},
                   "args": {k: v for k, v in vars(args).items() if k not in ("worker_dir", "overrides")}},
        "targets": TARGETS,
    }
    if "generator" in parts:
        from streamvid.core.config import load_config
        from streamvid.distill.dmd_config import DMDStageConfig

        cfg = load_config(REPO / CONFIG, [], schema=DMDStageConfig)
        report["config"]["batch"] = cfg.trainer.batch_size
        report["config"]["config_precision"] = cfg.trainer.precision
        gen = {"shapes": bench_generator(cfg, "shapes", False, args.draws, args.reps, args.precision, args.seed)}
        if not args.no_wide:
            gen["wide_20m"] = bench_generator(cfg, "wide", True, args.wide_draws, args.wide_reps, args.precision,
                                              args.seed)
        report["generator_step"] = gen
    if "runs" in parts:
        work = Path(args.keep_runs) if args.keep_runs else Path(tempfile.mkdtemp(prefix="distill_step_"))
        try:
            report["training_runs"] = bench_runs([n.strip() for n in args.runs.split(",") if n.strip()],
                                                 args.run_steps, args.run_warmup, work, args.run_timeout)
        finally:
            if not args.keep_runs:
                shutil.rmtree(work, ignore_errors=True)
    report["machine"]["loadavg_1min_before_after"] = [load_before[0], os.getloadavg()[0]]
    report["wall_s"] = time.perf_counter() - wall_start

    summary = {}
    for scale, g in report.get("generator_step", {}).items():
        summary[f"{scale}: generator step stream_r1/plain"] = g["stream_r1_over_plain"]
        summary[f"{scale}: generator step stream_r1/plain from pieces"] = g["stream_r1_over_plain_from_pieces"]
        summary[f"{scale}: ttur cycle stream_r1/plain"] = g["ttur_cycle"]["stream_r1_over_plain"]
        summary[f"{scale}: shares (reward fwd, saliency bwd, weights)"] = [
            g["share_of_stream_r1_step"][k] for k in ("reward_forward", "saliency_backward", "weight_computation")]
    runs = report.get("training_runs", {})
    if "optimizer_state_per_rank" in runs:
        o = runs["optimizer_state_per_rank"]
        summary["zero2 2proc / plain optimizer state (moments, +master, +master vs params)"] = [
            o["ratio_moments_only"], o["ratio_moments_plus_master"],
            o["ratio_moments_plus_master_vs_plain_params_as_master"]]
    if "steps_per_second_over_plain" in runs:
        summary["steps/s over plain"] = runs["steps_per_second_over_plain"]
    report["summary"] = summary
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2))
    print(json.dumps(summary, indent=2))
    print(f"wrote {out} ({report['wall_s']:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
