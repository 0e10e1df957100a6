"""Export one run of a store to JSON (one file) or CSV (one file per table).

>>> import tempfile
>>> from prodlens.store import Store
>>> store = Store.open(":memory:")
>>> _ = store.add_run("r1")
>>> export_run(store, "r1", tempfile.mkdtemp(), "csv")[0].name
'predictions.csv'
"""

from __future__ import annotations

import csv
import json
import logging
from dataclasses import asdict, fields
from pathlib import Path
from typing import Literal

import numpy as np

from prodlens._atomic import atomic_write
from prodlens.explain.explanation import Explanation
from prodlens.store import codec
from prodlens.store.core import Store
from prodlens.store.database import RunRef

log = logging.getLogger(__name__)

FORMATS = ("json", "csv")


def explanation_to_json(e: Explanation, include_segments: bool = False) -> dict:
    """A JSON-able dict of every field of ``e`` (floats exact; segments optional)."""
    d: dict = {}
    for f in fields(e):
        v = getattr(e, f.name)
        if f.name == "segments":
            if include_segments:
                d["segments"] = np.asarray(v).tolist()
            d["segments_shape"] = list(np.asarray(v).shape)
        elif f.name == "tokens":
            d["tokens"] = [codec.token_to_json(t) for t in v]
        elif isinstance(v, np.ndarray):
            d[f.name] = v.tolist()
        else:
            d[f.name] = codec.encode_value(v)
    d["image_share"] = e.image_share
    return d


def run_to_dict(store: Store, run: RunRef, include_segments: bool = False) -> dict:
    """Everything stored for ``run`` as one JSON-able dict."""
    summary = store.summary(run)
    r = summary.run
    preds = store.get_predictions(r)
    expls = store.get_explanations(r, latest_only=False)
    ids = sorted({p.sample_id for p in preds} | {e.sample_id for e in expls})
    return {
        "run": {
            "id": r.id, "name": r.name, "model": r.model, "checkpoint": r.checkpoint, "dataset": r.dataset,
            "classes": list(r.classes), "config": r.config, "versions": r.versions,
            "created_at": r.created_at.isoformat() if r.created_at else None, "notes": r.notes,
        },
        "summary": {
            "predictions": summary.n_predictions, "accuracy": summary.accuracy,
            "explanations": summary.n_explanations, "explained_samples": summary.n_explained_samples,
            "global_features": summary.n_global_features, "deletion_results": summary.n_deletion_results,
            "match_results": summary.n_match_results, "match_queries": summary.n_match_queries,
            "match_explanations": summary.n_match_explanations,
        },
        "samples": [
            {"id": s.id, "image_path": str(s.image_path), "label": s.label, "split": s.split,
             "ocr_tokens": None if s.ocr_tokens is None else [codec.token_to_json(t) for t in s.ocr_tokens]}
            for s in store.get_samples(ids)
        ],
        "predictions": [
            {"sample_id": p.sample_id, "label": p.label, "predicted": p.predicted, "correct": p.correct,
             "top_k": [list(x) for x in p.top_k]}
            for p in preds
        ],
        "explanations": [explanation_to_json(e, include_segments) for e in expls],
        "global_features": [asdict(g) for g in store.get_global_features(r)],
        "deletion_results": [asdict(d) for d in store.get_deletion_results(r)],
        "match_results": [asdict(m) for m in store.get_match_results(r)],
        "match_queries": [
            {"query_id": q.query_id, "label": q.label, "gallery_ids": list(q.gallery_ids), "scores": list(q.scores),
             "gallery_labels": list(q.gallery_labels), "correct": q.correct, "hit_rank": q.hit_rank, "config": q.config}
            for q in store.get_match_queries(r, latest_only=False)
        ],
        "match_explanations": [e.to_dict(include_maps=include_segments) for e in store.get_match_explanations(r)],
    }


