"""Amortised explainer vs LIME: agreement, deletion / insertion, model calls (CPU).

Not a test. Two models trained as ``prodlens demo`` does (fast mode, frozen EfficientNet-Lite0
+ MiniLM, the bundled GroceryStore sample's 100 train photos, RapidOCR words, ``"sv"`` filter;
the same checkpoints and OCR cache as bench/explain_speed.py): **image** (image-only head,
explained over its superpixels alone) and **concat** (Feature Concatenation fusion, superpixels
+ OCR words). Parts (``--part``):

* ``references``: per held-out val photo (``--photos``, val photos with >= 3 OCR words, round
  robin over classes; never used in fitting) and model: a 10,000-row plain-LIME reference, two
  independent 2000-row plain runs (the noise floor) and the factorised / early-stopping default
  (``MultimodalLime(seed=1, quality=False)``), all on one SLIC segmentation. Cached under
  ``runs/bench-amortised/refs`` (keyed by photo, model checkpoint hash, rows and seeds), so a
  rerun costs nothing. The concat model runs first, the image model replays its image features
  (one frozen backbone: ``SharedImageFeatures``, ``SharedImageRows``), so their seconds are not
  timings.
* ``amortised``: ``AmortisedExplainer.fit`` on the train photos (their masks cached on disk),
  then explains the held-out photos; agreement with the reference (top-10 overlap, Spearman,
  sign agreement on the reference's top 10) next to the noise floor and the default; deletion
  / insertion AUC (``QualityCheck.curves``, the same steps and fill) of amortised vs
  reference vs a 2000-row run on the same photos; cost: fitting seconds and model rows, seconds
  and model rows per explained photo, break-even photo count against 2000-row LIME.
* ``pipeline``: ``prodlens run`` over the sample's whole val split with ``[explain] method =
  "amortised"``: wall seconds and load average (re-time it on an idle machine).

Writes ``bench/results/amortised.json`` (command, date, machine, git state, load average,
``machine_busy``) and prints Markdown tables.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import sys
import time
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from _machine import cpu_name, git_state  # noqa: E402

RESULTS = HERE / "results" / "amortised.json"
RUNS = HERE.parent / "runs" / "bench-speed"  # the checkpoints bench/explain_speed.py trains (shared)
CACHE = HERE.parent / "runs" / "bench-amortised"
OCR_CACHE = Path("/work/cache/ocr-sample")
MODELS = ("concat", "image")  # concat first: the image model replays its image features
log = logging.getLogger("bench.amortised")


def setup() -> tuple:
    import explain_speed as es

    return es.train_models(threads=2)


def held_out(ds, n: int) -> list:
    import explanation_quality as eq

    return eq.pick_photos(ds, n, min_words=3)


def _key(*parts: object) -> str:
    return hashlib.sha256(json.dumps(parts, default=str).encode()).hexdigest()[:16]


def references(sample, models: dict, info: dict, args: argparse.Namespace) -> dict:
    """Reference, floor and default weights per model for one photo (cached on disk)."""
    import explain_speed as es
    import explanation_quality as eq
    from prodlens.data.images import load_image
    from prodlens.explain import MultimodalLime, SlicSegmenter

    key = _key(sample.id, [info[m]["sha256"] for m in MODELS], args.reference, args.plain, 1)
    path = CACHE / "refs" / f"{sample.id.replace('/', '_')}_{key}.npz"
    if path.is_file():
        with np.load(path, allow_pickle=True) as z:
            return z["doc"].item()
    image = load_image(sample.image_path)
    segments = SlicSegmenter(n_segments=100)(image)
    S = int(segments.max()) + 1
    runs = {"reference": (args.reference, 10_001), "plain-A": (args.plain, 20_001), "plain-B": (args.plain, 30_001),
            "default": (None, 1)}
    out: dict = {"segments": segments, "n_superpixels": S, "tokens": tuple(sample.tokens), "models": {}}
    targets: dict[str, int] = {}
    for name, (n, seed) in runs.items():
        store: dict = {}
        for i, mname in enumerate(MODELS):
            shared = eq.SharedImageFeatures(models[mname], store, replay=i > 0)
            tokens = tuple(sample.tokens) if mname == "concat" else ()
            if n is None:
                lime = MultimodalLime(seed=seed, quality=False, progress=False)
            else:
                lime = MultimodalLime(n_samples=n, sampler=es.SharedImageRows(S, seed, seed + 1), early_stop=False,
                                      quality=False, seed=seed, progress=False)
            t0 = time.perf_counter()
            res = lime.explain(shared, image=image, tokens=tokens, segments=segments, sample_id=sample.id,
                               targets=[targets[mname]] if mname in targets else [])
            targets.setdefault(mname, res.predicted)
            e = res.for_target(targets[mname])
            out["models"].setdefault(mname, {"target": targets[mname], "target_name": e.target_name,
                                             "p_target": float(e.prediction)})[name] = {
                "weights": e.weights, "rows": int(res.n_samples), "image_passes": shared.image_passes,
                "text_passes": shared.text_passes if mname == "concat" else 0,
                "image_computed": shared.image_computed, "seconds": round(time.perf_counter() - t0, 2)}
            log.info("%s %s %s: %d rows, %d image passes (%d computed), %.0f s", sample.id, mname, name,
                     res.n_samples, shared.image_passes, shared.image_computed, time.perf_counter() - t0)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.npz")
    np.savez(tmp, doc=np.array(out, dtype=object))
    tmp.replace(path)
    return out


def run_meta(argv: list[str]) -> dict:
    return {"command": "python bench/amortised.py " + " ".join(argv), "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "machine": {"cpu": cpu_name(), "cores": os.cpu_count()}, "git": git_state(HERE.parent),
            "load_average_start": [round(v, 2) for v in os.getloadavg()], "machine_busy": True}


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--part", choices=("references", "amortised", "pipeline", "all"), default="all")
    ap.add_argument("--photos", type=int, default=5, help="held-out val photos per model")
    ap.add_argument("--reference", type=int, default=10000)
    ap.add_argument("--plain", type=int, default=2000)
    ap.add_argument("--out", type=Path, default=RESULTS)
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("prodlens").setLevel(logging.ERROR)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    ds, models, setup_info = setup()
    photos = held_out(ds, args.photos)
    if args.part in ("references", "all"):
        for s in tqdm(photos, desc="references", unit="photo"):
            references(s, models, setup_info["models"], args)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
