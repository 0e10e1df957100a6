"""The main job, end to end on the bundled real sample (``prodlens demo``).

1. import the bundled GroceryStore subset (134 photos, 10 package classes);
2. offline OCR (RapidOCR, cached by image content hash);
3. train a Feature Concatenation fusion model and an image-only model (fast mode:
   frozen EfficientNet-Lite0 + MiniLM, cached features, trained heads);
4. explain held-back (val) photos with multimodal LIME (superpixels + OCR words);
5. aggregate them into per-class global explanations (HDBSCAN + word groups, NormLIME);
6. product matching: every val photo against the train photos (zero-shot fused
   embedding on the backbone features cached by training: about a second); with
   ``explain_match`` also why one of them matches its best match (RISE saliency with
   32 masks, shared OCR words, a short deletion curve). That explanation is off by
   default: it took 42 s wall (21 CPU-s) on the busy 2-core machine, over the demo's
   20 s budget for this step (``prodlens demo --explain-match`` turns it on);
7. write everything to a SQLite results store and say how to open the explorer app.

Sized for a few minutes on 2 CPU cores: ``n_explain`` val photos are explained
(default 3) with early stopping capped at ``max_samples`` = 300 perturbations (the
paper uses 2000; ``prodlens explain --samples 2000`` does that); the full-size versions
of each step are the individual commands (``prodlens train``, ``explain``, ``global``).
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from prodlens.data.manifest import Dataset, write_dataset
from prodlens.data.sample import load_sample
from prodlens.data.summary import dataset_summary

if TYPE_CHECKING:  # pragma: no cover
    from prodlens.match import ExplainedMatch, RetrievalResult

log = logging.getLogger(__name__)


def _step(n: int, total: int, msg: str) -> None:
    print(f"[{n}/{total}] {msg}", flush=True)


def _pick_val(ds: Dataset, n: int) -> list:
    """Up to ``n`` val samples, spread over classes (round robin), deterministic."""
    by_class: dict[str, list] = {}
    for s in ds.split("val").samples:
        by_class.setdefault(s.label, []).append(s)
    picked: list = []
    while len(picked) < n and any(by_class.values()):
        for name in sorted(by_class):
            if by_class[name] and len(picked) < n:
                picked.append(by_class[name].pop(0))
    return picked


def run_demo(
    out: str | Path = "work/demo", *, workers: int = 1, n_explain: int = 3, max_samples: int = 300,
    explain_match: bool = False, seed: int = 0,
) -> dict:
    """Run the demo pipeline into ``out``; return paths of what it produced.

    Re-running reuses the OCR and feature caches in ``out/cache`` and replaces the
    store's demo runs, so it is idempotent.
    """
    from prodlens.aggregate import GlobalExplainer
    from prodlens.explain import MultimodalLime
    from prodlens.ocr.runner import run_ocr
    from prodlens.store import GlobalFeature, Prediction, Store, save_match_explanation, save_retrieval, top_k
    from prodlens.train import TrainConfig, train_model
    from prodlens.train.metrics import evaluate

    out = Path(out)
    total = 7
    t0 = time.perf_counter()
    ds = load_sample()
    _step(1, total, f"bundled sample: {len(ds)} GroceryStore photos of {len(ds.classes)} package classes")

    # Swedish packaging: tokens in other scripts (PP-OCR's invented CJK glyphs) are dropped
    ds, report = run_ocr(ds, cache_dir=out / "cache" / "ocr", workers=workers, script_filter=ds.language or "sv")
    manifest = write_dataset(ds, out / "dataset")
    _step(2, total, f"OCR: {report.summary()}")
    example = next((s for s in ds.samples if len(s.tokens) >= 3), ds.samples[0])
    print(f"      e.g. {example.id}: {example.text!r}")

    train, val = ds.split("train"), ds.split("val")
    cfg = TrainConfig(mode="fast", views=2, seed=seed, feature_cache=str(out / "cache" / "features"))
    models = {}
    for name in ("concat", "image"):
        res = train_model(train, val, model=name, config=cfg, out=out / "models" / f"{name}.pt", progress=True)
        rep = evaluate(res.classifier, val, progress=False)
        models[name] = (res, rep)
    _step(3, total, "trained on 100 train photos, val accuracy (34 photos): "
          + ", ".join(f"{n} top-1 {r.top1:.0%} top-5 {r.top5:.0%}" for n, (_, r) in models.items()))

    clf = models["concat"][0].classifier
    chosen = _pick_val(ds, n_explain)
    lime = MultimodalLime(n_samples=max_samples, seed=seed)
    results = []
    t_explain = time.perf_counter()
    for s in chosen:
        results.append(lime.explain(clf, s, true_label=s.label))
    per = (time.perf_counter() - t_explain) / max(len(chosen), 1)
    rows = [r.n_samples for r in results]
    passes = [r.stats.get("n_image_encodes", 0) + r.stats.get("n_text_encodes", 0) for r in results]
    samplers = sorted({str(e.config.get("sampler", "")).split("(")[0] for r in results for e in r.explanations})
    _step(4, total, f"explained {len(results)} val photos with multimodal LIME: {per:.1f} s each, "
          f"{int(np.mean(rows)) if rows else 0} surrogate rows from {int(np.mean(passes)) if passes else 0} encoder "
          f"passes on average ({', '.join(samplers) or '-'}, at most {max_samples} image masks)")
    scored = [e for r in results for e in r.explanations if e.quality is not None]
    flagged = [e for e in scored if e.flagged]
    q_share = np.mean([r.stats.get("quality_seconds", 0.0) / max(r.seconds, 1e-9) for r in results]) if results else 0.0
    print(f"      quality scores: {len(flagged)} of {len(scored)} explanations flagged"
          + (f" ({', '.join(sorted({f for e in flagged for f in e.quality.flags}))})" if flagged else "")
          + f"; scoring took {q_share:.0%} of the explaining time")
    for r in results:
        e = r.predicted_explanation
        words = [e.tokens[i - e.n_superpixels].text for i in e.top_features(10, positive_only=True) if i >= e.n_superpixels]
        print(f"      {r.sample_id}: predicted {e.target_name} ({e.prediction:.2f}), image share "
              f"{e.image_share:.0%}, top words {words[:3]}{'  MISCLASSIFIED' if r.misclassified else ''}")

    by_id = ds.by_id()
    own_class = [r.true_explanation or r.predicted_explanation for r in results]
    glob = GlobalExplainer(clf.encode_images, min_cluster_size=2, min_support=1, progress=False).fit(own_class, by_id).global_
    n_img = sum(len(c.image) for c in glob)
    n_txt = sum(len(c.text) for c in glob)
    _step(5, total, f"global explanations for {len(glob)} classes: {n_img} image clusters, {n_txt} word groups")

    t_match = time.perf_counter()
    retrieval, why = _matching(ds, out / "cache" / "features", seed, explain_match)
    _step(6, total, f"matched {retrieval.n_queries} val photos against {retrieval.n_gallery} train photos "
          f"(zero-shot fused): top-1 {retrieval.top1:.0%}, top-5 {retrieval.top5:.0%} "
          f"({time.perf_counter() - t_match:.1f} s)")
    if why is not None:
        print(f"      {why.explanation.summary()}")

    db = out / "prodlens.sqlite"
    store = Store.open(db)
    store.add_samples(ds.samples)
    # created first, so that the explorer opens on a classification run (the newest)
    match_run = store.add_run("demo-match", model="zero_shot/fused", dataset=manifest, classes=ds.classes.names,
                              config={k: v for k, v in retrieval.config.items() if k != "gallery_ids"}, if_exists="replace")
    save_retrieval(store, match_run, retrieval, ds)
    if why is not None:
        save_match_explanation(store, match_run, why.explanation, why.query, why.match)
    for name, (res, rep) in models.items():
        run = store.add_run(f"demo-{name}", model=name, checkpoint=res.checkpoint, dataset=manifest,
                            classes=ds.classes.names, config=cfg.to_dict(), if_exists="replace")
        probs = res.classifier.predict_proba(*_inputs(val.samples))
        store.put_predictions(run, [
            Prediction(s.id, ds.classes.names[int(np.argmax(p))], top_k(p, ds.classes.names))
            for s, p in zip(val.samples, probs)
        ])
        if name == "concat":
            store.put_explanations(run, [e for r in results for e in r.explanations])
            store.put_global_features(run, [
                GlobalFeature(f.class_name, f.modality, f.rank, f.importance, f.payload(), method="normlime")
                for c in glob for f in (*c.image, *c.text)
            ])
    _step(7, total, f"results store: {db}  ({time.perf_counter() - t0:.0f} s in all)")
    print(f"\nOpen the explorer:  .venv/bin/prodlens app --db {db}   (then http://127.0.0.1:7860)")
    return {"dataset": manifest, "store": db}


def _matching(ds: Dataset, feature_cache: Path, seed: int, explain: bool) -> tuple[RetrievalResult, ExplainedMatch | None]:
    """Val -> train retrieval; with ``explain`` the explanation of one correct best match
    (cheap settings: 32 RISE masks, a 4-step deletion curve against 1 random order)."""
    from prodlens.match import evaluate_matching, explain_dataset_match, zero_shot

    emb = zero_shot("fused", 0.2)
    res = evaluate_matching(ds, emb, queries="val", gallery="train", ks=(1, 5), cache_dir=feature_cache, progress=False)
    if not explain:
        return res, None
    gallery = res.config["gallery_ids"]
    by_id = ds.by_id()
    # the correctly matched query with the most OCR words: the one with most to say about shared words
    correct = [(q, gallery[int(n[0])]) for q, n in zip(res.query_ids, res.neighbors)
               if by_id[gallery[int(n[0])]].label == by_id[q].label]
    query, match = max(correct or [(res.query_ids[0], gallery[int(res.neighbors[0][0])])],
                       key=lambda qm: (len(by_id[qm[0]].tokens), qm[0]))
    why = explain_dataset_match(ds, query, match_id=match, embedding=emb, kind="fused", cache_dir=feature_cache,
                                progress=False, n_masks=32, deletion_steps=4, n_random=1, batch_size=32, seed=seed)
    return res, why


def _inputs(samples) -> tuple[list[np.ndarray], list]:
    from prodlens.data.images import load_image

    return [load_image(s.image_path) for s in samples], [list(s.tokens) for s in samples]
