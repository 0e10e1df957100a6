"""Which model embeds the superpixel crops of the global image explanations? (paper sec. 4.2)

Not a test. The paper found that ImageNet-pretrained embeddings of the top superpixels
give no usable clusters and that a *trained* image model is needed. This bench keeps
everything fixed except the embedding:

1. two image-only models on the 31 GroceryStoreDataset package classes, fast mode,
   ``--views`` views per train photo, early stopping on a 10% tail fold of *train* (val
   is never used for training or selection):
   * **adapted**: ``TrainConfig(mode="fast", train_blocks=1)``: EfficientNet-Lite0's last
     block trained with the head on cached trunk maps (the classifier that is explained);
   * **pretrained**: frozen ImageNet EfficientNet-Lite0 + trained head (only its
     ``encode_images``, i.e. the frozen backbone, is used; its accuracy is context);
2. the **adapted** model explained with ``MultimodalLime`` (image only, no OCR words,
   ``quality=False``, cached per photo as JSON) for the true class, on ``--classes`` of
   the 20 package classes that have val photos (spread evenly over them alphabetically):
   ``--train-per-class`` train photos and ``--val-per-class`` val photos of each (spread
   evenly over the class's photos in id order: consecutive GroceryStore photos are
   near-duplicates);
3. per arm (the *same* explanations; only ``embed_fn`` differs):
   * ``GlobalExplainer(embed_fn, modalities=("image",), min_cluster_size=2)`` on the
     train explanations: HDBSCAN clusters per class (raw, and those with support >= 2
     photos that NormLIME ranks), classes with >= 1 cluster;
   * **pooled purity**: all classes' top-3 crops (as embedded and L2-normalised for the
     per-class clustering) pooled and clustered once with HDBSCAN (same parameters);
     purity = sum over clusters of the cluster's majority-class count / crops in clusters
     (the size-weighted majority-class fraction), reported with the fraction of crops
     left as noise, the purity of the same clusters with the class labels shuffled
     (chance level for these cluster sizes, mean of 200 shuffles), and purity over the
     clusters that hold crops of >= 2 photos (top-3 crops of one photo are pure by
     construction);
   * **1-NN class agreement**: share of crops whose nearest crop from *another photo*
     has the same class (no clustering parameters);
   * the **deletion test** (``deletion_test(..., in_sample="error")``) of the top-3 global
     image features on the held-out val photos: the photos whose own top-3 superpixels fall
     within ``radius_scale`` x a cluster's radius of its centroid (matched with the arm's
     embedding; ``--radius-scales``, 1.0 is the library default), the adapted classifier's
     accuracy untouched / top features painted black / the same shapes moved nearby
     (``--repeats`` draws), paired bootstrap 95% intervals of the drops.

The default sizes (10 classes x (4 train + 4 val) photos, 150 LIME rows, 6 epochs) were
chosen from a probe run's timings on the shared 2-core machine (load 3-9: ~13 s per
200-row explanation, ~8 min to train the adapted model, ~2 min the pretrained head) so
that a run from an empty cache ends within 25 minutes.

Writes ``bench/results/global_embedding.json`` and prints a Markdown table. Explanations,
checkpoints, trunk maps, features and ONNX exports go under ``--cache`` (outside git), so
a re-run resumes; ``seconds`` in the JSON say which stages ran.

    PYTHONPATH=$PWD/src HF_HUB_OFFLINE=1 nice -n 10 /work/main/.venv/bin/python bench/global_embedding.py \\
        --cache /work/cache/global_embedding
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
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from _machine import cpu_name, git_state, spread_per_class

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results" / "global_embedding.json"
DATA = Path("/work/shared/datasets/GroceryStoreDataset/dataset")
ARMS = ("pretrained", "adapted")
SHUFFLES = 200
SUBSAMPLES = 200
log = logging.getLogger("bench.global_embedding")


# -- data --------------------------------------------------------------------------------
def load_data(args: argparse.Namespace):
    """(train, val, explained train photos, explained val photos) on the package classes."""
    from prodlens.data.grocery import import_grocery_store, package_classes

    full = import_grocery_store(args.data, ("train", "val"))
    ds = full.with_classes(package_classes(full))
    train, val = ds.split("train"), ds.split("val")
    explained = sorted({s.label for s in val.samples})
    if args.classes and args.classes < len(explained):
        explained = [explained[int(round(i))] for i in np.linspace(0, len(explained) - 1, args.classes)]
    glob = spread_per_class([s for s in train.samples if s.label in explained], args.train_per_class)
    test = sorted((s for s in val.samples if s.label in explained), key=lambda s: s.id)
    if args.val_per_class:
        test = spread_per_class(test, args.val_per_class)
    return train, val, glob, test


# -- models ------------------------------------------------------------------------------
def train_or_load(name: str, train, args: argparse.Namespace) -> tuple[object, dict, float]:
    """The arm's image-only model (checkpoint cached by its settings), its training metrics, seconds."""
    from prodlens.models.checkpoint import load_classifier
    from prodlens.train.config import TrainConfig
    from prodlens.train.trainer import Trainer

    cfg = TrainConfig(mode="fast", views=args.views, seed=args.seed, train_blocks=1 if name == "adapted" else 0,
                      epochs=args.epochs, schedule="cosine", label_smoothing=0.1, batch_size=32,
                      feature_cache=str(args.cache / "features"))
    tag = hashlib.sha1(json.dumps(cfg.to_dict(), sort_keys=True).encode()).hexdigest()[:10]
    path = args.cache / "models" / f"{name}-{tag}.pt"
    t0 = time.perf_counter()
    if not path.is_file():
        log.info("training %s (%s) on %d photos", name, "last block + head" if cfg.train_blocks else "head", len(train))
        Trainer("image", config=cfg, progress=not args.quiet).fit(train).save(path)
    clf = load_classifier(path).use_runtime("auto")
    fold = {f"train_fold_{k}" if k.startswith(("val_", "n_val")) else k: v for k, v in clf.metrics.items() if k != "seconds"}
    return clf, {"checkpoint": str(path), "train_config": cfg.to_dict(), **fold}, time.perf_counter() - t0


