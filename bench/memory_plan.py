"""The r1 memory plan against a measured run on CPU (issue 20 §1): a scaled-down Wan on 2 DeepSpeed processes.

    DS_ACCELERATOR=cpu OMP_NUM_THREADS=1 .venv/bin/python bench/memory_plan.py --out outputs/bench/memory_plan.json

The networks have Wan's structure at a size that fits beside other jobs: student and critic ``--dim`` /
``--layers`` (default 512 / 8, 34 M parameters each), the frozen real score twice as wide and 1.5x as deep
(default 1024 / 12, ~200 M: the paper's real score is 10x its student). They are written once as diffusers
directories under ``--work`` (the system's temporary folder by default) and trained by `streamvid.distill.r1_stage.run_r1` for ``--steps`` optimiser steps of
plain DMD on the shapes world (pixel codec, bag-of-words text), fp32 on 2 CPU processes (DeepSpeed's CPU
strategy), in the runs of ``--runs`` (``zero_stage:frozen_dtype[:whole]``): ZeRO-2 with the real score read straight
into bf16 (``frozen_dtype``) and in fp32 (the path before it); ZeRO-3 with the networks built inside
``deepspeed.zero.Init`` (`DMDModule.configure_model`), and ZeRO-3 ``whole``: every network read whole in fp32 on
every rank and partitioned by the engine afterwards (the path before zero.Init). Every rank records its resident
memory (``/proc/self/status``): VmRSS after its imports (the baseline), VmHWM after ``configure_model`` (the
networks loaded: "loaded"), when training starts (the DeepSpeed engine built: "ready") and at the end of training
(the run's peak). The JSON holds, per run and rank, the measured peaks above the baseline next to the plan
(`streamvid.distill.r1_plan.plan_r1` of the same config: "device total" and "peak host RAM while loading", the
larger of the two for the run's peak), their ratios, and the ratios between runs (bf16 / fp32 loading, zero.Init
/ whole). Nothing is asserted; the issue's target is |measured / plan - 1| <= 0.2. Networks read whole in their
stored dtype (the fp32 runs) are views of the mapped files, resident only once touched, so their "loaded" peak is
not meaningful; their "ready" peak is (the engine touches every weight).

Allocator: glibc raises its mmap threshold each time a large block is freed, after which blocks up to 32 MB come
from the heap and are kept after ``free``; ZeRO-3 all-gathers and frees every layer at each forward, so with
glibc's default the resident set of a ZeRO-3 rank grows by memory that is not live (`CPUDeepSpeedStrategy` fixes
the threshold under ZeRO-3 on CPU: `deepspeed_cpu.fix_malloc_mmap_threshold`). The workers run with a fixed
threshold (``--malloc-mmap-threshold``, default 128 KiB, ``MALLOC_MMAP_THRESHOLD_``; 0 leaves the variable
unset), so every run's RSS measures live memory as a GPU's allocator would report it.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _status(key: str) -> float:
    """A ``/proc/self/status`` field in bytes."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) * 1024
    return float("nan")


BASELINE = _status("VmRSS")  # before the heavy imports below: the interpreter alone


def _run_name(zero: str, frozen: str, whole: bool) -> str:
    return f"zero{zero}_{frozen}" + ("_whole" if whole else "")


def _overrides(args, work: Path, zero: int, frozen: str, out_dir: Path) -> list[str]:
    return [f"student={work / 'student'}", f"critic={work / 'critic'}", f"teacher={work / 'teacher'}",
            f"model.num_attention_heads={args.dim // 64}", "model.attention_head_dim=64",
            f"model.ffn_dim={4 * args.dim}", f"model.num_layers={args.layers}", "model.text_adaln=false",
            "model.learned_positions=null", f"frozen_dtype={frozen}", "deepspeed.enabled=true",
            f"deepspeed.zero_stage={zero}", "trainer.devices=2", "trainer.precision=32-true",
            f"trainer.max_steps={args.steps}", "trainer.batch_size=1", "trainer.checkpoint_every=1000",
            "trainer.progress_bar=false", "dmd.ema_start_step=0", "stream_r1.reward_weighting=false",
            "stream_r1.spatial_reward=false", "stream_r1.temporal_saliency_weighting=false", "sample_prompts=0",
            f"output_dir={out_dir}", "resume=never"]


