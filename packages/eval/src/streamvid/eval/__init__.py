"""streamvid.eval: metrics, VBench aggregation, drift, Frechet distance, the evaluation runner and reports.

Names are imported on first use (`streamvid.core.lazy`)::

    from streamvid.eval import EvalConfig, run_eval
    result = run_eval(load_config("configs/eval/shapes_student.yaml", schema=EvalConfig))
"""

from streamvid.core.lazy import lazy_exports

__getattr__, __dir__, __all__ = lazy_exports(__name__, {
    "EvalConfig": "streamvid.eval.runner_config",
    "EvalResult": "streamvid.eval.runner",
    "run_eval": "streamvid.eval.runner",
    "read_records": "streamvid.eval.runner",
})