def accuracy(clf, samples, batch: int = 16) -> float:
    from prodlens.data.images import load_image

    hits = 0
    for i in range(0, len(samples), batch):
        chunk = samples[i : i + batch]
        pred = clf.predict([load_image(s.image_path) for s in chunk], [[] for _ in chunk])
        hits += sum(p == s.label for p, s in zip(pred, chunk))
    return hits / len(samples)


def explain_all(clf, samples, folder: Path, args: argparse.Namespace) -> tuple[list, float, int]:
    """True-class explanations of ``samples`` (cached as JSON per photo), seconds, photos explained now."""
    from tqdm.auto import tqdm

    from prodlens.aggregate import load_explanations
    from prodlens.explain import MultimodalLime

    folder.mkdir(parents=True, exist_ok=True)
    lime = MultimodalLime(max_samples=args.lime_samples, n_segments=args.segments, quality=False, seed=args.seed,
                          progress=False)
    todo = [s for s in samples if not (folder / f"{s.id.replace('/', '__')}.json").is_file()]
    t0 = time.perf_counter()
    for s in tqdm(todo, desc=f"explain {folder.name}", disable=args.quiet):
        (folder / f"{s.id.replace('/', '__')}.json").write_text(json.dumps(lime.explain(clf, s).to_dict()))
    wanted = {s.id for s in samples}
    return [e for e in load_explanations(folder, which="true") if e.sample_id in wanted], time.perf_counter() - t0, len(todo)


# -- measures ----------------------------------------------------------------------------
@dataclass(frozen=True)
class Pooled:
    """All classes' top-3 crops of one arm: embeddings (as clustered), class and photo of each."""

    X: np.ndarray
    y: np.ndarray
    photo: np.ndarray

    @classmethod
    def of(cls, explainer) -> Pooled:
        classes = [c for c in sorted(explainer.embeddings_) if len(explainer.embeddings_[c])]
        return cls(np.concatenate([explainer.embeddings_[c] for c in classes]),
                   np.concatenate([[c] * len(explainer.embeddings_[c]) for c in classes]),
                   np.array([o.sample_id for c in classes for o in explainer.image_occurrences_[c]]))

    def subset(self, photos: set[str]) -> Pooled:
        keep = np.isin(self.photo, list(photos))
        return Pooled(self.X[keep], self.y[keep], self.photo[keep])


