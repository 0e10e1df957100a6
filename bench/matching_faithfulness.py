"""Faithfulness of two-sided match explanations on open-set matches (``--part faithfulness``).

Matches: in each outer class fold of the open-set protocol, the learned fused embedding
(fitted on the seen classes, with the setting the open-set part selected for that fold
when its results exist) matches val photos of unseen packaged products against the
5-shot gallery of the unseen classes; a (query, top-1 match) pair is kept when the two
share at least two OCR words (with one word every order is the same order). Pairs are
taken round-robin over classes, up to ``--matches``; right and wrong matches alike.

Each pair is explained with RISE saliency on both photos (each for the similarity with
the other product held fixed) and shared-word attributes measured by removing the word
from both products (text and boxes). Faithfulness per modality: deletion and insertion
curves of the explanation's order vs random orders (8x8 cells of a photo; the shared
words); per pair, ``gain`` = random AUC - explanation AUC for deletion (explanation AUC -
random AUC for insertion), so positive means better than random. Reported: mean gain
with a bootstrap 95% interval over pairs (paired: each pair's explanation vs its own
random orders), and the fraction of pairs with a positive gain.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

import numpy as np

log = logging.getLogger("bench.matching.faithfulness")

CURVES = ("query_deletion", "query_insertion", "match_deletion", "match_insertion", "word_deletion", "word_insertion")


class CountingEmbedder:
    """Wraps an embedder and counts the photos it embeds (model calls do not depend on load)."""

    def __init__(self, inner) -> None:
        self.inner = inner
        self.kind, self.normalized, self.input_size = inner.kind, inner.normalized, inner.input_size
        self.images = 0

    def embed(self, images, token_lists):
        self.images += len(images)
        return self.inner.embed(images, token_lists)


def _fold_setting(args, fold: int) -> dict:
    """The open-set part's selection for ``fold`` (method, iconic repeat, blend, 5-shot text weight)."""
    out = args.out or Path(__file__).parent / "results" / "matching_openset.json"
    default = {"method": "normsoftmax", "iconic_repeat": 0, "zero_shot_weight": 0.5, "text_weight": 0.3, "source": "default"}
    if not out.is_file():
        return default
    doc = json.loads(out.read_text()).get("openset")
    if not doc or fold >= len(doc["folds"]):
        return default
    row = doc["folds"][fold]
    c = row["selection"]["candidates"][row["selected"]]
    return {"method": c["method"], "iconic_repeat": c["iconic_repeat"], "zero_shot_weight": c["zero_shot_weight"],
            "text_weight": c["galleries"]["5shot"]["text_weight"], "source": "openset selection"}


def pick_pairs(args, data, folds) -> list[dict]:
    from matching_openset import _fit, _gallery

    from prodlens.match.pipeline import embed_features
    from prodlens.match.words import shared_words

    feats, packages = data["feats"], data["packages"]
    by_id = data["ds"].by_id()
    classes = sorted(data["coarse"])
    per_class: dict[str, list[dict]] = {}
    for f, unseen_t in enumerate(folds):
        unseen = set(unseen_t)
        setting = _fold_setting(args, f)
        emb = _fit(setting, feats, set(classes) - unseen, args)
        w = setting["text_weight"]
        fg, _ = _gallery(feats, unseen, "5shot")
        va = feats["val"]
        qi = [i for i, (sid, c) in enumerate(zip(va.ids, va.labels)) if c in unseen and c in packages and len(by_id[sid].tokens) >= 2]
        if not qi:
            continue
        fq = va.subset(qi)
        sims = embed_features(emb, fq, "fused", w) @ embed_features(emb, fg, "fused", w).T
        for r, j in enumerate(sims.argmax(1)):
            q, m = by_id[fq.ids[r]], by_id[fg.ids[j]]
            n_shared = len(shared_words(q.tokens, m.tokens))
            if n_shared >= 2:
                per_class.setdefault(q.label, []).append({"fold": f, "query": q.id, "match": m.id, "correct": q.label == m.label,
                                                          "n_shared": n_shared, "setting": setting, "_emb": emb})
    pairs: list[dict] = []
    while len(pairs) < args.matches and any(per_class.values()):
        for c in sorted(per_class):
            if per_class[c] and len(pairs) < args.matches:
                pairs.append(per_class[c].pop(0))
    return pairs


