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


@dataclass
class AdditivePhotoModel:
    """A two-class model over many photos whose LIME weights are known exactly, for amortised explainers.

    Each photo is a ``rows x cols`` grid of solid cells painted from ``palette`` plus a few words
    from ``vocabulary``. The probability of class 1 (``"target"``) is
    ``0.5 + sum_cells colour_effects[colour] [cell intact] + sum_words word_effects[word] [present]``
    (kept inside (0, 1) by the effect sizes), linear in every on/off row, so LIME's weighted least
    squares recovers the effects exactly, whatever the kernel: :meth:`true_weights` gives them in
    the explainer's feature order (cells, then the photo's words). A switched-off cell (black
    fill) matches no palette colour and adds nothing. ``predict_proba`` only, as a user's model.

    >>> m = AdditivePhotoModel(seed=0)
    >>> img, toks = m.photo(np.random.default_rng(1))
    >>> p = m.predict_proba([img], [list(toks)]); bool(np.isclose(p.sum(), 1.0)), m.true_weights(img, toks).shape[0] > 16
    (True, True)
    """

    rows: int = 4
    cols: int = 4
    cell: int = 8
    n_colours: int = 6
    n_words: int = 12
    colour_scale: float = 0.015
    word_scale: float = 0.04
    max_words: int = 5
    seed: int = 0
    classes: tuple[str, ...] = ("other", "target")
    calls: int = 0

    def __post_init__(self) -> None:
        rng = np.random.default_rng(self.seed)
        self.palette = rng.integers(40, 256, size=(self.n_colours, 3)).astype(np.uint8)
        self.colour_effects = rng.uniform(-self.colour_scale, self.colour_scale, self.n_colours)
        self.vocabulary = tuple(f"{w}{j}" for j, w in enumerate(("MILK", "OAT", "JUICE", "APPLE", "ORANGE", "YOGHURT", "BIO",
                                                                 "LIGHT", "PEAR", "SOY", "CREAM", "MANGO", "KIWI", "LIME")[:self.n_words]))
        self.word_effects = dict(zip(self.vocabulary, rng.uniform(-self.word_scale, self.word_scale, self.n_words)))

    def photo(self, rng: np.random.Generator) -> tuple[np.ndarray, tuple[OcrToken, ...]]:
        """One random photo and its words (distinct words, random boxes)."""
        colours = rng.integers(0, self.n_colours, self.rows * self.cols)
        img = self.palette[colours].reshape(self.rows, self.cols, 3).repeat(self.cell, 0).repeat(self.cell, 1)
        n = int(rng.integers(1, self.max_words + 1))
        words = rng.choice(len(self.vocabulary), size=n, replace=False)
        H, W = self.rows * self.cell, self.cols * self.cell
        toks = []
        for j in words:
            x0, y0 = float(rng.integers(0, W - 8)), float(rng.integers(0, H - 4))
            toks.append(OcrToken(self.vocabulary[j], (x0, y0, x0 + 8, y0 + 4)))
        return np.ascontiguousarray(img), tuple(toks)

    def _cell_colours(self, image: np.ndarray) -> np.ndarray:
        im = np.asarray(image, np.float64)
        means = np.array([blk.reshape(-1, 3).mean(0) for band in np.array_split(im, self.rows, 0)
                          for blk in np.array_split(band, self.cols, 1)])
        d = np.abs(means[:, None, :] - self.palette[None].astype(np.float64)).sum(-1)
        idx = d.argmin(1)
        return np.where(d.min(1) < 1.0, idx, -1)  # -1: the cell is switched off

    def predict_proba(self, images: Sequence[np.ndarray], token_lists: Sequence[Sequence[OcrToken]]) -> np.ndarray:
        self.calls += len(images)
        out = []
        for im, ts in zip(images, token_lists):
            cols = self._cell_colours(im)
            p = 0.5 + self.colour_effects[cols[cols >= 0]].sum() + sum(self.word_effects.get(t.text, 0.0) for t in ts)
            out.append([1 - p, p])
        return np.clip(np.array(out, dtype=np.float64).reshape(len(images), 2), 1e-6, 1 - 1e-6)

    def true_weights(self, image: np.ndarray, tokens: Sequence[OcrToken]) -> np.ndarray:
        """Class 1's exact LIME weights: cells (row-major, as ``GridSegmenter`` labels them), then words."""
        return np.concatenate([self.colour_effects[self._cell_colours(image)],
                               [self.word_effects.get(t.text, 0.0) for t in tokens]])
