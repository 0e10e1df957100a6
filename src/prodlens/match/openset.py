"""Open-set evaluation of matching: products the embedding has never seen.

Retail matching is used for products added after the model was trained: a new product
is a new catalogue entry, not a retrained model. To measure that, split *classes*, not
photos: the embedding learns on some classes and is scored on classes it never saw.

* :func:`unseen_class_folds`: folds over classes; the members of each look-alike group
  (the coarse class: the milks, the juices) are dealt over the folds, so every fold holds
  new variants of known brands as a new product would be;
* :func:`k_shots`: ``k`` photos per class for a few-shot gallery, spread over each
  class's photos (consecutive GroceryStore photos are near-duplicates);
* :func:`class_scores` / :func:`rank_of_truth`: a query's similarity to each gallery
  class (its best item) and the rank of the true class, from which top-k follows per
  query (the unit of a paired bootstrap between two embeddings).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np


def unseen_class_folds(classes: Sequence[str], groups: Mapping[str, str] | None = None, n_folds: int = 5,
                       seed: int = 0) -> list[tuple[str, ...]]:
    """``n_folds`` disjoint sets of class names covering ``classes``.

    Classes are shuffled (seeded) within their group (``groups[name]``, e.g. the coarse
    class; a class of its own when missing) and dealt round-robin, larger groups first,
    so that each group is spread over the folds as evenly as it can be.

    >>> folds = unseen_class_folds(["m1", "m2", "m3", "j1", "j2", "x"], {"m1": "milk", "m2": "milk", "m3": "milk", "j1": "juice", "j2": "juice"}, 2)
    >>> [sorted(f) for f in folds]
    [['j1', 'm2', 'm3'], ['j2', 'm1', 'x']]
    """
    names = sorted(set(classes))
    if n_folds < 2 or n_folds > len(names):
        raise ValueError(f"n_folds must be in 2..{len(names)} (the number of classes), got {n_folds}")
    groups = dict(groups or {})
    by_group: dict[str, list[str]] = {}
    for c in names:
        by_group.setdefault(groups.get(c, c), []).append(c)
    rng = np.random.default_rng(seed)
    order: list[str] = []
    for g in sorted(by_group, key=lambda g: (-len(by_group[g]), g)):
        members = list(by_group[g])
        rng.shuffle(members)
        order += members
    folds: list[list[str]] = [[] for _ in range(n_folds)]
    for i, c in enumerate(order):
        folds[i % n_folds].append(c)
    return [tuple(sorted(f)) for f in folds]


def k_shots(ids: Sequence[str], labels: Sequence[str], k: int) -> np.ndarray:
    """Indices of ``k`` items per label, spread evenly over each label's items in id order
    (all of them when it has fewer), labels in sorted order.

    >>> k_shots([f"{i:02d}" for i in range(10)], list("ababababab"), 2).tolist()
    [0, 8, 1, 9]
    """
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    by_label: dict[str, list[int]] = {}
    for i in sorted(range(len(ids)), key=lambda i: ids[i]):
        by_label.setdefault(labels[i], []).append(i)
    out: list[int] = []
    for lab in sorted(by_label):
        items = by_label[lab]
        pick = np.unique(np.linspace(0, len(items) - 1, min(k, len(items))).round().astype(int))
        out += [items[j] for j in pick]
    return np.asarray(out, dtype=int)


def class_scores(queries: np.ndarray, gallery: np.ndarray, gallery_labels: Sequence[str]) -> tuple[np.ndarray, list[str]]:
    """``(n_queries, n_classes)`` similarity of each query to each gallery class (the inner
    product with the class's best item) and the class names (sorted).

    >>> s, names = class_scores(np.array([[1.0, 0.0]]), np.array([[0.5, 0.5], [0.9, 0.1], [0.0, 1.0]]), ["a", "a", "b"])
    >>> s.astype(float).round(2).tolist(), names
    ([[0.9, 0.0]], ['a', 'b'])
    """
    names = sorted(set(gallery_labels))
    sim = np.asarray(queries, np.float32) @ np.asarray(gallery, np.float32).T
    gl = np.asarray(list(gallery_labels))
    out = np.full((len(sim), len(names)), -np.inf, dtype=np.float32)
    for j, c in enumerate(names):
        out[:, j] = sim[:, gl == c].max(axis=1)
    return out, names


def rank_of_truth(scores: np.ndarray, names: Sequence[str], query_labels: Sequence[str]) -> np.ndarray:
    """1-based rank of each query's true class among the gallery classes (ties count against
    the truth); ``top-k`` correct is ``rank <= k``.

    >>> rank_of_truth(np.array([[0.9, 0.1], [0.2, 0.8]]), ["a", "b"], ["a", "a"]).tolist()
    [1, 2]
    """
    col = {c: j for j, c in enumerate(names)}
    missing = sorted({q for q in query_labels if q not in col})
    if missing:
        raise ValueError(f"queries of classes missing from the gallery: {missing[:5]}; every query's class needs a gallery item")
    true = scores[np.arange(len(scores)), [col[q] for q in query_labels]]
    return (scores >= true[:, None]).sum(axis=1)

