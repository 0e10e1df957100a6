"""Turn binary feature vectors into model inputs (the "mask-to-input" step).

:class:`MultimodalInput` plays the role of captum's ``InterpretableInput``: it owns
one sample's image, its superpixels and its OCR tokens in ONE feature index space
(superpixels ``0 .. S-1`` then tokens ``S .. S+T-1``) and turns a batch of on/off
rows into the images and token lists a :class:`~prodlens.models.base.Classifier`
takes. An off superpixel is painted with a fill image (per-superpixel mean colour by
default, or black, a blurred copy, or one RGB colour); an off token is left out of the
token list.

Masks are built for a whole batch at once by indexing the row matrix with the label
image (``rows[:, segments]``), in numpy, or in torch on the model's device for
classifiers that opt in (see :meth:`MultimodalInput.images`).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np
from PIL import Image, ImageFilter

from prodlens.data.types import OcrToken

log = logging.getLogger(__name__)

FILLS = ("mean", "black", "blur")
Fill = str | tuple[int, int, int]


def _check_fill(fill: Fill) -> None:
    if isinstance(fill, str):
        if fill not in FILLS:
            raise ValueError(f"fill must be one of {FILLS} or an (R, G, B) tuple, got {fill!r}")
        return
    if len(tuple(fill)) != 3 or not all(0 <= int(v) <= 255 for v in fill):
        raise ValueError(f"fill must be one of {FILLS} or an (R, G, B) tuple of 0..255, got {fill!r}")


def segment_means(image: np.ndarray, segments: np.ndarray) -> np.ndarray:
    """Mean RGB colour of every superpixel, ``(S, 3)`` float.

    >>> img = np.array([[[0, 0, 0], [10, 20, 30]]], np.uint8)
    >>> segment_means(img, np.array([[0, 0]])).tolist()
    [[5.0, 10.0, 15.0]]
    """
    n = int(segments.max()) + 1
    flat = segments.ravel()
    counts = np.bincount(flat, minlength=n).astype(np.float64)
    sums = np.stack([np.bincount(flat, weights=image[..., c].ravel().astype(np.float64), minlength=n) for c in range(3)], 1)
    return sums / np.maximum(counts, 1)[:, None]


def fill_image(image: np.ndarray, segments: np.ndarray, fill: Fill = "mean", blur_radius: float | None = None) -> np.ndarray:
    """The image that shows through where a superpixel is switched off.

    ``"mean"`` paints each superpixel with its mean colour (as lime does), ``"black"``
    with zeros, ``"blur"`` with a Gaussian-blurred copy (radius 5% of the longer side
    unless ``blur_radius`` is given); an ``(R, G, B)`` tuple paints one colour.

    >>> img = np.array([[[0, 0, 0], [10, 20, 30]]], np.uint8)
    >>> fill_image(img, np.array([[0, 0]]), "mean")[0, 0].tolist()
    [5, 10, 15]
    >>> fill_image(img, np.array([[0, 0]]), (255, 0, 0))[0, 1].tolist()
    [255, 0, 0]
    """
    _check_fill(fill)
    if isinstance(fill, str):
        if fill == "mean":
            means = np.rint(segment_means(image, segments)).astype(np.uint8)
            return means[segments]
        if fill == "black":
            return np.zeros_like(image)
        radius = blur_radius if blur_radius is not None else 0.05 * max(image.shape[:2])
        return np.asarray(Image.fromarray(image).filter(ImageFilter.GaussianBlur(radius)), dtype=np.uint8)
    out = np.empty_like(image)
    out[...] = np.asarray(fill, dtype=np.uint8)
    return out


def resize_labels(segments: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Nearest-neighbour resize of a label image to ``(height, width)`` (no new labels
    appear; returned as is when it already has that size).

    >>> resize_labels(np.array([[0, 1], [2, 3]]), (4, 4))[::2, ::2].tolist()
    [[0, 1], [2, 3]]
    """
    segments = np.asarray(segments)
    h, w = int(size[0]), int(size[1])
    if segments.shape == (h, w):
        return segments
    H, W = segments.shape
    rows = np.minimum(((np.arange(h) + 0.5) * H / h).astype(np.int64), H - 1)
    cols = np.minimum(((np.arange(w) + 0.5) * W / w).astype(np.int64), W - 1)
    return segments[rows[:, None], cols[None, :]]


def work_size(image_shape: tuple[int, ...], input_size: int | Sequence[int] | None) -> tuple[int, int]:
    """Size ``(h, w)`` at which to build perturbed images.

    Keeps the photo's aspect ratio and shrinks it so that its shorter side is the
    model's input size (never enlarges): the model resizes anyway, and smaller
    images are cheaper to build, copy and resize. ``None`` keeps the photo's size.

    >>> work_size((348, 348, 3), 256), work_size((600, 300, 3), (224, 224)), work_size((100, 80, 3), 256)
    ((256, 256), (448, 224), (100, 80))
    """
    H, W = int(image_shape[0]), int(image_shape[1])
    if input_size is None:
        return H, W
    side = max(input_size) if isinstance(input_size, Sequence) else int(input_size)
    scale = side / min(H, W)
    if scale >= 1:
        return H, W
    return max(1, round(H * scale)), max(1, round(W * scale))


