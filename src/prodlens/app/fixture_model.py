"""A SYNTHETIC toy classifier for the app's fixtures: explained by the real multimodal LIME.

:class:`ToyClassifier` is *not* a product classifier. It scores a photo by its coarse
colour layout (4x4 mean colours) and its OCR words (hashed into 16 bins) against the
photos and the class names it was fitted on, so that :func:`prodlens.app.fixtures.fill_synthetic_run`
can run :class:`~prodlens.explain.MultimodalLime` (and its quality check) for real in a
fraction of a second per photo. It also "remembers" each photo it was fitted on (a narrow
kernel around its layout), so covering part of a photo makes it less sure faster than a
linear model would; the surrogate misses some of that, and some explanations earn the
quality check's flags — the fixture shows both trusted and flagged explanations.

>>> img = np.zeros((8, 8, 3), np.uint8)
>>> colour_layout([img]).shape, float(word_bins([[OcrToken("OATLY", (0, 0, 4, 4))]]).sum())
((1, 48), 1.0)
>>> m = ToyClassifier.fit([img, np.full((8, 8, 3), 200, np.uint8)], ["Dark-Milk", "Light-Milk"], ["Dark-Milk", "Light-Milk"])
>>> m.predict_proba([img], [[OcrToken("DARK", (0, 0, 4, 4))]]).argmax(1).tolist()
[0]
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence

import numpy as np
from PIL import Image

from prodlens.data.types import OcrToken
from prodlens.match.words import normalize_word

#: Side of the colour layout grid and number of word hash bins.
LAYOUT_SIDE = 4
WORD_BINS = 16


def colour_layout(images: Sequence[np.ndarray]) -> np.ndarray:
    """Each photo's ``LAYOUT_SIDE x LAYOUT_SIDE`` mean colours (0..1, plus 0.05), L2-normalised: ``(n, 48)``.

    >>> colour_layout([np.zeros((4, 4, 3), np.uint8)])[0, :3].round(3).tolist()
    [0.144, 0.144, 0.144]
    """
    out = []
    for im in images:
        small = Image.fromarray(np.asarray(im)).resize((LAYOUT_SIDE, LAYOUT_SIDE), Image.BILINEAR)
        layout = np.asarray(small, np.float64).ravel() / 255 + 0.05
        out.append(layout / np.linalg.norm(layout))
    return np.asarray(out, dtype=np.float64).reshape(len(out), LAYOUT_SIDE * LAYOUT_SIDE * 3)


def word_bins(token_lists: Sequence[Sequence[OcrToken]]) -> np.ndarray:
    """Counts of the words (3 or more characters, normalised) in ``WORD_BINS`` hash bins: ``(n, 16)``.

    >>> float(word_bins([[OcrToken("Milk", (0, 0, 1, 1)), OcrToken("MILK", (0, 0, 1, 1)), OcrToken("1L", (0, 0, 1, 1))]]).sum())
    2.0
    """
    out = np.zeros((len(token_lists), WORD_BINS))
    for i, tokens in enumerate(token_lists):
        for t in tokens:
            w = normalize_word(t.text)
            if len(w) >= 3:
                out[i, zlib.crc32(w.encode()) % WORD_BINS] += 1
    return out


class ToyClassifier:
    """SYNTHETIC fixture model (see the module docstring) with the fused-model seam
    (``encode_images`` / ``encode_texts`` / ``predict_from_features``), so LIME takes its
    default factorised path.

    The logit of class ``c`` is ``layout_weight * cos(layout, mean layout of c)`` plus
    ``memory_weight * max_i exp(-|layout - layout_i|^2 / memory_width^2)`` over the photos
    ``i`` of ``c``, plus ``word_weight`` times the words shared with ``c``'s name.
    """

    #: the explainer builds perturbed photos at twice this side (``resolution="auto"``)
    input_size = 48

    def __init__(self, classes: Sequence[str], layouts: np.ndarray, labels: Sequence[int], *,
                 layout_weight: float = 12.0, memory_weight: float = 6.0, memory_width: float = 0.02,
                 word_weight: float = 1.0) -> None:
        self.classes = list(classes)
        self.layouts = np.asarray(layouts, dtype=np.float64)
        self.labels = np.asarray(labels, dtype=np.int64)
        self.layout_weight, self.memory_weight, self.memory_width, self.word_weight = (
            layout_weight, memory_weight, memory_width, word_weight)
        means = np.stack([self.layouts[self.labels == c].mean(0) if (self.labels == c).any()
                          else np.zeros(self.layouts.shape[1]) for c in range(len(self.classes))])
        self.prototypes = means / np.maximum(np.linalg.norm(means, axis=1, keepdims=True), 1e-12)
        self.name_words = word_bins([[OcrToken(w, (0, 0, 1, 1)) for w in c.split("-")] for c in self.classes])

    @classmethod
    def fit(cls, photos: Sequence[np.ndarray], labels: Sequence[str], classes: Sequence[str], **params: float) -> ToyClassifier:
        """Remember ``photos`` (RGB arrays) with their class names."""
        index = {c: i for i, c in enumerate(classes)}
        return cls(classes, colour_layout(photos), [index[label] for label in labels], **params)

    def encode_images(self, images: Sequence[np.ndarray]) -> np.ndarray:
        return colour_layout(images)

    def encode_texts(self, token_lists: Sequence[Sequence[OcrToken]]) -> np.ndarray:
        return word_bins(token_lists)

    def predict_from_features(self, image_features: np.ndarray, text_features: np.ndarray) -> np.ndarray:
        a = np.asarray(image_features, dtype=np.float64)
        d2 = ((a[:, None, :] - self.layouts[None]) ** 2).sum(-1)  # (n, photos)
        near = np.exp(-d2 / self.memory_width ** 2)
        memory = np.stack([near[:, self.labels == c].max(1) if (self.labels == c).any() else np.zeros(len(a))
                           for c in range(len(self.classes))], 1)
        z = (self.layout_weight * a @ self.prototypes.T + self.memory_weight * memory
             + self.word_weight * np.asarray(text_features, dtype=np.float64) @ self.name_words.T)
        z -= z.max(1, keepdims=True)
        e = np.exp(z)
        return e / e.sum(1, keepdims=True)

    def predict_proba(self, images: Sequence[np.ndarray], token_lists: Sequence[Sequence[OcrToken]]) -> np.ndarray:
        return self.predict_from_features(self.encode_images(images), self.encode_texts(token_lists))
