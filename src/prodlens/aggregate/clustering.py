"""Cluster superpixel embeddings of one class with HDBSCAN (``sklearn.cluster.HDBSCAN``).

HDBSCAN finds clusters of varying density and leaves points that belong to none as
noise (label ``-1``); it needs no number of clusters, which suits classes whose
recurring parts (logo, cap, a picture on the carton) are unknown in advance. With
about 30 photos per class and 3 superpixels each, ``min_cluster_size`` 2-3 is sensible.
"""

from __future__ import annotations

import logging

import numpy as np

from prodlens._validation import check_choice, check_float, check_int

log = logging.getLogger(__name__)

SELECTION_METHODS = ("eom", "leaf")


def l2_normalize(x: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length (zero rows stay zero): Euclidean distance then orders like cosine.

    >>> l2_normalize(np.array([[3.0, 4.0], [0.0, 0.0]])).tolist()
    [[0.6, 0.8], [0.0, 0.0]]
    """
    x = np.asarray(x, dtype=np.float64)
    norm = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.where(norm > 0, norm, 1.0)


def cluster_embeddings(
    embeddings: np.ndarray,
    *,
    min_cluster_size: int = 3,
    min_samples: int | None = None,
    metric: str = "euclidean",
    cluster_selection_epsilon: float = 0.0,
    cluster_selection_method: str = "eom",
    allow_single_cluster: bool = False,
) -> np.ndarray:
    """HDBSCAN labels for ``(n, d)`` embeddings: ``0 .. k-1`` for clusters, ``-1`` for noise.

    Parameters are those of ``sklearn.cluster.HDBSCAN``. Cluster ids are renumbered in
    order of each cluster's first point, so the same input always gives the same ids.
    Fewer points than ``min_cluster_size`` give all noise (logged), not an error.

    >>> rng = np.random.default_rng(0)
    >>> X = np.vstack([rng.normal(0, 0.05, (5, 2)), rng.normal(5, 0.05, (5, 2)), [[20.0, -20.0]]])
    >>> cluster_embeddings(X, min_cluster_size=3).tolist()
    [0, 0, 0, 0, 0, 1, 1, 1, 1, 1, -1]
    """
    check_int("min_cluster_size", min_cluster_size, 2, "HDBSCAN needs clusters of at least 2 points")
    if min_samples is not None:
        check_int("min_samples", min_samples, 1, "or None to use min_cluster_size")
    check_float("cluster_selection_epsilon", cluster_selection_epsilon, 0.0)
    check_choice("cluster_selection_method", cluster_selection_method, SELECTION_METHODS)
    X = np.asarray(embeddings, dtype=np.float64)
    if X.ndim != 2:
        raise ValueError(f"embeddings must be a 2-D (n, d) array, got shape {X.shape}")
    if not np.isfinite(X).all():
        raise ValueError("embeddings contain NaN or infinite values; check the embed_fn")
    n = len(X)
    if n < min_cluster_size or n < 2:
        log.info("%d points, fewer than min_cluster_size=%d: all noise", n, min_cluster_size)
        return np.full(n, -1, dtype=np.int64)
    from sklearn.cluster import HDBSCAN

    ms = min_samples if min_samples is not None else min_cluster_size
    if ms > n:
        log.info("min_samples=%d > %d points: using %d", ms, n, n)
        ms = n
    try:
        raw = HDBSCAN(
            min_cluster_size=min_cluster_size,
            min_samples=ms,
            metric=metric,
            cluster_selection_epsilon=cluster_selection_epsilon,
            cluster_selection_method=cluster_selection_method,
            allow_single_cluster=allow_single_cluster,
            copy=True,
        ).fit_predict(X)
    except ValueError as e:
        if "metric" in str(e).lower():
            raise ValueError(
                f"metric {metric!r} is not usable by sklearn.cluster.HDBSCAN ({e}); "
                "use e.g. 'euclidean', 'manhattan' or 'cosine'"
            ) from None
        raise
    return _renumber(np.asarray(raw))


def _renumber(labels: np.ndarray) -> np.ndarray:
    """Relabel clusters ``0..k-1`` by first appearance, keeping ``-1`` (HDBSCAN also uses -2, -3 for
    infinite / missing values: mapped to noise).

    >>> _renumber(np.array([3, 3, -1, 0, 3, -2])).tolist()
    [0, 0, -1, 1, 0, -1]
    """
    out = np.full(len(labels), -1, dtype=np.int64)
    mapping: dict[int, int] = {}
    for i, lab in enumerate(labels.tolist()):
        if lab < 0:
            continue
        out[i] = mapping.setdefault(lab, len(mapping))
    return out


def medoid(embeddings: np.ndarray, metric: str = "euclidean") -> int:
    """Index of the row with the smallest summed distance to all others (ties: first).

    >>> medoid(np.array([[0.0], [1.0], [1.2], [5.0]]))
    1
    """
    X = np.asarray(embeddings, dtype=np.float64)
    if len(X) <= 2:
        return 0
    from sklearn.metrics import pairwise_distances

    return int(np.argmin(pairwise_distances(X, metric=metric).sum(1)))
