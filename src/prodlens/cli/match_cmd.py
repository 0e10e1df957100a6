"""`prodlens match` (retrieval accuracy), `prodlens match-fit` (metric learning) and
`prodlens match-explain` (why a query matches its neighbour)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from prodlens.cli._common import add_parser, report_skips
from prodlens.cli._common import positive_int as _positive_int  # the name the match commands use
from prodlens.match.index import INDEXES

KINDS = ("image", "text", "fused")
GALLERIES = ("iconic", "train", "val", "test")


def _weight(text: str) -> float:
    v = float(text)
    if not 0 <= v <= 1:
        raise argparse.ArgumentTypeError(f"must be between 0 and 1, got {text}")
    return v


def _load_embedding(path: str | None):
    if path is None:
        return None
    from prodlens.match.embedding import MatchEmbedding

    return MatchEmbedding.load(path)


def _write_json(path: str, data: dict) -> None:
    from prodlens._atomic import atomic_write

    with atomic_write(Path(path)) as f:
        json.dump(data, f, indent=1, ensure_ascii=False)
    print(f"wrote {path}")


def _match(args: argparse.Namespace) -> int:
    from prodlens.data.manifest import read_dataset
    from prodlens.match.pipeline import evaluate_matching

    ds = read_dataset(args.dataset)
    res = evaluate_matching(
        ds, _load_embedding(args.embedding), queries=args.queries, gallery=args.gallery, kind=args.kind,
        text_weight=args.text_weight, index=args.index, ks=sorted({1, args.k}), cache_dir=args.feature_cache,
        ocr_cache_dir=args.ocr_cache, progress=not args.no_progress,
    )
    cfg = res.config
    w = f", text weight {cfg['text_weight']:g}" if cfg.get("text_weight") is not None else ""
    print(f"{cfg['queries']} queries ({res.n_queries}) in {cfg['gallery']} gallery ({res.n_gallery}), "
          f"{cfg['method']} {cfg['kind']} embedding{w}, {cfg['index']} index")
    print("  " + "   ".join(f"top-{k} {v:.3f}" for k, v in sorted(res.accuracy.items())))
    worst = sorted(res.per_class.values(), key=lambda c: (c.accuracy[1], c.name))[: args.worst]
    if worst:
        print("  hardest classes (top-1):")
        for c in worst:
            conf = f", most often matched to {c.confused_with}" if c.confused_with else ""
            print(f"    {c.name}: {c.accuracy[1]:.2f} of {c.n_queries}{conf}")
    if args.json:
        _write_json(args.json, res.to_dict(include_neighbors=True))
    if args.db:
        from prodlens.store import Store, save_retrieval

        with Store.open(args.db) as store:
            n = save_retrieval(store, args.run, res, ds)
            print(f"stored {n} queries' matches in run {args.run!r} of {store.where}")
    return report_skips(res.config["skipped"])


def _fit(args: argparse.Namespace) -> int:
    from prodlens.data.manifest import read_dataset
    from prodlens.match.embedding import MatchEmbedding
    from prodlens.match.pipeline import fit_matching

    ds = read_dataset(args.dataset)
    emb = MatchEmbedding(
        args.method, kind=args.kind, text_weight=args.text_weight, out_dim=args.out_dim, hidden=args.hidden,
        epochs=args.epochs, seed=args.seed, progress=not args.no_progress,
    )
    skipped: list = []
    emb = fit_matching(ds, emb, split=args.split, views=tuple(range(args.views)), cache_dir=args.feature_cache,
                       progress=not args.no_progress, skipped=skipped)
    path = emb.save(args.out)
    print(f"fitted {emb!r} on {args.split} ({len(emb.classes_)} classes)")
    print(f"wrote {path}")
    return report_skips(skipped)


def _explain(args: argparse.Namespace) -> int:
    from PIL import Image

    from prodlens.data.images import load_image
    from prodlens.data.manifest import read_dataset
    from prodlens.match.pipeline import explain_dataset_match
    from prodlens.match.render import render_match

    ds = read_dataset(args.dataset)
    r = explain_dataset_match(
        ds, args.query, match_id=args.match, gallery=args.gallery, embedding=_load_embedding(args.embedding),
        kind=args.kind, text_weight=args.text_weight, cache_dir=args.feature_cache, ocr_cache_dir=args.ocr_cache,
        progress=not args.no_progress, method=args.method, n_masks=args.n_masks, match_saliency=args.match_saliency,
        deletion=not args.no_deletion, seed=args.seed,
    )
    e = r.explanation
    if r.neighbors:
        print("nearest matches: " + ", ".join(f"{n.gallery_id} ({n.score:.3f})" for n in r.neighbors))
    print(e.summary())
    for i, w in enumerate(e.words[:10], 1):
        print(f"  {i}. {w.word}: similarity drop {w.drop:+.4f} (text {w.text_drop:+.4f}, box {w.image_drop:+.4f})")
    if e.word_deletion is not None:
        print(f"  word deletion AUC {e.word_deletion.auc:.3f} vs random {e.word_deletion.random_auc:.3f}")
    out = Path(args.out)
    img = render_match(load_image(r.query.image_path), load_image(r.match.image_path), e)
    out.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(img).save(out)
    print(f"wrote {out}")
    if args.json:
        _write_json(args.json, e.to_dict(include_maps=not args.no_maps))
    if args.db:
        from prodlens.store import Store, save_match_explanation

        with Store.open(args.db) as store:
            save_match_explanation(store, args.run, e, r.query, r.match, classes=ds.classes.names)
            print(f"stored the explanation in run {args.run!r} of {store.where}")
    return 0


def _common(p: argparse.ArgumentParser, gallery: bool = True, embedding: bool = True) -> None:
    p.add_argument("dataset", help="dataset folder (with manifest.jsonl; run `prodlens ocr` first for text)")
    if embedding:
        p.add_argument("--embedding", metavar="PATH", help="embedding from `prodlens match-fit` (default: zero-shot backbone features)")
    p.add_argument("--kind", choices=KINDS, default=None, help="image, text or fused (default: the embedding's, else fused)")
    p.add_argument("--text-weight", type=_weight, default=None, help="text share w of fused similarity, (1-w) cos_image + w cos_text (default: the embedding's, 0.2)")
    if gallery:
        p.add_argument("--gallery", choices=GALLERIES, default="train", help="gallery: a split of photos or the iconic catalogue images (default train)")
    p.add_argument("--feature-cache", metavar="DIR", default=None, help="backbone feature cache (default $PRODLENS_CACHE/features or ~/.cache/prodlens/features)")
    p.add_argument("--ocr-cache", metavar="DIR", default=None, help="OCR cache for catalogue images (default as `prodlens ocr`)")
    p.add_argument("--no-progress", action="store_true", help="hide progress bars")


def _store_args(p: argparse.ArgumentParser, what: str) -> None:
    p.add_argument("--db", metavar="PATH", help=f"also store {what} in this results store (SQLite file or postgresql:// URL) for `prodlens app`")
    p.add_argument("--run", default="match", help="run to store them in; created when new (default match)")


def register(sub: argparse._SubParsersAction) -> None:
    p = add_parser(
        sub, "match",
        "Match query photos to a gallery by embedding similarity; report top-1/top-k accuracy overall and per class.",
        "prodlens match work/grocery --gallery iconic --kind fused --embedding runs/match.pt --db runs/results.sqlite",
        skips=True,
    )
    _common(p)
    _store_args(p, "each query's top-k matches")
    p.add_argument("--queries", choices=("train", "val", "test"), default="val", help="split of query photos (default val)")
    p.add_argument("--index", choices=INDEXES, default="exact", help="exact (numpy) or a faiss index: flat, hnsw, ivf, ivfpq (needs faiss-cpu)")
    p.add_argument("-k", type=_positive_int, default=5, help="also report top-k (default 5)")
    p.add_argument("--worst", type=int, default=5, help="list this many hardest classes (default 5)")
    p.add_argument("--json", metavar="PATH", help="write the full result (per class, neighbours) as JSON")
    p.set_defaults(func=_match)

    p = add_parser(
        sub, "match-fit",
        "Learn a matching embedding on frozen, cached backbone features (metric learning; about a minute on a CPU).",
        "prodlens match-fit work/grocery --out runs/match.pt --method normsoftmax --kind fused", skips=True,
    )
    _common(p, gallery=False, embedding=False)
    p.set_defaults(kind="fused", text_weight=0.2)
    p.add_argument("--out", required=True, help="where to write the embedding (.pt)")
    p.add_argument("--split", choices=("train", "val", "test"), default="train", help="split to learn from (default train)")
    p.add_argument("--method", choices=("normsoftmax", "supcon", "zero_shot"), default="normsoftmax", help="loss (default normsoftmax)")
    p.add_argument("--out-dim", type=_positive_int, default=128, help="embedding size per modality (default 128)")
    p.add_argument("--hidden", type=int, default=0, help="hidden layer width, 0 = linear projection (default)")
    p.add_argument("--epochs", type=_positive_int, default=40, help="training epochs (default 40)")
    p.add_argument("--views", type=_positive_int, default=1, help="image views per photo: 1 = plain, more adds cached training augmentations")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=_fit)

    p = add_parser(
        sub, "match-explain",
        "Explain why a query matches a gallery item: saliency on the photo, shared OCR words, deletion faithfulness.",
        "prodlens match-explain work/grocery val/Oatly-Oat-Milk_002 --embedding runs/match.pt --out runs/why.png "
        "--db runs/results.sqlite",
    )
    _common(p)
    _store_args(p, "the explanation")
    p.add_argument("query", help="query sample id, e.g. val/Oatly-Oat-Milk_002")
    p.add_argument("--match", metavar="ID", help="explain against this sample (default: the best match in --gallery); iconic/<class> for catalogue images")
    p.add_argument("--method", choices=("rise", "lime"), default="rise", help="saliency method (default rise)")
    p.add_argument("--n-masks", type=_positive_int, default=1000, help="RISE masks / LIME samples (default 1000)")
    p.add_argument("--match-saliency", action=argparse.BooleanOptionalAction, default=True,
                   help="saliency on the match photo too (default; --no-match-saliency halves the cost)")
    p.add_argument("--no-deletion", action="store_true", help="skip the deletion (faithfulness) curves")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="match.png", help="picture to write (default match.png)")
    p.add_argument("--json", metavar="PATH", help="write the explanation as JSON")
    p.add_argument("--no-maps", action="store_true", help="leave the saliency maps out of the JSON")
    p.set_defaults(func=_explain)
