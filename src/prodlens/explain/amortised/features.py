"""The amortised explainer's own frozen inputs: one vector per superpixel, per OCR word, per photo.

They never come from the classifier being explained, so the explainer works for any
classifier (a prodlens model or a user's model wrapped by ``as_classifier``), and
explaining a photo costs no pass through it beyond the one unperturbed prediction.

* :class:`BackboneFeatures` (``"backbone"``, the default): a pretrained EfficientNet-Lite0's
  feature maps at strides 8, 16 and 32 (40 + 112 + 320 channels), area-pooled inside each
  superpixel, plus its position and size; for each word its MiniLM embedding, its box and the
  stride-16 map pooled under the box; the photo's context is the mean of the stride-16 and
  stride-32 maps. One backbone pass and one text pass per photo.
* :class:`SimpleFeatures` (``"simple"``): mean colour and geometry per superpixel, hashed
  character trigrams and the box per word. Costs nothing; for tests and toy models.

>>> import numpy as np
>>> from prodlens.data.types import OcrToken
>>> img = np.zeros((8, 8, 3), np.uint8); seg = np.repeat(np.arange(4), 16).reshape(8, 8)
>>> f = SimpleFeatures()(img, seg, (OcrToken("MILK", (0, 0, 4, 2)),))
>>> f.superpixels.shape, f.words.shape, f.context.shape
((4, 9), (1, 68), (3,))
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from prodlens.data.types import OcrToken


@dataclass(frozen=True)
class PhotoFeatures:
    """Frozen inputs of one photo: ``superpixels`` ``(S, f)``, ``words`` ``(T, g)``, ``context`` ``(c,)``."""

    superpixels: np.ndarray
    words: np.ndarray
    context: np.ndarray


class Featurizer(Protocol):
    """``(image, segments, tokens) -> PhotoFeatures``; ``name`` and the three widths are saved with the explainer."""

    name: str
    superpixel_dim: int
    word_dim: int
    context_dim: int

    def __call__(self, image: np.ndarray, segments: np.ndarray, tokens: Sequence[OcrToken]) -> PhotoFeatures: ...


def segment_geometry(segments: np.ndarray) -> np.ndarray:
    """Per superpixel ``(S, 6)``: centre y, x, area share, sqrt of it, bbox height, width (all in 0..1).

    >>> segment_geometry(np.array([[0, 1], [0, 1]])).round(2).tolist()[0]
    [0.5, 0.25, 0.5, 0.71, 1.0, 0.5]
    """
    H, W = segments.shape
    S = int(segments.max()) + 1
    ys, xs = np.mgrid[0:H, 0:W]
    flat = segments.ravel()
    count = np.bincount(flat, minlength=S).astype(np.float64)
    cy = np.bincount(flat, (ys.ravel() + 0.5) / H, S) / count
    cx = np.bincount(flat, (xs.ravel() + 0.5) / W, S) / count
    ymin, ymax = np.full(S, H), np.zeros(S, int)
    xmin, xmax = np.full(S, W), np.zeros(S, int)
    np.minimum.at(ymin, flat, ys.ravel())
    np.maximum.at(ymax, flat, ys.ravel())
    np.minimum.at(xmin, flat, xs.ravel())
    np.maximum.at(xmax, flat, xs.ravel())
    area = count / (H * W)
    return np.stack([cy, cx, area, np.sqrt(area), (ymax - ymin + 1) / H, (xmax - xmin + 1) / W], 1)


def box_geometry(tokens: Sequence[OcrToken], shape: tuple[int, ...]) -> np.ndarray:
    """Per word ``(T, 4)``: box centre x, y, width, height as shares of the photo's width / height."""
    H, W = float(shape[0]), float(shape[1])
    if not tokens:
        return np.zeros((0, 4))
    b = np.array([t.box for t in tokens], np.float64)
    return np.stack([(b[:, 0] + b[:, 2]) / 2 / W, (b[:, 1] + b[:, 3]) / 2 / H,
                     (b[:, 2] - b[:, 0]) / W, (b[:, 3] - b[:, 1]) / H], 1).clip(-1, 2)


