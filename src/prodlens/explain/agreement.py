"""How far two explanations of one sample agree: top-k overlap, Spearman, sign agreement.

The measures the benches and the amortised explainer's verify mode report, in one place.

>>> a, b = np.array([0.5, -0.2, 0.1, 0.0]), np.array([0.4, -0.3, 0.0, 0.05])
>>> top_overlap(a, b, 2), round(spearman(a, b), 2), sign_agreement(a, b, 2)
(2, 0.8, 1.0)
"""

from __future__ import annotations

import numpy as np

#: Features compared by ``top_overlap`` and ``sign_agreement`` unless told.
TOP = 10


def top_overlap(a: np.ndarray, b: np.ndarray, k: int = TOP) -> int:
    """How many of ``a``'s top-``k`` features by ``|weight|`` are in ``b``'s (ties: lower index first)."""
    ta = set(np.argsort(-np.abs(a), kind="stable")[:k].tolist())
    tb = set(np.argsort(-np.abs(b), kind="stable")[:k].tolist())
    return len(ta & tb)


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman rank correlation over all weights (``nan`` when either is constant)."""
    from scipy.stats import spearmanr

    a, b = np.asarray(a, float), np.asarray(b, float)
    if len(a) < 2 or np.ptp(a) == 0 or np.ptp(b) == 0:
        return float("nan")
    return float(spearmanr(a, b).statistic)


def sign_agreement(w: np.ndarray, ref: np.ndarray, k: int = TOP) -> float:
    """Share of ``ref``'s top-``k`` features (by ``|weight|``) whose sign ``w`` shares."""
    top = np.argsort(-np.abs(ref), kind="stable")[:k]
    return float(np.mean(np.sign(w[top]) == np.sign(ref[top])))


def agreement(w: np.ndarray, ref: np.ndarray, k: int = TOP) -> dict:
    """``{"top10_overlap", "spearman", "sign_top10"}`` of ``w`` against ``ref`` (keys name ``k=10``).

    >>> agreement(np.array([1.0, 0.5, -0.1]), np.array([0.9, 0.4, -0.2]), k=2)["top10_overlap"]
    2
    """
    w, ref = np.asarray(w, float), np.asarray(ref, float)
    if w.shape != ref.shape:
        raise ValueError(f"both explanations must have the same features, got {w.shape} and {ref.shape}")
    return {"top10_overlap": top_overlap(w, ref, k), "spearman": round(spearman(w, ref), 4),
            "sign_top10": round(sign_agreement(w, ref, k), 3)}
