"""The main job, end to end on the bundled real sample (``prodlens demo``).

The demo is the pipeline (:func:`prodlens.pipeline.run_pipeline`) run on the shipped
preset ``demo`` (``src/prodlens/pipeline/presets/demo.toml``; ``prodlens run demo`` is
the same job): 134 GroceryStore photos of 10 package classes, offline OCR (RapidOCR,
foreign-script tokens dropped and counted), two-stage training (an image model with its
backbone's last block adapted, then a Feature Concatenation fusion head on that
backbone), multimodal LIME on every val photo of the three look-alike Arla milks,
per-class global explanations (superpixels embedded by the adapted image model), the
deletion test on held-out folds, zero-shot product matching, and a SQLite results store
for the explorer app. Re-running resumes: finished work is skipped.
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

from prodlens.pipeline import load_config, run_pipeline
from prodlens.pipeline.config import PipelineConfig
from prodlens.pipeline.report import PipelineSummary, highlights

log = logging.getLogger(__name__)


def demo_config(out: str | Path = "work/demo", *, workers: int = 1, explain_match: bool = False,
                seed: int = 0) -> PipelineConfig:
    """The ``demo`` preset with the output folder, OCR workers, match explanation and seed set.

    >>> cfg = demo_config("x", explain_match=True)
    >>> cfg.out, cfg.match.explain, cfg.explain.split
    ('x', True, 'val')
    """
    cfg = load_config("demo")
    return dataclasses.replace(
        cfg, out=str(out), seed=seed, ocr=dataclasses.replace(cfg.ocr, workers=workers),
        match=dataclasses.replace(cfg.match, explain=explain_match),
    )


def run_demo(out: str | Path = "work/demo", *, workers: int = 1, explain_match: bool = False, seed: int = 0,
             progress: bool = True) -> PipelineSummary:
    """Run the demo preset into ``out``, print what it found; return the pipeline summary."""
    cfg = demo_config(out, workers=workers, explain_match=explain_match, seed=seed)
    print(f"prodlens demo: the pipeline preset 'demo' ({cfg.source}) into {cfg.out_dir}", flush=True)
    summary = run_pipeline(cfg, progress=progress)
    print(summary.text())
    ocr = summary.stage("ocr")
    if ocr.status == "ok" and ocr.outputs.get("script_filter"):
        sf = ocr.outputs["script_filter"]
        print(f"OCR script filter {sf.get('preset', '')!r}: dropped {sf.get('dropped', 0)} of {sf.get('tokens', 0)} tokens "
              f"(e.g. {', '.join(map(repr, sf.get('dropped_examples', [])[:5]))})")
    for line in highlights(summary):
        print(line)
    print(f"\nOpen the explorer:  .venv/bin/prodlens app --db {cfg.store_target}   (then http://127.0.0.1:7860)")
    return summary
