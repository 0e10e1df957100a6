"""Explanations per minute of the pipeline's explain stage on CPU, against the forward-pass limit.

Not a test. Explains a few GroceryStore package-class val photos exactly as
``prodlens run`` does (the pipeline's ``ExplainWorker``: a checkpoint loaded from disk,
``MultimodalLime`` with the pipeline's settings: early stopping, 100 SLIC superpixels,
OCR words from RapidOCR; the pipeline's default of at most 300 image masks, factorised
sampling for a photo with words), then times the model work the explainer could not
avoid: as many image-encoder and text-encoder passes as it made (each distinct image
mask and word mask goes through its encoder once), on the unperturbed photo at the same
resolution and batch size, plus the fusion head on as many feature rows as the
surrogate had; no masking, segmentation, sampling or surrogate work. The ratio
``encoder-pass seconds / explain seconds`` says how close the explainer gets to "only
run the model" (1 = all its time is model time).

The model is a Feature Concatenation classifier (EfficientNet-Lite0 + MiniLM, the
pipeline's default) with an untrained, seeded head: the head's weights change which
features matter, not how much work an explanation is.

Usage::

    python bench/throughput.py                  # writes bench/results/throughput.json
    python bench/throughput.py --photos 1 --samples 64    # quicker smoke run
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import math
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

from _machine import cpu_name, git_state

DATASET = Path("/work/shared/datasets/GroceryStoreDataset/dataset")
#: one val photo of each of these package classes (the first in file order)
CLASSES = ("Arla-Standard-Milk", "Oatly-Oat-Milk", "God-Morgon-Apple-Juice", "Arla-Medium-Fat-Milk",
           "Oatly-Natural-Oatghurt", "Alpro-Fresh-Soy-Milk")
RESULTS = Path(__file__).parent / "results" / "throughput.json"
log = logging.getLogger("throughput")


def pick_photos(n: int) -> list[tuple[str, Path]]:
    """(class, path) of the first val photo of each of the first ``n`` classes."""
    out = []
    for name in CLASSES[:n]:
        found = sorted((DATASET / "val" / "Packages").glob(f"*/{name}/*.jpg"))
        if not found:
            raise SystemExit(f"{DATASET}: no val photo of {name}; point DATASET at the GroceryStore dataset folder")
        out.append((name, found[0]))
    return out


def _timed(fn):  # noqa: ANN001, ANN202
    w, c = time.perf_counter(), time.process_time()
    value = fn()
    return value, time.perf_counter() - w, time.process_time() - c


def forward_passes(clf, image, tokens, n_images: int, n_texts: int, n_rows: int, batch: int,
                   size: tuple[int, int]) -> tuple[float, float]:
    """Wall and CPU seconds of the model work the explainer cannot avoid: ``n_images``
    image-encoder passes of the unperturbed photo at ``size`` and ``n_texts`` text-encoder
    passes of its words (the distinct masks it sent through each encoder), then the fusion
    head on ``n_rows`` feature rows. A model without encode-once methods: ``n_rows``
    full forward passes."""
    from PIL import Image
    import numpy as np

    small = np.asarray(Image.fromarray(image).resize((size[1], size[0]), Image.BILINEAR))

    def chunks(n: int) -> list[int]:
        return [min(batch, n - i) for i in range(0, n, batch)]

    def run() -> None:
        if not hasattr(clf, "logits_from_features"):
            for k in chunks(n_rows):
                clf.predict_proba([small] * k, [list(tokens)] * k)
            return
        img = np.concatenate([clf.encode_images([small] * k) for k in chunks(n_images)]) if n_images else None
        txt = np.concatenate([clf.encode_texts([list(tokens)] * k) for k in chunks(n_texts)]) if n_texts else None
        if img is not None and txt is not None:  # every (image mask, word mask) row of the surrogate
            i = np.resize(np.arange(len(img)), n_rows)
            j = np.resize(np.arange(len(txt)), n_rows)
            clf.predict_from_features(img[i], txt[j])

    _, wall, cpu = _timed(run)
    return wall, cpu


def markdown(rows: list[dict], totals: dict) -> str:
    lines = ["| photo | words | surrogate rows | image / text encoder passes | explain s | encoder-pass s | ratio |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['class']} | {r['words']} | {r['n_model_rows']} | {r['n_image_encodes']} / {r['n_text_encodes']} | "
                     f"{r['explain_seconds']:.1f} | {r['forward_seconds']:.1f} | {r['ratio']:.2f} |")
    lines.append(f"| **all ({len(rows)})** | | | | {totals['explain_seconds']:.1f} | "
                 f"{totals['forward_seconds']:.1f} | **{totals['ratio']:.2f}** |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--photos", type=int, default=3, help=f"val photos, one per class (at most {len(CLASSES)})")
    ap.add_argument("--samples", type=int, default=300, help="most image masks per photo (default: the pipeline's 300)")
    ap.add_argument("--threads", type=int, default=2, help="torch threads")
    ap.add_argument("--out", type=Path, default=RESULTS)
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    load0 = os.getloadavg()

    import numpy as np
    import torch

    from prodlens.data.images import load_image
    from prodlens.data.types import ProductSample
    from prodlens.models.checkpoint import save_checkpoint
    from prodlens.models.classifier import build_classifier
    from prodlens.ocr import ocr_image
    from prodlens.ocr.rapid import RapidOcrEngine
    from prodlens.pipeline import ExplainWorker, WorkerSpec
    from prodlens.pipeline.config import ExplainConfig

    torch.set_num_threads(args.threads)
    photos = pick_photos(args.photos)
    engine = RapidOcrEngine(threads=args.threads)
    samples = [ProductSample(f"val/{p.stem}", p, name, "val", tuple(ocr_image(p, engine))) for name, p in photos]

    torch.manual_seed(0)
    clf = build_classifier("concat", list(CLASSES))
    tmp = Path(tempfile.mkdtemp(prefix="prodlens-throughput-"))
    ckpt = save_checkpoint(clf, tmp / "concat.pt")
    ecfg = ExplainConfig(max_samples=args.samples)
    worker = ExplainWorker(WorkerSpec(str(ckpt), ecfg.explainer(0), threads=args.threads))
    worker.classifier.predict_proba([load_image(photos[0][1])], [[]])  # warm-up, not timed

    rows = []
    for s in samples:
        out, wall, cpu = _timed(lambda s=s: worker(s))
        if not out.ok:
            raise SystemExit(f"explaining {s.image_path} failed: {out.error}")
        res = out.result
        cfg = res.explanations[0].config
        size = tuple(cfg["work_size"])
        f_wall, f_cpu = forward_passes(worker.classifier, load_image(s.image_path), s.tokens,
                                       int(res.stats.get("n_image_encodes") or 0), int(res.stats.get("n_text_encodes") or 0),
                                       res.stats["n_model_rows"], ecfg.batch_size, size)
        rows.append({
            "class": s.label, "photo": str(s.image_path), "words": len(s.tokens),
            "superpixels": res.explanations[0].n_superpixels, "work_size": list(size),
            "n_requested": res.stats["n_requested"], "n_model_rows": res.stats["n_model_rows"],
            "n_image_encodes": res.stats.get("n_image_encodes"), "n_text_encodes": res.stats.get("n_text_encodes"),
            "stopped_early": res.stopped_early,
            "explain_seconds": wall, "explain_cpu_seconds": cpu,
            "forward_seconds": f_wall, "forward_cpu_seconds": f_cpu, "ratio": f_wall / wall,
        })
        log.info("%s: explain %.1f s, %d forward passes %.1f s", s.label, wall, res.stats["n_model_rows"], f_wall)

    ex = sum(r["explain_seconds"] for r in rows)
    fw = sum(r["forward_seconds"] for r in rows)
    ex_cpu = sum(r["explain_cpu_seconds"] for r in rows)
    fw_cpu = sum(r["forward_cpu_seconds"] for r in rows)
    totals = {
        "photos": len(rows), "explain_seconds": ex, "forward_seconds": fw, "ratio": fw / ex,
        "explanations_per_minute": 60 * len(rows) / ex,
        "forward_pass_limit_per_minute": 60 * len(rows) / fw,
        "cpu_ratio": fw_cpu / ex_cpu,
        "explanations_per_cpu_minute": 60 * len(rows) / ex_cpu,
    }
    table = markdown(rows, totals)
    result = {
        "meta": {
            "command": "python bench/throughput.py " + " ".join(argv if argv is not None else sys.argv[1:]),
            "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
            "git": git_state(),
            "machine": f"{cpu_name()}, {os.cpu_count()} cores, torch threads {args.threads}, "
                       f"{platform.system()} {platform.release()}, Python {platform.python_version()}",
            "load_average_1_5_15_at_start": [round(x, 2) for x in load0],
            "load_average_1_5_15_at_end": [round(x, 2) for x in os.getloadavg()],
            "model": "concat (EfficientNet-Lite0 + MiniLM, 224 px), untrained seeded head",
            "explainer": f"pipeline ExplainWorker, {ecfg.explainer(0)!r}",
            "forward_pass_limit": "the encoder passes the explainer needed per photo (n_image_encodes image passes "
                                  "of the unperturbed photo at the work resolution, n_text_encodes text passes of "
                                  "its words, same batch size) + the fusion head on n_model_rows feature rows; no "
                                  "masking, segmentation, sampling or surrogate",
            "note": "the machine is shared: wall clock moves with other jobs' load; the CPU-time ratio is steadier",
        },
        "cpu": {"rows": rows, "totals": totals},
        "gpu": None,
        "gpu_reason": "no GPU lent this session",
        "markdown": table,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    print(table)
    print(f"\n{totals['explanations_per_minute']:.2f} explanations/min on CPU; forward-pass limit "
          f"{totals['forward_pass_limit_per_minute']:.2f}/min; ratio {totals['ratio']:.2f} "
          f"(CPU time {totals['cpu_ratio']:.2f}); load {result['meta']['load_average_1_5_15_at_start']} -> "
          f"{result['meta']['load_average_1_5_15_at_end']}; wrote {args.out}")
    return 0 if math.isfinite(totals["ratio"]) else 1


if __name__ == "__main__":
    sys.exit(main())
