"""Open-set matching: the embedding never saw the classes it is scored on (``--part openset``).

Protocol (classes split, not photos):

* the 81 GroceryStore classes are cut into ``--class-folds`` folds
  (:func:`prodlens.match.openset.unseen_class_folds`, look-alike groups dealt over folds);
  in outer fold f the embedding learns on the train photos of the other folds' classes
  ("seen") and is scored on fold f's classes ("unseen");
* galleries of the unseen classes: their iconic catalogue image (one per class), or
  k = 1 / 5 train photos per class (spread over the class's photos);
* queries: the val photos of the unseen classes (each val photo is a query in exactly
  one outer fold, so the folds pool to all 296); with the iconic gallery also the
  unseen classes' train photos (a larger sample, near-duplicate photos of one product);
* learned = a projection of the frozen features (normalised softmax or SupCon; with or
  without the seen classes' iconic images among the training examples) whose cosine is
  blended with the frozen features' (``MatchEmbedding.zero_shot_weight``);
* every choice (loss, iconic images or not, blend weight, fused text weight per gallery) is made inside the seen classes:
  an inner class fold of them is held out, the candidates learn on the rest and are
  scored on it (train photos only); the choice is then refit on all seen classes;
* zero-shot (ImageNet EfficientNet-Lite0 + MiniLM, frozen) vs each learned projection on
  the same queries; paired bootstrap over queries of the top-1 gap.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import numpy as np

log = logging.getLogger("bench.matching.openset")

KINDS = ("image", "text", "fused")
GALLERIES = ("iconic", "1shot", "5shot")
TEXT_WEIGHTS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7)
#: look-alike groups of packaged products reported one by one (coarse classes of classes.csv)
PACKAGE_GROUPS = ("Milk", "Juice", "Yoghurt")
#: weights of the frozen-feature cosine kept next to the learned one (MatchEmbedding.zero_shot_weight)
ZERO_SHOT_WEIGHTS = (0.0, 0.25, 0.5, 0.75)
#: how many times the seen classes' iconic images join the training photos (one candidate without, one with)
ICONIC_REPEAT = 10


def load(args) -> dict:
    """Train/val photos with OCR from the cache, iconic images with OCR, and their features."""
    from model_accuracy import attach_ocr

    from prodlens.data.grocery import import_grocery_store, package_classes
    from prodlens.data.manifest import Dataset
    from prodlens.match.pipeline import catalogue_samples, product_features
    from prodlens.ocr.runner import run_ocr

    ds = import_grocery_store(args.dataset, ("train", "val"))
    ds, missing = attach_ocr(ds, Path(args.ocr_cache), 0.5)
    icon = run_ocr(Dataset(catalogue_samples(ds.classes), ds.classes), cache_dir=args.ocr_cache, progress=False).dataset.samples
    train, val = ds.split("train").samples, ds.split("val").samples
    log.info("%d train, %d val photos (%d without an OCR cache entry: empty text), %d iconic images", len(train), len(val), missing, len(icon))
    progress = not args.quiet
    feats = {name: product_features(s, cache_dir=args.feature_cache, progress=progress)
             for name, s in (("train", train), ("val", val), ("iconic", icon))}
    no_entry = {s.id for s in ds.samples if s.ocr_tokens is None}
    return {"ds": ds, "feats": feats, "packages": set(package_classes(ds)), "no_ocr_entry": no_entry,
            "coarse": {c.name: (c.coarse or c.name) for c in ds.classes}, "n_missing_ocr": missing,
            "iconic_with_text": int(sum(bool(s.tokens) for s in icon))}


def _gallery(feats: dict, classes: set[str], gallery: str):
    """(gallery features, indices of the train photos it used) for the unseen ``classes``."""
    from prodlens.match.openset import k_shots

    if gallery == "iconic":
        f = feats["iconic"]
        return f.subset([i for i, c in enumerate(f.labels) if c in classes]), np.zeros(0, int)
    k = int(gallery[0])
    tr = feats["train"]
    idx = np.array([i for i, c in enumerate(tr.labels) if c in classes])
    pick = idx[k_shots([tr.ids[i] for i in idx], [tr.labels[i] for i in idx], k)]
    return tr.subset(pick), pick


def _ranks(emb, fq, fg, kind: str, w: float) -> np.ndarray:
    from prodlens.match.openset import class_scores, rank_of_truth
    from prodlens.match.pipeline import embed_features

    s, names = class_scores(embed_features(emb, fq, kind, w), embed_features(emb, fg, kind, w), fg.labels)
    return rank_of_truth(s, names, fq.labels)


def _fit(cand: dict, feats: dict, classes: set[str], args):
    """Fit candidate ``cand`` (method, iconic_repeat, zero_shot_weight) on the train photos of
    ``classes``, plus their iconic images repeated ``iconic_repeat`` times (catalogue-to-photo
    pairs: the gallery of an open-set catalogue is iconic images)."""
    from prodlens.match.embedding import MatchEmbedding
    from prodlens.match.pipeline import ProductFeatures

    tr, ic = feats["train"], feats["iconic"]
    f = tr.subset([i for i, c in enumerate(tr.labels) if c in classes])
    parts = [(f.ids, f.labels, f.image[:, :1], f.text[:, :1], f.has_text[:, :1])]
    r = cand.get("iconic_repeat", 0)
    if r and cand["method"] != "zero_shot":
        g = ic.subset([i for i, c in enumerate(ic.labels) if c in classes])
        parts += [(g.ids, g.labels, g.image[:, :1], g.text[:, :1], g.has_text[:, :1])] * r
    f = ProductFeatures(sum((p[0] for p in parts), ()), sum((p[1] for p in parts), ()),
                        np.concatenate([p[2] for p in parts]), np.concatenate([p[3] for p in parts]), np.concatenate([p[4] for p in parts]))
    return MatchEmbedding(cand["method"], kind="fused", epochs=args.epochs, seed=args.seed,
                          zero_shot_weight=cand.get("zero_shot_weight", 0.0)).fit(f.image, f.text, f.labels, has_text=f.has_text)


def candidates(args) -> list[dict]:
    """The learned settings tried on the inner fold (zero_shot_weight is chosen per candidate afterwards)."""
    return [{"method": m, "iconic_repeat": r} for m in args.methods.split(",") if m for r in (0, ICONIC_REPEAT)]


def _name(c: dict) -> str:
    return c["method"] if c["method"] == "zero_shot" else f"{c['method']}+iconic{c['iconic_repeat']}"


def _select(feats: dict, seen: list[str], coarse: dict, args) -> dict:
    """Inner-fold scores of zero-shot and every candidate; per candidate the zero_shot_weight with
    the best mean fused top-1 over galleries, and per gallery the best fused text weight."""
    from prodlens.match.openset import unseen_class_folds

    held = set(unseen_class_folds(seen, coarse, n_folds=4, seed=args.seed + 1)[0])
    tr = feats["train"]
    learn_classes = set(seen) - held
    out: dict = {"held_classes": sorted(held), "candidates": {}}
    queries = {}
    for g in GALLERIES:
        fg, used = _gallery(feats, held, g)
        used_set = set(used.tolist())
        queries[g] = (fg, tr.subset([i for i, c in enumerate(tr.labels) if c in held and i not in used_set]))
    for cand in [{"method": "zero_shot"}, *candidates(args)]:
        emb = _fit(cand, feats, learn_classes, args)
        by_k: dict = {}
        for k in ((0.0,) if cand["method"] == "zero_shot" else ZERO_SHOT_WEIGHTS):
            emb.set_params(zero_shot_weight=k)
            res: dict = {}
            for g, (fg, fq) in queries.items():
                row = {kind: float((_ranks(emb, fq, fg, kind, 0.0) == 1).mean()) for kind in ("image", "text")}
                fused = {w: float((_ranks(emb, fq, fg, "fused", w) == 1).mean()) for w in TEXT_WEIGHTS}
                w_best = max(TEXT_WEIGHTS, key=lambda w: (fused[w], -w))
                res[g] = {**{kind: round(v, 4) for kind, v in row.items()}, "fused": round(fused[w_best], 4), "text_weight": w_best}
            by_k[k] = res
        k_best = max(by_k, key=lambda k: (np.mean([by_k[k][g]["fused"] for g in GALLERIES]), -k))
        out["candidates"][_name(cand)] = {**cand, "zero_shot_weight": k_best, "score": round(float(np.mean([by_k[k_best][g]["fused"] for g in GALLERIES])), 4),
                                           "galleries": by_k[k_best],
                                           "by_zero_shot_weight": {str(k): round(float(np.mean([v[g]["fused"] for g in GALLERIES])), 4) for k, v in by_k.items()}}
    return out


def run(args) -> dict:
    from prodlens.match.openset import unseen_class_folds

    t0 = time.perf_counter()
    data = load(args)
    feats, coarse = data["feats"], data["coarse"]
    classes = sorted(coarse)
    folds = unseen_class_folds(classes, coarse, n_folds=args.class_folds, seed=args.seed)
    # per (arm, gallery, queries, kind): per-query ranks pooled over folds, and per-fold top-1
    pooled: dict = {}
    per_fold: list[dict] = []
    query_meta: dict = {"val": [], "train": []}
    tr, va = feats["train"], feats["val"]
    for f, unseen_t in enumerate(folds):
        unseen = set(unseen_t)
        seen = [c for c in classes if c not in unseen]
        t_f = time.perf_counter()
        sel = _select(feats, seen, coarse, args)
        cands = sel["candidates"]
        best = max((n for n in cands if n != "zero_shot"), key=lambda n: (cands[n]["score"], n))
        log.info("fold %d: %d unseen classes; inner fold (%d classes) mean fused top-1: %s -> %s", f, len(unseen),
                 len(sel["held_classes"]), {n: (c["score"], c["zero_shot_weight"]) for n, c in cands.items()}, best)
        # arms: zero-shot, the selected candidate, and the same projection without the zero-shot blend
        emb0, emb1 = _fit(cands["zero_shot"], feats, set(seen), args), _fit(cands[best], feats, set(seen), args)
        arms = {"zero_shot": (emb0, 0.0), "learned": (emb1, cands[best]["zero_shot_weight"]), "learned_no_blend": (emb1, 0.0)}
        fold_row: dict = {"fold": f, "unseen": sorted(unseen), "selected": best, "selection": sel, "top1": {}}
        for g in GALLERIES:
            fg, _ = _gallery(feats, unseen, g)
            qsets = {"val": va.subset([i for i, c in enumerate(va.labels) if c in unseen])}
            if g == "iconic":
                qsets["train"] = tr.subset([i for i, c in enumerate(tr.labels) if c in unseen])
            for qname, fq in qsets.items():
                if g == "iconic":
                    query_meta[qname] += list(zip(fq.ids, fq.labels))
                for arm, (emb, k) in arms.items():
                    emb.set_params(zero_shot_weight=k)
                    for kind in KINDS:
                        src = cands["zero_shot"] if arm == "zero_shot" else cands[best]
                        w = src["galleries"][g]["text_weight"] if kind == "fused" else 0.0
                        r = _ranks(emb, fq, fg, kind, w)
                        key = (arm, g, qname, kind)
                        pooled.setdefault(key, []).append(r)
                        fold_row["top1"]["/".join(key)] = round(float((r == 1).mean()), 4) if len(r) else None
        per_fold.append(fold_row)
        log.info("fold %d done in %.0fs: val top-1 iconic fused zero-shot %.3f, learned %.3f; 1-shot %.3f vs %.3f", f, time.perf_counter() - t_f,
                 fold_row["top1"]["zero_shot/iconic/val/fused"], fold_row["top1"]["learned/iconic/val/fused"],
                 fold_row["top1"]["zero_shot/1shot/val/fused"], fold_row["top1"]["learned/1shot/val/fused"])
    return summarize(pooled, per_fold, query_meta, data, folds, args, time.perf_counter() - t0)


def summarize(pooled, per_fold, query_meta, data, folds, args, seconds) -> dict:
    from model_accuracy import paired_bootstrap, wilson

    coarse, packages, no_entry = data["coarse"], data["packages"], data["no_ocr_entry"]
    group_size: dict[str, int] = {}
    for c, g in coarse.items():
        group_size[g] = group_size.get(g, 0) + 1
    table: dict = {}
    correct: dict = {}
    for (arm, g, qname, kind), rs in pooled.items():
        r = np.concatenate(rs)
        meta = query_meta[qname]
        labels = np.array([lab for _, lab in meta])
        ids = [i for i, _ in meta]
        top1 = (r == 1).astype(int)
        correct[(arm, g, qname, kind)] = top1
        fold_top1 = [row["top1"][f"{arm}/{g}/{qname}/{kind}"] for row in per_fold]
        fold_top1 = [v for v in fold_top1 if v is not None]
        subsets = {
            "packages": np.isin(labels, sorted(packages)),
            "look_alike": np.array([group_size[coarse[c]] > 1 for c in labels]),
            "packaged_look_alike": np.array([group_size[coarse[c]] > 1 and c in packages for c in labels]),
            "with_ocr_entry": np.array([i not in no_entry for i in ids]),
            **{f"group_{grp}": np.array([coarse[c] == grp for c in labels]) for grp in PACKAGE_GROUPS},
        }
        row = {"top1": round(float(top1.mean()), 4), "top1_ci95": wilson(int(top1.sum()), len(top1)),
               "top5": round(float((r <= 5).mean()), 4), "n_queries": int(len(r)),
               "fold_top1_mean": round(float(np.mean(fold_top1)), 4), "fold_top1_sd": round(float(np.std(fold_top1, ddof=1)), 4),
               "subsets": {name: {"top1": round(float(top1[m].mean()), 4) if m.any() else None, "n": int(m.sum())}
                           for name, m in subsets.items()}}
        table.setdefault(arm, {}).setdefault(g, {}).setdefault(qname, {})[kind] = row
    gaps: dict = {}
    for g in GALLERIES:
        for qname in ("val", "train"):
            if ("learned", g, qname, "fused") not in correct:
                continue
            c = lambda arm, kind: correct[(arm, g, qname, kind)]  # noqa: E731
            gaps[f"{g}/{qname}"] = {
                **{f"learned_{k}_minus_zero_shot_{k}": paired_bootstrap(c("learned", k), c("zero_shot", k), seed=args.seed) for k in KINDS},
                "learned_no_blend_fused_minus_zero_shot_fused": paired_bootstrap(c("learned_no_blend", "fused"), c("zero_shot", "fused"), seed=args.seed),
                "learned_fused_minus_zero_shot_image": paired_bootstrap(c("learned", "fused"), c("zero_shot", "image"), seed=args.seed),
                "learned_fused_minus_learned_image": paired_bootstrap(c("learned", "fused"), c("learned", "image"), seed=args.seed),
                "zero_shot_fused_minus_zero_shot_image": paired_bootstrap(c("zero_shot", "fused"), c("zero_shot", "image"), seed=args.seed),
            }
            la = np.array([coarse[lab] in PACKAGE_GROUPS for _, lab in query_meta[qname]])
            if la.any():
                gaps[f"{g}/{qname}"]["milk_juice_yoghurt_learned_fused_minus_zero_shot_fused"] = paired_bootstrap(
                    c("learned", "fused")[la], c("zero_shot", "fused")[la], seed=args.seed)
    return {
        "protocol": __doc__.split("Protocol (classes split, not photos):")[1].strip(),
        "class_folds": [list(f) for f in folds],
        "n_class_folds": len(folds),
        "queries": {"val": f"val photos of the unseen classes, pooled over folds ({len(query_meta['val'])})",
                    "train": f"train photos of the unseen classes, iconic gallery only ({len(query_meta['train'])})"},
        "ocr": {"photos_without_cache_entry": data["n_missing_ocr"], "note": "photos without an OCR cache entry get empty text "
                "(their fused ranking is the image ranking); subsets.with_ocr_entry restricts to those that have one",
                "iconic_images_with_text": data["iconic_with_text"]},
        "arms": {"zero_shot": "frozen backbone features", "learned": "the candidate selected on the inner class fold",
                 "learned_no_blend": "the same projection with zero_shot_weight=0 (the projection alone)"},
        "params": {"epochs": args.epochs, "out_dim": 128, "candidates": [_name(c) for c in candidates(args)],
                   "zero_shot_weights_tried": list(ZERO_SHOT_WEIGHTS),
                   "text_weights_tried": list(TEXT_WEIGHTS), "seed": args.seed, "views": 1,
                   "backbones": "efficientnet_lite0 (ImageNet) + minilm, frozen, features cached"},
        "table": table,
        "gaps": gaps,
        "folds": per_fold,
        "seconds": round(seconds, 1),
    }


def markdown(r: dict) -> str:
    t = r["table"]
    lines = ["| embedding | gallery | image top-1 | text top-1 | fused top-1 (fold mean ± sd) | fused top-5 | packaged look-alikes fused |",
             "|---|---|---|---|---|---|---|"]
    for arm in t:
        for g in GALLERIES:
            v = t[arm][g]["val"]
            f = v["fused"]
            lines.append(f"| {arm} | {g} | {v['image']['top1']:.3f} | {v['text']['top1']:.3f} | {f['top1']:.3f} "
                         f"({f['fold_top1_mean']:.3f} ± {f['fold_top1_sd']:.3f}) | {f['top5']:.3f} | "
                         f"{f['subsets']['packaged_look_alike']['top1']} |")
    out = "\n".join(lines)
    for key, gp in r["gaps"].items():
        d = gp["learned_fused_minus_zero_shot_fused"]
        e = gp["learned_image_minus_zero_shot_image"]
        out += f"\n{key}: learned - zero-shot top-1, fused {d['diff']:+.3f} {d['ci95']}, image {e['diff']:+.3f} {e['ci95']} (pooled queries)"
    return out
