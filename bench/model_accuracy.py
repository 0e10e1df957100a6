"""Accuracy of the five recognition models on GroceryStoreDataset (fast CPU mode).

Trains image, text, score_fusion, concat and embracenet heads on frozen backbones
(cached features, augmented views) for two label sets:

* ``fine81``: all 81 fine-grained classes;
* ``packages31``: the 31 packaged-product classes (the ones with text).

Early stopping uses a stratified 10% hold-out of *train* (``--select train-fold``,
default; the last photos of each class in id order, since consecutive photos are
near-duplicates), so the reported val numbers are untouched by model selection; with
``--select val`` the val split itself is used for early stopping (as the paper's
protocol allows) and the numbers are slightly optimistic. The test split is never read.

``--train-blocks N`` also trains the image backbone's last N blocks (on cached trunk
maps); ``--ensemble A.pt B.pt`` evaluates trained checkpoints as one model (mean
probability) without training.

Writes ``bench/results/model_accuracy.json`` and prints a Markdown table.

    HF_HUB_OFFLINE=1 .venv/bin/python bench/model_accuracy.py \
        --data ../shared/datasets/GroceryStoreDataset/dataset --views 8 --runs runs/model_accuracy
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import shlex
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from prodlens.data.grocery import import_grocery_store, package_classes
from prodlens.data.manifest import Dataset
from prodlens.models.checkpoint import save_checkpoint
from prodlens.ocr.cache import OcrCache, file_sha256
from prodlens.ocr.words import lines_to_words
from prodlens.train import AugmentConfig, TrainConfig, Trainer, evaluate_probs, image_features, text_features
from prodlens.train.features import HFLIP, PLAIN, FeatureCache, text_view

log = logging.getLogger("bench.model_accuracy")
MODELS = ("image", "text", "score_fusion", "concat", "embracenet")
ENGINE_KEY = "rapidocr_onnxruntime-1.4.4_x1.0"


def attach_ocr(ds: Dataset, cache_root: Path, min_score: float) -> tuple[Dataset, int]:
    cache = OcrCache(cache_root, ENGINE_KEY)
    out, missing = [], 0
    for s in ds.samples:
        hit = cache.get(file_sha256(s.image_path))
        if hit is None:
            missing += 1
            out.append(s)
        else:
            out.append(s.with_tokens(lines_to_words(hit["lines"], min_score=min_score)))
    return replace(ds, samples=out), missing


def val_probs(clf, val: Dataset, cache: FeatureCache, aug: AugmentConfig, seed: int, tta: bool) -> np.ndarray:
    """Class probabilities on val from cached features (same numbers as clf.predict_proba)."""
    views = (PLAIN, HFLIP) if tta else (PLAIN,)
    txt = None
    if clf.text_backbone is not None:
        txt = text_features(clf.text_backbone, [text_view(s, 0, aug, seed) for s in val.samples], cache=cache, progress=False)
    if clf.image_backbone is None:
        return clf.predict_from_features(None, txt)
    img = image_features(clf.image_backbone, val.samples, views, cache=cache, aug=aug, seed=seed, progress=False)
    return np.mean([clf.predict_from_features(img[:, j], txt) for j in range(len(views))], axis=0)


def load_setting(args: argparse.Namespace, setting: str | None, n_classes: int = 0) -> tuple[str, Dataset, Dataset, int]:
    """(label set, train, val, images without OCR), OCR attached from the cache.

    ``setting=None`` picks the label set a model with ``n_classes`` classes was trained on.
    """
    full = import_grocery_store(args.data, ("train", "val"))
    full, missing = attach_ocr(full, Path(args.ocr_cache), args.min_ocr_score)
    if missing:
        log.warning("%d images have no OCR cache entry; they get empty text", missing)
    if setting is None:
        setting = "fine81" if n_classes == len(full.classes.names) else "packages31"
    ds = full if setting == "fine81" else full.with_classes(package_classes(full))
    return setting, ds.split("train"), ds.split("val"), missing


def score_row(probs_for, val: Dataset, classes: list[str]) -> dict:
    """``top1``/``top5`` of ``probs_for(tta=False)`` and ``top1_tta``/``top5_tta`` of ``probs_for(tta=True)``."""
    y = [classes.index(s.label) for s in val.samples]
    row: dict = {}
    for tta in (False, True):
        rep = evaluate_probs(probs_for(tta), y, classes)
        sfx = "_tta" if tta else ""
        row[f"top1{sfx}"], row[f"top5{sfx}"] = round(rep.top1, 4), round(rep.top5, 4)
    return row


def run_setting(setting: str, args: argparse.Namespace, head_opts: dict[str, dict]) -> tuple[str, dict, int]:
    """Train and evaluate every model on one label set; returns (key, rows, images without OCR)."""
    import torch

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    torch.set_num_threads(args.threads)
    _, train, val, missing = load_setting(args, setting)
    cache = FeatureCache(args.feature_cache)
    aug = AugmentConfig()
    rows: dict[str, dict] = {}
    runs = [(m, tb) for i, tb in enumerate(args.text_backbones) for m in args.models if i == 0 or m != "image"]
    for model, text_backbone in runs:
        name = model if text_backbone == "minilm" or model == "image" else f"{model}@{text_backbone}"
        t0 = time.perf_counter()
        cfg = TrainConfig(views=args.views, seed=args.seed, feature_cache=args.feature_cache,
                          batch_size=args.batch_size, lr=args.lr, patience=args.patience, epochs=args.epochs,
                          label_smoothing=args.label_smoothing, schedule=args.schedule,
                          train_blocks=args.train_blocks if model != "text" else 0, tail_lr_scale=args.tail_lr_scale,
                          init_from=args.init_from if model != "text" else None)
        tr = Trainer(model, image_backbone=args.image_backbone, text_backbone=text_backbone, head_cfg=head_opts.get(model), config=cfg, progress=False)
        tr.fit(train, val if args.select == "val" else None)
        clf = tr.classifier_
        row = score_row(lambda tta: val_probs(clf, val, cache, aug, args.seed, tta), val, clf.classes)  # noqa: B023
        row.update(n_val=len(val), n_train=len(train), best_epoch=tr.best_epoch_, epochs_run=tr.metrics_["epochs_run"],
                   selection_top1=round(tr.metrics_["val_top1"], 4), seconds=round(time.perf_counter() - t0, 1))
        path = Path(args.runs) / setting / f"{name}.pt"
        save_checkpoint(clf, path, metrics={**tr.metrics_, "eval_val_top1": row["top1"], "eval_val_top5": row["top5"]},
                        train_config=tr.config_.to_dict(), include_backbones=tr.config_.changes_backbones)
        row["checkpoint"] = str(path)
        row["checkpoint_mb"] = round(path.stat().st_size / 1e6, 2)
        rows[name] = row
        log.info("%s %s: %s", setting, name, row)
    suffix = "" if args.select == "val" else " (train-fold selection)"
    if args.image_backbone != "efficientnet_lite0" or args.train_blocks or args.init_from:
        tb = f", last {args.train_blocks} block(s) trained" if args.train_blocks else ""
        tb += f", image backbone from {Path(args.init_from).name}" if args.init_from else ""
        suffix += f" [{args.image_backbone}, {args.views} views{tb}]"
    return f"{setting}/val{suffix}", rows, missing


def run_ensemble(args: argparse.Namespace) -> tuple[str, dict, int]:
    """Evaluate the mean probability of the checkpoints ``args.ensemble`` on val (no training)."""
    import torch

    from prodlens.models import load_classifier

    torch.set_num_threads(args.threads)
    members = [load_classifier(p) for p in args.ensemble]
    setting, _, val, missing = load_setting(args, None, len(members[0].classes))
    cache, aug = FeatureCache(args.feature_cache), AugmentConfig()
    row = score_row(lambda tta: np.mean([val_probs(m, val, cache, aug, args.seed, tta) for m in members], axis=0),
                    val, members[0].classes)
    row.update(n_val=len(val), members=list(args.ensemble),
               member_top1=[round(float(m.metrics.get("eval_val_top1", float("nan"))), 4) for m in members])
    name = "ensemble(" + " + ".join(f"{m.head_name}:{m.spec.get('image_backbone')}" for m in members) + ")"
    return f"{setting}/val [{args.ensemble_label}]", {name: row}, missing


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", default="../shared/datasets/GroceryStoreDataset/dataset")
    ap.add_argument("--ocr-cache", default=str(Path("~/.cache/prodlens/ocr").expanduser()))
    ap.add_argument("--feature-cache", default=str(Path("~/.cache/prodlens/features").expanduser()))
    ap.add_argument("--runs", default="runs/model_accuracy", help="folder for the trained checkpoints")
    ap.add_argument("--out", default="bench/results/model_accuracy.json")
    ap.add_argument("--image-backbone", default="efficientnet_lite0")
    ap.add_argument("--text-backbones", nargs="+", default=["minilm"],
                    help="text backbones to try; the first is the primary one, others add rows MODEL@BACKBONE")
    ap.add_argument("--views", type=int, default=8)
    ap.add_argument("--select", choices=["train-fold", "val"], default="train-fold")
    ap.add_argument("--settings", nargs="+", default=["fine81", "packages31"], choices=["fine81", "packages31"])
    ap.add_argument("--models", nargs="+", default=list(MODELS), choices=MODELS)
    ap.add_argument("--min-ocr-score", type=float, default=0.5)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--head-opt", nargs="*", default=[], metavar="MODEL:KEY=VALUE")
    ap.add_argument("--batch-size", type=int, default=None, help="head batch size (fast-mode default 64)")
    ap.add_argument("--lr", type=float, default=None, help="head learning rate (fast-mode default 1e-3)")
    ap.add_argument("--patience", type=int, default=None)
    ap.add_argument("--epochs", type=int, default=None, help="max epochs over all views (fast-mode default 100)")
    ap.add_argument("--label-smoothing", type=float, default=0.0)
    ap.add_argument("--schedule", choices=["constant", "cosine"], default="constant")
    ap.add_argument("--train-blocks", type=int, default=0,
                    help="also train the image backbone's last N blocks on cached trunk maps (0: heads only; "
                         "the text model has none)")
    ap.add_argument("--tail-lr-scale", type=float, default=0.3)
    ap.add_argument("--init-from", metavar="CKPT",
                    help="image backbone from this trained checkpoint (two-stage: adapt with an image model first)")
    ap.add_argument("--jobs", type=int, default=1, help="label sets trained in parallel processes")
    ap.add_argument("--threads", type=int, default=1, help="torch threads per process")
    ap.add_argument("--ensemble", nargs="+", metavar="CKPT",
                    help="evaluate these trained checkpoints as one ensemble (mean probability) instead of training")
    ap.add_argument("--ensemble-label", default="ensemble", help="label of the --ensemble row's key")
    ap.add_argument("--no-write", action="store_true", help="print the table only")
    ap.add_argument("--merge", action="store_true", help="keep the results of other runs already in --out")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")

    head_opts: dict[str, dict] = {}
    for item in args.head_opt:
        model, kv = item.split(":", 1)
        k, v = kv.split("=", 1)
        head_opts.setdefault(model, {})[k] = json.loads(v)

    jobs = [(setting, args, head_opts) for setting in args.settings]
    if args.ensemble:
        parts = [run_ensemble(args)]
    elif args.jobs > 1 and len(jobs) > 1:
        import multiprocessing as mp
        from concurrent.futures import ProcessPoolExecutor

        with ProcessPoolExecutor(max_workers=args.jobs, mp_context=mp.get_context("spawn")) as ex:
            parts = list(ex.map(run_setting, *zip(*jobs)))
    else:
        parts = [run_setting(*j) for j in jobs]
    results: dict[str, dict] = {}
    missing = 0
    for key, rows, miss in parts:
        results[key] = rows
        missing = max(missing, miss)

    lines = ["| label set | model | top-1 | top-5 | top-1 (hflip TTA) | top-5 (TTA) |", "|---|---|---:|---:|---:|---:|"]
    for key, rows in results.items():
        for model, r in rows.items():
            lines.append(f"| {key} | {model} | {r['top1']:.1%} | {r['top5']:.1%} | {r['top1_tta']:.1%} | {r['top5_tta']:.1%} |")
    print("\n".join(lines))
    if not args.no_write:
        out = Path(args.out)
        command = "HF_HUB_OFFLINE=1 .venv/bin/python bench/model_accuracy.py " + shlex.join(argv if argv is not None else sys.argv[1:])
        mode = (f"fast (frozen trunk, last {args.train_blocks} image block(s) + heads trained)" if args.train_blocks
                else "fast (frozen backbones, heads only)")
        if args.init_from:
            mode += f"; image backbone from {args.init_from}"
        setup = {"mode": mode, "image_backbone": args.image_backbone, "train_blocks": args.train_blocks,
                 "tail_lr_scale": args.tail_lr_scale, "schedule": args.schedule, "label_smoothing": args.label_smoothing,
                 "epochs": args.epochs,
                 "text_backbones": args.text_backbones, "views": args.views, "selection": args.select, "seed": args.seed,
                 "batch_size": args.batch_size or 64, "lr": args.lr or 1e-3, "patience": args.patience or 15,
                 "head_opts": head_opts, "ocr_missing": missing}
        if args.ensemble:
            setup = {"mode": "ensemble of trained checkpoints (mean probability), no training", "members": args.ensemble,
                     "ocr_missing": missing}
        doc = json.loads(out.read_text(encoding="utf-8")) if args.merge and out.is_file() else {}
        runs = doc.get("runs", [])
        runs.append({"command": command, "setup": setup, "keys": sorted(results)})
        merged = {**doc.get("results", {}), **results}
        doc = {
            "command": " && ".join(r["command"] for r in runs),
            "dataset": "GroceryStoreDataset (Klasson et al. 2019): train 2640 -> val 296 images; fine81 = 81 fine classes, "
                       "packages31 = the 31 packaged-product classes (train 864 -> val 100); OCR: RapidOCR 1.4.4 lines "
                       f"split into words, words with score >= {args.min_ocr_score}; the test split is never read",
            "date": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%MZ"),
            "notes": "top1/top5 are fractions on val. Keys without a suffix: early stopping on val (the paper protocol "
                     "allows it; slightly optimistic). '(train-fold selection)': early stopping on the last 10% of each "
                     "train class, val untouched. *_tta: mean of plain and left-right mirrored image. MODEL@BACKBONE "
                     "rows use that text backbone instead of minilm. '[..., last 1 block(s) trained]': the image backbone's last "
                     "block trained with the head (--train-blocks); '[..., image backbone from X]': heads trained on the "
                     "frozen backbone of checkpoint X (two-stage, --init-from); 'ensemble(...)': mean probability of the "
                     "listed checkpoints (--ensemble), no training.",
            "runs": runs,
            "results": merged,
        }
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(doc, indent=1) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
