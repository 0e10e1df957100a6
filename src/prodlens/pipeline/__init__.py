"""The batch pipeline behind ``prodlens run CONFIG``: OCR -> train -> explain -> global ->
deletion -> store -> match, resumable at any point, on local processes or Ray actors.
Shipped presets (``prodlens run demo``) are configs like any other (:func:`presets`).

>>> from prodlens.pipeline import PipelineConfig
>>> PipelineConfig.from_dict({"executor": {"kind": "ray", "workers": 4}}).executor.workers
4

See ``docs/pipeline.md`` for the config file, what resuming guarantees, and Ray.
"""

from prodlens.pipeline.config import STAGES, PipelineConfig, PipelineConfigError, load_config, presets, stage_key
from prodlens.pipeline.executors import (
    ExplainWorker,
    Outcome,
    ProcessExecutor,
    RayExecutor,
    SerialExecutor,
    WorkerSpec,
    make_executor,
)
from prodlens.pipeline.report import PipelineSummary, StageReport, highlights
from prodlens.pipeline.runner import run_pipeline
from prodlens.pipeline.stages import item_file, pick_samples

__all__ = [
    "STAGES",
    "PipelineConfigError",
    "ExplainWorker",
    "Outcome",
    "PipelineConfig",
    "PipelineSummary",
    "ProcessExecutor",
    "RayExecutor",
    "SerialExecutor",
    "StageReport",
    "WorkerSpec",
    "item_file",
    "load_config",
    "make_executor",
    "pick_samples",
    "highlights",
    "presets",
    "run_pipeline",
    "stage_key",
]
