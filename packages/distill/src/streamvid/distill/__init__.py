"""streamvid.distill: training stages on Lightning (teacher, ODE pairs, ODE-init student; DMD / Stream-R1 next).

* `flow_matching`: noise levels, flow-matching and flow-distillation losses, EMA;
* `shapes_data`: the shapes-world data pool, augmentations and step-indexed batches;
* `stage_config`: the typed configs of the stages (YAMLs in configs/train/);
* `models`: build, check and load the networks, export them as diffusers directories;
* `modules`: the Lightning modules; `trainer`: the one Trainer setup (`build_trainer`);
* `ode_pairs`: the teacher's ODE solutions at the student's few-step levels;
* `stages` and `cli`: ``streamvid-train teacher | ode-pairs | student --config PATH --set key=value``.
"""
