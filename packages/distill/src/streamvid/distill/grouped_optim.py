"""One AdamW over named parameter groups that steps only the active ones, with per-group gradient clipping.

DMD / Stream-R1 train two networks (the causal student ``generator`` and the bidirectional ``critic``) with
TTUR: the critic steps every optimiser step, the generator every ``dfake_gen_update_ratio``-th. Lightning
allows only one optimiser with DeepSpeed, so both networks live in one engine whose one optimiser has two
named param groups; `GroupedAdamW.step` updates only the groups named in `GroupedAdamW.active`:

* an inactive group is left bit-identical: parameters, AdamW state (``exp_avg``, ``exp_avg_sq`` and the
  ``step`` counter) and weight decay are not touched (its gradients are left as they are, too);
* an active group is first clipped to its own global norm ``max_grad_norm`` (0: off), like
  ``torch.nn.utils.clip_grad_norm_`` over that network alone, then stepped by plain ``torch.optim.AdamW``;
  the pre-clip norm of every active group is kept in `GroupedAdamW.grad_norms` (for logging
  ``generator_grad_norm`` / ``critic_grad_norm``).

Under DeepSpeed ZeRO (stage >= 1) the optimiser only sees this rank's partition of each group's flat fp32
gradient. `CPUDeepSpeedStrategy` (`streamvid.distill.deepspeed_cpu`) then sets `GroupedAdamW.partitioned_grads`
and the group's norm is ``sqrt(all_reduce_SUM(local sum of squares))`` over the data-parallel group. This is
collective-safe because every rank calls ``step()`` for the same groups in the same order:

* ZeRO-1/2 (``stage_1_and_2._optimizer_step``) set ``param_groups = [group_i]`` and call ``step()`` once per
  group;
* ZeRO-3 (``stage3._optimizer_step``) keeps all groups, with ``params = [flat fp32 partition]`` for the
  current sub-group and ``params = []`` for every other group, and calls ``step()`` once per *sub-group*.
  A group split into several sub-groups (``sub_group_size`` smaller than the group) would be clipped per
  sub-group, so `streamvid.distill.deepspeed_cpu.deepspeed_config` sets a huge ``sub_group_size`` and the
  strategy refuses an engine that split a group. Groups with no parameters in a call are skipped (no
  collective), on every rank alike.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import torch

from streamvid.core.config import ConfigError

__all__ = ["GroupedAdamW", "build_grouped_adamw", "find_grouped_optimizer"]


class GroupedAdamW(torch.optim.AdamW):
    """`torch.optim.AdamW` whose ``step()`` updates only the active named groups, each clipped to its own norm.

    Args:
        params: param groups (dicts), each with a unique ``"name"`` and optionally ``"max_grad_norm"``
            (global L2-norm clip of that group's gradients, 0: off) and the usual AdamW keys.
        **defaults: AdamW defaults (``lr``, ``betas``, ``weight_decay``, ...).

    Attributes:
        active: the group names the next ``step()`` updates (all groups at construction); persists until set
            again. ``optimizer.active = {"critic"}``.
        partitioned_grads: the gradients the optimiser sees are this rank's ZeRO partition; the group norms are
            then all-reduced over ``process_group``. Set by the strategy (needs torch.distributed initialised).
        process_group: the data-parallel group of that all-reduce (None: the default group).
        grad_norms: ``{name: 0-d tensor}`` pre-clip global gradient norm of each group stepped by the last
            ``step()`` that stepped it (computed whether or not the group clips).
    """

    def __init__(self, params: Iterable[dict[str, Any]], **defaults: Any) -> None:
        self.partitioned_grads = False
        self.process_group: Any = None
        self.grad_norms: dict[str, torch.Tensor] = {}
        super().__init__(list(params), **defaults)
        names = self.group_names
        if len(set(names)) != len(names):
            raise ValueError(f"GroupedAdamW: param group names must be unique, got {names}")
        self._active = frozenset(names)

    # ---- groups ----------------------------------------------------------------------------------------------

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        if not isinstance(param_group, dict) or not isinstance(param_group.get("name"), str):
            raise ValueError("GroupedAdamW: every param group must be a dict with a string 'name'")
        if any(g["name"] == param_group["name"] for g in self.param_groups):
            raise ValueError(f"GroupedAdamW: duplicate param group name {param_group['name']!r}")
        param_group.setdefault("max_grad_norm", 0.0)
        if param_group["max_grad_norm"] < 0:
            raise ValueError(f"GroupedAdamW: max_grad_norm of {param_group['name']!r} must be >= 0")
        super().add_param_group(param_group)

    @property
    def group_names(self) -> list[str]:
        return [g["name"] for g in self.param_groups]

    @property
    def active(self) -> frozenset[str]:
        return self._active

    @active.setter
    def active(self, names: Iterable[str] | str) -> None:
        names = frozenset([names] if isinstance(names, str) else names)
        unknown = names - set(self.group_names)
        if unknown:
            raise ValueError(f"GroupedAdamW: unknown group(s) {sorted(unknown)}; groups: {self.group_names}")
        self._active = names

    def set_active(self, *names: str) -> GroupedAdamW:
        """``set_active("critic")``: step only these groups from now on (returns self)."""
        self.active = names
        return self

    # ---- clipping --------------------------------------------------------------------------------------------

    def _group_norm(self, group: Mapping[str, Any]) -> torch.Tensor:
        """The group's global L2 gradient norm (the local one, or over the ZeRO partitions of all ranks)."""
        grads = [p.grad for p in group["params"] if p.grad is not None]
        if grads:
            device = grads[0].device
            norms = torch.stack([torch.linalg.vector_norm(g, 2.0, dtype=torch.float32) for g in grads])
        else:
            device = group["params"][0].device
            norms = torch.zeros(1, device=device)
        if not self.partitioned_grads:
            return torch.linalg.vector_norm(norms, 2.0)  # what clip_grad_norm_ computes
        import torch.distributed as dist

        sq = norms.square().sum()
        dist.all_reduce(sq, op=dist.ReduceOp.SUM, group=self.process_group)
        return sq.sqrt()

    @torch.no_grad()
    def _clip(self, group: dict[str, Any]) -> None:
        norm = self._group_norm(group)
        self.grad_norms[group["name"]] = norm.detach()
        max_norm = group["max_grad_norm"]
        if max_norm > 0:
            # torch.nn.utils.clip_grad_norm_: always scale, by min(1, max / (norm + 1e-6)).
            coef = torch.clamp(max_norm / (norm + 1e-6), max=1.0)
            for p in group["params"]:
                if p.grad is not None:
                    p.grad.mul_(coef.to(p.grad.device, p.grad.dtype))

    # ---- step ------------------------------------------------------------------------------------------------

    def step(self, closure=None):  # type: ignore[override]
        """Clip and AdamW-step the active groups that hold parameters; every other group is left untouched."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        groups = self.param_groups
        run = [g for g in groups if g["name"] in self._active and len(g["params"]) > 0]
        if not run:
            return loss
        for group in run:
            self._clip(group)
        # AdamW.step walks self.param_groups: hand it the active ones only (DeepSpeed swaps this list the same way).
        self.param_groups = run
        try:
            super().step()
        finally:
            self.param_groups = groups
        return loss


def find_grouped_optimizer(optimizer: Any) -> GroupedAdamW:
    """The `GroupedAdamW` under wrappers: ``LightningOptimizer`` (``_optimizer``), DeepSpeed ZeRO (``optimizer``).

    A ``LightningOptimizer`` is an instance of its optimiser's class holding a *copy* of its ``__dict__``:
    setting ``active`` on it would not reach the optimiser, so it is always unwrapped.
    """
    for _ in range(8):
        inner = getattr(optimizer, "_optimizer", None)
        if inner is not None:
            optimizer = inner
        elif isinstance(optimizer, GroupedAdamW):
            return optimizer
        elif getattr(optimizer, "optimizer", None) is not None:
            optimizer = optimizer.optimizer
        else:
            break
    raise TypeError(f"no GroupedAdamW inside {type(optimizer).__name__}")


def _group(name: str, module: torch.nn.Module, cfg: Mapping[str, Any]) -> dict[str, Any]:
    known = {"lr", "betas", "weight_decay", "max_grad_norm", "eps"}
    unknown = set(cfg) - known
    if unknown:
        raise ConfigError(f"{name} optimiser: unknown key(s) {sorted(unknown)}; expected {sorted(known)}")
    if "lr" not in cfg:
        raise ConfigError(f"{name} optimiser: 'lr' is required")
    for key in ("lr", "weight_decay", "max_grad_norm", "eps"):
        if key in cfg and not float(cfg[key]) >= 0:
            raise ConfigError(f"{name} optimiser: '{key}' must be >= 0, got {cfg[key]}")
    betas = tuple(float(b) for b in cfg.get("betas", (0.9, 0.999)))
    if len(betas) != 2 or not all(0.0 <= b < 1.0 for b in betas):
        raise ConfigError(f"{name} optimiser: 'betas' must be two numbers in [0, 1), got {cfg.get('betas')}")
    params = [p for p in module.parameters() if p.requires_grad]
    if not params:
        raise ConfigError(f"{name} optimiser: the {name} has no trainable parameters")
    group = {"name": name, "params": params, "lr": float(cfg["lr"]), "betas": betas,
             "weight_decay": float(cfg.get("weight_decay", 0.01)),
             "max_grad_norm": float(cfg.get("max_grad_norm", 0.0))}
    if "eps" in cfg:
        group["eps"] = float(cfg["eps"])
    return group


def build_grouped_adamw(
    generator: torch.nn.Module, critic: torch.nn.Module, gen_cfg: Mapping[str, Any], critic_cfg: Mapping[str, Any]
) -> GroupedAdamW:
    """A `GroupedAdamW` with groups ``"generator"`` and ``"critic"`` (their trainable parameters), all active.

    Args:
        generator, critic: the two networks (no shared parameters).
        gen_cfg, critic_cfg: each ``{lr, betas, weight_decay, max_grad_norm[, eps]}``; betas default
            (0.9, 0.999), weight_decay 0.01, max_grad_norm 0 (off). The methods' values (A.2.4): generator lr
            2e-6, critic 4e-7, betas (0, 0.999), weight decay 0.01, clip 10.

    Raises:
        ConfigError: an unknown or missing key, a negative value, bad betas, a network without trainable
            parameters, or parameters shared by both networks.
    """
    groups = [_group("generator", generator, gen_cfg), _group("critic", critic, critic_cfg)]
    shared = {id(p) for p in groups[0]["params"]} & {id(p) for p in groups[1]["params"]}
    if shared:
        raise ConfigError("generator and critic share parameters; they need separate networks")
    return GroupedAdamW(groups, lr=groups[0]["lr"])
