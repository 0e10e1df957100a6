"""Factorised vs joint multimodal sampling on real GroceryStore photos, real OCR, trained fusion heads.

Not a test. Trains small ``concat`` and ``embracenet`` heads (fast CPU mode: frozen
EfficientNet-Lite0 at ``--input-size`` px + MiniLM, cached features, ``--per-class`` photos of each of the 31
package classes from train, 2 views), then explains ``--photos`` val photos with:

* ``joint-2000`` (seed 0): plain LIME, 2000 independent Bernoulli rows, one fit: the reference;
* ``joint-2000 seed 1``: the same with another seed — the **noise floor**;
* ``default (orthogonal + early stop)``: prodlens' default before factorised sampling
  (``sampler="orthogonal"`` + early stopping, cap 2000);
* for every budget ``B`` in ``--budgets``: ``joint-B`` (orthogonal rows, fixed B) and
  ``factorised-B`` (``FactorisedSampler(n_image=B, n_text=64)``: B image masks crossed
  with min(64, 2**T) text masks), i.e. equal image-encoder passes;

and reports per method: seconds and encoder passes (image + text), and against the
reference: top-10 overlap (by |weight|), Spearman over all weights and over the OCR
tokens' weights, the surrogate's weighted R^2, and a deletion-curve AUC (switch off the
explanation's top-k positive features, k = 0..K, and average the model's probability of
the explained class; lower = the explanation found what the model relies on).

Seconds are measured on ``concat``; ``embracenet`` shares its (frozen, identical)
encoders, so its runs replay the image/text features ``concat``'s runs computed and
report encoder passes and fidelity only.

Writes ``bench/results/factorised_sampling.json`` and prints Markdown tables::

    cd /work/wt-factor && PYTHONPATH=$PWD/src HF_HUB_OFFLINE=1 /work/main/.venv/bin/python \\
        bench/factorised_sampling.py --photos 5
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import json
import logging
import os
import platform
import shlex
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
from _machine import cpu_name, spread_per_class
from explain_speed import spearman, top_overlap

HERE = Path(__file__).resolve().parent
DATA = Path("/work/shared/datasets/GroceryStoreDataset/dataset")
RESULTS = HERE / "results" / "factorised_sampling.json"
RUNS = HERE.parent / "runs" / "bench-factorised"  # git-ignored: trained heads
FEATURES = Path("~/.cache/prodlens/features").expanduser()
MODELS = ("concat", "embracenet")
N_TEXT = 64
DELETION_KS = (0, 1, 2, 3, 5, 8, 10, 15, 20)
log = logging.getLogger("bench.factorised_sampling")


# -- data and models ----------------------------------------------------------------------
def select_subset(data: Path, per_class: int, n_val_classes: int):
    """(train subset, val subset) of the package classes, spread evenly in id order.

    Train: ``per_class`` photos of every package class; val: one photo of each of
    ``n_val_classes`` classes spread over the sorted class names.
    """
    from prodlens.data.grocery import import_grocery_store, package_classes

    full = import_grocery_store(data, ("train", "val"))
    ds = full.with_classes(package_classes(full))
    train, val = ds.split("train"), ds.split("val")

    labels = sorted({s.label for s in val.samples})[:: max(1, len(ds.classes) // n_val_classes)][:n_val_classes]
    val_s = spread_per_class([s for s in val.samples if s.label in labels], 1)
    return replace(train, samples=spread_per_class(train.samples, per_class)), replace(val, samples=val_s)


def with_ocr(ds):
    """The samples with RapidOCR words (prodlens' runner; cached in ~/.cache/prodlens/ocr)."""
    from prodlens.ocr.runner import run_ocr

    out, rep = run_ocr(ds, workers=1, progress=False)
    log.info("OCR: %s", rep.summary())
    return out


def trained(name: str, train, args: argparse.Namespace):
    """A fast-trained fusion head (reused from runs/bench-factorised/ when there)."""
    from prodlens.models.checkpoint import load_classifier, save_checkpoint
    from prodlens.train import TrainConfig, Trainer

    path = RUNS / f"{name}_pc{args.per_class}_v{args.views}_px{args.input_size}.pt"
    if not path.is_file():
        t0 = time.perf_counter()
        tr = Trainer(name, backbone_cfg={"input_size": args.input_size}, config=TrainConfig(mode="fast", views=args.views, seed=0, feature_cache=str(FEATURES)),
                     progress=False).fit(train)
        save_checkpoint(tr.classifier_, path, metrics=tr.metrics_, train_config=tr.config_.to_dict())
        log.info("trained %s in %.0fs: holdout top-1 %.3f", name, time.perf_counter() - t0, tr.metrics_["val_top1"])
    return load_classifier(path)


class SharedEncoders:
    """A fused classifier whose encoder outputs are recorded (``replay=False``) or looked up
    (``replay=True``) by content hash, so a second head on the same frozen backbones reuses
    the first one's encoder passes. Counts the passes it really computes."""

    def __init__(self, clf, store: dict, replay: bool) -> None:
        self.clf, self.store, self.replay = clf, store, replay
        self.classes, self.preprocess = clf.classes, clf.preprocess
        self.image_passes = self.text_passes = 0

    def _encode(self, items, key, encode, counter: str) -> np.ndarray:
        keys = [key(it) for it in items]
        todo = [i for i, k in enumerate(keys) if not (self.replay and k in self.store)]
        if todo:
            feats = encode([items[i] for i in todo])
            for i, f in zip(todo, feats):
                self.store[keys[i]] = f
            setattr(self, counter, getattr(self, counter) + len(todo))
        return np.stack([self.store[k] for k in keys])

    def encode_images(self, images) -> np.ndarray:
        return self._encode(list(images), lambda im: "i" + hashlib.blake2b(np.ascontiguousarray(im).tobytes(), digest_size=16).hexdigest(),
                            self.clf.encode_images, "image_passes")

    def encode_texts(self, token_lists) -> np.ndarray:
        return self._encode(list(token_lists), lambda ts: "t" + "\x00".join(sorted(f"{t.text}@{t.box}" for t in ts)),
                            self.clf.encode_texts, "text_passes")

    def predict_from_features(self, img, txt) -> np.ndarray:
        return self.clf.predict_from_features(img, txt)

    def predict_proba(self, images, token_lists) -> np.ndarray:
        return self.predict_from_features(self.encode_images(images), self.encode_texts(token_lists))


# -- one photo ------------------------------------------------------------------------------
def methods(budgets: list[int], reference: int = 2000) -> dict[str, dict]:
    """Explainer settings per method name; the first is the reference."""
    from prodlens.explain import FactorisedSampler

    out = {
        f"joint-{reference}": {"max_samples": reference, "sampler": "bernoulli", "early_stop": False, "seed": 0},
        f"joint-{reference} seed 1": {"max_samples": reference, "sampler": "bernoulli", "early_stop": False, "seed": 1},
        "default (orthogonal + early stop)": {"max_samples": reference, "sampler": "orthogonal", "seed": 0},
    }
    for b in budgets:
        out[f"joint-{b}"] = {"max_samples": b, "sampler": "orthogonal", "early_stop": False, "seed": 0}
        out[f"factorised-{b}"] = {"sampler": FactorisedSampler(n_image=b, n_text=N_TEXT), "seed": 0}
    return out


def deletion_auc(model, x, weights: np.ndarray, target: int) -> tuple[float, list[float]]:
    """Mean probability of ``target`` after switching off the top-k positive features, k in DELETION_KS."""
    order = [int(i) for i in np.argsort(-weights, kind="stable") if weights[i] > 0]
    rows = np.ones((len(DELETION_KS), x.n_features), bool)
    for r, k in enumerate(DELETION_KS):
        rows[r, order[:k]] = False
    batch = x.to_inputs(rows)
    p = model.predict_proba(batch.images, batch.token_lists)[:, target]
    return float(np.mean(p)), [round(float(v), 4) for v in p]


def explain_photo(sample, models: dict, args: argparse.Namespace) -> dict:
    """Every method on one photo, for every model; fidelity against that model's joint-2000."""
    from prodlens.data.images import load_image
    from prodlens.explain import MultimodalInput, MultimodalLime, SlicSegmenter
    from prodlens.explain.lime import resolution_work_size

    image = load_image(sample.image_path)
    segments = SlicSegmenter(n_segments=args.segments)(image)
    tokens = tuple(sample.tokens)
    store: dict = {}
    out: dict = {"sample": sample.id, "label": sample.label, "n_superpixels": int(segments.max()) + 1,
                 "n_tokens": len(tokens), "tokens": [t.text for t in tokens], "models": {}}
    for mi, (mname, clf) in enumerate(models.items()):
        rows: dict[str, dict] = {}
        weights: dict[str, np.ndarray] = {}
        target = None
        for name, cfg in methods(args.budgets, args.reference).items():
            model = SharedEncoders(clf, store, replay=mi > 0)
            lime = MultimodalLime(**cfg, batch_size=args.batch_size, progress=False)
            t0, c0 = time.perf_counter(), time.process_time()
            res = lime.explain(model, image=image, tokens=tokens, segments=segments, sample_id=sample.id)
            sec, cpu = time.perf_counter() - t0, time.process_time() - c0
            if target is None:
                target, p_target = res.predicted, float(res.probabilities[res.predicted])
            e = next(e for e in res.explanations if e.target == target)
            weights[name] = e.weights
            rows[name] = {
                "rows": res.n_samples, "image_passes": model.image_passes, "text_passes": model.text_passes,
                "encoder_passes": model.image_passes + model.text_passes, "r2": round(float(e.score), 4),
                **({"seconds": round(sec, 2), "cpu_seconds": round(cpu, 2)} if mi == 0 else {}),
            }
            log.info("%s %s %s: %s", sample.id, mname, name, rows[name])
        deleter = SharedEncoders(clf, store, replay=True)
        x = MultimodalInput(image, segments, tokens, size=resolution_work_size("auto", deleter, image.shape))
        S = x.n_superpixels
        ref = weights[f"joint-{args.reference}"]
        for name, r in rows.items():
            w = weights[name]
            r["top10_overlap"] = top_overlap(w, ref, 10)
            r["spearman"] = round(spearman(w, ref), 4)
            r["spearman_text"] = round(spearman(w[S:], ref[S:]), 4) if len(tokens) >= 3 else None
            r["deletion_auc"], r["deletion_curve"] = deletion_auc(deleter, x, w, target)
            r["deletion_auc"] = round(r["deletion_auc"], 4)
        out["models"][mname] = {"predicted": clf.classes[target], "p_predicted": round(p_target, 4), "methods": rows}
    return out


# -- summary --------------------------------------------------------------------------------
def summarise(photos: list[dict], names: list[str]) -> dict:
    """Mean of every number per (model, method) over the photos."""
    summary: dict = {}
    for mname in photos[0]["models"]:
        summary[mname] = {}
        for name in names:
            rs = [p["models"][mname]["methods"][name] for p in photos]
            s = {}
            for key in ("rows", "image_passes", "text_passes", "encoder_passes", "seconds", "cpu_seconds", "r2",
                        "top10_overlap", "spearman", "spearman_text", "deletion_auc"):
                vals = [r[key] for r in rs if r.get(key) is not None and np.isfinite(r[key])]
                if vals:
                    s[key] = round(float(np.mean(vals)), 4)
            summary[mname][name] = s
    return summary


def markdown(summary: dict) -> str:
    lines = []
    for mname, rows in summary.items():
        lines += [f"\n**{mname}** (means over photos; fidelity vs the joint reference, seed 0)\n",
                  "| method | rows | image + text passes | seconds | top-10 overlap | Spearman | Spearman (words) | R^2 | deletion AUC |",
                  "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
        for name, s in rows.items():
            sec = f"{s['seconds']:.1f}" if "seconds" in s else "(shared)"
            spt = f"{s['spearman_text']:.3f}" if "spearman_text" in s else "-"
            lines.append(f"| {name} | {s['rows']:.0f} | {s['image_passes']:.0f} + {s['text_passes']:.0f} | {sec} | "
                         f"{s['top10_overlap']:.1f}/10 | {s['spearman']:.3f} | {spt} | {s['r2']:.3f} | {s['deletion_auc']:.3f} |")
    return "\n".join(lines)


def _git_commit() -> str | None:
    try:
        return subprocess.run(["git", "rev-parse", "HEAD"], cwd=HERE, capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=DATA)
    ap.add_argument("--per-class", type=int, default=6, help="train photos per package class for the heads")
    ap.add_argument("--views", type=int, default=2, help="augmented views per train photo")
    ap.add_argument("--val-classes", type=int, default=10, help="val classes to draw explained photos from")
    ap.add_argument("--photos", type=int, default=5, help="val photos to explain (those with >= 1 OCR word)")
    ap.add_argument("--budgets", type=int, nargs="+", default=[256, 512], help="image-encoder budgets B")
    ap.add_argument("--models", nargs="+", default=list(MODELS), choices=MODELS)
    ap.add_argument("--reference", type=int, default=2000, help="rows of the joint reference (and its seed-1 twin)")
    ap.add_argument("--segments", type=int, default=100)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--input-size", type=int, default=128,
                    help="image backbone input side (128 keeps two 2000-row references per photo within CPU minutes)")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (2 threads on a loaded 2-core box is slower)")
    ap.add_argument("--out", type=Path, default=RESULTS)
    ap.add_argument("--note", default="")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("prodlens").setLevel(logging.WARNING)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch

    torch.set_num_threads(args.threads)
    load0 = os.getloadavg()
    t_start = time.perf_counter()
    train, val = select_subset(args.data, args.per_class, args.val_classes)
    ocr = with_ocr(replace(train, samples=list(val.samples) + list(train.samples)))
    val_s, train_s = ocr.samples[: len(val.samples)], ocr.samples[len(val.samples):]
    train = replace(train, samples=train_s)
    photos_s = [s for s in val_s if s.tokens][: args.photos]
    models = {m: trained(m, train, args) for m in args.models}
    t_train = time.perf_counter() - t_start
    photos = []
    for s in photos_s:
        photos.append(explain_photo(s, models, args))
    names = list(methods(args.budgets, args.reference))
    summary = summarise(photos, names)
    table = markdown(summary)
    load1 = os.getloadavg()
    doc = {
        "command": shlex.join(["python", "bench/factorised_sampling.py", *(argv if argv is not None else sys.argv[1:])]),
        "date_utc": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "git_commit": _git_commit(),
        "setup": {
            "dataset": "GroceryStoreDataset package classes (31); heads fast-trained on "
                       f"{len(train.samples)} train photos ({args.per_class}/class, {args.views} views, frozen "
                       f"efficientnet_lite0 at {args.input_size} px + minilm), explained photos from val",
            "ocr": "RapidOCR 1.4.4 words, min score 0.5 (prodlens.ocr.runner, cached)",
            "segments": args.segments, "budgets": args.budgets, "n_text": N_TEXT, "batch_size": args.batch_size,
            "deletion_ks": list(DELETION_KS),
            "train_holdout_top1": {m: round(float(c.metrics.get("val_top1", float("nan"))), 4) for m, c in models.items()},
        },
        "machine": {"cpu": cpu_name(), "cpu_count": os.cpu_count(), "torch_threads": args.threads,
                    "platform": platform.platform(), "load_average_before": [round(v, 2) for v in load0],
                    "load_average_after": [round(v, 2) for v in load1], "device": "cpu"},
        "seconds_total": round(time.perf_counter() - t_start, 1),
        "seconds_ocr_and_training": round(t_train, 1),
        "summary": summary,
        "photos": photos,
        "table_md": table,
        "note": args.note,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(doc, indent=1) + "\n", encoding="utf-8")
    print(table)
    print(f"\nload average before {load0}, after {load1}; wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
