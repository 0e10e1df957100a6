"""SYNTHETIC matching results for the app's tests and screenshots.

A toy embedder (the photo's coarse colour layout plus hashed OCR words; *not* a
product matcher) is run on real photos: each photo is matched against all the others
(leave one out), and a few matches are explained with the real
:class:`~prodlens.match.explainer.MatchExplainer` (RISE saliency, shared words,
deletion curves), cheaply (few masks, small perturbed images). Every row says it is a
fixture in its ``config``.

>>> import tempfile
>>> from pathlib import Path
>>> from PIL import Image
>>> from prodlens.app.fixtures import synthetic_samples
>>> from prodlens.store import Store
>>> folder = Path(tempfile.mkdtemp())
>>> for i, c in enumerate([(200, 30, 30), (190, 40, 30), (20, 30, 200)]):
...     Image.new("RGB", (64, 48), c).save(folder / f"{i}.jpg")
>>> samples = synthetic_samples([(folder / "0.jpg", "Red-Milk"), (folder / "1.jpg", "Red-Milk"), (folder / "2.jpg", "Blue-Milk")])
>>> store = Store.open(":memory:")
>>> _ = store.add_samples(samples); run = store.add_run("r")
>>> fill_synthetic_matching(store, run, samples, k=2, n_explained=1)
(3, 2)
>>> store.get_match_queries(run)[1].gallery_ids[0]
'Red-Milk_0001'
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Sequence

import numpy as np

from prodlens.app.fixture_model import colour_layout, word_bins
from prodlens.data.images import load_image
from prodlens.data.types import OcrToken, ProductSample
from prodlens.match.explainer import MatchExplainer
from prodlens.store import MatchQuery, MatchResult, Run, Store, codec

log = logging.getLogger(__name__)

FIXTURE_MATCH_NOTE = "SYNTHETIC test fixture: a toy colour-layout + word-hash embedder on real photos; not a product matcher"


class ToyEmbedder:
    """SYNTHETIC fixture model: 4x4 colour layout of the photo and 16 hashed OCR words,
    each part L2-normalised, concatenated with weights ``sqrt(0.7)``/``sqrt(0.3)``.

    >>> e = ToyEmbedder().embed([np.zeros((8, 8, 3), np.uint8)], [[OcrToken("OATLY", (0, 0, 4, 4))]])
    >>> e.shape, round(float(np.linalg.norm(e)), 3)
    ((1, 64), 1.0)
    """

    kind = "fixture"

    def embed(self, images: Sequence[np.ndarray], token_lists: Sequence[Sequence[OcrToken]]) -> np.ndarray:
        layout = colour_layout(images)
        words = word_bins(token_lists)
        norms = np.linalg.norm(words, axis=1, keepdims=True)
        words = np.divide(words, norms, out=np.zeros_like(words), where=norms > 0)
        return np.concatenate([np.sqrt(0.7) * layout, np.sqrt(0.3) * words], axis=1).astype(np.float32)


def fill_synthetic_matching(
    store: Store, run: Run | str, samples: Sequence[ProductSample], *, k: int = 3, n_explained: int = 3, seed: int = 0
) -> tuple[int, int]:
    """Leave-one-out matching of ``samples`` (already in the store) under :class:`ToyEmbedder`,
    and explanations of the best match of the first ``n_explained`` queries (the
    first one's second match too); returns (queries stored, explanations stored)."""
    embedder = ToyEmbedder()
    photos = [load_image(store.image_path(s)) for s in samples]
    emb = embedder.embed(photos, [s.tokens for s in samples]).astype(np.float64)
    sim = emb @ emb.T
    np.fill_diagonal(sim, -np.inf)
    k = min(k, len(samples) - 1)
    config = {"fixture": FIXTURE_MATCH_NOTE, "method": "synthetic-fixture", "kind": embedder.kind, "gallery": "leave-one-out"}
    queries = []
    for i, s in enumerate(samples):
        order = np.argsort(-sim[i], kind="stable")[:k]
        queries.append(MatchQuery(s.id, tuple(samples[j].id for j in order), tuple(float(sim[i, j]) for j in order), config=config))
    store.put_match_queries(run, queries)
    stored = {q.query_id: q for q in store.get_match_queries(run)}
    accuracy = {str(n): float(np.mean([bool(stored[q.query_id].correct_at(n)) for q in queries])) for n in sorted({1, k})}
    store.put_match_results(run, [MatchResult("retrieval", codec.config_key(config, 0, 0), {
        "accuracy": accuracy, "n_queries": len(queries), "n_gallery": len(samples) - 1, "config": config, "per_class": {},
    })])

    explainer = MatchExplainer(n_masks=48, grid=4, resolution=96, match_saliency=True, deletion_grid=4, deletion_steps=6,
                               batch_size=48, seed=seed, progress=False)
    index = {s.id: i for i, s in enumerate(samples)}
    pairs = [(q.query_id, q.gallery_ids[0]) for q in queries[:n_explained]]
    if queries and n_explained and k > 1:
        pairs.append((queries[0].query_id, queries[0].gallery_ids[1]))
    explanations = []
    for qid, mid in pairs:
        qi, mi = index[qid], index[mid]
        e = explainer.explain(embedder, query_image=photos[qi], query_tokens=samples[qi].tokens, match_image=photos[mi],
                              match_tokens=samples[mi].tokens, query_id=qid, match_id=mid)
        explanations.append(e)
    store.put_match_explanations(run, [dataclasses.replace(e, config={**e.config, "fixture": FIXTURE_MATCH_NOTE})
                                       for e in explanations])
    log.info("synthetic matching: %d queries, %d explained matches", len(queries), len(explanations))
    return len(queries), len(explanations)
