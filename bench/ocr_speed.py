"""Benchmark offline OCR on the GroceryStoreDataset *Packages* train images (864 photos).

Runs :func:`prodlens.ocr.run_ocr` with :class:`prodlens.ocr.RapidOcrEngine`, by default
without the cache (every image is read again), and reports words/lines per image,
engine seconds per image, throughput and images without any text. Writes JSON to
``bench/results/ocr.json`` and prints a Markdown table.

Example::

    python bench/ocr_speed.py                       # all 864 images, no cache
    python bench/ocr_speed.py --limit 100           # an evenly spread subset
    python bench/ocr_speed.py --workers 2 --upscale 2
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import shlex
import sys
import time
from datetime import datetime, timezone
from importlib.metadata import version
from pathlib import Path

import numpy as np
from _machine import cpu_name, git_state

from prodlens.data.manifest import Dataset
from prodlens.data.types import ClassList, ProductSample
from prodlens.ocr import RapidOcrEngine, run_ocr

DEFAULT_ROOT = Path("/work/shared/datasets/GroceryStoreDataset/dataset")
DEFAULT_OUT = Path(__file__).resolve().parent / "results" / "ocr.json"


def package_images(root: Path, limit: int | None = None) -> tuple[Dataset, int]:
    """The Packages images listed in ``root/train.txt`` (``limit``: an evenly spread subset),
    and how many there are in all."""
    listing = root / "train.txt"
    if not listing.is_file():
        sys.exit(f"{listing}: not found; pass --root, the GroceryStoreDataset/dataset folder")
    rel = [line.split(",")[0].strip() for line in listing.read_text().splitlines() if line.strip()]
    rel = [r for r in rel if "/Packages/" in r]
    total = len(rel)
    if limit is not None and limit < len(rel):
        rel = [rel[i] for i in np.linspace(0, len(rel) - 1, limit).round().astype(int)]
    samples = [ProductSample(r, root / r, Path(r).parent.name) for r in rel]
    classes = ClassList.from_names(sorted({s.label for s in samples if s.label}))
    return Dataset(samples, classes, root), total


def machine() -> dict:
    cpu = cpu_name()
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "load_average_1m_before": round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None,
        "python": platform.python_version(),
        "rapidocr_onnxruntime": version("rapidocr_onnxruntime"),
        "onnxruntime": version("onnxruntime"),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--root", type=Path, default=DEFAULT_ROOT, help=f"GroceryStoreDataset/dataset (default {DEFAULT_ROOT})")
    p.add_argument("--limit", type=int, default=None, help="only this many images, spread evenly over the list")
    p.add_argument("--workers", type=int, default=1)
    p.add_argument("--threads", type=int, default=None, help="onnxruntime threads per worker")
    p.add_argument("--upscale", type=float, default=1.0)
    p.add_argument("--min-score", type=float, default=0.5)
    p.add_argument("--use-cache", action="store_true", help="read/write the OCR cache (default: always run OCR)")
    p.add_argument("--cache-dir", default=None)
    p.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"JSON result file (default {DEFAULT_OUT})")
    p.add_argument("--note", default="", help="free text stored with the result (e.g. 'CPU shared with another job')")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)

    ds, total = package_images(args.root, args.limit)
    engine = RapidOcrEngine(upscale=args.upscale, threads=args.threads)
    env = machine()
    started = datetime.now(timezone.utc)
    t0 = time.perf_counter()
    out, report = run_ocr(
        ds, engine, cache_dir=args.cache_dir, use_cache=args.use_cache, workers=args.workers, min_score=args.min_score
    )
    wall = time.perf_counter() - t0
    words = [len(s.tokens) for s in out.samples if s.ocr_tokens is not None]
    result = {
        "command": "python " + " ".join(shlex.quote(a) for a in [sys.argv[0], *(argv if argv is not None else sys.argv[1:])]),
        "git": git_state(),
        "date_utc": started.isoformat(timespec="seconds"),
        "machine": env,
        "engine": report.engine,
        "workers": args.workers,
        "threads": args.threads,
        "use_cache": args.use_cache,
        "min_score": args.min_score,
        "images": report.images,
        "packages_train_images": total,
        "from_cache": report.from_cache,
        "computed": report.computed,
        "skipped": len(report.skipped),
        "images_without_text": report.no_text,
        "words_per_image": round(report.words_per_image, 2),
        "words_per_image_median": float(np.median(words)) if words else 0.0,
        "lines_per_image": round(report.lines_per_image, 2),
        "engine_seconds_per_image": round(report.seconds_per_image, 4) if report.computed else None,
        "wall_seconds": round(wall, 2),
        "wall_seconds_per_image": round(wall / max(report.images, 1), 4),
        "note": args.note,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")

    rows = [
        ("images (computed / from cache / skipped)", f"{report.images} ({report.computed} / {report.from_cache} / {len(report.skipped)})"),
        ("images without text", f"{report.no_text} ({report.no_text / max(report.read, 1):.1%})"),
        ("words / image (mean, median)", f"{report.words_per_image:.2f}, {result['words_per_image_median']:.1f}"),
        ("lines / image", f"{report.lines_per_image:.2f}"),
        ("engine s / image", f"{report.seconds_per_image:.3f}" if report.computed else "n/a (all cached)"),
        ("wall s / image (incl. loading, hashing)", f"{result['wall_seconds_per_image']:.3f}"),
        ("wall s total", f"{wall:.1f}"),
    ]
    print(f"## OCR speed: {report.engine}\n")
    print(f"- command: `{result['command']}`")
    print(f"- date: {result['date_utc']}")
    print(f"- machine: {env['cpu']}, {env['cores']} cores, load average {env['load_average_1m_before']} before the run; "
          f"onnxruntime {env['onnxruntime']}, workers {args.workers}, threads {args.threads or 'default'}")
    if args.note:
        print(f"- note: {args.note}")
    print("\n| metric | value |\n|---|---|")
    for k, v in rows:
        print(f"| {k} | {v} |")
    print(f"\nwrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