def _write_csv(path: Path, header: list[str], rows: list[list]) -> Path:
    with atomic_write(path) as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(header)
        w.writerows(rows)
    return path


def export_run(
    store: Store,
    run: RunRef,
    out: str | Path,
    fmt: Literal["json", "csv"] = "json",
    *,
    include_segments: bool = False,
) -> list[Path]:
    """Write ``run`` under ``out`` and return the files written.

    * ``json``: ``out`` is a file (or a folder, then ``<run name>.json`` inside it)
      holding :func:`run_to_dict`;
    * ``csv``: ``out`` is a folder; files ``predictions.csv``, ``explanations.csv``
      (one row per explanation), ``features.csv`` (one row per feature weight),
      ``global_features.csv``, ``deletion_results.csv`` and ``match_queries.csv`` (one
      row per query and rank).
    """
    if fmt not in FORMATS:
        raise ValueError(f"fmt must be one of {FORMATS}, got {fmt!r}")
    out = Path(out)
    r = store.get_run(run)
    if fmt == "json":
        path = out / f"{r.name}.json" if out.is_dir() or out.suffix == "" else out
        with atomic_write(path) as f:
            json.dump(run_to_dict(store, r, include_segments), f, ensure_ascii=False, default=codec.encode_value)
        log.info("exported run %s to %s", r.name, path)
        return [path]

    out.mkdir(parents=True, exist_ok=True)
    files = []
    preds = store.get_predictions(r)
    files.append(_write_csv(
        out / "predictions.csv",
        ["sample_id", "label", "predicted", "correct", "confidence", "top_k"],
        [[p.sample_id, p.label, p.predicted, p.correct, p.confidence, json.dumps(p.top_k)] for p in preds],
    ))
    expls = store.get_explanations(r, latest_only=False)
    files.append(_write_csv(
        out / "explanations.csv",
        ["sample_id", "target", "target_name", "score", "prediction", "intercept", "image_share",
         "n_superpixels", "n_tokens", "seed", "n_samples", "config"],
        [[e.sample_id, e.target, e.target_name, e.score, e.prediction, e.intercept, e.image_share,
          e.n_superpixels, len(e.tokens), e.seed, e.n_samples, codec.dumps(e.config)] for e in expls],
    ))
    rows = []
    for e in expls:
        for i, w in enumerate(np.asarray(e.weights).tolist()):
            if i < e.n_superpixels:
                rows.append([e.sample_id, e.target_name, i, "image", i, "", w])
            else:
                rows.append([e.sample_id, e.target_name, i, "text", "", e.tokens[i - e.n_superpixels].text, w])
    files.append(_write_csv(
        out / "features.csv", ["sample_id", "target_name", "feature", "modality", "superpixel", "text", "weight"], rows
    ))
    files.append(_write_csv(
        out / "global_features.csv",
        ["class_name", "modality", "method", "rank", "importance", "payload"],
        [[g.class_name, g.modality, g.method, g.rank, g.importance, codec.dumps(g.payload)]
         for g in store.get_global_features(r)],
    ))
    files.append(_write_csv(
        out / "deletion_results.csv",
        ["model", "modality", "step", "accuracy", "n_samples", "config"],
        [[d.model, d.modality, s, a, len(d.sample_ids), codec.dumps(d.config)]
         for d in store.get_deletion_results(r) for s, a in zip(d.steps, d.accuracies, strict=True)],
    ))
    files.append(_write_csv(
        out / "match_queries.csv",
        ["query_id", "label", "rank", "gallery_id", "gallery_label", "score", "config"],
        [[q.query_id, q.label, i + 1, g, lab, sc, codec.dumps(q.config)]
         for q in store.get_match_queries(r, latest_only=False)
         for i, (g, lab, sc) in enumerate(zip(q.gallery_ids, q.gallery_labels, q.scores, strict=True))],
    ))
    log.info("exported run %s to %d CSV files in %s", r.name, len(files), out)
    return files
