"""The main job, end to end on the bundled real sample (``prodlens demo``).

Stages run today: import the bundled GroceryStore subset, run offline OCR
(RapidOCR, cached by image hash), and summarise. Each later stage (train, explain,
aggregate, store, app) is added here as it lands, so that one command shows the
whole tool on real data in a few minutes on 2 CPU cores.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

from prodlens.data.manifest import write_dataset
from prodlens.data.sample import load_sample
from prodlens.data.summary import dataset_summary

log = logging.getLogger(__name__)


def run_demo(out: str | Path = "work/demo", workers: int = 1) -> dict:
    """Run the demo pipeline into ``out`` and return a dict of what it produced.

    Re-running reuses the OCR cache in ``out/cache`` and is fast.
    """
    from prodlens.ocr.runner import run_ocr

    out = Path(out)
    t0 = time.perf_counter()
    ds = load_sample()
    print(f"[1/2] bundled sample: {len(ds)} photos of {len(ds.classes)} package classes")
    ds, report = run_ocr(ds, cache_dir=out / "cache" / "ocr", workers=workers)
    manifest = write_dataset(ds, out / "dataset")
    print(f"[2/2] OCR: {report.summary()}")
    print(dataset_summary(ds))
    example = next((s for s in ds.samples if len(s.tokens) >= 3), ds.samples[0])
    print(f"example {example.id} ({example.label}): {example.text!r}")
    print(f"dataset with OCR written to {manifest} in {time.perf_counter() - t0:.0f} s")
    return {"dataset": manifest}
