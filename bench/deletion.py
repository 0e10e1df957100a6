"""Deletion test table (paper Table 2) for the fusion models, with the corrected protocol.

Not a test. For each fusion model (Score Fusion, Feature Concatenation, EmbraceNet, or
those named by ``--models``):

1. explain every photo of the global split (``--global-split``, default train) and of
   the test split with multimodal LIME (cached per sample as JSON, so a re-run resumes),
2. build per-class global explanations on the **global split's** explanations only
   (top-3 positive superpixels embedded by the model's own image encoder and clustered
   with HDBSCAN; top-3 positive OCR words grouped by spelling; both ranked by NormLIME),
3. run the deletion test per modality on the **test split**: accuracy on the photos that
   contain one of their class's top-3 global features (held-out photos are matched to
   the clusters by embedding, to the word groups by spelling), with nothing / those
   features / the random control deleted (image: the same superpixel shapes moved
   nearby; text: as many other real words), paired bootstrap 95% intervals,
4. with ``--in-sample-reference`` also the old, in-sample variant (global features built
   on the test split's own explanations) for comparison, marked as such,

and writes ``bench/results/deletion_protocol.json`` (``rows`` + ``meta``) and prints the table.

Usage::

    # GroceryStoreDataset package classes, trained checkpoints, on val (test is held out)
    python bench/deletion.py --data work/grocery --split val --packages \\
        --checkpoint score_fusion=runs/score_fusion.pt --checkpoint concat=runs/concat.pt \\
        --checkpoint embracenet=runs/embracenet.pt

    # the same, fast-training the three heads here (frozen backbones) on up to 15 train
    # photos per class (the committed bench/results/deletion.json)
    prodlens import-grocery ../shared/datasets/GroceryStoreDataset/dataset --out work/grocery --splits train val
    python bench/deletion.py --data work/grocery --split val --packages --train --train-per-class 15

    # the bundled 10-class sample: OCR (cached, Swedish script filter), fast-train the
    # concat head on its 100 train photos, global features from the train photos'
    # explanations, tested on the 34 val photos (bench/results/deletion_protocol.json)
    nice -n 10 python bench/deletion.py --sample --models concat --lime-samples 300 --segments 50 \
        --repeats 5 --in-sample-reference --quiet
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import os
import platform
import shlex
import sys
import time
from dataclasses import replace
from pathlib import Path

from _machine import cpu_name, git_state

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results" / "deletion_protocol.json"
CACHE = HERE.parent / "runs" / "bench-deletion"  # git-ignored: explanations, sample models, globals
FUSION_MODELS = ("score_fusion", "concat", "embracenet")
log = logging.getLogger("bench.deletion")


def load_data(args: argparse.Namespace):
    """(train, global, test) datasets; restricted to package classes when asked."""
    from prodlens.data.grocery import package_classes
    from prodlens.data.manifest import read_dataset
    from prodlens.data.sample import load_sample

    ds = load_sample() if args.sample else read_dataset(args.data)
    if args.packages:
        ds = ds.with_classes(package_classes(ds))
    ocr_needed = [s for s in ds.samples if s.ocr_tokens is None and s.split in ("train", args.global_split, args.split)]
    if ocr_needed and not args.no_ocr:
        from prodlens.ocr.runner import run_ocr

        log.info("running OCR (cached) on %d samples", len(ocr_needed))
        ocr, report = run_ocr(replace(ds, samples=ocr_needed), progress=not args.quiet)  # ds.language: script filter
        log.info("%s", report.summary())
        done = {s.id: s for s in ocr.samples}
        ds = replace(ds, samples=[done.get(s.id, s) for s in ds.samples])
    train, glob, test = ds.split("train"), ds.split(args.global_split), ds.split(args.split)
    if args.train_per_class:
        train = replace(train, samples=per_class(train.samples, args.train_per_class))
    if args.global_per_class:
        glob = replace(glob, samples=per_class(glob.samples, args.global_per_class))
    if args.limit_per_class:
        test = replace(test, samples=per_class(test.samples, args.limit_per_class))
    return train, glob, test


def per_class(samples, limit: int) -> list:
    """The first ``limit`` samples of each class, by id (deterministic)."""
    kept: dict[str, int] = {}
    out = []
    for s in sorted(samples, key=lambda s: s.id):
        if kept.get(s.label, 0) < limit:
            kept[s.label] = kept.get(s.label, 0) + 1
            out.append(s)
    return out


class SharedImageFeatures:
    """One memo of image features for several classifiers that share a frozen backbone.

    The three fusion models read the same frozen image backbone, and LIME with one seed
    perturbs a photo identically for each, so every perturbed image is encoded once
    and reused (keyed by the backbone's digest and the image bytes): exact, not an
    approximation.
    """

    def __init__(self) -> None:
        self.memo: dict[tuple[str, bytes], object] = {}
        self.hits = self.misses = 0

    def wrap(self, clf) -> None:
        import hashlib

        import numpy as np

        from prodlens.models.runtime import module_digest

        if clf.image_backbone is None:
            return
        key = module_digest(clf.image_backbone, clf.image_backbone.preprocess.input_size)
        encode = clf.encode_images

        def encode_images(images, **kw):
            keys = [(key, hashlib.sha1(np.ascontiguousarray(im).tobytes()).digest() + bytes(str(im.shape), "ascii"))
                    for im in images]
            todo = [i for i, k in enumerate(keys) if k not in self.memo]
            self.hits += len(keys) - len(todo)
            self.misses += len(todo)
            if todo:
                for i, f in zip(todo, encode([images[i] for i in todo], **kw)):
                    self.memo[keys[i]] = f
            return np.stack([self.memo[k] for k in keys]) if keys else encode(images, **kw)

        clf.encode_images = encode_images


def get_models(args: argparse.Namespace, train) -> dict[str, str]:
    """``{name: checkpoint}``: given ones, or fast-trained ones for ``--sample``."""
    ckpts = dict(c.split("=", 1) for c in args.checkpoint)
    if ckpts:
        return ckpts
    if not (args.sample or args.train):
        sys.exit("pass --checkpoint NAME=PATH for each model, or --train (or --sample) to fast-train them here")
    from prodlens.train.config import TrainConfig
    from prodlens.train.trainer import train_model

    out = {}
    for name in args.models:
        tag = "sample" if args.sample else f"{Path(args.data).name}{'-packages' if args.packages else ''}-tpc{args.train_per_class}"
        path = CACHE / "models" / tag / f"{name}.pt"
        if not path.is_file():
            log.info("fast-training %s on %d samples", name, len(train))
            r = train_model(train, None, model=name, config=TrainConfig(mode="fast", views=args.train_views, seed=args.seed,
                                                                 feature_cache=str(CACHE / "features")),
                            out=path, progress=not args.quiet)
            log.info("%s: %s", name, {k: round(v, 3) for k, v in r.metrics.items() if isinstance(v, float)})
        out[name] = str(path)
    return out


def explain_all(name: str, clf, test, split: str, args: argparse.Namespace) -> tuple[list, float]:
    """Local explanations of every photo of ``test`` (their true class's), cached as JSON per sample."""
    from tqdm.auto import tqdm

    from prodlens.aggregate import load_explanations
    from prodlens.explain import MultimodalLime

    data = "sample" if args.sample else Path(args.data).name
    folder = CACHE / "explanations" / f"{data}_{split}_{name}_s{args.lime_samples}_seg{args.segments}_seed{args.seed}"
    folder.mkdir(parents=True, exist_ok=True)
    lime = MultimodalLime(max_samples=args.lime_samples, n_segments=args.segments, seed=args.seed, progress=False)
    t0 = time.perf_counter()
    todo = [s for s in test.samples if not (folder / f"{s.id.replace('/', '__')}.json").is_file()]
    for s in tqdm(todo, desc=f"explain {name}", disable=args.quiet):
        res = lime.explain(clf, s)
        (folder / f"{s.id.replace('/', '__')}.json").write_text(json.dumps(res.to_dict()))
    seconds = time.perf_counter() - t0
    wanted = {s.id for s in test.samples}
    return [e for e in load_explanations(folder, which="true") if e.sample_id in wanted], seconds


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", help="dataset folder (prodlens manifest)")
    p.add_argument("--sample", action="store_true", help="use the bundled 10-class sample")
    p.add_argument("--split", default=None, help="test split (default: test, or val for --sample)")
    p.add_argument("--global-split", default="train", help="split whose explanations build the global features (default train)")
    p.add_argument("--global-per-class", type=int, default=0, help="explain at most this many global-split photos per class")
    p.add_argument("--models", nargs="+", choices=FUSION_MODELS, default=list(FUSION_MODELS), help="fusion models to test")
    p.add_argument("--in-sample-reference", action="store_true",
                   help="also run the old in-sample variant (global features from the test split itself)")
    p.add_argument("--radius-scale", type=float, default=1.0, help="held-out image matching: cluster radius factor")
    p.add_argument("--packages", action="store_true", help="keep only GroceryStore package classes")
    p.add_argument("--checkpoint", action="append", default=[], metavar="NAME=PATH", help="a trained model (repeat)")
    p.add_argument("--train", action="store_true", help="fast-train the three fusion heads on the train split")
    p.add_argument("--train-per-class", type=int, default=0, help="--train: at most this many train photos per class")
    p.add_argument("--train-views", type=int, default=2, help="--sample/--train: augmented views for fast training")
    p.add_argument("--lime-samples", type=int, default=1000, help="LIME perturbations per photo (cap; early stopping)")
    p.add_argument("--segments", type=int, default=50, help="SLIC superpixels per photo")
    p.add_argument("--limit-per-class", type=int, default=0, help="explain at most this many test photos per class")
    p.add_argument("--top-k", type=int, default=3)
    p.add_argument("--repeats", type=int, default=5, help="random deletions per photo")
    p.add_argument("--min-cluster-size", type=int, default=3)
    p.add_argument("--min-samples", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--no-ocr", action="store_true", help="do not run OCR on samples without it")
    p.add_argument("--out", type=Path, default=RESULTS)
    p.add_argument("--note", default="")
    p.add_argument("--quiet", action="store_true")
    args = p.parse_args(argv)
    if not args.sample and not args.data:
        p.error("pass --data DATASET or --sample")
    args.split = args.split or ("val" if args.sample else "test")
    if args.global_split == args.split:
        p.error(f"--global-split must differ from the test split ({args.split}): the protocol tests held-out photos")
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")

    import torch

    from prodlens.aggregate import DeletionTable, GlobalExplainer, deletion_test, format_deletion_table, write_json
    from prodlens.models.checkpoint import load_classifier

    torch.set_num_threads(args.threads)
    load_before = os.getloadavg()[0]
    git = git_state(HERE)  # at the start: the code that runs
    t_start = time.perf_counter()
    train, glob_data, test = load_data(args)
    models = get_models(args, train)
    rows, per_model = [], {}
    shared = SharedImageFeatures()
    for name, ckpt in models.items():
        clf = load_classifier(ckpt).use_runtime("auto")
        shared.wrap(clf)
        glob_ex, t_glob_ex = explain_all(name, clf, glob_data, args.global_split, args)
        explanations, t_explain = explain_all(name, clf, test, args.split, args)
        size = getattr(clf.preprocess, "input_size", 224) if clf.preprocess is not None else 224
        explainer = GlobalExplainer(
            clf.encode_images, crop_size=int(max(size) if isinstance(size, (tuple, list)) else size),
            min_cluster_size=args.min_cluster_size, min_samples=args.min_samples, progress=not args.quiet,
        )
        t0 = time.perf_counter()
        g = explainer.fit(glob_ex, glob_data.samples).global_
        write_json(g, CACHE / "global" / f"{name}_{args.global_split}.json")
        t_global = time.perf_counter() - t0
        t0 = time.perf_counter()
        params = dict(top_k=args.top_k, n_repeats=args.repeats, seed=args.seed, progress=not args.quiet)
        for modality in ("image", "text"):
            rows.append(deletion_test(clf, g, explanations, test.samples, modality=modality, model=name,
                                      in_sample="error", radius_scale=args.radius_scale, **params))
        if args.in_sample_reference:
            g_in = explainer.fit(explanations, test.samples).global_
            for modality in ("image", "text"):
                rows.append(deletion_test(clf, g_in, explanations, test.samples, modality=modality,
                                          model=f"{name} (in-sample)", in_sample="allow", **params))
        per_model[name] = {
            "checkpoint": ckpt,
            "explanations": {args.global_split: len(glob_ex), args.split: len(explanations)},
            "seconds_explain_new": round(t_glob_ex + t_explain, 1),
            "seconds_global": round(t_global, 1),
            "seconds_deletion": round(time.perf_counter() - t0, 1),
            "top_features": {
                c.class_name: {m: [f"{f.label} ({f.importance:.3g}, n={f.support})" for f in c.top(m, args.top_k)]
                               for m in ("image", "text")}
                for c in g
            },
        }
    table = DeletionTable(tuple(rows), meta={
        "command": shlex.join(["python", os.path.relpath(__file__, Path.cwd()), *(argv if argv is not None else sys.argv[1:])]),
        "date_utc": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "git": git,
        "dataset": "bundled sample grocery_mini" if args.sample else str(args.data),
        "language": test.language,
        "protocol": {
            "global_features_built_on": f"{args.global_split} ({len(glob_data.samples)} photos)",
            "tested_on": f"{args.split} ({len(test.samples)} photos, held out)",
            "image_control": "the top superpixels' shapes moved by a random offset of up to 2x their size, "
                             "inside the photo and off the top region (same pixel count)",
            "text_control": "as many other real words (after the word groups' normalisation)",
            "intervals": "paired percentile bootstrap over samples, 2000 resamples, 95%",
            "held_out_image_matching": f"top-3 local superpixels within {args.radius_scale} x cluster radius of its centroid",
        },
        "split": args.split,
        "global_split": args.global_split,
        "test_samples": len(test.samples),
        "train_samples": len(train.samples),
        "shared_image_features": {"encoded": shared.misses, "reused": shared.hits},
        "classes": len({s.label for s in test.samples}),
        "lime_samples": args.lime_samples,
        "segments": args.segments,
        "top_k": args.top_k,
        "min_cluster_size": args.min_cluster_size,
        "min_samples": args.min_samples,
        "repeats": args.repeats,
        "seed": args.seed,
        "machine": {"cpu": cpu_name(), "cpu_count": os.cpu_count(), "torch_threads": args.threads,
                    "platform": platform.platform(), "load_average_1m_before": round(load_before, 2),
                    "load_average_1m_after": round(os.getloadavg()[0], 2), "device": "cpu"},
        "seconds_total": round(time.perf_counter() - t_start, 1),
        "models": per_model,
        "note": args.note,
    })
    write_json(table, args.out)
    print(format_deletion_table(table))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
