"""DeepSpeed ZeRO-2 / ZeRO-3 under Lightning for the two-network (generator + critic) Stream-R1 engine.

* `CPUDeepSpeedStrategy`: Lightning's `DeepSpeedStrategy` that also runs on CPU processes with gloo
  (``Trainer(accelerator="cpu", devices=2, strategy=CPUDeepSpeedStrategy(config=deepspeed_config(2)))``, with
  ``DS_ACCELERATOR=cpu`` in the environment before deepspeed is imported) and on GPUs as the stock strategy
  does. It tells the engine's `GroupedAdamW` that the gradients it sees are ZeRO partitions, refuses a ZeRO-3
  engine that split a param group into sub-groups (per-group clipping needs the whole group in one
  ``step()``), and by default leaves frozen parameters (a frozen teacher inside the engine) out of checkpoints.
* `deepspeed_config`: the DeepSpeed config dict (ZeRO stage, no DeepSpeed clipping: the optimiser clips per
  group; fp32, or bf16 on GPUs).
* `set_accumulation_boundary`: gradient accumulation under manual optimisation. Lightning forbids
  ``accumulate_grad_batches`` with manual optimisation, so DeepSpeed's ``gradient_accumulation_steps`` is 1 and
  the module accumulates itself: k ``manual_backward(loss / k)`` calls, the boundary False for all but the
  last, then one ``opt.step()``::

      for i, micro in enumerate(micro_batches):
          set_accumulation_boundary(self.trainer, i == k - 1)
          self.manual_backward(self.loss(micro) / k)
      opt.step(); opt.zero_grad()

  (tests/e2e/test_deepspeed_cpu.py checks that this equals the gradient of the mean loss of a 1-process run
  under ZeRO-2 and ZeRO-3.)
* `gathered(module)`: the full parameters of a (sub)module under ZeRO-3 (EMA updates, export); a no-op
  otherwise.

deepspeed is imported lazily (it is slow to import and needs ``DS_ACCELERATOR`` set first).
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import warnings
from collections.abc import Iterator
from typing import Any

import lightning.pytorch as pl
import torch
from lightning.pytorch.strategies import DeepSpeedStrategy, Strategy
from lightning.pytorch.strategies.ddp import DDPStrategy

from streamvid.core.config import ConfigError
from streamvid.distill.grouped_optim import GroupedAdamW, find_grouped_optimizer

__all__ = [
    "CPUDeepSpeedStrategy", "deepspeed_config", "fix_malloc_mmap_threshold", "gathered", "set_accumulation_boundary",
]

# DeepSpeed 0.19 calls torch.distributed collectives that torch 2.13 deprecates, a FutureWarning at every new call
# site (a dozen lines per rank per ZeRO-3 run) that no user of this code can act on.
warnings.filterwarnings("ignore", message=r"`torch\.distributed\.(all_gather_into_tensor|reduce_scatter_tensor)` is "
                        r"deprecated", category=FutureWarning)

# One ZeRO-3 sub-group per param group (see `GroupedAdamW`): larger than any network we train.
NO_SUB_GROUPS = 10**13


def deepspeed_config(
    zero_stage: int,
    *,
    bf16: bool = False,
    micro_batch_size: int = 1,
    param_persistence_threshold: int | None = None,
    **zero_overrides: Any,
) -> dict[str, Any]:
    """The DeepSpeed config dict of the two-network engine.

    Args:
        zero_stage: 0-3 (2: optimizer states and gradients partitioned; 3: parameters too).
        bf16: bf16 master-weight training (GPUs; Lightning's ``precision="bf16-mixed"`` sets it too). fp32
            otherwise (CPU).
        micro_batch_size: ``train_micro_batch_size_per_gpu`` (DeepSpeed uses it only for throughput logs).
        param_persistence_threshold: ZeRO-3 ``stage3_param_persistence_threshold``: parameters with fewer
            elements stay replicated (DeepSpeed default 1e5; 0 partitions every parameter).
        zero_overrides: further ``zero_optimization`` keys.

    No ``gradient_accumulation_steps`` (Lightning sets 1; the module accumulates, `set_accumulation_boundary`)
    and ``gradient_clipping`` 0: `GroupedAdamW` clips each network to its own norm.
    """
    if zero_stage not in (0, 1, 2, 3):
        raise ConfigError(f"deepspeed zero_stage must be 0, 1, 2 or 3, got {zero_stage}")
    zero: dict[str, Any] = {
        "stage": zero_stage,
        "contiguous_gradients": True,
        "overlap_comm": False,
        "reduce_scatter": True,
        "reduce_bucket_size": 5 * 10**7,
        "allgather_bucket_size": 5 * 10**7,
    }
    if zero_stage == 3:
        zero["sub_group_size"] = NO_SUB_GROUPS
        # DeepSpeed's defaults, written out because the memory plan (`r1_plan`) reads them: all-gathered
        # layers stay resident up to 1e9 elements and are re-used within 1e9 (fewer re-gathers, more memory)
        zero["stage3_max_live_parameters"] = 10**9
        zero["stage3_max_reuse_distance"] = 10**9
        if param_persistence_threshold is not None:
            zero["stage3_param_persistence_threshold"] = param_persistence_threshold
    zero.update(zero_overrides)
    return {
        "zero_optimization": zero,
        "zero_allow_untested_optimizer": True,
        "gradient_clipping": 0.0,
        "train_micro_batch_size_per_gpu": micro_batch_size,
        "bf16": {"enabled": bool(bf16)},
        "steps_per_print": 10**12,
        "wall_clock_breakdown": False,
    }


MMAP_THRESHOLD = 128 * 1024
"""glibc's initial ``M_MMAP_THRESHOLD``: blocks above it get their own mapping, returned to the system on free."""


def fix_malloc_mmap_threshold(threshold: int = MMAP_THRESHOLD) -> bool:
    """Fix glibc's mmap threshold (``mallopt(M_MMAP_THRESHOLD, threshold)``); False where the C library is not
    glibc.

    glibc raises the threshold each time a mapped block is freed (up to 32 MB), after which such blocks come from
    the heap and stay resident after ``free``. ZeRO-3 all-gathers and frees every layer at each forward (and
    once per module while loading under ``zero.Init``), so on CPU a rank's resident memory grows by about a copy
    of the networks that is not live (measured by ``bench/memory_plan.py``: 4.26 GiB against 2.93 GiB, loading
    1.52 against 0.58). Setting the threshold explicitly also switches glibc's adjustment off. The same as
    exporting ``MALLOC_MMAP_THRESHOLD_`` before the process starts."""
    import ctypes

    try:
        return bool(ctypes.CDLL("libc.so.6").mallopt(-3, threshold))  # -3: M_MMAP_THRESHOLD (malloc.h)
    except (OSError, AttributeError):
        return False


class CPUDeepSpeedStrategy(DeepSpeedStrategy):
    """`DeepSpeedStrategy` that runs on CPU processes (gloo) as well as on CUDA GPUs.

    Same arguments as Lightning's `DeepSpeedStrategy`; differences: ``process_group_backend`` defaults to
    gloo on CPU (nccl on GPUs), ``exclude_frozen_parameters`` defaults to True (a frozen teacher inside the
    engine is not written to checkpoints: it is rebuilt from its own weights at start, and resuming keeps the
    frozen values the module was built with), and the CUDA-only checks are skipped on CPU. The root device
    on CPU is plain ``cpu`` (all ranks share it); DeepSpeed is given ``device_rank=local_rank`` instead of
    the CPU device's missing index. On CPU, DeepSpeed's shared-memory inference all-reduce op is not
    JIT-built (``build_shm_comm_op=False``; training does not use it).

    After DeepSpeed builds the engine, a `GroupedAdamW` inside it is told that its gradients are ZeRO
    partitions (stage >= 1, more than one rank), so its per-group clip norms are all-reduced over the
    data-parallel group; under ZeRO-3 an engine that split a param group into sub-groups raises `ConfigError`.
    Under ZeRO-3 on CPU, glibc's mmap threshold is fixed (`fix_malloc_mmap_threshold`) so gathered and freed layers
    return their memory.
    """

    strategy_name = "deepspeed_cpu"

    def __init__(self, *args: Any, exclude_frozen_parameters: bool = True, build_shm_comm_op: bool = False,
                 **kwargs: Any) -> None:
        super().__init__(*args, exclude_frozen_parameters=exclude_frozen_parameters, **kwargs)
        self.build_shm_comm_op = build_shm_comm_op

    def _init_deepspeed_distributed(self) -> None:
        if self._on_cpu() and not self.build_shm_comm_op:
            # On CPU, deepspeed.comm's TorchBackend JIT-compiles a shared-memory all-reduce op (a C++ build of
            # about 80 s the first time on a machine, and a compiler) used only by DeepSpeed-inference's
            # ``inference_all_reduce``; training collectives go through torch.distributed (gloo).
            # (import_module: the attribute deepspeed.comm.torch is the torch package, not this module)
            importlib.import_module("deepspeed.comm.torch").build_shm_op = lambda: None
        super()._init_deepspeed_distributed()

    def _on_cpu(self) -> bool:
        return self.parallel_devices is not None and self.root_device.type == "cpu"

    def setup_environment(self) -> None:
        if self._on_cpu():
            if isinstance(self.config, dict) and self.zero_stage_3:
                fix_malloc_mmap_threshold()
            DDPStrategy.setup_environment(self)  # DeepSpeedStrategy's only addition is a CUDA check
        else:
            super().setup_environment()

    def setup_distributed(self) -> None:
        if not self._on_cpu():
            super().setup_distributed()
            return
        # DeepSpeedStrategy.setup_distributed without the device-index check (CPU devices have no index).
        from lightning.fabric.utilities.seed import reset_seed

        reset_seed()
        self.set_world_ranks()
        self._init_deepspeed_distributed()

    def _get_process_group_backend(self) -> str:
        if self._process_group_backend is None and self._on_cpu():
            return "gloo"
        return super()._get_process_group_backend()

    def _device_rank(self) -> int:
        index = self.root_device.index
        return self.local_rank if index is None else index

    def _setup_model_and_optimizer(self, model, optimizer, lr_scheduler=None):
        import deepspeed

        model_parameters = filter(lambda p: p.requires_grad, model.parameters())
        engine, ds_optimizer, _, _ = deepspeed.initialize(
            args=argparse.Namespace(device_rank=self._device_rank()),
            config=self.config,
            model=model,
            model_parameters=model_parameters,
            optimizer=optimizer,
            lr_scheduler=lr_scheduler,
            dist_init_required=False,
        )
        self._configure_grouped_optimizer(engine, ds_optimizer)
        return engine, ds_optimizer

    def _initialize_deepspeed_inference(self, model: torch.nn.Module) -> None:
        if not self._on_cpu():
            super()._initialize_deepspeed_inference(model)
            return
        import deepspeed
        from lightning.pytorch.strategies.deepspeed import remove_module_hooks

        inference_config: dict[str, Any] = {"train_micro_batch_size_per_gpu": 1}
        for key in ("fp16", "bf16"):
            if key in self.config:
                inference_config[key] = self.config[key]
        if self.zero_stage_3:
            inference_config["zero_allow_untested_optimizer"] = self.config["zero_allow_untested_optimizer"]
            inference_config["zero_optimization"] = self.config["zero_optimization"]
        remove_module_hooks(model)
        self.model, _, _, _ = deepspeed.initialize(
            args=argparse.Namespace(device_rank=self._device_rank()), config=inference_config, model=model,
            optimizer=None, lr_scheduler=None, model_parameters=[], dist_init_required=False,
        )

    def load_checkpoint(self, checkpoint_path, weights_only=None) -> dict[str, Any]:
        """DeepSpeedStrategy.load_checkpoint; with ``exclude_frozen_parameters`` the module load tolerates exactly
        the frozen parameters missing (they keep the values the module was built with) and is otherwise as
        strict as ``LightningModule.strict_loading``."""
        if not self.exclude_frozen_parameters or (self.load_full_weights and self.zero_stage_3):
            return super().load_checkpoint(checkpoint_path, weights_only)
        from lightning.fabric.strategies.deepspeed import _validate_checkpoint_directory
        from lightning.pytorch.trainer.states import TrainerFn
        from lightning.pytorch.utilities.exceptions import MisconfigurationException

        _validate_checkpoint_directory(checkpoint_path)
        module = self.lightning_module
        strict = module.strict_loading

        def load_trainable(src: dict[str, Any], dst: torch.nn.Module) -> None:
            result = dst.load_state_dict(src, strict=False)
            frozen = {name for name, p in dst.named_parameters() if not p.requires_grad}
            missing = sorted(set(result.missing_keys) - frozen)
            if strict and (missing or result.unexpected_keys):
                raise RuntimeError(f"checkpoint {checkpoint_path}: missing keys {missing}, "
                                   f"unexpected keys {sorted(result.unexpected_keys)}")

        _, client_state = self.deepspeed_engine.load_checkpoint(
            checkpoint_path,
            load_optimizer_states=module.trainer.state.fn == TrainerFn.FITTING,
            load_lr_scheduler_states=False,
            load_module_strict=False,
            custom_load_fn=load_trainable,
        )
        if client_state is None:
            raise MisconfigurationException(f"DeepSpeed could not load the checkpoint {checkpoint_path}")
        return client_state

    def _configure_grouped_optimizer(self, engine: Any, ds_optimizer: Any) -> None:
        try:
            grouped = find_grouped_optimizer(ds_optimizer)
        except TypeError:
            return
        stage = engine.zero_optimization_stage()
        grouped.partitioned_grads = bool(stage >= 1 and torch.distributed.is_initialized()
                                         and torch.distributed.get_world_size() > 1)
        grouped.process_group = getattr(ds_optimizer, "dp_process_group", None)
        sub_groups = getattr(ds_optimizer, "sub_group_to_group_id", None)
        if stage == 3 and sub_groups is not None and len(set(sub_groups.values() if isinstance(sub_groups, dict)
                                                                  else sub_groups)) != len(sub_groups):
            raise ConfigError(
                "ZeRO-3 split a param group into sub-groups (zero_optimization.sub_group_size smaller than a "
                "network); GroupedAdamW clips per group: set sub_group_size >= the parameter count of the largest "
                f"network (deepspeed_config sets {NO_SUB_GROUPS:.0e})"
            )


def _strategy(trainer_or_strategy: pl.Trainer | Strategy) -> Strategy:
    return trainer_or_strategy.strategy if isinstance(trainer_or_strategy, pl.Trainer) else trainer_or_strategy


def set_accumulation_boundary(trainer_or_strategy: pl.Trainer | Strategy, is_boundary: bool) -> None:
    """Start one micro-step of a manual accumulation window on a DeepSpeed engine (no-op otherwise).

    Call before *each* micro-step's forward + ``manual_backward`` (every backward of the window, generator
    and critic alike): ``is_boundary`` False for all but the last backward of the window, True for the last;
    then one ``opt.step()``. It does what ``engine.forward`` + DeepSpeed's own accumulation would do per
    micro-batch, which Lightning's one engine forward per ``training_step`` does not:

    * ``engine.set_gradient_accumulation_boundary(is_boundary)`` (skipped when the config sets
      ``managed_gradient_accumulation: false``, where ``step()`` is the boundary);
    * ``engine.optimizer.clear_backward_seen_flag()``: ZeRO-3 advances its micro-step counter only there
      (``engine.forward`` calls it). Without it every backward after the first in one ``training_step`` has
      micro_step_id 0 and *overwrites* the partitioned gradients of the parameters it reaches instead of
      accumulating (measured: the accumulated norm halves with 2 micro-steps). ZeRO-1/2 count micro-steps in
      their backward hooks and only reset hook bookkeeping here.
    """
    strategy = _strategy(trainer_or_strategy)
    if not isinstance(strategy, DeepSpeedStrategy):
        return
    engine = strategy.model
    if not hasattr(engine, "set_gradient_accumulation_boundary"):
        return
    managed = getattr(engine, "managed_gradient_accumulation", lambda: True)()
    if managed:
        engine.set_gradient_accumulation_boundary(bool(is_boundary))
    optimizer = engine.optimizer
    if engine.zero_optimization_stage() == 3 and _zero3_window_start(optimizer):
        # ZeRO-3 copies a parameter's gradient partition at micro-step 0 and adds to it later: a parameter
        # first reached after micro-step 0 (the critic, when the generator's backward comes first) would add to
        # the previous window's stale gradient. Start every window from zeros.
        buffer = getattr(optimizer, "grad_partitions_flat_buffer", None)
        if buffer is not None and not getattr(optimizer, "offload_optimizer", False):
            buffer.zero_()
    clear = getattr(optimizer, "clear_backward_seen_flag", None)
    if clear is not None:
        clear()


def _zero3_window_start(optimizer: Any) -> bool:
    """No backward since the last ``step()`` / ``zero_grad()`` (which reset both)."""
    return getattr(optimizer, "micro_step_id", None) == 0 and not getattr(optimizer, "_epilogue_ran_this_backward", True)


def _zero3_params(module: torch.nn.Module) -> list[torch.nn.Parameter]:
    return [p for p in module.parameters() if hasattr(p, "ds_id")]


@contextlib.contextmanager
def gathered(module: torch.nn.Module, modifier_rank: int | None = None) -> Iterator[torch.nn.Module]:
    """Inside, ``module``'s parameters are full tensors on every rank (ZeRO-3 partitions them; a no-op without).

    Args:
        module: a submodule of the engine (e.g. ``nets["generator"]``).
        modifier_rank: None: read-only (changes are discarded). A rank: its in-place changes are
            re-partitioned to all ranks on exit (``deepspeed.zero.GatheredParameters``).

    Yields the module.
    """
    params = _zero3_params(module)
    if not params:
        yield module
        return
    import deepspeed

    with deepspeed.zero.GatheredParameters(params, modifier_rank=modifier_rank):
        yield module


def grouped_optimizer(trainer_or_strategy: pl.Trainer | Strategy) -> GroupedAdamW:
    """The strategy's `GroupedAdamW` (under DeepSpeed's and Lightning's wrappers)."""
    strategy = _strategy(trainer_or_strategy)
    if not strategy.optimizers:
        raise TypeError("the strategy has no optimizer yet")
    return find_grouped_optimizer(strategy.optimizers[0])
