"""`prodlens global` (per-class global explanations) and `prodlens deletion` (the deletion test).

Both read local explanations from a folder of JSON files (``Explanation.to_dict()`` or
``SampleExplanations.to_dict()``, see :mod:`prodlens.aggregate.io`), the dataset (for
photos and labels) and, where needed, a trained checkpoint; each calls one library
function. Heavy libraries are imported inside the handlers.
"""

from __future__ import annotations

import argparse
import logging
from dataclasses import replace
from pathlib import Path
from typing import Any

from prodlens.cli._common import add_parser, positive_int, report_skips
from prodlens.explain.interpretable import FILLS
from prodlens.errors import ProdlensError

log = logging.getLogger(__name__)


def _load_classifier(path: str) -> Any:
    """A trained classifier from a checkpoint (``prodlens.models.checkpoint.load_classifier``)."""
    try:
        from prodlens.models.checkpoint import load_classifier
    except ImportError as e:  # pragma: no cover - depends on the models package state
        raise ProdlensError(f"cannot load checkpoints in this installation ({e})") from None
    return load_classifier(path)


def _embedder(path: str) -> Any:
    """The :class:`~prodlens.aggregate.ImageEmbedder` of a checkpoint (warns when pretrained only)."""
    from prodlens.aggregate import image_embedder

    try:
        return image_embedder(_load_classifier(path), name=path)
    except ValueError as e:
        raise ProdlensError(f"--embed-model {path}: {e}") from None


def _of_split(explanations: list, ds, split: str | None) -> list:
    """The explanations of samples in ``split`` (all when ``split`` is None)."""
    if split is None:
        return explanations
    if ds is None:
        raise ProdlensError("--split needs --data DATASET (the splits are in its manifest)")
    ids = {s.id for s in ds.samples if s.split == split}
    kept = [e for e in explanations if e.sample_id in ids]
    if not kept:
        raise ProdlensError(f"no explanation of a {split!r} sample in the given explanations")
    return kept


def _global(args: argparse.Namespace) -> int:
    from prodlens.aggregate import GlobalExplainer, load_explanations, write_json
    from prodlens.data.manifest import read_dataset

    explanations = load_explanations(args.explanations, which=args.which)
    ds = read_dataset(args.data) if args.data else None
    explanations = _of_split(explanations, ds, args.split)
    modalities = tuple(args.modality)
    embed_fn, crop_size, embedding = None, args.crop_size, None
    if "image" in modalities:
        source = args.embed_model or args.model
        if not source:
            raise ProdlensError("image global explanations embed superpixels with the trained image model: "
                                "pass --model CHECKPOINT (or --embed-model CHECKPOINT), or --modality text")
        if ds is None:
            raise ProdlensError("image global explanations need the photos: pass --data DATASET")
        embedding = _embedder(source)
        embed_fn, crop_size = embedding, args.crop_size or embedding.crop_size
    try:
        explainer = GlobalExplainer(
            embed_fn,
            modalities=modalities,
            top_k_local=args.top_k_local,
            max_features=args.max_features,
            min_support=args.min_support,
            crop=args.crop,
            crop_size=crop_size,
            min_cluster_size=args.min_cluster_size,
            min_samples=args.min_samples,
            metric=args.metric,
            cluster_selection_method=args.cluster_selection_method,
            word_threshold=args.word_threshold,
            word_scorer=args.word_scorer,
            progress=not args.no_progress,
        ).fit(explanations, ds.samples if ds is not None else None)
    except ValueError as e:
        raise ProdlensError(str(e)) from None
    result = replace(explainer.global_, config={
        **explainer.global_.config, "model": args.model, "explanations": str(args.explanations), "data": args.data,
        "skipped": [list(x) for x in explainer.skipped_],
        **({"embedding": embedding.describe()} if embedding is not None else {}),
    })
    path = write_json(result, args.out)
    for c in result:
        for m in modalities:
            top = ", ".join(f"{f.label} ({f.importance:.3g}, n={f.support})" for f in c.top(m, 3))
            print(f"{c.class_name} [{m}]: {top or '-'}")
    print(f"wrote {path}")
    return report_skips(explainer.skipped_)


def _deletion(args: argparse.Namespace) -> int:
    from prodlens.aggregate import (
        DeletionTable,
        deletion_test,
        format_deletion_table,
        load_explanations,
        read_deletion_table,
        read_global,
        write_json,
    )
    from prodlens.data.manifest import read_dataset

    g = read_global(args.global_json)
    ds = read_dataset(args.data)
    explanations = _of_split(load_explanations(args.explanations, which="all"), ds, args.split)
    clf = _load_classifier(args.model)
    name = args.name or Path(args.model).stem
    # held-out photos are matched to the clusters in the embedding that built them
    recorded = (g.config.get("embedding") or {}).get("model")
    embed_source = args.embed_model or recorded
    embed_fn = _embedder(embed_source) if embed_source and "image" in args.modality else None
    rows = []
    try:
        for m in args.modality:
            rows.append(deletion_test(
                clf, g, explanations, ds.samples, modality=m, model=name, top_k=args.top_k,
                fill=args.fill, n_repeats=args.repeats, seed=args.seed, global_split=args.global_split,
                in_sample=args.in_sample, radius_scale=args.radius_scale, embed_fn=embed_fn,
                progress=not args.no_progress,
            ))
    except ValueError as e:
        raise ProdlensError(str(e)) from None
    table = DeletionTable(tuple(rows))
    out = Path(args.out)
    if args.append and out.is_file():
        table = read_deletion_table(out).merged(table)
    write_json(table, out)
    print(format_deletion_table(table))
    print(f"wrote {out}")
    return report_skips(sorted({x for r in rows for x in r.skipped}))


