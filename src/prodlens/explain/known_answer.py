"""Fused models whose true attributions are known: the yardstick for every explainer.

:class:`AdditiveFusedModel` scores a photo cut into a ``rows x cols`` grid and a list of
OCR words with an additive logit, ``b + sum_i a_i [cell i intact] + sum_j t_j [word j
present]`` (plus optional image x word interaction terms), so the true effect of every
superpixel and every word is a number the test or bench knows. It exposes the
per-modality encoders of prodlens' fused models (``encode_images`` / ``encode_texts`` /
``predict_from_features``) and counts every pass, so samplers can be compared at equal
model-call budgets; :meth:`AdditiveFusedModel.plain` wraps it as a user's model with
``predict_proba`` only.

>>> m = AdditiveFusedModel.random(n_words=3, seed=0)
>>> m.n_features, m.true_effects.shape
(19, (19,))
>>> p = m.predict_proba([m.image], [list(m.tokens)])
>>> p.shape, bool(np.isclose(p.sum(), 1.0))
((1, 2), True)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from prodlens.data.types import OcrToken
from prodlens.explain.segmentation import GridSegmenter


def _words(n: int) -> tuple[str, ...]:
    return tuple(f"W{j:03d}" for j in range(n))


@dataclass
class AdditiveFusedModel:
    """A two-class fused model with known additive effects (see the module docstring).

    ``image_effects`` has one logit effect per grid cell (``rows * cols``), ``text_effects``
    one per word; ``interactions`` are ``(cell, word, effect)`` triples added when both are
    present. The positive class is class 1.
    """

    image_effects: np.ndarray
    text_effects: np.ndarray
    rows: int = 4
    cols: int = 4
    bias: float = -0.5
    interactions: tuple[tuple[int, int, float], ...] = ()
    size: int = 32
    seed: int = 0
    classes: tuple[str, ...] = ("other", "target")
    counts: dict = field(default_factory=lambda: {"image_encodes": 0, "text_encodes": 0, "head_rows": 0})

    def __post_init__(self) -> None:
        self.image_effects = np.asarray(self.image_effects, dtype=np.float64)
        self.text_effects = np.asarray(self.text_effects, dtype=np.float64)
        if self.image_effects.shape != (self.rows * self.cols,):
            raise ValueError(f"image_effects must have rows * cols = {self.rows * self.cols} entries, "
                             f"got shape {self.image_effects.shape}")
        rng = np.random.default_rng(self.seed)
        # textured pixels, so that every fill ("mean", "blur", "black") changes a switched-off cell
        self.image = rng.integers(0, 256, size=(self.size, self.size, 3), dtype=np.uint8)
        self.segments = GridSegmenter(self.rows, self.cols)(self.image)
        words = _words(len(self.text_effects))
        self.tokens = tuple(OcrToken(w, (j % 8 * 4, j // 8 % 8 * 4, j % 8 * 4 + 3, j // 8 % 8 * 4 + 3))
                            for j, w in enumerate(words))
        self._word_index = {w: j for j, w in enumerate(words)}
        self._cells = [self.segments == c for c in range(self.rows * self.cols)]

    @classmethod
    def random(cls, n_words: int, *, rows: int = 4, cols: int = 4, n_interactions: int = 0,
               scale: float | None = None, density: float = 1.0, seed: int = 0) -> AdditiveFusedModel:
        """Effects drawn from ``N(0, scale)``, reproducible from ``seed``.

        ``scale`` defaults to ``2 / sqrt(features)``, so that the logit's spread stays about
        one whatever the number of words (the probability neither saturates nor stays
        flat); ``density`` is the share of features with a non-zero effect.

        >>> AdditiveFusedModel.random(5, seed=1).text_effects.shape
        (5,)
        """
        rng = np.random.default_rng(seed)
        s = rows * cols
        scale = 2.0 / np.sqrt(s + n_words) if scale is None else float(scale)
        img = rng.normal(0, scale, s) * (rng.random(s) < density)
        txt = rng.normal(0, scale, n_words) * (rng.random(n_words) < density) if n_words else np.zeros(0)
        inter = tuple((int(rng.integers(s)), int(rng.integers(n_words)), float(rng.normal(0, scale)))
                      for _ in range(n_interactions if n_words else 0))
        return cls(img, txt, rows=rows, cols=cols, interactions=inter, seed=seed)

    # -- what the explainer sees -----------------------------------------------------
    @property
    def n_superpixels(self) -> int:
        return self.rows * self.cols

    @property
    def n_features(self) -> int:
        return self.n_superpixels + len(self.text_effects)

    @property
    def true_effects(self) -> np.ndarray:
        """Main effects in the explainer's feature order: cells, then words (logit units)."""
        return np.concatenate([self.image_effects, self.text_effects])

    def encode_images(self, images: Sequence[np.ndarray]) -> np.ndarray:
        """Which grid cells still show the original pixels, ``(n, cells)``."""
        self.counts["image_encodes"] += len(images)
        return np.array([[np.array_equal(np.asarray(im)[c], self.image[c]) for c in self._cells] for im in images],
                        dtype=np.float64).reshape(len(images), self.n_superpixels)

    def encode_texts(self, token_lists: Sequence[Sequence[OcrToken]]) -> np.ndarray:
        """Which words are present, ``(n, words)``."""
        self.counts["text_encodes"] += len(token_lists)
        out = np.zeros((len(token_lists), len(self.text_effects)))
        for i, ts in enumerate(token_lists):
            for t in ts:
                j = self._word_index.get(t.text)
                if j is not None:
                    out[i, j] = 1.0
        return out

    def logits(self, img_f: np.ndarray, txt_f: np.ndarray) -> np.ndarray:
        z = self.bias + np.asarray(img_f) @ self.image_effects + np.asarray(txt_f) @ self.text_effects
        for c, w, e in self.interactions:
            z = z + e * np.asarray(img_f)[:, c] * np.asarray(txt_f)[:, w]
        return z

    def predict_from_features(self, img_f: np.ndarray, txt_f: np.ndarray) -> np.ndarray:
        self.counts["head_rows"] += len(img_f)
        p = 1.0 / (1.0 + np.exp(-self.logits(img_f, txt_f)))
        return np.stack([1 - p, p], 1)

    def predict_proba(self, images: Sequence[np.ndarray], token_lists: Sequence[Sequence[OcrToken]]) -> np.ndarray:
        return self.predict_from_features(self.encode_images(images), self.encode_texts(token_lists))

    def model_calls(self) -> int:
        """Encoder passes so far (image + text): the cost measure for fused models."""
        return int(self.counts["image_encodes"] + self.counts["text_encodes"])

    def reset_counts(self) -> None:
        for k in self.counts:
            self.counts[k] = 0

    def plain(self) -> PlainModel:
        """The same model behind ``predict_proba`` only (a user's model: no encode-once path)."""
        return PlainModel(self)


class PlainModel:
    """``predict_proba`` only; every row counts as one model call."""

    def __init__(self, inner: AdditiveFusedModel) -> None:
        self.inner = inner
        self.classes = inner.classes
        self.rows = 0

    def predict_proba(self, images, token_lists) -> np.ndarray:
        self.rows += len(images)
        return self.inner.predict_proba(images, token_lists)
