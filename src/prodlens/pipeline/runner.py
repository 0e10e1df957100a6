"""Run the stages of a pipeline config in order and summarise what each did."""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

from prodlens._atomic import atomic_write
from prodlens.pipeline.config import PipelineConfig, load_config
from prodlens.pipeline.executors import make_executor
from prodlens.pipeline.report import PipelineSummary, StageReport
from prodlens.pipeline.stages import STAGE_FUNCTIONS, Context

log = logging.getLogger(__name__)

#: The stage each stage reads from; when that one did not finish, this one is not run.
NEEDS = {"train": "ocr", "explain": "train", "global": "explain", "deletion": "global", "store": "explain",
         "match": "ocr", "sanity": "explain"}


def _enabled(cfg: PipelineConfig, stage: str) -> bool:
    return {"global": cfg.global_.enabled, "deletion": cfg.deletion.enabled, "match": cfg.match.enabled,
            "sanity": cfg.sanity.enabled}.get(stage, True)


def run_pipeline(config: PipelineConfig | str | Path, *, progress: bool = True) -> PipelineSummary:
    """Run every stage of ``config`` (a :class:`PipelineConfig` or a config file path).

    Work already done under the same settings is skipped, so calling this again after
    an interruption (Ctrl-C, ``kill -9``, a crash) finishes the job without redoing or
    duplicating anything. A stage that fails is reported and the stages that need it
    are not run; items that fail (a corrupt photo) are reported and the others go on.
    The summary is also written to ``{out}/summary.json``.

    >>> s = run_pipeline("runs/tiny.toml")  # doctest: +SKIP
    >>> print(s.text())  # doctest: +SKIP
    run 'tiny': 41 s, store runs/tiny/prodlens.sqlite
      ocr       0 done, 12 skipped (already done), 0 failed  (0.1 s)
      ...
    """
    cfg = load_config(config) if isinstance(config, (str, Path)) else config
    t0 = time.perf_counter()
    if cfg.executor.threads:
        import torch

        torch.set_num_threads(cfg.executor.threads)
    ex = cfg.executor
    ctx = Context(cfg, make_executor(ex.kind, workers=ex.workers, ray_address=ex.ray_address, num_gpus=ex.num_gpus),
                  progress=progress)
    reports: dict[str, StageReport] = {}
    try:
        for name, fn in STAGE_FUNCTIONS:
            need = NEEDS.get(name)
            if not _enabled(cfg, name):
                reports[name] = StageReport(name, status="disabled")
            elif need and reports[need].status != "ok":
                reports[name] = StageReport(name, status="not run", error=f"needs the {need} stage")
            else:
                log.info("stage %s", name)
                reports[name] = _run_stage(name, fn, ctx)
        summary = PipelineSummary(cfg.name, tuple(reports.values()), cfg.store_target, time.perf_counter() - t0)
    finally:
        ctx.close()
    with atomic_write(cfg.out_dir / "summary.json") as f:
        json.dump(summary.to_dict(), f, indent=1)
    return summary


def _run_stage(name: str, fn, ctx: Context) -> StageReport:  # noqa: ANN001
    start = time.perf_counter()
    try:
        return fn(ctx)
    except Exception as e:  # noqa: BLE001 - reported in the summary; finished work is on disk
        log.warning("stage %s failed: %s", name, e, exc_info=log.isEnabledFor(logging.DEBUG))
        return StageReport(name, status="failed", error=f"{type(e).__name__}: {e}", seconds=time.perf_counter() - start)
