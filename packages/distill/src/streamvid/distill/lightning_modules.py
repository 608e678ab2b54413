"""Lightning modules of the teacher and ODE-init stages: thin, they receive built networks.

* `FlowMatchingModule`: flow matching (`flow_matching_loss`) of ``net`` on data batches, or with a frozen
  ``teacher`` flow distillation (`flow_distillation_loss`: the teacher's guided flow at the same x_t);
* `ODERegressionModule`: x0 regression of the causal student onto ODE pairs: input the teacher's ODE state at a
  few-step level per chunk, target the ODE's solution, loss ``|x0_pred - x0|^2`` with
  ``x0_pred = x_t - sigma v`` (`ScoreModel.x0`).

Both optimise with AdamW and a linear warm-up (per step), keep an `EMA` of the weights (updated right after every
optimiser step, saved in the checkpoint) and log ``train/loss``. Batches are dicts built by the stage
(`streamvid.distill.stages`), one per step.
"""

from __future__ import annotations

import lightning.pytorch as pl
import torch
import torch.nn.functional as F

from streamvid.core.causal_wan import BlockCausal
from streamvid.core.score_model import ScoreModel
from streamvid.core.text.bag_of_words import BagOfWordsTextEncoder
from streamvid.core.world import vocabulary
from streamvid.distill.flow_matching import EMA, flow_distillation_loss, flow_matching_loss
from streamvid.distill.stage_config import OptimConfig

__all__ = ["FlowMatchingModule", "ODERegressionModule", "TrainModule", "WarmUp"]


class WarmUp:
    """LambdaLR factor ``min(1, (k + 1) / steps)`` at step k (a picklable callable)."""

    def __init__(self, steps: int) -> None:
        self.steps = steps

    def __call__(self, step: int) -> float:
        return min(1.0, (step + 1) / self.steps)


class TrainModule(pl.LightningModule):
    """Shared optimiser, EMA, text encoder and logging; subclasses define `loss(batch)`.

    Args:
        net: the network trained (`ConvFlowNet` or `CausalWanModel`).
        text_dim: width of the bag-of-words text token (the network's ``text_dim``).
        optim: optimiser and EMA settings.
        block_causal: the mask passed to the network (None: full attention / bidirectional).
    """

    def __init__(self, net: torch.nn.Module, text_dim: int, optim: OptimConfig, block_causal: BlockCausal | None = None):
        super().__init__()
        self.net = net
        self.ema = EMA(net, optim.ema_decay)
        self.optim_cfg = optim
        self.text = BagOfWordsTextEncoder(vocabulary(), text_dim)
        self.block_causal = block_causal

    def model_kwargs(self) -> dict:
        return {"block_causal": self.block_causal} if self.block_causal is not None else {}

    def encode(self, prompts: list[str]) -> torch.Tensor:
        return self.text(prompts).to(self.device)

    def loss(self, batch: dict) -> torch.Tensor:
        """The stage's scalar loss of one batch; each stage module (flow matching, ODE regression) defines it."""
        raise NotImplementedError(f"{type(self).__name__} must define loss(batch)")

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        loss = self.loss(batch)
        self.log("train/loss", loss, prog_bar=True, on_step=True, batch_size=len(batch["prompts"]))
        return loss

    def optimizer_step(self, *args, **kwargs) -> None:
        """The optimiser step, then the EMA update: before any callback's ``on_train_batch_end``, so checkpoints
        and exports taken at a step hold that step's average."""
        super().optimizer_step(*args, **kwargs)
        self.ema.update(self.net)

    def configure_optimizers(self):
        cfg = self.optim_cfg
        opt = torch.optim.AdamW(self.net.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay, betas=tuple(cfg.betas))
        sched = torch.optim.lr_scheduler.LambdaLR(opt, WarmUp(cfg.warmup_steps))
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step", "frequency": 1}}


class FlowMatchingModule(TrainModule):
    """Flow matching on data batches ``{x0, prompts, sigma, noise}``; with ``teacher``, flow distillation.

    Args:
        teacher: a frozen flow network (`ConvFlowNet`, ...) whose guided flow is the target; kept out of the
            module's parameters and checkpoints.
        guidance: g of the teacher's ``c + g (c - u)`` (cfg scale - 1).
    """

    def __init__(self, net, text_dim: int, optim: OptimConfig, block_causal: BlockCausal | None = None,
                 teacher: torch.nn.Module | None = None, guidance: float = 0.0):
        super().__init__(net, text_dim, optim, block_causal)
        # A tuple keeps the frozen teacher out of state_dict(), the optimiser and the checkpoints.
        self._teacher = (ScoreModel(teacher.requires_grad_(False).eval()),) if teacher is not None else ()
        self.guidance = guidance

    def on_fit_start(self) -> None:
        for teacher in self._teacher:
            teacher.to(self.device)

    def loss(self, batch: dict) -> torch.Tensor:
        x0, sigma, noise, prompts = batch["x0"], batch["sigma"], batch["noise"], batch["prompts"]
        cond = self.encode(prompts)
        if not self._teacher:
            return flow_matching_loss(ScoreModel(self.net), x0, cond, sigma, noise, **self.model_kwargs())
        null = self.encode([""])  # the teacher reads the same bag-of-words token (equal text_dim is checked)
        return flow_distillation_loss(
            ScoreModel(self.net), self._teacher[0], x0, cond, null, sigma, noise, self.guidance, **self.model_kwargs()
        )


class ODERegressionModule(TrainModule):
    """x0 regression onto ODE pairs: batches ``{x_t, sigma, x0, prompts}`` (x_t: per-chunk few-step states)."""

    def loss(self, batch: dict) -> torch.Tensor:
        cond = self.encode(batch["prompts"])
        pred = ScoreModel(self.net).x0(batch["x_t"], batch["sigma"], cond, **self.model_kwargs())
        return F.mse_loss(pred.float(), batch["x0"].float())
