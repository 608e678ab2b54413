"""Worker of tests/e2e/test_zero3_loading.py, started by ``torchrun --nproc_per_node 2``: every rank builds the
diffusers directory ``--model`` under ``deepspeed.zero.Init`` with `load_model_dir_partitioned` and writes
``rank{r}.pt``: the numel of its own partition of every parameter, the gathered full values, its resident
memory before and after, and the error line of a directory holding a tensor the network lacks (``--bad``)."""

from __future__ import annotations

import argparse
from pathlib import Path

import deepspeed
import torch

from streamvid.core.config import ConfigError
from streamvid.distill.deepspeed_cpu import deepspeed_config
from streamvid.distill.networks import load_model_dir_partitioned


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--model", required=True)
    p.add_argument("--bad", default=None)
    p.add_argument("--out", required=True)
    args = p.parse_args()
    deepspeed.init_distributed(dist_backend="gloo")
    rank = torch.distributed.get_rank()
    with deepspeed.zero.Init(config_dict_or_path=deepspeed_config(3, param_persistence_threshold=0)):
        model = load_model_dir_partitioned(args.model, "student")
    names = [n for n, _ in model.named_parameters()]
    local = {n: int(p.ds_tensor.numel()) for n, p in model.named_parameters()}
    full_numel = {n: int(p.ds_numel) for n, p in model.named_parameters()}
    with deepspeed.zero.GatheredParameters(list(model.parameters())):
        values = {n: p.detach().clone() for n, p in zip(names, model.parameters(), strict=True)}
    buffers = {n: b.detach().clone() for n, b in model.named_buffers()}
    error = None
    if args.bad:
        try:
            with deepspeed.zero.Init(config_dict_or_path=deepspeed_config(3, param_persistence_threshold=0)):
                load_model_dir_partitioned(args.bad, "critic")
        except ConfigError as err:
            error = str(err)
    torch.save({"rank": rank, "world": torch.distributed.get_world_size(), "local_numel": local,
                "full_numel": full_numel, "values": values, "buffers": buffers, "error": error},
               Path(args.out) / f"rank{rank}.pt")
    torch.distributed.barrier()
    torch.distributed.destroy_process_group()


if __name__ == "__main__":
    main()