def shrink_photo(image: np.ndarray, tokens: Sequence[OcrToken], max_pixels: int | None) -> tuple[np.ndarray, tuple[OcrToken, ...]]:
    """``image`` shrunk (area filter, aspect kept) to at most ``max_pixels``, with the OCR
    boxes scaled to match; unchanged when it is no larger (or ``max_pixels`` is ``None``).

    >>> img = np.zeros((400, 600, 3), np.uint8)
    >>> small, toks = shrink_photo(img, (OcrToken("A", (60, 40, 120, 80)),), 6000)
    >>> small.shape, toks[0].box
    ((63, 94, 3), (9.4, 6.3, 18.8, 12.6))
    """
    tokens = tuple(tokens)
    H, W = image.shape[:2]
    if max_pixels is None or H * W <= max_pixels:
        return image, tokens
    scale = (max_pixels / (H * W)) ** 0.5
    h, w = max(1, int(H * scale)), max(1, int(W * scale))
    small = np.asarray(Image.fromarray(image).reduce(max(1, min(H // h, W // w))).resize((w, h), Image.BOX), np.uint8)
    sy, sx = h / H, w / W
    tokens = tuple(replace(t, box=(t.box[0] * sx, t.box[1] * sy, t.box[2] * sx, t.box[3] * sy), quad=None) for t in tokens)
    log.info("photo %dx%d shrunk to %dx%d (max_pixels=%d) before segmentation", W, H, w, h, max_pixels)
    return small, tokens


@dataclass(frozen=True)
class ModelInputs:
    """A batch ready for ``Classifier.predict_proba``."""

    images: Sequence[np.ndarray]
    token_lists: list[list[OcrToken]]


class MultimodalInput:
    """One sample's interpretable features and the mask-to-input conversion.

    >>> img = np.zeros((4, 4, 3), np.uint8); img[:2] = 200
    >>> seg = np.array([[0, 0, 1, 1]] * 2 + [[2, 2, 3, 3]] * 2)
    >>> x = MultimodalInput(img, seg, (OcrToken("A", (0, 0, 1, 1)), OcrToken("B", (2, 2, 3, 3))), fill="black")
    >>> x.n_features
    6
    >>> batch = x.to_inputs(np.array([[1, 0, 1, 1, 0, 1]], bool))
    >>> int(batch.images[0][0, 3, 0]), [t.text for t in batch.token_lists[0]]
    (0, ['B'])
    """

    def __init__(
        self,
        image: np.ndarray,
        segments: np.ndarray,
        tokens: Sequence[OcrToken] = (),
        fill: Fill = "mean",
        size: tuple[int, int] | None = None,
    ) -> None:
        image = np.asarray(image)
        if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
            raise ValueError(f"image must be a uint8 RGB array of shape (H, W, 3), got {image.dtype} {image.shape}")
        segments = np.asarray(segments)
        if segments.shape != image.shape[:2]:
            raise ValueError(f"segments shape {segments.shape} must equal the image's (H, W) {image.shape[:2]}")
        n = int(segments.max()) + 1 if segments.size else 0
        if segments.min() != 0 or len(np.unique(segments)) != n:
            raise ValueError(
                "segments must be labelled 0 .. S-1 with no gaps; "
                "pass them through prodlens.explain.segmentation.relabel_contiguous first"
            )
        _check_fill(fill)
        self.image = image
        self.segments = segments.astype(np.int32, copy=False)
        self.tokens = tuple(tokens)
        self.fill = fill
        self.n_superpixels = n
        self.size = size or image.shape[:2]
        if tuple(self.size) == tuple(image.shape[:2]):
            self.work_image = image
            self.work_segments = self.segments
        else:
            h, w = self.size
            self.work_image = np.asarray(Image.fromarray(image).resize((w, h), Image.BILINEAR), dtype=np.uint8)
            self.work_segments = resize_labels(self.segments, (h, w))
        if isinstance(fill, str) and fill == "mean":
            # per-superpixel means come from the full-resolution photo
            means = np.rint(segment_means(image, self.segments)).astype(np.uint8)
            self.work_fill = means[self.work_segments]
        else:
            self.work_fill = fill_image(self.work_image, self.work_segments, fill)
        self._torch_cache: dict = {}

    @property
    def n_tokens(self) -> int:
        return len(self.tokens)

    @property
    def n_features(self) -> int:
        return self.n_superpixels + self.n_tokens

    def _check_rows(self, rows: np.ndarray) -> np.ndarray:
        rows = np.asarray(rows).astype(bool, copy=False)
        if rows.ndim != 2 or rows.shape[1] != self.n_features:
            raise ValueError(f"rows must have shape (n, {self.n_features}), got {rows.shape}")
        return rows

    def images(self, rows: np.ndarray, device: object | None = None):
        """Perturbed images for a batch of rows, ``(B, h, w, 3)`` uint8.

        Vectorised: ``keep = rows[:, segments]`` selects, per pixel, whether its
        superpixel is on. With ``device`` (a torch device) the batch is built in torch
        there and returned as a tensor; otherwise a numpy array.
        """
        rows = self._check_rows(rows)
        img_rows = rows[:, : self.n_superpixels]
        if device is None:
            keep = img_rows[:, self.work_segments]
            return np.where(keep[..., None], self.work_image[None], self.work_fill[None])
        import torch

        key = str(device)
        if key not in self._torch_cache:
            self._torch_cache[key] = tuple(
                torch.as_tensor(a, device=device) for a in (self.work_image, self.work_fill, self.work_segments.astype(np.int64))
            )
        img, fil, seg = self._torch_cache[key]
        keep = torch.as_tensor(img_rows, device=device)[:, seg]
        return torch.where(keep[..., None], img[None], fil[None])

    def token_lists(self, rows: np.ndarray) -> list[list[OcrToken]]:
        """The tokens that are on in each row."""
        rows = self._check_rows(rows)
        S = self.n_superpixels
        return [[self.tokens[j] for j in np.flatnonzero(r[S:])] for r in rows]

    def to_inputs(self, rows: np.ndarray, device: object | None = None) -> ModelInputs:
        """Images and token lists for a batch of on/off rows."""
        imgs = self.images(rows, device)
        return ModelInputs(imgs if device is not None else list(imgs), self.token_lists(rows))
