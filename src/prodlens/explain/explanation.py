"""The result of one local explanation: data only, no rendering (see ``prodlens.viz``)."""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np

from prodlens.data.types import OcrToken
from prodlens.explain.interpretable import resize_labels
from prodlens.explain.quality import ExplanationQuality


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
    #: the surrogate's prediction on the unperturbed input (compare with ``prediction``)
    surrogate_prediction: float | None = None
    #: faithfulness, stability and fit scores (``None`` when the explainer skipped them)
    quality: ExplanationQuality | None = None

    def fitted_to(self, shape: tuple[int, ...]) -> Explanation:
        """This explanation drawn at ``shape`` ``(H, W)``: segments resized (nearest neighbour)
        and OCR boxes scaled to match. ``segments`` and token boxes share one frame (the
        photo as it was segmented, which for a large photo is a downscaled copy), so any
        renderer fits both to the photo it draws on.

        >>> e = Explanation("s", 0, "a", np.array([1.0, 0.5]), 0, 1, 1, np.array([[0, 0]]),
        ...                 (OcrToken("X", (0, 0, 1, 1)),), 1)
        >>> f = e.fitted_to((2, 4, 3)); f.segments.shape, f.tokens[0].box
        ((2, 4), (0.0, 0.0, 2.0, 2.0))
        """
        H, W = np.asarray(self.segments).shape
        h, w = int(shape[0]), int(shape[1])
        if (H, W) == (h, w):
            return self
        sy, sx = h / H, w / W
        tokens = tuple(
            replace(t, box=(t.box[0] * sx, t.box[1] * sy, t.box[2] * sx, t.box[3] * sy), quad=None) for t in self.tokens
        )
        return replace(self, segments=resize_labels(np.asarray(self.segments), (h, w)), tokens=tokens)

    @property
    def flagged(self) -> bool | None:
        """Whether the quality scores say "do not trust this" (``None``: not scored)."""
        return None if self.quality is None else not self.quality.trusted

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

    def feature_name(self, i: int) -> str:
        """``"superpixel 3"`` or ``"token 'MILK'"`` for feature index ``i``."""
        if i < self.n_superpixels:
            return f"superpixel {i}"
        return f"token {self.tokens[i - self.n_superpixels].text!r}"

    def to_dict(self, include_segments: bool = True) -> dict:
        """JSON-ready dict; ``segments`` as nested lists unless ``include_segments`` is false.

        >>> e = Explanation("s", 1, "b", np.array([0.5, -0.25]), 0.1, 0.9, 0.8, np.zeros((1, 1), int),
        ...                 (OcrToken("X", (0, 0, 1, 1)),), 1)
        >>> Explanation.from_dict(e.to_dict()).weights.tolist()
        [0.5, -0.25]
        """
        d = {
            "sample_id": self.sample_id,
            "target": int(self.target),
            "target_name": self.target_name,
            "weights": [float(w) for w in self.weights],
            "intercept": float(self.intercept),
            "score": float(self.score),
            "prediction": float(self.prediction),
            "surrogate_prediction": None if self.surrogate_prediction is None else float(self.surrogate_prediction),
            "n_superpixels": int(self.n_superpixels),
            "tokens": [t.to_dict() for t in self.tokens],
            "seed": int(self.seed),
            "n_samples": int(self.n_samples),
            "config": self.config,
            "image_share": self.image_share,
            "text_share": self.text_share,
            "quality": None if self.quality is None else self.quality.to_dict(),
        }
        if include_segments:
            d["segments"] = np.asarray(self.segments).tolist()
        return d

    @classmethod
    def from_dict(cls, d: dict, segments: np.ndarray | None = None) -> Explanation:
        """Inverse of :meth:`to_dict`; pass ``segments`` when the dict was saved without them."""
        seg = np.asarray(d["segments"], dtype=np.int32) if segments is None else np.asarray(segments)
        sp = d.get("surrogate_prediction")
        q = d.get("quality")
        return cls(
            sample_id=d["sample_id"],
            target=int(d["target"]),
            target_name=d["target_name"],
            weights=np.asarray(d["weights"], dtype=np.float64),
            intercept=float(d["intercept"]),
            score=float(d["score"]),
            prediction=float(d["prediction"]),
            segments=seg,
            tokens=tuple(OcrToken.from_dict(t) for t in d.get("tokens", [])),
            n_superpixels=int(d["n_superpixels"]),
            seed=int(d.get("seed", 0)),
            n_samples=int(d.get("n_samples", 0)),
            config=dict(d.get("config", {})),
            surrogate_prediction=None if sp is None else float(sp),
            quality=None if q is None else ExplanationQuality.from_dict(q),
        )
