"""Hyperparameter selection on training folds only (never on the reported split).

:func:`class_folds` cuts every class's training photos into contiguous blocks (in id
order): GroceryStoreDataset photos of a product are taken in runs, so neighbouring
photos are near duplicates, and random folds would let them leak between a fold's
queries and its gallery. :func:`cross_validate` fits an embedding on all folds but
one, matches the held-out fold against the rest (and against an optional fixed
gallery, e.g. the iconic catalogue), and averages top-k over folds for every kind and
fused text weight; :func:`best_setting` picks the winner.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from prodlens.match.base import KINDS, modalities
from prodlens.match.embedding import MatchEmbedding
from prodlens.match.pipeline import ProductFeatures, embed_features
from prodlens.match.retrieval import evaluate_retrieval

log = logging.getLogger(__name__)

DEFAULT_TEXT_WEIGHTS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7)


def class_folds(ids: Sequence[str], labels: Sequence, n_folds: int = 3) -> np.ndarray:
    """Fold number of every example: each class's examples, sorted by id, are cut into
    ``n_folds`` contiguous blocks of (nearly) equal size.

    >>> class_folds(["a1", "a2", "a3", "b2", "b1", "b3"], list("aaabbb"), 3).tolist()
    [0, 1, 2, 1, 0, 2]
    """
    if n_folds < 2:
        raise ValueError(f"n_folds must be >= 2, got {n_folds}")
    labels = np.asarray(list(labels))
    folds = np.full(len(labels), -1, dtype=int)
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        idx = idx[np.argsort([ids[i] for i in idx], kind="stable")]
        for f, block in enumerate(np.array_split(idx, n_folds)):
            folds[block] = f
    return folds


@dataclass(frozen=True)
class CvScore:
    """Mean top-k over folds of one (kind, text weight, gallery) setting."""

    kind: str
    text_weight: float | None
    gallery: str
    accuracy: dict[int, float]

    def to_dict(self) -> dict:
        return {"kind": self.kind, "text_weight": self.text_weight, "gallery": self.gallery,
                "accuracy": {str(k): v for k, v in self.accuracy.items()}}


def cross_validate(
    features: ProductFeatures,
    embedding: MatchEmbedding,
    *,
    n_folds: int = 3,
    kinds: Sequence[str] = KINDS,
    text_weights: Sequence[float] = DEFAULT_TEXT_WEIGHTS,
    extra_gallery: tuple[str, ProductFeatures] | None = None,
    ks: Sequence[int] = (1, 5),
) -> list[CvScore]:
    """Cross-validated retrieval accuracy of ``embedding`` on training ``features``.

    For each fold: fit a clone of ``embedding`` (with ``kind="fused"`` when any kind
    needs both modalities) on the other folds, embed, and match the fold's plain views
    against the other folds' plain views (gallery ``"train"``) and against
    ``extra_gallery`` ``(name, features)`` if given.

    >>> rng = np.random.default_rng(0); y = np.repeat(["a", "b"], 12)
    >>> img = rng.normal(size=(24, 1, 6)) + 3 * np.eye(2, 6)[np.repeat([0, 1], 12)][:, None]
    >>> pf = ProductFeatures(tuple(f"{c}{i:02d}" for c, i in zip(y, range(24))), tuple(y), img.astype(np.float32), None)
    >>> scores = cross_validate(pf, MatchEmbedding("zero_shot", kind="image"), kinds=("image",))
    >>> scores[0].kind, scores[0].accuracy[1]
    ('image', 1.0)
    """
    ks = tuple(sorted(set(ks)))
    need = sorted({m for k in kinds for m in modalities(k)})
    fit_kind = "fused" if len(need) == 2 else ("image" if need == ["image"] else "text")
    folds = class_folds(features.ids, features.labels, n_folds)
    settings: list[tuple[str, float | None]] = []
    for k in kinds:
        settings += [(k, float(w)) for w in text_weights] if k == "fused" else [(k, None)]
    galleries = ["train"] + ([extra_gallery[0]] if extra_gallery else [])
    sums: dict[tuple[str, float | None, str], dict[int, float]] = {}
    for f in range(n_folds):
        tr, te = features.subset(folds != f), features.subset(folds == f)
        emb = embedding.clone(kind=fit_kind, progress=False).fit(tr.image, tr.text, tr.labels, has_text=tr.has_text)
        for kind, w in settings:
            q = embed_features(emb, te, kind, w)
            for gname in galleries:
                gf = tr if gname == "train" else extra_gallery[1]  # type: ignore[index]
                g = embed_features(emb, gf, kind, w)
                r = evaluate_retrieval(q, te.labels, g, gf.labels, ks=[k for k in ks if k <= len(gf)], metric="ip")
                acc = sums.setdefault((kind, w, gname), {})
                for k, v in r.accuracy.items():
                    acc[k] = acc.get(k, 0.0) + v / n_folds
        log.info("cross-validation fold %d/%d done", f + 1, n_folds)
    return [CvScore(k, w, g, acc) for (k, w, g), acc in sums.items()]


def best_setting(scores: Sequence[CvScore], *, gallery: str = "train", kind: str | None = None) -> CvScore:
    """The setting with the best mean top-1 (ties: top-5, then the smaller text weight).

    >>> s = [CvScore("fused", 0.3, "train", {1: 0.8, 5: 0.9}), CvScore("fused", 0.5, "train", {1: 0.8, 5: 0.95})]
    >>> best_setting(s).text_weight
    0.5
    """
    pool = [s for s in scores if s.gallery == gallery and (kind is None or s.kind == kind)]
    if not pool:
        raise ValueError(f"no cross-validation scores for gallery={gallery!r}, kind={kind!r}")
    return max(pool, key=lambda s: (s.accuracy.get(1, 0.0), s.accuracy.get(5, 0.0), -(s.text_weight or 0.0)))
