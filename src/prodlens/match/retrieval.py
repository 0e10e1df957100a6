"""Retrieval evaluation: top-k accuracy of nearest-neighbour matching, overall and per class.

A query is correct at ``k`` when any of its ``k`` nearest gallery items has the
query's class. With one gallery item per class (a catalogue of iconic images) this is
the usual top-k classification accuracy of a nearest-prototype classifier.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from prodlens.match.index import Index, make_index

log = logging.getLogger(__name__)


def hits_at_k(neighbor_labels: np.ndarray, query_labels: Sequence, ks: Sequence[int]) -> dict[int, np.ndarray]:
    """Per-query booleans: is the query's label among its first ``k`` neighbours' labels?

    ``neighbor_labels`` is ``(n_queries, K)`` (best first), ``K >= max(ks)``.

    >>> nl = np.array([["a", "b", "c"], ["c", "c", "b"]])
    >>> {k: v.tolist() for k, v in hits_at_k(nl, ["b", "b"], (1, 2, 3)).items()}
    {1: [False, False], 2: [True, False], 3: [True, True]}
    """
    nl = np.asarray(neighbor_labels)
    ql = np.asarray(query_labels)
    if nl.ndim != 2 or len(nl) != len(ql):
        raise ValueError(f"neighbor_labels must be (n_queries, K) with n_queries={len(ql)}, got shape {nl.shape}")
    for k in ks:
        if not 1 <= k <= nl.shape[1]:
            raise ValueError(f"every k in ks must be in 1..{nl.shape[1]} (the neighbours searched), got {k}")
    same = nl == ql[:, None]
    return {int(k): same[:, :k].any(1) for k in ks}


def topk_accuracy(neighbor_labels: np.ndarray, query_labels: Sequence, k: int) -> float:
    """Fraction of queries whose label is among their first ``k`` neighbours' labels.

    >>> topk_accuracy(np.array([[0, 1], [1, 1], [2, 0]]), [1, 1, 1], 2)
    0.6666666666666666
    """
    return float(hits_at_k(neighbor_labels, query_labels, (k,))[k].mean())


@dataclass(frozen=True)
class ClassRetrieval:
    """Results of one class's queries."""

    name: str
    n_queries: int
    accuracy: dict[int, float]
    #: the gallery class its queries' first neighbour most often had, when not itself
    confused_with: str | None = None

    def to_dict(self) -> dict:
        return {"name": self.name, "n_queries": self.n_queries,
                "accuracy": {str(k): v for k, v in self.accuracy.items()}, "confused_with": self.confused_with}

    @classmethod
    def from_dict(cls, d: dict) -> ClassRetrieval:
        return cls(d["name"], int(d["n_queries"]), {int(k): float(v) for k, v in d["accuracy"].items()}, d.get("confused_with"))


@dataclass(frozen=True)
class RetrievalResult:
    """Top-k accuracy of one retrieval run, overall and per query class.

    ``neighbors`` (optional) holds each query's gallery ids best first and ``scores``
    their similarities; ``config`` records how the run was made (embedding, index, ...).

    >>> r = RetrievalResult({1: 0.5, 5: 1.0}, 2, 10, per_class={})
    >>> r.top1, r.top5
    (0.5, 1.0)
    >>> RetrievalResult.from_dict(r.to_dict()).accuracy
    {1: 0.5, 5: 1.0}
    """

    accuracy: dict[int, float]
    n_queries: int
    n_gallery: int
    per_class: dict[str, ClassRetrieval] = field(default_factory=dict)
    query_ids: tuple[str, ...] = ()
    neighbors: np.ndarray | None = None
    scores: np.ndarray | None = None
    config: dict = field(default_factory=dict)

    @property
    def ks(self) -> list[int]:
        return sorted(self.accuracy)

    def top(self, k: int) -> float:
        """Top-``k`` accuracy; ``k`` must be one of :attr:`ks`."""
        if k not in self.accuracy:
            raise KeyError(f"top-{k} was not computed; computed: {self.ks}")
        return self.accuracy[k]

    @property
    def top1(self) -> float:
        return self.top(1)

    @property
    def top5(self) -> float:
        return self.top(5)

    def mean_class_accuracy(self, k: int = 1) -> float:
        """Top-``k`` accuracy averaged over classes (each class counts once)."""
        vals = [c.accuracy[k] for c in self.per_class.values() if c.n_queries]
        return float(np.mean(vals)) if vals else float("nan")

    def to_dict(self, include_neighbors: bool = False) -> dict:
        d: dict = {
            "accuracy": {str(k): float(v) for k, v in self.accuracy.items()},
            "n_queries": int(self.n_queries),
            "n_gallery": int(self.n_gallery),
            "per_class": {n: c.to_dict() for n, c in self.per_class.items()},
            "config": self.config,
        }
        if include_neighbors:
            d["query_ids"] = list(self.query_ids)
            d["neighbors"] = None if self.neighbors is None else np.asarray(self.neighbors).tolist()
            d["scores"] = None if self.scores is None else np.round(np.asarray(self.scores, dtype=np.float64), 6).tolist()
        return d

    @classmethod
    def from_dict(cls, d: dict) -> RetrievalResult:
        nb, sc = d.get("neighbors"), d.get("scores")
        return cls(
            accuracy={int(k): float(v) for k, v in d["accuracy"].items()},
            n_queries=int(d["n_queries"]),
            n_gallery=int(d["n_gallery"]),
            per_class={n: ClassRetrieval.from_dict(c) for n, c in d.get("per_class", {}).items()},
            query_ids=tuple(d.get("query_ids", ())),
            neighbors=None if nb is None else np.asarray(nb, dtype=np.int64),
            scores=None if sc is None else np.asarray(sc, dtype=np.float32),
            config=dict(d.get("config", {})),
        )


