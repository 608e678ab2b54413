"""Mean and std of each reward axis over the ODE-init student's training rollouts: the ``stream_r1.reward_norm``
of a shapes-world Stream-R1 config (r = (raw - mu) / sigma, as VideoAlign's adapter z-normalises its axes).

    .venv/bin/python bench/r1_reward_norm.py --config configs/train/shapes_r1.yaml --out outputs/bench/r1_reward_norm.json

Rollouts are the stage's own (`DMDModule._rollout`: random exit step, train-split prompts), scored by the
config's reward; writes JSON with the per-axis mean / std and the YAML line to paste.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from streamvid.core.config import load_config
from streamvid.distill.dmd_config import DMDStageConfig
from streamvid.distill.dmd_module import _gen
from streamvid.distill.r1_stage import build_dmd_module


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--config", default="configs/train/shapes_r1.yaml")
    p.add_argument("--rollouts", type=int, default=256)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--seed", type=int, default=12345, help="prompt / noise seed (not the training seed)")
    p.add_argument("--out", default="outputs/bench/r1_reward_norm.json")
    args = p.parse_args()
    torch.set_num_threads(1)
    cfg = load_config(Path(args.config), [], schema=DMDStageConfig)
    module = build_dmd_module(cfg)
    reward, codec = module._reward[0], module._codec[0]
    scores: dict[str, list[float]] = {}
    start = time.perf_counter()
    with torch.no_grad():
        for i in range(0, args.rollouts, args.batch):
            g = _gen(args.seed, i)
            prompts = module.prompts.draw(g, min(args.batch, args.rollouts - i))
            x, _ = module._rollout(prompts, module._exit_step(g), args.seed + i, grad=False)
            out = reward(codec.decode(x).clamp(0, 1), prompts)
            for axis, v in out.axes.items():
                scores.setdefault(axis, []).extend(v.tolist())
    stats = {a: [round(float(torch.tensor(v).mean()), 4), round(float(torch.tensor(v).std()), 4)]
             for a, v in scores.items()}
    result = {"config": args.config, "rollouts": args.rollouts, "reward": cfg.reward.name, "reward_norm": stats,
              "seconds": round(time.perf_counter() - start, 1)}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