def _unit(text: str) -> float:
    v = float(text)
    if not 0 <= v <= 1:
        raise argparse.ArgumentTypeError(f"must be between 0 and 1, got {text}")
    return v


def register(sub: argparse._SubParsersAction) -> None:
    p = add_parser(
        sub, "global",
        "Per-class global explanations: top superpixels clustered (HDBSCAN on the trained image "
        "model's embeddings) and top OCR words grouped by spelling, ranked by NormLIME.",
        "prodlens global runs/concat/explanations --data work/grocery --model runs/concat.pt -o runs/concat/global.json",
        skips=True,
    )
    p.add_argument("explanations", help="folder of explanation .json/.jsonl files (or one file)")
    p.add_argument("--data", help="dataset folder (photos and labels); needed for the image modality")
    p.add_argument("--model", help="trained checkpoint whose image encoder embeds the superpixels")
    p.add_argument("--embed-model", help="embed the superpixels with this checkpoint instead of --model (e.g. an image "
                   "model trained with --train-blocks 1: the paper found pretrained-only embeddings cluster poorly)")
    p.add_argument("-o", "--out", default="global.json", help="output JSON (default global.json)")
    p.add_argument("--modality", nargs="+", choices=("image", "text"), default=["image", "text"])
    p.add_argument("--which", choices=("true", "predicted", "all"), default="true",
                   help="from per-sample files, use the explanation of the true (default) or predicted class")
    p.add_argument("--top-k-local", type=positive_int, default=3, help="top positive features per explanation (default 3)")
    p.add_argument("--max-features", type=positive_int, default=10, help="ranked features kept per class and modality (default 10)")
    p.add_argument("--min-support", type=positive_int, default=2, help="least explanations a feature must appear in (default 2)")
    p.add_argument("--crop", choices=("masked", "box"), default="masked", help="superpixel crop (default masked)")
    p.add_argument("--crop-size", type=positive_int, default=None, help="crop side in pixels (default: the model's input size)")
    p.add_argument("--min-cluster-size", type=int, default=3, help="HDBSCAN min_cluster_size (default 3)")
    p.add_argument("--min-samples", type=positive_int, default=2, help="HDBSCAN min_samples (default 2)")
    p.add_argument("--metric", default="euclidean", help="HDBSCAN metric on L2-normalised embeddings (default euclidean)")
    p.add_argument("--cluster-selection-method", choices=("eom", "leaf"), default="eom")
    p.add_argument("--word-threshold", type=_unit, default=0.75, help="spelling similarity to group words (default 0.75)")
    p.add_argument("--word-scorer", choices=("levenshtein", "indel"), default="levenshtein",
                   help="levenshtein: 1-d/max(len); indel: fuzz.ratio/100 (default levenshtein)")
    p.add_argument("--split", choices=("train", "val", "test"), default=None,
                   help="build on the explanations of this split only (needs --data; the deletion test then uses another)")
    p.add_argument("--no-progress", action="store_true", help="hide progress bars")
    p.set_defaults(func=_global)

    d = add_parser(
        sub, "deletion",
        "Deletion test: accuracy with nothing, the top-k global features, or a random control of the same size "
        "deleted, with paired 95% intervals; the global features should be built on another split.",
        "prodlens deletion runs/concat/global_train.json runs/concat/explanations --data work/grocery "
        "--split val --model runs/concat.pt --name concat -o deletion.json --append", skips=True,
    )
    d.add_argument("global_json", help="global explanations written by prodlens global")
    d.add_argument("explanations", help="folder of explanation .json/.jsonl files (or one file)")
    d.add_argument("--data", required=True, help="dataset folder (photos and labels)")
    d.add_argument("--model", required=True, help="trained checkpoint to test")
    d.add_argument("--name", help="model name in the table (default: checkpoint file name)")
    d.add_argument("--embed-model", help="checkpoint that embeds held-out photos' superpixels (default: the one the "
                   "global explanation records, else --model)")
    d.add_argument("-o", "--out", default="deletion.json", help="output JSON with {'rows': [...]} (default deletion.json)")
    d.add_argument("--append", action="store_true", help="add/replace this model's rows in an existing table")
    d.add_argument("--modality", nargs="+", choices=("image", "text"), default=["image", "text"])
    d.add_argument("--top-k", type=positive_int, default=3, help="global features deleted per class (default 3)")
    d.add_argument("--fill", default="black", choices=FILLS, help="deleted superpixels become (default black)")
    d.add_argument("--repeats", type=positive_int, default=1, help="random deletions per sample (default 1)")
    d.add_argument("--seed", type=int, default=0, help="seed of the random deletions (default 0)")
    d.add_argument("--split", choices=("train", "val", "test"), default=None,
                   help="test only the samples of this split (default: every explained sample)")
    d.add_argument("--global-split", default=None,
                   help="split the global features were built on (default: as recorded by prodlens global)")
    d.add_argument("--in-sample", choices=("warn", "error", "allow"), default="warn",
                   help="when tested samples helped build the global features: warn (default), error, allow")
    d.add_argument("--radius-scale", type=float, default=1.0,
                   help="held-out photos: a superpixel joins a cluster within this times its radius (default 1)")
    d.add_argument("--no-progress", action="store_true", help="hide progress bars")
    d.set_defaults(func=_deletion)