def evaluate_retrieval(
    query_embeddings: np.ndarray,
    query_labels: Sequence[str],
    gallery_embeddings: np.ndarray,
    gallery_labels: Sequence[str],
    *,
    ks: Sequence[int] = (1, 5),
    index: str | Index = "exact",
    metric: str = "cosine",
    query_ids: Sequence[str] = (),
    keep_neighbors: bool = False,
    config: dict | None = None,
) -> RetrievalResult:
    """Search every query in the gallery and score top-k accuracy overall and per class.

    ``index`` is an index name for :func:`~prodlens.match.index.make_index` (built with
    ``metric``: ``"cosine"``, or ``"ip"`` for embeddings already scaled for inner
    products such as :class:`~prodlens.match.embedding.MatchEmbedding` output) or an
    empty :class:`~prodlens.match.index.Index` instance (it is filled with the gallery).

    >>> g = np.array([[1.0, 0.0], [0.0, 1.0]]); q = np.array([[0.9, 0.2], [0.8, 0.3]])
    >>> r = evaluate_retrieval(q, ["a", "b"], g, ["a", "b"], ks=(1, 2))
    >>> r.top(1), r.top(2), r.per_class["b"].confused_with
    (0.5, 1.0, 'a')
    """
    ks = sorted({int(k) for k in ks})
    if not ks or ks[0] < 1:
        raise ValueError(f"ks must be positive ints, got {ks}")
    gl = np.asarray(list(gallery_labels))
    ql = np.asarray(list(query_labels))
    q = np.asarray(query_embeddings)
    g = np.asarray(gallery_embeddings)
    if len(gl) != len(g):
        raise ValueError(f"gallery_labels has {len(gl)} entries for {len(g)} gallery embeddings")
    if len(ql) != len(q):
        raise ValueError(f"query_labels has {len(ql)} entries for {len(q)} query embeddings")
    if len(q) == 0:
        raise ValueError("no queries to evaluate")
    if ks[-1] > len(g):
        raise ValueError(f"max(ks)={ks[-1]} exceeds the gallery size {len(g)}; lower ks")
    idx = make_index(index, metric=metric) if isinstance(index, str) else index
    idx.add(g, ids=np.arange(len(g)))
    res = idx.search(q, ks[-1])
    nbr_labels = np.where(res.ids >= 0, gl[np.clip(res.ids, 0, None)], None)
    hits = hits_at_k(nbr_labels, ql, ks)
    accuracy = {k: float(h.mean()) for k, h in hits.items()}
    per_class: dict[str, ClassRetrieval] = {}
    for name in sorted(set(ql.tolist())):
        m = ql == name
        first = nbr_labels[m, 0]
        wrong = [x for x in first.tolist() if x != name]
        confused = max(sorted(set(wrong)), key=wrong.count) if wrong else None
        per_class[str(name)] = ClassRetrieval(str(name), int(m.sum()), {k: float(h[m].mean()) for k, h in hits.items()}, confused)
    log.info("retrieval: %d queries in %d gallery items: %s", len(q), len(g),
             ", ".join(f"top-{k} {v:.3f}" for k, v in accuracy.items()))
    return RetrievalResult(
        accuracy=accuracy,
        n_queries=int(len(q)),
        n_gallery=int(len(g)),
        per_class=per_class,
        query_ids=tuple(str(i) for i in query_ids),
        neighbors=res.ids if keep_neighbors else None,
        scores=res.scores if keep_neighbors else None,
        config=dict(config or {}),
    )