def purity(labels: np.ndarray, y: np.ndarray, keep: list[int]) -> float | None:
    """Size-weighted majority-class fraction of the clusters ``keep`` (``None`` when empty)."""
    n = sum(int((labels == k).sum()) for k in keep)
    if not n:
        return None
    return sum(max(np.unique(y[labels == k], return_counts=True)[1]) for k in keep) / n


def pooled_clusters(p: Pooled, args: argparse.Namespace) -> tuple[np.ndarray, list[int]]:
    from prodlens.aggregate import cluster_embeddings

    labels = cluster_embeddings(p.X, min_cluster_size=args.min_cluster_size, min_samples=args.min_samples)
    return labels, sorted(set(labels.tolist()) - {-1})


def shuffled_purity(labels: np.ndarray, ids: list[int], y: np.ndarray, rng: np.random.Generator, n: int) -> float | None:
    """Mean purity of the same clusters with the class labels permuted (chance for these cluster sizes)."""
    vals = [purity(labels, rng.permutation(y), ids) for _ in range(n)] if ids else []
    return float(np.mean(vals)) if vals else None


def nn_hits(p: Pooled) -> np.ndarray:
    """Per crop: 1.0 when its nearest crop of *another* photo (Euclidean on the unit sphere) has its class."""
    d = ((p.X[:, None, :] - p.X[None]) ** 2).sum(-1)
    d[p.photo[:, None] == p.photo[None]] = np.inf
    nn = d.argmin(1)
    return np.where(np.isfinite(d[np.arange(len(p.X)), nn]), p.y[nn] == p.y, np.nan)


def pooled_purity(p: Pooled, args: argparse.Namespace) -> dict:
    """HDBSCAN once over all classes' crops: size-weighted majority-class purity and more."""
    labels, ids = pooled_clusters(p, args)
    multi = [k for k in ids if len(set(p.photo[labels == k])) >= 2]
    shuffled = shuffled_purity(labels, ids, p.y, np.random.default_rng([args.seed, 7]), SHUFFLES)
    y = p.y
    return {
        "crops": len(p.X), "photos": len(set(p.photo)), "classes": len(set(y)),
        "clusters": len(ids), "mean_cluster_size": round(float(np.mean([(labels == k).sum() for k in ids])), 2) if ids else None,
        "noise_fraction": round(float((labels < 0).mean()), 4),
        "purity": None if not ids else round(purity(labels, y, ids), 4),
        "purity_shuffled_labels": None if shuffled is None else round(shuffled, 4),
        "clusters_multi_photo": len(multi),
        "purity_multi_photo": None if not multi else round(purity(labels, y, multi), 4),
        "crops_in_multi_photo_clusters": int(sum((labels == k).sum() for k in multi)),
        "nn_same_class": round(float(np.nanmean(nn_hits(p))), 4),
        "nn_chance": round(float(np.mean([((y == c).sum() - 1) / (len(y) - 1) for c in y])), 4),
    }


def purity_subsamples(a: Pooled, b: Pooled, args: argparse.Namespace) -> dict:
    """Spread of ``b - a`` in pooled purity, and in purity above its shuffled-label level, over
    ``SUBSAMPLES`` random 80% subsets of the photos (the same subset for both arms, re-clustered).
    Not a confidence interval (subsets overlap), a check that the sign is not one draw's luck."""
    rng = np.random.default_rng([args.seed, 11])
    photos = sorted(set(a.photo.tolist()))
    raw, excess = [], []
    for _ in range(SUBSAMPLES):
        keep = set(rng.choice(photos, size=int(round(0.8 * len(photos))), replace=False).tolist())
        vals = []
        for p in (a.subset(keep), b.subset(keep)):
            labels, ids = pooled_clusters(p, args)
            pu = purity(labels, p.y, ids)
            vals.append(None if pu is None else (pu, pu - shuffled_purity(labels, ids, p.y, rng, 20)))
        if None not in vals:
            raw.append(vals[1][0] - vals[0][0])
            excess.append(vals[1][1] - vals[0][1])

    def summary(v: list[float]) -> dict:
        q = np.quantile(v, [0.025, 0.5, 0.975])
        return {"median": round(float(q[1]), 4), "p2.5": round(float(q[0]), 4), "p97.5": round(float(q[2]), 4),
                "share_above_0": round(float(np.mean(np.array(v) > 0)), 4)}

    return {"subsamples": len(raw), "photos_each": int(round(0.8 * len(photos))),
            "purity_difference": summary(raw), "purity_above_shuffled_difference": summary(excess)}