def write_networks(args, work: Path) -> None:
    """student, critic (the student's sizes) and the real score (twice as wide, 1.5x as deep), saved once."""
    import torch

    from streamvid.core.config import load_config
    from streamvid.distill.dmd_config import DMDStageConfig
    from streamvid.distill.networks import build_wan

    cfg = load_config(REPO / "configs/train/shapes_r1.yaml", _overrides(args, work, 2, "bfloat16", work / "x"),
                      schema=DMDStageConfig)
    real = cfg.model.__class__(**{**cfg.model.__dict__, "num_attention_heads": 2 * args.dim // 64,
                                  "ffn_dim": 8 * args.dim, "num_layers": args.layers * 3 // 2})
    for name, sizes, seed in (("student", cfg.model, 0), ("critic", cfg.model, 1), ("teacher", real, 2)):
        if not (work / name / "config.json").is_file():
            torch.manual_seed(seed)
            build_wan(sizes, zero_init=False).save_pretrained(work / name, safe_serialization=True)


def worker(args) -> int:
    """One run (``--zero``, ``--frozen``): Lightning starts rank 1 by re-running this command line."""
    import deepspeed  # noqa: F401  (the baseline is taken after every heavy import)
    import diffusers  # noqa: F401
    import lightning.pytorch as pl

    from streamvid.core.config import load_config
    from streamvid.distill import r1_stage
    from streamvid.distill.dmd_config import DMDStageConfig
    from streamvid.distill.dmd_module import DMDModule
    from streamvid.distill.r1_plan import plan_r1
    from streamvid.distill.r1_stage import run_r1

    rank = int(os.environ.get("LOCAL_RANK", "0"))
    work = Path(args.work)
    run_dir = work / _run_name(str(args.zero), args.frozen, args.whole)
    cfg = load_config(REPO / "configs/train/shapes_r1.yaml", _overrides(args, work, args.zero, args.frozen, run_dir),
                      schema=DMDStageConfig)
    record = {"rank": rank, "baseline_bytes": BASELINE, "after_imports_bytes": _status("VmRSS"),
              "malloc_mmap_threshold": os.environ.get("MALLOC_MMAP_THRESHOLD_", "glibc default")}
    if args.whole:  # the path before zero.Init: networks read whole on every rank, partitioned by the engine
        r1_stage.partitioned_networks = lambda cfg: False
    configure_model = DMDModule.configure_model

    def probed_configure_model(module):
        configure_model(module)
        record["loaded_peak_bytes"] = _status("VmHWM")
        record["loaded_rss_bytes"] = _status("VmRSS")

    DMDModule.configure_model = probed_configure_model

    class Probe(pl.Callback):
        def on_fit_start(self, trainer, pl_module):
            record["engine_rss_bytes"], record["engine_peak_bytes"] = _status("VmRSS"), _status("VmHWM")

        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            record.setdefault("step_rss_bytes", []).append(_status("VmRSS"))
            record.setdefault("step_peak_bytes", []).append(_status("VmHWM"))

        def on_train_end(self, trainer, pl_module):
            record["train_peak_bytes"] = _status("VmHWM")
            (run_dir / f"memory.rank{rank}.json").write_text(json.dumps(record))

    if rank == 0:
        plan, nets = plan_r1(cfg)
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / "plan.json").write_text(json.dumps({
            "device_total_bytes": plan.device_total, "host_peak_loading_bytes": plan.host_peak_loading,
            "peak_bytes": max(plan.device_total, plan.host_peak_loading),
            "rows_gib": dict(plan.rows()), "params": {k: n.params for k, n in nets.items()}}))
    run_r1(cfg, callbacks=[Probe()])
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", default="outputs/bench/memory_plan.json")
    parser.add_argument("--work", default=str(Path(tempfile.gettempdir()) / "streamvid_memory_plan"),
                        help="where the networks (~1.1 GB) and the runs are written")
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--layers", type=int, default=8)
    parser.add_argument("--steps", type=int, default=2)
    parser.add_argument("--runs", default="2:bfloat16,2:float32,3:bfloat16,3:float32:whole",
                        help="comma-separated zero_stage:frozen_dtype[:whole] (whole: networks read whole, "
                             "partitioned by the engine; the path before zero.Init)")
    parser.add_argument("--malloc-mmap-threshold", type=int, default=131072,
                        help="glibc's MALLOC_MMAP_THRESHOLD_ for the workers in bytes (0: glibc's dynamic default)")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--zero", type=int, default=2, help=argparse.SUPPRESS)
    parser.add_argument("--frozen", default="bfloat16", help=argparse.SUPPRESS)
    parser.add_argument("--whole", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        return worker(args)
    runs = args.runs.split(",")
    for run in runs:
        parts = run.split(":")
        if len(parts) not in (2, 3) or parts[0] not in ("2", "3") or parts[1] not in ("bfloat16", "float32") \
                or parts[2:] not in ([], ["whole"]):
            parser.error(f"--runs: {run!r} is not zero_stage:frozen_dtype[:whole] (stage 2 or 3, bfloat16 or float32)")
    work = Path(args.work)
    write_networks(args, work)
    env = {**os.environ, "DS_ACCELERATOR": "cpu", "OMP_NUM_THREADS": "1"}
    env.pop("MALLOC_MMAP_THRESHOLD_", None)
    if args.malloc_mmap_threshold:
        env["MALLOC_MMAP_THRESHOLD_"] = str(args.malloc_mmap_threshold)
    result = {"sizes": {"dim": args.dim, "layers": args.layers, "real_dim": 2 * args.dim,
                        "real_layers": args.layers * 3 // 2},
              "malloc_mmap_threshold": args.malloc_mmap_threshold or "glibc default", "runs": {}}
    for run in runs:
        zero, frozen, *rest = run.split(":")
        whole = rest == ["whole"]
        cmd = [sys.executable, __file__, "--worker", "--zero", zero, "--frozen", frozen, "--work", str(work),
               "--dim", str(args.dim), "--layers", str(args.layers), "--steps", str(args.steps)]
        proc = subprocess.run(cmd + (["--whole"] if whole else []), env=env, capture_output=True, text=True)
        run_dir = work / _run_name(zero, frozen, whole)
        if proc.returncode != 0:
            result["runs"][run] = {"error": proc.stderr[-2000:]}
            continue
        plan = json.loads((run_dir / "plan.json").read_text())
        ranks = [json.loads((run_dir / f"memory.rank{r}.json").read_text()) for r in (0, 1)]
        rows = {}
        for rec in ranks:
            base = rec["after_imports_bytes"]
            train, loaded = rec["train_peak_bytes"] - base, rec["loaded_peak_bytes"] - base
            ready = rec["engine_peak_bytes"] - base
            rows[f"rank{rec['rank']}"] = {
                "baseline_gib": base / 2**30, "loaded_peak_gib": loaded / 2**30, "ready_peak_gib": ready / 2**30,
                "train_peak_gib": train / 2**30, "peak_over_plan": train / plan["peak_bytes"],
                "loaded_over_plan": loaded / plan["host_peak_loading_bytes"]}
        result["runs"][run] = {"plan_gib": plan["rows_gib"], "params": plan["params"], "measured": rows}
    for name, new, old in (("zero2_bf16_over_fp32", "2:bfloat16", "2:float32"),
                           ("zero3_zero_init_over_whole", "3:bfloat16", "3:float32:whole")):
        new, old = result["runs"].get(new, {}), result["runs"].get(old, {})
        if "measured" in new and "measured" in old:
            result[name] = {key: new["measured"]["rank0"][key] / old["measured"]["rank0"][key]
                            for key in ("loaded_peak_gib", "ready_peak_gib", "train_peak_gib")}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
