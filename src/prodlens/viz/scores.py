"""Importances of both modalities on one 0..1 scale (paper, sec. 4.2)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from prodlens.explain.explanation import Explanation

SIGNS = ("positive", "negative", "absolute")


@dataclass(frozen=True)
class JointScores:
    """Per-feature importances in ``0..1``: ``image`` ``(S,)`` and ``text`` ``(T,)``.

    ``scale`` is the ``max |weight|`` over both modalities that they were divided by.
    """

    image: np.ndarray
    text: np.ndarray
    scale: float


def joint_scores(explanation: Explanation, sign: str = "positive") -> JointScores:
    """Normalise superpixel and token weights JOINTLY to ``0..1``.

    Every weight is divided by the largest ``|weight|`` over both modalities, so the
    two modalities stay comparable: a word that matters half as much as the best
    superpixel is drawn at 0.5, and a modality with only weak evidence stays dim
    instead of being stretched to full colour. ``sign="positive"`` (default, the
    paper's choice) shows evidence FOR the target and sets weights against it to 0;
    ``"negative"`` shows evidence against it (as positive scores), ``"absolute"``
    both.

    >>> from prodlens.data.types import OcrToken
    >>> e = Explanation("s", 0, "a", np.array([0.2, -0.4, 0.8]), 0.0, 1.0, 0.9,
    ...                 np.zeros((1, 1), int), (OcrToken("X", (0, 0, 1, 1)),), 2)
    >>> s = joint_scores(e)
    >>> s.image.tolist(), s.text.tolist()
    ([0.25, 0.0], [1.0])
    """
    if sign not in SIGNS:
        raise ValueError(f"sign must be one of {SIGNS}, got {sign!r}")
    w = np.asarray(explanation.weights, dtype=np.float64)
    scale = float(np.abs(w).max()) if w.size else 0.0
    if sign == "positive":
        v = np.clip(w, 0, None)
    elif sign == "negative":
        v = np.clip(-w, 0, None)
    else:
        v = np.abs(w)
    v = v / scale if scale > 0 else np.zeros_like(v)
    S = explanation.n_superpixels
    return JointScores(v[:S], v[S:], scale)