def per_class_clusters(explainer, g) -> dict:
    raw = {c: int(lab.max() + 1) if len(lab) else 0 for c, lab in explainer.image_labels_.items()}
    ranked = {c.class_name: len(c.image) for c in g}
    return {
        "clusters": sum(raw.values()),
        "classes_with_cluster": sum(v > 0 for v in raw.values()),
        "ranked_features": sum(ranked.values()),
        "classes_with_ranked_feature": sum(v > 0 for v in ranked.values()),
        "classes": len(raw),
        "crops": sum(len(o) for o in explainer.image_occurrences_.values()),
        "noise": sum(len(c.noise) for c in g),
        "per_class": {c: {"crops": len(explainer.image_occurrences_[c]), "clusters": raw[c], "ranked": ranked.get(c, 0)}
                      for c in sorted(raw)},
    }


def per_photo_difference(a: np.ndarray, b: np.ndarray, photo: np.ndarray, seed: int) -> dict:
    """``b - a`` of two per-crop 0/1 arrays (aligned crops), averaged per photo first (a photo's
    three crops are not independent), with the paired bootstrap over photos."""
    from prodlens.aggregate import paired_bootstrap

    ids = sorted(set(photo.tolist()))
    diff = np.array([np.nanmean(b[photo == p]) - np.nanmean(a[photo == p]) for p in ids])
    diff = diff[np.isfinite(diff)]
    return {"photos": len(diff), **paired_bootstrap(diff, seed=seed).to_dict()}


def deletion_difference(a: dict, b: dict, seed: int) -> dict:
    """Arm ``b`` minus arm ``a`` in (random - top) on the photos both deletion rows tested, paired."""
    from prodlens.aggregate import paired_bootstrap

    pa = {o["sample_id"]: o for o in a["per_sample"]}
    pb = {o["sample_id"]: o for o in b["per_sample"]}
    common = sorted(set(pa) & set(pb))
    gain = {sid: [o["correct_random"] - float(o["correct_top"]) for o in (pa[sid], pb[sid])] for sid in common}
    d = np.array([g[1] - g[0] for g in gain.values()])
    return {"photos_tested_by_both": len(common), "tested_by_one_only": len(set(pa) ^ set(pb)),
            "same_deleted_count": sum(pa[sid]["deleted"] == pb[sid]["deleted"] and
                                      pa[sid]["deleted_pixels"] == pb[sid]["deleted_pixels"] for sid in common),
            "top_minus_random_difference": paired_bootstrap(d, seed=seed).to_dict() if len(d) else None}


def pc(x: float | None) -> str:
    return "-" if x is None else f"{x:.1%}"


def ci(d: dict | None) -> str:
    return "-" if not d else f"{d['estimate']:+.1%} [{d['low']:+.1%}, {d['high']:+.1%}]"


def cluster_table(results: dict) -> str:
    lines = ["| embedding | clusters per class: all (support >= 2) | classes with >= 1 cluster (support >= 2) "
             "| pooled clusters (mean size) | pooled purity (shuffled labels) | purity, clusters of >= 2 photos "
             "| pooled noise | 1-NN same class (chance) |",
             "|---|---|---|---:|---:|---:|---:|---:|"]
    for arm, r in results.items():
        k, p = r["per_class"], r["pooled"]
        lines.append(f"| {arm} | {k['clusters']} ({k['ranked_features']}) | {k['classes_with_cluster']} "
                     f"({k['classes_with_ranked_feature']}) / {k['classes']} | {p['clusters']} ({p['mean_cluster_size']}) "
                     f"| {pc(p['purity'])} ({pc(p['purity_shuffled_labels'])}) | {pc(p['purity_multi_photo'])} "
                     f"| {pc(p['noise_fraction'])} | {pc(p['nn_same_class'])} ({pc(p['nn_chance'])}) |")
    return "\n".join(lines)


