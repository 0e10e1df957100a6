"""Nearest-neighbour indexes over embeddings, all behind one interface.

* :class:`ExactIndex` (default): brute-force cosine (or inner-product) search in
  numpy, chunked so that memory stays bounded; exact, deterministic, no extra
  dependency. Fine up to a few hundred thousand gallery items.
* :class:`FaissIndex`: approximate search for catalogues of millions with
  ``faiss-cpu`` (an optional dependency): ``"hnsw"`` (graph, no training), ``"ivf"``
  (inverted lists, trained on the first ``add``) or ``"flat"`` (faiss' exact search).

Every index has ``add(vectors, ids=None) -> self``, ``search(queries, k) ->
SearchResult`` and ``len()``; :func:`make_index` builds one by name.

>>> idx = make_index("exact").add(np.array([[1.0, 0.0], [0.0, 1.0], [0.7, 0.7]]), ids=[10, 11, 12])
>>> res = idx.search(np.array([[1.0, 0.1]]), k=2)
>>> res.ids.tolist(), [round(float(v), 3) for v in res.scores[0]]
([[10, 12]], [0.995, 0.774])
"""

from __future__ import annotations

import difflib
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import numpy as np

from prodlens.errors import UnknownNameError
from prodlens.match.errors import MissingDependencyError

log = logging.getLogger(__name__)

METRICS = ("cosine", "ip")


def l2_normalize(x: np.ndarray, eps: float = 1e-12) -> np.ndarray:
    """Rows scaled to unit length (all-zero rows stay zero), as ``float32``.

    >>> l2_normalize(np.array([[3.0, 4.0], [0.0, 0.0]])).tolist()
    [[0.6000000238418579, 0.800000011920929], [0.0, 0.0]]
    """
    x = np.asarray(x, dtype=np.float32)
    norm = np.linalg.norm(x, axis=-1, keepdims=True)
    return x / np.maximum(norm, eps)


@dataclass(frozen=True)
class SearchResult:
    """Neighbours of each query, best first: ``scores`` and ``ids`` are ``(n_queries, k)``.

    >>> r = SearchResult(np.array([[0.9, 0.5]]), np.array([[3, 1]]))
    >>> r.k, r.ids[0, 0]
    (2, np.int64(3))
    """

    scores: np.ndarray
    ids: np.ndarray

    @property
    def k(self) -> int:
        return int(self.ids.shape[1])


@runtime_checkable
class Index(Protocol):
    """What retrieval needs from an index (exact or approximate)."""

    metric: str

    def add(self, vectors: np.ndarray, ids: Sequence[int] | np.ndarray | None = None) -> Index: ...

    def search(self, queries: np.ndarray, k: int) -> SearchResult: ...

    def __len__(self) -> int: ...


def _check_metric(metric: str) -> None:
    if metric not in METRICS:
        raise ValueError(f"metric must be one of {METRICS}, got {metric!r}")


def _as_matrix(x: np.ndarray, name: str, dim: int | None) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    if x.ndim == 1:
        x = x[None]
    if x.ndim != 2:
        raise ValueError(f"{name} must be a 2-D array (n, dim), got shape {x.shape}")
    if dim is not None and x.shape[1] != dim:
        raise ValueError(f"{name} have dimension {x.shape[1]}, the index holds vectors of dimension {dim}; embed them with the same embedding")
    if not np.all(np.isfinite(x)):
        raise ValueError(f"{name} contain NaN or infinite values")
    return x


def _check_k(k: int, n: int) -> int:
    if not isinstance(k, (int, np.integer)) or k < 1:
        raise ValueError(f"k must be an int >= 1, got {k!r}")
    if n == 0:
        raise ValueError("the index is empty: add gallery vectors with index.add(...) before searching")
    if k > n:
        raise ValueError(f"k={k} is larger than the {n} vectors in the index; use k <= {n}")
    return int(k)


class _BaseIndex:
    metric: str = "cosine"

    def __init__(self) -> None:
        self.dim_: int | None = None
        self._ids = np.zeros(0, dtype=np.int64)

    def __len__(self) -> int:
        return int(len(self._ids))

    def _new_ids(self, n: int, ids: Sequence[int] | np.ndarray | None) -> np.ndarray:
        if ids is None:
            start = int(self._ids.max()) + 1 if len(self._ids) else 0
            return np.arange(start, start + n, dtype=np.int64)
        arr = np.asarray(ids, dtype=np.int64).ravel()
        if len(arr) != n:
            raise ValueError(f"ids has {len(arr)} entries for {n} vectors; give one id per vector")
        return arr

    def _prepare(self, x: np.ndarray, name: str) -> np.ndarray:
        x = _as_matrix(x, name, self.dim_)
        return l2_normalize(x) if self.metric == "cosine" else x


