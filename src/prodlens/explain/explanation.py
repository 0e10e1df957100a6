"""The result of one local explanation: data only, no rendering (see ``prodlens.viz``)."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from prodlens.data.types import OcrToken


@dataclass(frozen=True)
class Explanation:
    """Weights of one sample's interpretable features for one target class.

    Features share one index space: ``0 .. n_superpixels-1`` are superpixels
    (``segments`` holds their 0-based labels), ``n_superpixels .. n_features-1`` are
    the OCR tokens in ``tokens`` order.

    >>> e = Explanation("s", 0, "a", np.array([0.3, -0.1, 0.6]), 0.1, 0.9, 0.8,
    ...                 np.zeros((2, 2), int), (OcrToken("X", (0, 0, 1, 1)),), 2)
    >>> round(e.image_share, 3)
    0.4
    """

    sample_id: str
    target: int
    target_name: str
    weights: np.ndarray
    intercept: float
    score: float  #: weighted R^2 of the surrogate on the perturbation samples
    prediction: float  #: model probability of ``target`` on the unperturbed input
    segments: np.ndarray
    tokens: tuple[OcrToken, ...]
    n_superpixels: int
    seed: int = 0
    n_samples: int = 0
    config: dict = field(default_factory=dict)

    @property
    def n_features(self) -> int:
        return self.n_superpixels + len(self.tokens)

    @property
    def image_weights(self) -> np.ndarray:
        return self.weights[: self.n_superpixels]

    @property
    def text_weights(self) -> np.ndarray:
        return self.weights[self.n_superpixels :]

    @property
    def image_share(self) -> float:
        """Share of total |weight| on image features (0..1); text share is 1 minus it."""
        total = float(np.abs(self.weights).sum())
        return float(np.abs(self.image_weights).sum()) / total if total > 0 else 0.0

    @property
    def text_share(self) -> float:
        total = float(np.abs(self.weights).sum())
        return float(np.abs(self.text_weights).sum()) / total if total > 0 else 0.0

    def top_features(self, k: int = 10, positive_only: bool = False) -> list[int]:
        """Feature indices ordered by weight (|weight| unless ``positive_only``)."""
        w = self.weights if positive_only else np.abs(self.weights)
        order = np.argsort(-w, kind="stable")
        if positive_only:
            order = order[self.weights[order] > 0]
        return [int(i) for i in order[:k]]