def area_pooling(segments: np.ndarray, grid: int) -> np.ndarray:
    """``(S, grid * grid)``: the share of each superpixel's pixels in each cell of a ``grid x grid``
    map laid over the (squashed) photo; rows sum to 1.

    >>> area_pooling(np.array([[0, 1], [0, 1]]), 1).tolist()
    [[1.0], [1.0]]
    """
    H, W = segments.shape
    S = int(segments.max()) + 1
    cy = np.minimum((np.arange(H) * grid) // H, grid - 1)
    cx = np.minimum((np.arange(W) * grid) // W, grid - 1)
    cell = (cy[:, None] * grid + cx[None, :]).ravel()
    P = np.zeros((S, grid * grid))
    np.add.at(P, (segments.ravel(), cell), 1.0)
    return P / P.sum(1, keepdims=True)


def box_pooling(tokens: Sequence[OcrToken], shape: tuple[int, ...], grid: int) -> np.ndarray:
    """``(T, grid * grid)``: uniform weights over the cells each word's box touches (rows sum to 1)."""
    H, W = float(shape[0]), float(shape[1])
    P = np.zeros((len(tokens), grid * grid))
    for j, t in enumerate(tokens):
        x0, y0, x1, y1 = t.box
        c0, c1 = (int(np.clip(v / W * grid, 0, grid - 1)) for v in (x0, x1))
        r0, r1 = (int(np.clip(v / H * grid, 0, grid - 1)) for v in (y0, y1))
        m = np.zeros((grid, grid))
        m[r0:r1 + 1, c0:c1 + 1] = 1.0
        P[j] = m.ravel() / m.sum()
    return P


class SimpleFeatures:
    """Mean colour + geometry per superpixel, hashed trigrams + box per word, mean colour as context."""

    name = "simple"
    superpixel_dim = 9
    word_dim = 68
    context_dim = 3
    n_hash = 64

    def _hash(self, text: str) -> np.ndarray:
        v = np.zeros(self.n_hash)
        padded = f"#{text.lower()}#"
        for i in range(max(1, len(padded) - 2)):
            h = int.from_bytes(hashlib.blake2b(padded[i:i + 3].encode(), digest_size=4).digest(), "little")
            v[h % self.n_hash] += 1.0
        return v / np.linalg.norm(v)

    def __call__(self, image: np.ndarray, segments: np.ndarray, tokens: Sequence[OcrToken]) -> PhotoFeatures:
        S = int(segments.max()) + 1
        flat = segments.ravel()
        count = np.bincount(flat, minlength=S)
        colour = np.stack([np.bincount(flat, image[..., c].ravel().astype(np.float64), S) / count for c in range(3)], 1) / 255
        words = np.array([self._hash(t.text) for t in tokens]).reshape(len(tokens), self.n_hash)
        return PhotoFeatures(np.hstack([colour, segment_geometry(segments)]),
                             np.hstack([words, box_geometry(tokens, image.shape)]),
                             image.reshape(-1, 3).mean(0) / 255)

    def __repr__(self) -> str:
        return "SimpleFeatures()"


class BackboneFeatures:
    """EfficientNet-Lite0 maps pooled per superpixel and under each word's box; MiniLM per word.

    The backbone and the text encoder load on first use (``prodlens.models``' shipped weights).
    """

    name = "backbone"
    input_size = 256
    #: after these inverted-residual units (0-based): stride 8 (40 ch), 16 (112 ch), 32 (320 ch)
    taps = (4, 10, 15)
    channels = (40, 112, 320)
    superpixel_dim = 40 + 112 + 320 + 6
    word_dim = 384 + 4 + 112
    context_dim = 112 + 320

    def __init__(self) -> None:
        self._image = None
        self._text = None

    def _load(self) -> None:
        if self._image is None:
            from prodlens.models.image_backbones import efficientnet_lite0
            from prodlens.models.text_backbones import minilm

            self._image = efficientnet_lite0(input_size=self.input_size).eval()
            self._text = minilm().eval()

    def maps(self, image: np.ndarray) -> list[np.ndarray]:
        """The tapped feature maps of the photo squashed to 256 x 256, each ``(C, g, g)``."""
        import torch

        from prodlens.models.preprocess import images_to_tensor

        self._load()
        net = self._image.net  # type: ignore[union-attr]
        out = []
        with torch.no_grad():
            h = net.bn1(net.conv_stem(images_to_tensor([image], self._image.preprocess)))  # type: ignore[union-attr]
            for i, unit in enumerate(self._image.blocks()):  # type: ignore[union-attr]
                h = unit(h)
                if i in self.taps:
                    out.append(h[0].numpy().astype(np.float64))
                if i == self.taps[-1]:
                    break
        return out

    def __call__(self, image: np.ndarray, segments: np.ndarray, tokens: Sequence[OcrToken]) -> PhotoFeatures:
        import torch

        maps = self.maps(image)
        pooled = [area_pooling(segments, m.shape[1]) @ m.reshape(m.shape[0], -1).T for m in maps]
        sp = np.hstack([*pooled, segment_geometry(segments)])
        mid = maps[1].reshape(maps[1].shape[0], -1)
        if tokens:
            with torch.no_grad():
                emb = self._text.forward_features([t.text for t in tokens]).numpy().astype(np.float64)  # type: ignore[union-attr]
            under = box_pooling(tokens, image.shape, maps[1].shape[1]) @ mid.T
            words = np.hstack([emb, box_geometry(tokens, image.shape), under])
        else:
            words = np.zeros((0, self.word_dim))
        context = np.concatenate([mid.mean(1), maps[2].reshape(maps[2].shape[0], -1).mean(1)])
        return PhotoFeatures(sp, words, context)

    def __repr__(self) -> str:
        return "BackboneFeatures(efficientnet_lite0 strides 8/16/32 + minilm)"


FEATURIZERS = {"backbone": BackboneFeatures, "simple": SimpleFeatures}


def make_featurizer(spec: str | Featurizer) -> Featurizer:
    """A featurizer by name (``"backbone"``, ``"simple"``) or the object itself."""
    if isinstance(spec, str):
        if spec not in FEATURIZERS:
            raise ValueError(f"features must be one of {tuple(FEATURIZERS)} or a Featurizer, got {spec!r}")
        return FEATURIZERS[spec]()
    if not callable(spec) or not all(hasattr(spec, a) for a in ("name", "superpixel_dim", "word_dim", "context_dim")):
        raise ValueError(f"features must be one of {tuple(FEATURIZERS)} or a Featurizer, got {spec!r}")
    return spec