class ExactIndex(_BaseIndex):
    """Brute-force search: ``scores = queries @ gallery.T`` in chunks of ``chunk_size`` queries.

    ``metric="cosine"`` (default) L2-normalises gallery and queries; ``"ip"`` uses the
    raw inner product. Ties are broken by the order of addition.

    >>> idx = ExactIndex().add(np.eye(3))
    >>> idx.search(np.array([[0.0, 2.0, 1.0]]), k=3).ids.tolist()
    [[1, 2, 0]]
    """

    def __init__(self, metric: str = "cosine", chunk_size: int = 1024) -> None:
        super().__init__()
        _check_metric(metric)
        if chunk_size < 1:
            raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
        self.metric = metric
        self.chunk_size = chunk_size
        self._vectors = np.zeros((0, 0), dtype=np.float32)

    def add(self, vectors: np.ndarray, ids: Sequence[int] | np.ndarray | None = None) -> ExactIndex:
        x = self._prepare(vectors, "vectors")
        new_ids = self._new_ids(len(x), ids)
        self._vectors = x.copy() if self.dim_ is None else np.concatenate([self._vectors, x])
        self.dim_ = int(x.shape[1])
        self._ids = np.concatenate([self._ids, new_ids])
        return self

    def search(self, queries: np.ndarray, k: int) -> SearchResult:
        k = _check_k(k, len(self))
        q = self._prepare(queries, "queries")
        n = len(self)
        all_scores = np.empty((len(q), k), dtype=np.float32)
        all_pos = np.empty((len(q), k), dtype=np.int64)
        for s in range(0, len(q), self.chunk_size):
            sims = q[s : s + self.chunk_size] @ self._vectors.T
            if k < n:
                cand = np.argpartition(-sims, k - 1, axis=1)[:, :k]
            else:
                cand = np.broadcast_to(np.arange(n), sims.shape)
            cand_scores = np.take_along_axis(sims, cand, 1)
            # sort by score (descending), then by insertion position
            order = np.lexsort((cand, -cand_scores), axis=1)
            pos = np.take_along_axis(cand, order, 1)
            all_pos[s : s + len(pos)] = pos
            all_scores[s : s + len(pos)] = np.take_along_axis(sims, pos, 1)
        return SearchResult(all_scores, self._ids[all_pos])

    @property
    def nbytes(self) -> int:
        """Memory the index holds: the vectors plus the id map.

        >>> ExactIndex().add(np.eye(4)).nbytes
        96
        """
        return int(self._vectors.nbytes + self._ids.nbytes)


FAISS_METHODS = ("flat", "hnsw", "ivf", "ivfpq")


def _import_faiss() -> Any:
    try:
        import faiss
    except ImportError:
        raise MissingDependencyError(
            "approximate search needs faiss: pip install faiss-cpu==1.15.1 "
            "(or use the exact index, make_index('exact') / --index exact)"
        ) from None
    return faiss