def run(args) -> dict:
    from matching_openset import load

    from prodlens.match.embedder import BackboneEmbedder
    from prodlens.match.explainer import MatchExplainer
    from prodlens.match.openset import unseen_class_folds

    t0 = time.perf_counter()
    cache = Path(args.faith_cache)
    suffix = f"__m{args.faith_masks}s{args.faith_steps}r{args.faith_random}v2.json"
    if args.faith_from_cache:  # summarise the pairs explained so far (e.g. by a run cut short), in order
        rows = [json.loads(f.read_text()) for f in sorted(cache.glob(f"*{suffix}"))][: args.matches]
        log.info("%d explained pairs read from %s", len(rows), cache)
        return summarize(rows, args, time.perf_counter() - t0)
    data = load(args)
    folds = unseen_class_folds(sorted(data["coarse"]), data["coarse"], n_folds=args.class_folds, seed=args.seed)
    pairs = pick_pairs(args, data, folds)
    log.info("%d pairs with >= 2 shared words to explain", len(pairs))
    by_id = data["ds"].by_id()
    cache.mkdir(parents=True, exist_ok=True)
    explainer = MatchExplainer(n_masks=args.faith_masks, grid=8, deletion_grid=8, deletion_steps=args.faith_steps, n_random=args.faith_random,
                               insertion=True, match_saliency=True, progress=False, seed=args.seed)
    rows = []
    for i, p in enumerate(pairs):
        key = cache / f"{p['query'].replace('/', '_')}__{p['match'].replace('/', '_')}{suffix}"
        if key.is_file():
            row = json.loads(key.read_text())
        else:
            emb = CountingEmbedder(BackboneEmbedder(p["_emb"], kind="fused", text_weight=p["setting"]["text_weight"]))
            t = time.perf_counter()
            e = explainer.explain(emb, by_id[p["query"]], by_id[p["match"]])
            curves = {"query_deletion": e.deletion, "word_deletion": e.word_deletion, **e.curves}
            row = {k: v for k, v in p.items() if k != "_emb"} | {
                "similarity": round(e.similarity, 4), "n_words": len(e.words),
                "top_words": [(w.word, round(w.drop, 4), round(w.text_drop, 4), round(w.image_drop, 4)) for w in e.words[:5]],
                "curves": {k: {"auc": round(c.auc, 4), "random_auc": round(c.random_auc, 4), "gain": round(c.gain, 4)}
                           for k, c in curves.items() if c is not None},
                "model_calls_images": emb.images, "seconds": round(time.perf_counter() - t, 1),
            }
            key.write_text(json.dumps(row))
        rows.append(row)
        log.info("[%d/%d] %s -> %s: %s", i + 1, len(pairs), row["query"], row["match"],
                 {k: v["gain"] for k, v in row["curves"].items()})
    return summarize(rows, args, time.perf_counter() - t0)


def _boot(x: np.ndarray, seed: int, n_boot: int = 10_000) -> list[float]:
    rng = np.random.default_rng(seed)
    means = x[rng.integers(0, len(x), (n_boot, len(x)))].mean(axis=1)
    return [round(float(v), 4) for v in np.percentile(means, [2.5, 97.5])]


def summarize(rows: list[dict], args, seconds: float) -> dict:
    table = {}
    for name in CURVES:
        g = np.array([r["curves"][name]["gain"] for r in rows if name in r["curves"]])
        if not len(g):
            continue
        auc = np.array([r["curves"][name]["auc"] for r in rows if name in r["curves"]])
        rnd = np.array([r["curves"][name]["random_auc"] for r in rows if name in r["curves"]])
        table[name] = {"n": int(len(g)), "auc_mean": round(float(auc.mean()), 4), "random_auc_mean": round(float(rnd.mean()), 4),
                       "gain_mean": round(float(g.mean()), 4), "gain_ci95": _boot(g, args.seed),
                       "faithful_fraction": round(float((g > 0).mean()), 4), "tied_fraction": round(float((g == 0).mean()), 4)}
    calls = [r["model_calls_images"] for r in rows]
    return {
        "protocol": __doc__.split("\n\n", 1)[1].strip(),
        "explainer": {"saliency": f"RISE, {args.faith_masks} masks per photo, 8x8 grid, blur fill",
                      "curves": f"8x8 cells, {args.faith_steps} steps, {args.faith_random} random orders per pair; words one by one, "
                                "the random baseline every order of the shared words (<= 5 words; else "
                                f"{args.faith_random} random orders)",
                      "words": "removed from both products (text and boxes); ranked by that drop"},
        "n_pairs": len(rows), "n_correct_matches": int(sum(r["correct"] for r in rows)),
        "table": table,
        "modalities": {"image (query photo)": ["query_deletion", "query_insertion"], "image (match photo)": ["match_deletion", "match_insertion"],
                       "words": ["word_deletion", "word_insertion"]},
        "model_calls_images_per_pair_mean": round(float(np.mean(calls)), 1) if calls else None,
        "pairs": rows,
        "seconds": round(seconds, 1),
    }


def markdown(r: dict) -> str:
    lines = [f"{r['n_pairs']} explained open-set matches ({r['n_correct_matches']} correct); gain = how much better than random order (AUC)",
             "", "| curve | n | explanation AUC | random AUC | gain (95% CI) | better than random |", "|---|---|---|---|---|---|"]
    for name, v in r["table"].items():
        lines.append(f"| {name} | {v['n']} | {v['auc_mean']:.3f} | {v['random_auc_mean']:.3f} | {v['gain_mean']:+.3f} {v['gain_ci95']} | {v['faithful_fraction']:.0%} |")
    return "\n".join(lines)
