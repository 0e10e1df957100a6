"""`prodlens ocr` (offline RapidOCR over a dataset) and `prodlens import-vision` (Google Vision JSON)."""

from __future__ import annotations

import argparse

from prodlens.cli._common import add_parser, positive_int
from prodlens.data.manifest import Dataset, read_dataset, write_dataset
from prodlens.data.vision_json import attach_vision_json
from prodlens.errors import BadInputError
from prodlens.ocr.rapid import MAX_SIDE, RapidOcrEngine
from prodlens.ocr.runner import DEFAULT_MIN_SCORE, run_ocr
from prodlens.ocr.scripts import PRESETS, ScriptFilter, filter_dataset


def _read(args: argparse.Namespace) -> Dataset:
    """Read the dataset; refuse to rewrite it in place when that would drop unreadable lines."""
    ds = read_dataset(args.dataset)
    if ds.skipped and not args.out:
        _, why = ds.skipped[0]
        raise BadInputError(
            args.dataset,
            f"{len(ds.skipped)} manifest line(s) could not be read (first: {why}) and would be lost "
            "if the manifest were rewritten",
            "fix them, or pass --out DIR to write a cleaned copy",
        )
    return ds


def _ocr(args: argparse.Namespace) -> int:
    ds = _read(args)
    engine = RapidOcrEngine(upscale=args.upscale, threads=args.threads, max_side=args.max_side)
    ds, report = run_ocr(
        ds, engine, cache_dir=args.cache_dir, workers=args.workers, min_score=args.min_score,
        script_filter=args.scripts, progress=not args.no_progress,
    )
    path = write_dataset(ds, args.out or ds.root or args.dataset)
    print(report.summary())
    print(f"wrote {path}")
    return 0


def _import_vision(args: argparse.Namespace) -> int:
    ds = _read(args)
    ds, report = attach_vision_json(ds, args.json_dir, progress=not args.no_progress)
    ds, filtered = filter_dataset(ds, args.scripts)
    path = write_dataset(ds, args.out or ds.root or args.dataset)
    print(report.summary())
    print(f"  {filtered.summary()}")
    print(f"wrote {path}")
    return 0


def _positive_float(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {text}")
    return value


def _score(text: str) -> float:
    value = float(text)
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"must be between 0 and 1, got {text}")
    return value


def _preset(text: str) -> str:
    try:
        ScriptFilter.from_preset(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None
    return text


_SCRIPTS_HELP = (
    "drop OCR tokens whose characters are mostly outside these scripts: a preset "
    f"({', '.join(PRESETS)}) or a comma-separated list; 'all' keeps everything "
    "(default: the dataset's language in classes.json, else all)"
)


def register(sub: argparse._SubParsersAction) -> None:
    p = add_parser(
        sub, "ocr",
        "Read each image's text with offline RapidOCR into the manifest (cached by content; re-run to resume).",
        "prodlens ocr work/grocery --workers 2",
    )
    p.add_argument("dataset", help="dataset folder (with manifest.jsonl)")
    p.add_argument("--workers", type=positive_int, default=1, help="OCR processes (default 1)")
    p.add_argument("--threads", type=positive_int, default=None,
                   help="onnxruntime threads per process (default: all cores, or cores/workers)")
    p.add_argument("--upscale", type=_positive_float, default=1.0,
                   help="resize factor before OCR; 2 helps small text (default 1.0)")
    p.add_argument("--max-side", type=positive_int, default=MAX_SIDE,
                   help=f"read larger photos from a copy with this longer side in pixels (default {MAX_SIDE})")
    p.add_argument("--cache-dir", default=None,
                   help="OCR cache root (default $PRODLENS_CACHE/ocr or ~/.cache/prodlens/ocr)")
    p.add_argument("--min-score", type=_score, default=DEFAULT_MIN_SCORE,
                   help=f"drop lines read with lower confidence (default {DEFAULT_MIN_SCORE})")
    p.add_argument("--scripts", type=_preset, default=None, metavar="PRESET", help=_SCRIPTS_HELP)
    p.add_argument("--out", default=None, help="write the dataset here instead of updating it in place")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=_ocr)

    p = add_parser(
        sub, "import-vision",
        "Attach Google Cloud Vision OCR JSON (one file per image, named after it) to a dataset's manifest.",
        "prodlens import-vision work/grocery vision_json/",
    )
    p.add_argument("dataset", help="dataset folder (with manifest.jsonl)")
    p.add_argument("json_dir", help="folder of Vision API JSON responses, e.g. photo_001.json for photo_001.jpg")
    p.add_argument("--scripts", type=_preset, default=None, metavar="PRESET", help=_SCRIPTS_HELP)
    p.add_argument("--out", default=None, help="write the dataset here instead of updating it in place")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=_import_vision)