class FaissIndex(_BaseIndex):
    """A faiss index (inner product on L2-normalised vectors for ``metric="cosine"``).

    ``method``: ``"hnsw"`` (``M`` links per node, ``ef_construction``, ``ef_search``:
    higher is more exact and slower), ``"ivf"`` (``nlist`` lists, trained on the
    first ``add`` which needs at least ``nlist`` vectors; ``nprobe`` lists searched),
    ``"ivfpq"`` (the same lists holding product-quantised codes of ``pq_m`` bytes per
    vector instead of the vectors: for catalogues that do not fit in memory) or
    ``"flat"`` (exact).

    >>> idx = FaissIndex("hnsw").add(np.eye(4))  # doctest: +SKIP
    >>> idx.search(np.eye(4)[:1], k=1).ids.tolist()  # doctest: +SKIP
    [[0]]
    """

    def __init__(
        self,
        method: str = "hnsw",
        metric: str = "cosine",
        *,
        M: int = 32,
        ef_construction: int = 80,
        ef_search: int = 64,
        nlist: int = 100,
        nprobe: int = 8,
        pq_m: int = 16,
    ) -> None:
        super().__init__()
        _check_metric(metric)
        if method not in FAISS_METHODS:
            raise ValueError(f"method must be one of {FAISS_METHODS}, got {method!r}")
        for name, v in (("M", M), ("ef_construction", ef_construction), ("ef_search", ef_search), ("nlist", nlist), ("nprobe", nprobe), ("pq_m", pq_m)):
            if not isinstance(v, (int, np.integer)) or v < 1:
                raise ValueError(f"{name} must be an int >= 1, got {v!r}")
        self.method = method
        self.metric = metric
        self.M = M
        self.ef_construction = ef_construction
        self.ef_search = ef_search
        self.nlist = nlist
        self.nprobe = nprobe
        self.pq_m = pq_m
        self._faiss = _import_faiss()
        self._index: Any = None

    def _build(self, dim: int, train: np.ndarray) -> Any:
        faiss = self._faiss
        ip = faiss.METRIC_INNER_PRODUCT
        if self.method == "flat":
            return faiss.IndexFlatIP(dim)
        if self.method == "hnsw":
            index = faiss.IndexHNSWFlat(dim, self.M, ip)
            index.hnsw.efConstruction = self.ef_construction
            return index
        if len(train) < self.nlist:
            raise ValueError(f"the ivf index trains {self.nlist} lists (nlist) on the first add, which has only {len(train)} vectors; add more vectors at once or lower nlist")
        quantizer = faiss.IndexFlatIP(dim)
        if self.method == "ivfpq":
            if dim % self.pq_m:
                raise ValueError(f"pq_m={self.pq_m} must divide the vector size {dim}; choose e.g. pq_m={next(m for m in (16, 8, 4, 2, 1) if dim % m == 0)}")
            index = faiss.IndexIVFPQ(quantizer, dim, self.nlist, self.pq_m, 8, ip)
        else:
            index = faiss.IndexIVFFlat(quantizer, dim, self.nlist, ip)
        index.train(train)
        self._quantizer = quantizer  # keep the quantizer alive as long as the index
        return index

    def add(self, vectors: np.ndarray, ids: Sequence[int] | np.ndarray | None = None) -> FaissIndex:
        x = np.ascontiguousarray(self._prepare(vectors, "vectors"))
        new_ids = self._new_ids(len(x), ids)
        if self._index is None:
            self._index = self._build(int(x.shape[1]), x)
            self.dim_ = int(x.shape[1])
        self._index.add(x)
        self._ids = np.concatenate([self._ids, new_ids])
        return self

    def search(self, queries: np.ndarray, k: int) -> SearchResult:
        k = _check_k(k, len(self))
        q = np.ascontiguousarray(self._prepare(queries, "queries"))
        if self.method == "hnsw":
            self._index.hnsw.efSearch = max(self.ef_search, k)
        elif self.method in ("ivf", "ivfpq"):
            self._index.nprobe = self.nprobe
        scores, pos = self._index.search(q, k)
        # faiss pads with -1 when it finds fewer than k neighbours (possible with ivf)
        ids = np.where(pos >= 0, self._ids[np.clip(pos, 0, None)], -1)
        return SearchResult(scores.astype(np.float32), ids.astype(np.int64))

    @property
    def nbytes(self) -> int:
        """Memory the index holds: faiss' serialised index plus the id map."""
        if self._index is None:
            return 0
        return int(self._faiss.serialize_index(self._index).nbytes + self._ids.nbytes)


INDEXES = ("exact", *FAISS_METHODS)


def make_index(name: str = "exact", **params: Any) -> Index:
    """Build an index by name: ``"exact"`` (numpy) or faiss' ``"flat"``, ``"hnsw"``, ``"ivf"``, ``"ivfpq"``.

    >>> type(make_index("exact")).__name__
    'ExactIndex'
    >>> make_index("hsnw")
    Traceback (most recent call last):
    ...
    prodlens.errors.UnknownNameError: unknown index 'hsnw'; did you mean 'hnsw'? (known: exact, flat, hnsw, ivf, ivfpq)
    """
    if name == "exact":
        return ExactIndex(**params)
    if name in FAISS_METHODS:
        return FaissIndex(name, **params)
    close = difflib.get_close_matches(name, INDEXES, n=2, cutoff=0.5)
    hint = f"; did you mean {', '.join(repr(c) for c in close)}?" if close else ""
    raise UnknownNameError(f"unknown index {name!r}{hint} (known: {', '.join(INDEXES)})")
