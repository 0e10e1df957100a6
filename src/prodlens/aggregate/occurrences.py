"""Step 1 of the global explanation: the top positive local features of each explanation."""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np

from prodlens._validation import check_choice
from prodlens.aggregate.normlime import normalize_weights
from prodlens.aggregate.results import FeatureOccurrence
from prodlens.aggregate.text import normalize_word
from prodlens.explain.explanation import Explanation

log = logging.getLogger(__name__)

NORMALIZE_OVER = ("all", "modality")


def normalized_explanation_weights(e: Explanation, method: str = "normlime", over: str = "all") -> np.ndarray:
    """NormLIME-normalised weights of all of ``e``'s features.

    ``over="all"`` normalises by the L1 norm of the whole explanation (image and text
    together, so a photo explained mostly by its text gives its superpixels little
    global weight); ``"modality"`` normalises image and text weights separately.

    >>> from prodlens.data.types import OcrToken
    >>> e = Explanation("s", 0, "c", np.array([0.3, 0.1, 0.4, -0.2]), 0.0, 1.0, 0.9,
    ...                 np.array([[0, 1]]), (OcrToken("A", (0, 0, 1, 1)), OcrToken("B", (0, 0, 1, 1))), 2)
    >>> normalized_explanation_weights(e).round(4).tolist()
    [0.09, 0.01, 0.16, 0.04]
    >>> normalized_explanation_weights(e, over="modality").round(4).tolist()
    [0.225, 0.025, 0.2667, 0.0667]
    """
    check_choice("normalize_over", over, NORMALIZE_OVER)
    w = np.asarray(e.weights, dtype=np.float64)
    if over == "all":
        return normalize_weights(w, method)
    S = e.n_superpixels
    return np.concatenate([normalize_weights(w[:S], method), normalize_weights(w[S:], method)])


def top_positive(weights: np.ndarray, k: int, allowed: np.ndarray | None = None) -> list[int]:
    """Indices of the ``k`` largest strictly positive weights (ties: lower index first).

    >>> top_positive(np.array([0.1, -0.5, 0.3, 0.3, 0.0]), 3)
    [2, 3, 0]
    >>> top_positive(np.array([0.1, -0.5, 0.3]), 3, allowed=np.array([True, True, False]))
    [0]
    """
    w = np.asarray(weights, dtype=np.float64)
    order = np.argsort(-w, kind="stable")
    keep = w[order] > 0
    if allowed is not None:
        keep &= np.asarray(allowed, bool)[order]
    return [int(i) for i in order[keep][:k]]


def image_occurrences(e: Explanation, norm: np.ndarray, k: int) -> list[FeatureOccurrence]:
    """The top-``k`` positive superpixels of ``e`` as occurrences (with their areas)."""
    w = e.image_weights
    idx = top_positive(w, k)
    if not idx:
        return []
    areas = np.bincount(np.asarray(e.segments).ravel(), minlength=e.n_superpixels)
    return [
        FeatureOccurrence(e.sample_id, e.target_name, "image", i, i, float(w[i]), float(norm[i]), area=int(areas[i]))
        for i in idx
    ]


def text_occurrences(
    e: Explanation, norm: np.ndarray, k: int, case: str = "upper", min_length: int = 2
) -> list[FeatureOccurrence]:
    """The top-``k`` positive OCR tokens of ``e`` whose normalised word is kept.

    Tokens that normalise to nothing (punctuation, single characters) are skipped
    *before* taking the top ``k``, so up to ``k`` real words are returned.
    """
    w = e.text_weights
    words = [normalize_word(t.text, case, min_length) for t in e.tokens]
    allowed = np.array([x is not None for x in words], dtype=bool)
    S = e.n_superpixels
    return [
        FeatureOccurrence(
            e.sample_id, e.target_name, "text", j, S + j, float(w[j]), float(norm[S + j]),
            text=words[j], raw_text=e.tokens[j].text,
        )
        for j in top_positive(w, k, allowed)
    ]


def group_by_class(explanations: Sequence[Explanation]) -> dict[str, list[Explanation]]:
    """Explanations per explained class (``target_name``), classes and samples sorted.

    A repeated ``(sample_id, target_name)`` is kept once (the first) with a warning, so
    that a sample cannot count twice in its class's NormLIME mean.
    """
    by: dict[str, dict[str, Explanation]] = {}
    for e in explanations:
        if not isinstance(e, Explanation):
            raise TypeError(f"explanations must be prodlens Explanation objects, got {type(e).__name__}")
        seen = by.setdefault(e.target_name, {})
        if e.sample_id in seen:
            log.warning("sample %r is explained twice for class %r; keeping the first", e.sample_id, e.target_name)
            continue
        seen[e.sample_id] = e
    return {c: [d[s] for s in sorted(d)] for c, d in sorted(by.items())}
