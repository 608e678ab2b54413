"""streamvid.distill: training stages on Lightning (teacher, ODE pairs, ODE-init student; DMD / Stream-R1 next).

* `flow_matching`: noise levels, flow-matching and flow-distillation losses, EMA;
* `shapes_data`: the shapes-world data pool, augmentations and step-indexed batches;
* `stage_config`: the typed configs of the stages (YAMLs in configs/train/);
* `networks`: build, check, load and copy the networks, export them as diffusers directories;
* `lightning_modules`: the Lightning modules of the teacher and ODE-init stages (`dmd_module`: DMD / Stream-R1);
  `trainer`: the one Trainer setup (`build_trainer`);
* `stream_r1_inter`, `stream_r1_intra`: Stream-R1's weights as pure functions; `stream_r1_weighting`: their
  composition, `StreamR1Weighting`; `prompts`: the stage's `PromptSource` s; `dmd_callbacks`: sample grids,
  weight maps and per-sample JSONL;
* `ode_pairs`: the teacher's ODE solutions at the student's few-step levels;
* `stages` and `cli`: ``streamvid-train teacher | ode-pairs | student --config PATH --set key=value``.
"""

from streamvid.core.lazy import lazy_exports

__getattr__, __dir__, __all__ = lazy_exports(__name__, {
    "run_r1": "streamvid.distill.r1_stage",
    "run_teacher": "streamvid.distill.stages",
    "run_student": "streamvid.distill.stages",
    "run_ode_pairs": "streamvid.distill.stages",
    "DMDStageConfig": "streamvid.distill.dmd_config",
    "StreamR1Weighting": "streamvid.distill.stream_r1_weighting",
})
