"""Product matching on GroceryStoreDataset: open set, catalogue scale, faithful explanations.

Not a test. Four parts, run one or several with ``--part`` (comma-separated):

* ``openset`` (bench/matching_openset.py): classes split into folds; the embedding learns
  on some classes and is scored on classes it never saw (iconic / 1-shot / 5-shot
  galleries), zero-shot vs learned, look-alike groups, paired bootstrap of the gap;
* ``scale`` (bench/matching_scale.py): exact vs approximate indexes at 10^4..10^6
  synthetic gallery vectors: latency, recall@10, memory per item;
* ``faithfulness`` (bench/matching_faithfulness.py): two-sided match explanations of
  open-set matches; deletion and insertion curves of the region and word rankings vs
  random order, paired over matches, per modality;
* ``closed`` (this file, the earlier bench): the closed-set case described below.

``openset``, ``scale`` and ``faithfulness`` write their section of
bench/results/matching_openset.json (other sections are kept); ``closed`` writes
bench/results/matching.json.

Closed set: queries are the val photos; galleries are the train photos and the
iconic catalogue images (one per class). For each embedding method (zero-shot
ImageNet EfficientNet-Lite0 + MiniLM features; a projection trained with normalised
softmax or supervised contrastive loss on the frozen, cached features) it reports
top-1/top-5 of image, text and fused embeddings.

Every choice is made on the training photos only: 3-fold cross-validation with
contiguous per-class folds picks the fused text weight (per gallery) and the
fine-tuning loss; val is only used for the final numbers (test stays held out).

Optionally (``--explain N``) it explains the top-1 match of N val queries with RISE +
shared words and reports the deletion AUCs (faithfulness) against random orders.

Usage::

    python bench/matching.py --part openset,scale,faithfulness --ocr-cache /work/cache/ocr
    python bench/matching.py --part closed --feature-cache /work/cache/features --ocr-cache /work/cache/ocr
    python bench/matching.py --part closed --explain 8 --n-masks 500   # + its faithfulness check

Each part prints a Markdown table.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import platform
import shlex
import sys
import time
from pathlib import Path

from _machine import git_state

import numpy as np

DATASET = Path("/work/shared/datasets/GroceryStoreDataset/dataset")
RESULTS = Path(__file__).parent / "results" / "matching.json"
OPENSET_RESULTS = Path(__file__).parent / "results" / "matching_openset.json"
PARTS = ("openset", "scale", "faithfulness", "closed")
KINDS = ("image", "text", "fused")
log = logging.getLogger("bench.matching")


def _acc(r) -> dict:
    return {"top1": round(r.top1, 4), "top5": round(r.top5, 4)}


def _subset_accuracy(result, classes: set[str]) -> dict:
    """Top-k over the queries of ``classes`` (from the per-class results)."""
    rows = [c for c in result.per_class.values() if c.name in classes]
    n = sum(c.n_queries for c in rows)
    return {f"top{k}": round(sum(c.accuracy[k] * c.n_queries for c in rows) / n, 4) for k in (1, 5)} | {"n_queries": n}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dataset", type=Path, default=DATASET)
    p.add_argument("--feature-cache", default="runs/cache/features", help="backbone feature cache (shared with training)")
    p.add_argument("--ocr-cache", default="runs/cache/ocr", help="OCR cache (RapidOCR lines by image hash)")
    p.add_argument("--views", type=int, default=1, help="image views per training photo for fine-tuning (1 = plain only)")
    p.add_argument("--folds", type=int, default=3)
    p.add_argument("--methods", default="normsoftmax,supcon", help="fine-tuning losses to choose from on train folds")
    p.add_argument("--epochs", type=int, default=40)
    p.add_argument("--explain", type=int, default=0, help="closed: explain this many val queries' top-1 matches")
    p.add_argument("--n-masks", type=int, default=500)
    p.add_argument("--out", type=Path, default=None, help="JSON to write (default: matching.json for closed, else matching_openset.json)")
    p.add_argument("--quiet", action="store_true")
    p.add_argument("--part", default="openset,scale,faithfulness", help=f"comma-separated parts: {', '.join(PARTS)}")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--class-folds", type=int, default=5, help="openset: folds over classes")
    p.add_argument("--scale-sizes", default="1e4,1e5,1e6", help="scale: gallery sizes")
    p.add_argument("--scale-queries", type=int, default=200)
    p.add_argument("--scale-hnsw-max", default="1e5", help="scale: build HNSW only up to this many items")
    p.add_argument("--repeats", type=int, default=5, help="scale: timing repeats (indexes interleaved)")
    p.add_argument("--threads", type=int, default=2, help="scale: faiss threads")
    p.add_argument("--matches", type=int, default=30, help="faithfulness: matches explained")
    p.add_argument("--faith-masks", type=int, default=48, help="faithfulness: RISE masks per photo")
    p.add_argument("--faith-steps", type=int, default=6, help="faithfulness: points on each image curve")
    p.add_argument("--faith-random", type=int, default=2, help="faithfulness: random orders per curve")
    p.add_argument("--faith-from-cache", action="store_true", help="faithfulness: only summarise the pairs already explained")
    p.add_argument("--faith-cache", default="runs/cache/match_faithfulness", help="faithfulness: one JSON per explained pair (resume)")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING if args.quiet else logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    parts = [x for x in args.part.split(",") if x]
    bad = [x for x in parts if x not in PARTS]
    if bad:
        p.error(f"unknown part(s) {bad}; choose from {', '.join(PARTS)}")
    for part in [x for x in parts if x != "closed"]:
        run_part(part, args, argv)
    if "closed" in parts:
        return main_closed(args, argv)
    return 0


def _header(argv: list[str] | None) -> dict:
    import os

    from _machine import cpu_name

    return {
        "command": "python " + " ".join(shlex.quote(a) for a in [sys.argv[0], *(argv if argv is not None else sys.argv[1:])]),
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "git": git_state(),
        "machine": {"cpu": cpu_name(), "cores": os.cpu_count(), "machine_busy": True, "loadavg": [round(v, 2) for v in os.getloadavg()],
                    "note": "2-core CPU shared with other helpers and a background OCR job: wall times are inflated; "
                            "counts (model calls) do not depend on load"},
    }


def run_part(part: str, args, argv: list[str] | None) -> None:
    """Run one part and merge its section into the open-set results file."""
    import importlib

    mod = importlib.import_module(f"matching_{part}")
    log.info("part %s", part)
    section = {**_header(argv), **mod.run(args)}
    out = args.out or OPENSET_RESULTS
    doc = json.loads(out.read_text()) if out.is_file() else {}
    doc.setdefault("about", "bench/matching.py --part openset|scale|faithfulness: see the module docstrings of "
                            "bench/matching_<part>.py for each protocol")
    doc[part] = section
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(doc, indent=1, default=str) + "\n")
    print(f"\n## {part}\n\n" + mod.markdown(section) + f"\n\nwrote {out} [{part}]")


def main_closed(args, argv: list[str] | None) -> int:
    """The closed-set bench (val queries, train / iconic galleries)."""
    args.out = args.out or RESULTS
    t_start = time.perf_counter()

    from prodlens.data.grocery import import_grocery_store, package_classes
    from prodlens.data.manifest import Dataset
    from prodlens.match.embedding import MatchEmbedding
    from prodlens.match.index import make_index
    from prodlens.match.pipeline import catalogue_samples, embed_features, product_features
    from prodlens.match.retrieval import evaluate_retrieval
    from prodlens.match.selection import DEFAULT_TEXT_WEIGHTS, best_setting, cross_validate
    from prodlens.ocr.runner import run_ocr

    progress = not args.quiet
    ds = import_grocery_store(args.dataset, ("train", "val"))
    ocr = run_ocr(ds, cache_dir=args.ocr_cache, progress=progress)
    ds = ocr.dataset
    iconic = run_ocr(Dataset(catalogue_samples(ds.classes), ds.classes), cache_dir=args.ocr_cache, progress=progress).dataset.samples
    train, val = ds.split("train").samples, ds.split("val").samples
    packages = set(package_classes(ds))
    log.info("%d train, %d val photos, %d iconic images, %d classes (%d packages)", len(train), len(val), len(iconic), len(ds.classes), len(packages))

    t0 = time.perf_counter()
    views = tuple(range(args.views))
    f_train = product_features(train, views=views, cache_dir=args.feature_cache, progress=progress)
    f_val = product_features(val, cache_dir=args.feature_cache, progress=progress)
    f_icon = product_features(iconic, cache_dir=args.feature_cache, progress=progress)
    t_features = time.perf_counter() - t0

    # -- selection on train folds only --------------------------------------------------
    t0 = time.perf_counter()
    methods = ["zero_shot"] + [m for m in args.methods.split(",") if m]
    cv: dict[str, list] = {}
    for m in methods:
        emb = MatchEmbedding(m, epochs=args.epochs)
        cv[m] = cross_validate(f_train, emb, n_folds=args.folds, text_weights=DEFAULT_TEXT_WEIGHTS, extra_gallery=("iconic", f_icon))
        b = best_setting(cv[m], kind="fused")
        log.info("CV %s: fused top-1 %.4f at text weight %.1f (train gallery)", m, b.accuracy[1], b.text_weight)
    finetuned = max(methods[1:], key=lambda m: (best_setting(cv[m], kind="fused").accuracy[1], best_setting(cv[m], kind="fused").accuracy[5]))
    t_select = time.perf_counter() - t0

    # -- final fits on all train photos, evaluation on val ----------------------------------
    report: dict = {}
    fitted: dict[str, MatchEmbedding] = {}
    t0 = time.perf_counter()
    for role, method in (("baseline", "zero_shot"), ("finetuned", finetuned)):
        emb = MatchEmbedding(method, kind="fused", epochs=args.epochs).fit(f_train.image, f_train.text, f_train.labels,
                                                                          has_text=f_train.has_text)
        fitted[role] = emb
        out: dict = {"method": method}
        for gname, gf in (("train", f_train), ("iconic", f_icon)):
            w = best_setting(cv[method], gallery=gname, kind="fused").text_weight
            per_kind = {}
            for kind in KINDS:
                q = embed_features(emb, f_val, kind, w)
                g = embed_features(emb, gf, kind, w)
                r = evaluate_retrieval(q, f_val.labels, g, gf.labels, ks=(1, 5), metric="ip", config={"kind": kind, "gallery": gname})
                with_text = f_val.plain_has_text
                rt = evaluate_retrieval(q[with_text], np.asarray(f_val.labels)[with_text], g, gf.labels, ks=(1, 5), metric="ip")
                per_kind[kind] = _acc(r) | {"packages": _subset_accuracy(r, packages),
                                            "queries_with_text": _acc(rt) | {"n_queries": int(with_text.sum())},
                                            "mean_class_top1": round(r.mean_class_accuracy(1), 4)}
                if kind == "fused":
                    per_kind[kind]["text_weight"] = w
                    if gname == "train":
                        out["per_class_fused_top1"] = {c.name: round(c.accuracy[1], 3) for c in r.per_class.values()}
            out[gname] = per_kind
        out["top1"], out["top5"] = out["train"]["fused"]["top1"], out["train"]["fused"]["top5"]
        out["kind"], out["gallery"], out["text_weight"] = "fused", "train", out["train"]["fused"]["text_weight"]
        report[role] = out
    t_eval = time.perf_counter() - t0

    # -- approximate index == exact on the real gallery ----------------------------------
    emb = fitted["finetuned"]
    w = report["finetuned"]["text_weight"]
    q, g = embed_features(emb, f_val, "fused", w), embed_features(emb, f_train, "fused", w)
    exact = make_index("exact", metric="ip").add(g).search(q, 5)
    agreement = {}
    for name in ("hnsw", "ivf"):
        try:
            approx = make_index(name, metric="ip", **({"nlist": 32, "nprobe": 8} if name == "ivf" else {})).add(g).search(q, 5)
        except ImportError as e:
            agreement[name] = str(e)
            continue
        agreement[name] = {"top1_same": round(float((approx.ids[:, 0] == exact.ids[:, 0]).mean()), 4),
                           "recall_at_5": round(float(np.mean([len(set(a) & set(b)) / 5 for a, b in zip(approx.ids, exact.ids)])), 4)}

    faithfulness = explain_queries(args, ds, fitted["finetuned"], report["finetuned"]["text_weight"], f_val, f_train) if args.explain else None

    result = {
        "command": "python " + " ".join(shlex.quote(a) for a in [sys.argv[0], *(argv if argv is not None else sys.argv[1:])]),
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "git": git_state(),
        "dataset": {
            "name": "GroceryStoreDataset (Klasson et al., WACV 2019)", "root": str(args.dataset),
            "queries": f"val photos ({len(val)})", "galleries": {"train": f"train photos ({len(train)})", "iconic": f"iconic catalogue images ({len(iconic)}, one per class)"},
            "classes": len(ds.classes), "package_classes": len(packages), "ocr": ocr.report.engine,
        },
        "headline": "top1/top5 of baseline and finetuned are the fused embedding, val queries vs the train-photo gallery; "
                    "image/text/fused and the iconic gallery are under train/iconic",
        "baseline": report["baseline"],
        "finetuned": report["finetuned"],
        "selection": {
            "protocol": f"{args.folds}-fold CV on train photos (contiguous per-class folds); val never used for choices",
            "finetuned_method": finetuned,
            "cv": {m: [s.to_dict() for s in cv[m]] for m in methods},
            "params": {"out_dim": 128, "epochs": args.epochs, "views": args.views, "text_weights_tried": list(DEFAULT_TEXT_WEIGHTS)},
        },
        "index_agreement": {"query": "val fused (finetuned) vs train gallery", **agreement},
        "faithfulness": faithfulness,
        "seconds": {"features": round(t_features, 1), "selection": round(t_select, 1), "final_fit_eval": round(t_eval, 1),
                    "total": round(time.perf_counter() - t_start, 1)},
        "machine": {"cpu": platform.processor() or platform.machine(), "note": "2-core CPU shared with other jobs"},
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    print(markdown(result))
    print(f"\nwrote {args.out}")
    return 0


def explain_queries(args, ds, embedding, text_weight, f_val, f_train) -> dict:
    """Explain the top-1 train match of ``args.explain`` val queries (spread over package classes)."""
    from prodlens.match.embedder import BackboneEmbedder
    from prodlens.match.explainer import MatchExplainer
    from prodlens.match.index import make_index
    from prodlens.match.pipeline import embed_features

    by_id = ds.by_id()
    q_all = embed_features(embedding, f_val, "fused", text_weight)
    g_all = embed_features(embedding, f_train, "fused", text_weight)
    top = make_index("exact", metric="ip").add(g_all).search(q_all, 1).ids[:, 0]
    # one query per class, classes with text on the package first, deterministic order
    seen, picks = set(), []
    for i, qid in enumerate(f_val.ids):
        s = by_id[qid]
        if s.label in seen or len(s.tokens) < 3 or "Packages" not in s.image_path.parts:
            continue
        seen.add(s.label)
        picks.append(i)
    step = max(1, len(picks) // args.explain)
    picks = picks[::step][: args.explain]
    embedder = BackboneEmbedder(embedding, kind="fused", text_weight=text_weight)
    explainer = MatchExplainer(n_masks=args.n_masks, n_random=3, progress=False)
    rows = []
    for i in picks:
        q, m = by_id[f_val.ids[i]], by_id[f_train.ids[top[i]]]
        t0 = time.perf_counter()
        e = explainer.explain(embedder, q, m)
        rows.append({
            "query": q.id, "match": m.id, "correct": q.label == m.label, "similarity": round(e.similarity, 4),
            "deletion_auc": round(e.deletion.auc, 4), "random_auc": round(e.deletion.random_auc, 4),
            "word_deletion_auc": None if e.word_deletion is None else round(e.word_deletion.auc, 4),
            "word_random_auc": None if e.word_deletion is None else round(e.word_deletion.random_auc, 4),
            "top_words": [(w.word, round(w.drop, 4)) for w in e.words[:5]], "n_words": len(e.words),
            "seconds": round(time.perf_counter() - t0, 1),
        })
        log.info("%s", e.summary())
    return summarize_faithfulness(rows, f"RISE, {args.n_masks} masks, 8x8 grid, blur fill; deletion over 8x8 cells (16 steps) vs 3 random orders")


def summarize_faithfulness(rows: list[dict], method: str) -> dict:
    """Mean deletion AUCs of explained matches; word curves need >= 2 shared words to differ from random."""
    def n_words(r: dict) -> int:
        return r.get("n_words", len(r["top_words"]))

    wrd = [r for r in rows if r["word_deletion_auc"] is not None]
    multi = [r for r in wrd if n_words(r) >= 2]
    mean = lambda xs: round(float(np.mean(xs)), 4) if xs else None  # noqa: E731
    return {
        "method": method,
        "embedding": "finetuned fused",
        "n": len(rows),
        "image_auc_mean": mean([r["deletion_auc"] for r in rows]),
        "image_random_auc_mean": mean([r["random_auc"] for r in rows]),
        "image_faithful_fraction": mean([r["deletion_auc"] < r["random_auc"] for r in rows]),
        "word_n": len(wrd),
        "word_auc_mean": mean([r["word_deletion_auc"] for r in wrd]),
        "word_random_auc_mean": mean([r["word_random_auc"] for r in wrd]),
        "word_faithful_fraction": mean([r["word_deletion_auc"] < r["word_random_auc"] for r in wrd]),
        "word_note": "with one shared word every order is the same, so AUC == random AUC; see the >= 2 words fields",
        "word_multi_n": len(multi),
        "word_multi_auc_mean": mean([r["word_deletion_auc"] for r in multi]),
        "word_multi_random_auc_mean": mean([r["word_random_auc"] for r in multi]),
        "word_multi_faithful_fraction": mean([r["word_deletion_auc"] < r["word_random_auc"] for r in multi]),
        "word_multi_tied_fraction": mean([r["word_deletion_auc"] == r["word_random_auc"] for r in multi]),
        "queries": rows,
    }


def markdown(r: dict) -> str:
    lines = [
        "| embedding | kind | train gallery top-1 | top-5 | iconic gallery top-1 | top-5 |",
        "|---|---|---|---|---|---|",
    ]
    for role in ("baseline", "finetuned"):
        o = r[role]
        for kind in KINDS:
            t, i = o["train"][kind], o["iconic"][kind]
            name = f"{role} ({o['method']})"
            kname = kind if kind != "fused" else f"fused (w={t['text_weight']}/{i['text_weight']})"
            lines.append(f"| {name} | {kname} | {t['top1']:.3f} | {t['top5']:.3f} | {i['top1']:.3f} | {i['top5']:.3f} |")
    out = "\n".join(lines)
    out += "\n\nVal queries whose OCR found text: " + ", ".join(
        f"{role} {kind} {r[role]['train'][kind]['queries_with_text']['top1']:.3f}" for role in ("baseline", "finetuned") for kind in ("text", "fused"))
    out += "\n\nPackages only (val queries of package classes): " + ", ".join(
        f"{role} fused {r[role]['train']['fused']['packages']['top1']:.3f} (train) / {r[role]['iconic']['fused']['packages']['top1']:.3f} (iconic)"
        for role in ("baseline", "finetuned"))
    f = r.get("faithfulness")
    if f:
        out += (f"\n\nFaithfulness ({f['n']} explained matches): image deletion AUC {f['image_auc_mean']:.3f} vs random "
                f"{f['image_random_auc_mean']:.3f} (lower in {f['image_faithful_fraction']:.0%})")
        if f.get("word_multi_n"):
            out += (f"; word deletion AUC {f['word_multi_auc_mean']:.3f} vs random {f['word_multi_random_auc_mean']:.3f} "
                    f"over the {f['word_multi_n']} matches with >= 2 shared words (lower in {f['word_multi_faithful_fraction']:.0%}, "
                    f"tied in {f['word_multi_tied_fraction']:.0%})")
    return out


if __name__ == "__main__":
    sys.exit(main())