def deletion_md(results: dict) -> str:
    lines = ["| embedding | radius scale | val photos tested | of them: all 3 own top superpixels deleted | no deletion "
             "| top-3 deleted | random deleted | top drop [95% CI] | top - random [95% CI] |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for arm, r in results.items():
        for scale, d in r["deletion"].items():
            rnd = pc(d["random_deletion_accuracy"]) + (f" ± {d['random_deletion_std']:.1%}" if d["random_deletion_std"] else "")
            k = d["config"]["top_k"]
            full = sum(o["deleted"] >= k for o in d["per_sample"])
            lines.append(f"| {arm} | {scale} | {d['samples']} | {full} | {pc(d['no_deletion_accuracy'])} "
                         f"| {pc(d['top_deletion_accuracy'])} | {rnd} | {ci(d.get('top_drop'))} | {ci(d.get('top_minus_random'))} |")
    return "\n".join(lines)


def comparison_md(comp: dict) -> str:
    nn, sub = comp["nn_same_class"], comp["pooled_purity_subsamples"]

    def spread(d: dict) -> str:
        return f"median {d['median']:+.1%} [{d['p2.5']:+.1%}, {d['p97.5']:+.1%}], above 0 in {d['share_above_0']:.0%}"

    lines = [f"adapted - pretrained, pooled purity over {sub['subsamples']} subsets of {sub['photos_each']} photos "
             f"(2.5-97.5%): {spread(sub['purity_difference'])}",
             f"adapted - pretrained, pooled purity above its shuffled-label level, same subsets: "
             f"{spread(sub['purity_above_shuffled_difference'])}",
             f"adapted - pretrained, 1-NN same class (per photo, paired over {nn['photos']} photos): "
             f"{ci(nn)}",
             "adapted - pretrained, (random - top) of the deletion test on the photos both arms tested:"]
    for scale, c in comp["deletion"].items():
        lines.append(f"  radius scale {scale}: {c['photos_tested_by_both']} photos (+{c['tested_by_one_only']} tested by "
                     f"one arm only; {c['same_deleted_count']} with the same deletion in both): "
                     f"{ci(c['top_minus_random_difference'])}")
    return "\n".join(lines)


# -- main --------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=DATA, help="GroceryStoreDataset/dataset folder")
    ap.add_argument("--cache", type=Path, default=Path("/work/cache/global_embedding"),
                    help="explanations, checkpoints, feature maps, ONNX exports (outside git)")
    ap.add_argument("--classes", type=int, default=10,
                    help="explain this many of the classes that have val photos, spread over them alphabetically (0: all)")
    ap.add_argument("--train-per-class", type=int, default=4, help="train photos explained per class (global features)")
    ap.add_argument("--val-per-class", type=int, default=4, help="val photos explained per class (0: all)")
    ap.add_argument("--views", type=int, default=2, help="training views per photo (view 0 plain)")
    ap.add_argument("--epochs", type=int, default=6, help="training epochs over all views (cosine schedule)")
    ap.add_argument("--lime-samples", type=int, default=150, help="LIME rows per photo (cap; early stopping)")
    ap.add_argument("--segments", type=int, default=50, help="SLIC superpixels per photo")
    ap.add_argument("--min-cluster-size", type=int, default=2)
    ap.add_argument("--min-samples", type=int, default=2)
    ap.add_argument("--top-k", type=int, default=3)
    ap.add_argument("--repeats", type=int, default=5, help="random control draws per photo")
    ap.add_argument("--radius-scales", type=float, nargs="+", default=[1.0, 1.5, 2.0],
                    help="held-out matching: cluster radius factors (1.0 is the library default)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", type=Path, default=RESULTS)
    ap.add_argument("--note", default="")
    ap.add_argument("--quiet", action="store_true")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("prodlens").setLevel(logging.WARNING)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("PRODLENS_CACHE", str(args.cache))  # ONNX exports

    import torch

    from prodlens.aggregate import GlobalExplainer, deletion_test, write_json

    torch.set_num_threads(args.threads)
    git = git_state(HERE)  # at the start: the code that runs
    load_start = [round(v, 2) for v in os.getloadavg()]
    t_start = time.perf_counter()
    seconds: dict[str, float] = {}

    train, val, glob, test = load_data(args)
    print(f"data: {len(train)} train / {len(val)} val photos, {len(train.classes)} package classes; explained: "
          f"{len(glob)} train photos ({args.train_per_class} per class) + {len(test)} val photos of "
          f"{len({s.label for s in test})} classes", flush=True)
    models, model_info = {}, {}
    for arm in ("adapted", "pretrained"):
        clf, info, sec = train_or_load(arm, train, args)
        seconds[f"train_{arm}"] = round(sec, 1)
        t0 = time.perf_counter()
        info["val_top1"] = round(accuracy(clf, val.samples), 4)
        seconds[f"val_accuracy_{arm}"] = round(time.perf_counter() - t0, 1)
        models[arm], model_info[arm] = clf, info
        print(f"{arm}: val top-1 {info['val_top1']:.1%} on {len(val)} photos ({sec:.0f} s training/loading)", flush=True)

    explained = models["adapted"]
    key = Path(model_info["adapted"]["checkpoint"]).stem + f"_s{args.lime_samples}_seg{args.segments}_seed{args.seed}"
    glob_ex, sec, n_new = explain_all(explained, glob, args.cache / "explanations" / f"train_{key}", args)
    seconds["explain_train"], seconds["explain_train_photos_new"] = round(sec, 1), n_new
    test_ex, sec2, n_new2 = explain_all(explained, test, args.cache / "explanations" / f"val_{key}", args)
    seconds["explain_val"], seconds["explain_val_photos_new"] = round(sec2, 1), n_new2
    if n_new + n_new2:
        seconds["seconds_per_explanation"] = round((sec + sec2) / (n_new + n_new2), 2)
    print(f"explanations: {len(glob_ex)} train + {len(test_ex)} val ({n_new + n_new2} new, {sec + sec2:.0f} s)", flush=True)

    size = explained.preprocess.input_size
    crop_size = int(max(size) if isinstance(size, (tuple, list)) else size)
    results: dict[str, dict] = {}
    pooled: dict[str, Pooled] = {}
    for arm in ARMS:
        embed = models[arm].encode_images
        t0 = time.perf_counter()
        explainer = GlobalExplainer(embed, modalities=("image",), min_cluster_size=args.min_cluster_size,
                                    min_samples=args.min_samples, crop_size=crop_size, max_features=None,
                                    top_k_local=args.top_k, progress=False)
        g = explainer.fit(glob_ex, glob).global_
        write_json(g, args.cache / "global" / f"{arm}_{key}.json")
        seconds[f"global_{arm}"] = round(time.perf_counter() - t0, 1)
        t0 = time.perf_counter()
        rows = {str(scale): deletion_test(explained, g, test_ex, test, modality="image",
                                          model=f"adapted classifier, {arm} embedding", top_k=args.top_k,
                                          n_repeats=args.repeats, seed=args.seed, in_sample="error", embed_fn=embed,
                                          radius_scale=scale, progress=False).to_dict()
                for scale in args.radius_scales}
        seconds[f"deletion_{arm}"] = round(time.perf_counter() - t0, 1)
        pooled[arm] = Pooled.of(explainer)
        results[arm] = {
            "embed_fn": f"{arm} model's encode_images ({models[arm].image_backbone.cache_key})",
            "per_class": per_class_clusters(explainer, g),
            "pooled": pooled_purity(pooled[arm], args),
            "deletion": rows,
            "top_features": {c.class_name: [f"{f.label} ({f.importance:.3g}, n={f.support})" for f in c.top("image", args.top_k)]
                             for c in g},
        }

    a, b = pooled["pretrained"], pooled["adapted"]
    assert (a.photo == b.photo).all() and (a.y == b.y).all(), "both arms must embed the same crops in the same order"
    t0 = time.perf_counter()
    comparison = {"nn_same_class": per_photo_difference(nn_hits(a), nn_hits(b), a.photo, args.seed),
                  "pooled_purity_subsamples": purity_subsamples(a, b, args),
                  "deletion": {scale: deletion_difference(results["pretrained"]["deletion"][scale],
                                                          results["adapted"]["deletion"][scale], args.seed)
                               for scale in results["adapted"]["deletion"]}}
    seconds["comparison"] = round(time.perf_counter() - t0, 1)
    tables = {"clusters": cluster_table(results), "deletion": deletion_md(results), "comparison": comparison_md(comparison)}
    seconds["total"] = round(time.perf_counter() - t_start, 1)
    doc = {
        "description": __doc__.split("\n\n")[0],
        "command": shlex.join(["python", "bench/global_embedding.py", *argv]),
        "date_utc": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "git": git,
        "machine": {"cpu": cpu_name(), "cores": os.cpu_count(), "torch_threads": args.threads,
                    "platform": platform.platform(), "python": platform.python_version(), "nice": os.nice(0),
                    "load_average_start": load_start, "load_average_end": [round(v, 2) for v in os.getloadavg()],
                    "device": "cpu"},
        "dataset": {"name": "GroceryStoreDataset (Klasson et al. 2019), the 31 package classes",
                    "train_photos": len(train), "val_photos": len(val), "classes": len(train.classes),
                    "explained_classes": sorted({s.label for s in test}),
                    "explained_train_photos": len(glob_ex), "explained_val_photos": len(test_ex),
                    "train_selection": f"{args.train_per_class} per explained class, spread evenly in id order",
                    "class_selection": f"{len(set(s.label for s in test))} of the package classes that have val photos, "
                                       "spread evenly over them in alphabetical order",
                    "val_selection": "all their val photos" if not args.val_per_class else
                                     f"{args.val_per_class} per class, spread evenly in id order",
                    "test_split": "never read"},
        "settings": {"views": args.views, "epochs": args.epochs, "lime_samples": args.lime_samples,
                     "segments": args.segments, "lime": "MultimodalLime(quality=False), image only (no OCR words), "
                     "orthogonal sampler with early stopping, mean fill, ONNX Runtime",
                     "explained_target": "true class", "min_cluster_size": args.min_cluster_size,
                     "min_samples": args.min_samples, "top_k": args.top_k, "crop": "masked", "crop_size": crop_size,
                     "repeats": args.repeats, "radius_scales": args.radius_scales, "fill": "black", "seed": args.seed,
                     "shuffles": SHUFFLES},
        "definitions": {
            "clusters": "HDBSCAN clusters per class over the L2-normalised embeddings of the top-3 positive superpixels "
                        "of the class's train explanations (masked crops); '(support >= 2)': those spanning >= 2 photos, "
                        "which NormLIME ranks (min_support=2)",
            "pooled_purity": "all classes' crops pooled and clustered once (same HDBSCAN parameters); sum over clusters "
                             "of the majority-class count / crops in clusters",
            "purity_shuffled_labels": f"the same clusters with the crop labels permuted, mean of {SHUFFLES} shuffles",
            "purity_multi_photo": "purity over the pooled clusters holding crops of >= 2 photos",
            "noise_fraction": "share of pooled crops HDBSCAN left as noise",
            "nn_same_class": "share of crops whose nearest crop (Euclidean on the unit sphere) from another photo has "
                             "the same class; nn_chance: the expected share for a random neighbour",
            "deletion": "deletion_test(in_sample='error'): global features built on the train explanations, tested on "
                        "the held-out val photos whose own top-3 superpixels lie within radius_scale x a top-3 cluster's "
                        "radius (embedded with the arm's embedding); the adapted classifier's accuracy untouched / top "
                        "features painted black / the same shapes moved nearby; paired percentile bootstrap 95%. Only "
                        "the photo's own top-3 positive superpixels can be deleted (ImageMatcher), so the embedding "
                        "decides which of them count as the class's global features",
            "comparison": "adapted minus pretrained, paired: pooled purity (and purity above its shuffled-label level) "
                          f"re-clustered on {SUBSAMPLES} random 80% subsets of the photos (the spread of the "
                          "difference, not a confidence interval); the 1-NN hit averaged per photo (the same 3 crops per "
                          "photo in both arms), and (random - top) per photo on the val photos both deletion rows "
                          "tested; percentile bootstrap over photos, 95%",
        },
        "models": model_info,
        "results": results,
        "comparison": comparison,
        "tables": tables,
        "seconds": seconds,
        "note": args.note,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.out.with_suffix(".tmp")
    tmp.write_text(json.dumps(doc, indent=1) + "\n", encoding="utf-8")
    tmp.replace(args.out)
    print("\n## Clusters (train explanations)\n")
    print(tables["clusters"])
    print("\n## Deletion test (held-out val photos, adapted classifier)\n")
    print(tables["deletion"])
    print("\n## Paired arm comparison\n")
    print(tables["comparison"])
    print(f"\nseconds: {json.dumps(seconds)}")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
