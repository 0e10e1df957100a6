"""Image segmentation into superpixels with 0-based, contiguous labels.

Every segmenter returns an ``(H, W)`` integer array whose labels are exactly
``0 .. S-1`` (skimage's ``slic`` starts at 1 by default and may skip labels;
:func:`relabel_contiguous` fixes both), so that superpixel ``i`` is feature ``i``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np

from prodlens._validation import check_int

log = logging.getLogger(__name__)


@runtime_checkable
class Segmenter(Protocol):
    """Turns an RGB ``uint8`` image ``(H, W, 3)`` into 0-based contiguous labels ``(H, W)``."""

    def __call__(self, image: np.ndarray) -> np.ndarray: ...


def relabel_contiguous(labels: np.ndarray) -> np.ndarray:
    """Map any integer label image onto ``0 .. S-1`` keeping the labels' order.

    >>> relabel_contiguous(np.array([[1, 1, 5], [7, 5, 1]])).tolist()
    [[0, 0, 1], [2, 1, 0]]
    """
    labels = np.asarray(labels)
    if labels.ndim != 2:
        raise ValueError(f"segment labels must be a 2-D (H, W) array, got shape {labels.shape}")
    _, inverse = np.unique(labels, return_inverse=True)
    return inverse.reshape(labels.shape).astype(np.int32)


@dataclass(frozen=True)
class SlicSegmenter:
    """SLIC superpixels (skimage) with labels made 0-based and contiguous.

    ``n_segments`` is a target: SLIC returns roughly that many superpixels.

    >>> img = np.zeros((32, 32, 3), np.uint8); img[:, 16:] = 255
    >>> seg = SlicSegmenter(n_segments=4)(img)
    >>> int(seg.min()), bool(np.array_equal(np.unique(seg), np.arange(seg.max() + 1)))
    (0, True)
    """

    n_segments: int = 100
    compactness: float = 10.0
    sigma: float = 1.0

    def __call__(self, image: np.ndarray) -> np.ndarray:
        from skimage.segmentation import slic

        check_int("n_segments", self.n_segments, 1)
        labels = slic(
            image, n_segments=self.n_segments, compactness=self.compactness,
            sigma=self.sigma, start_label=0, channel_axis=-1,
        )
        out = relabel_contiguous(labels)
        log.debug("SLIC gave %d superpixels for %s", int(out.max()) + 1, image.shape)
        return out


@dataclass(frozen=True)
class GridSegmenter:
    """A regular ``rows x cols`` grid: cheap, deterministic, handy for tests.

    >>> GridSegmenter(2, 2)(np.zeros((4, 4, 3), np.uint8)).tolist()
    [[0, 0, 1, 1], [0, 0, 1, 1], [2, 2, 3, 3], [2, 2, 3, 3]]
    """

    rows: int = 8
    cols: int = 8

    def __call__(self, image: np.ndarray) -> np.ndarray:
        h, w = image.shape[:2]
        if not (1 <= self.rows <= h and 1 <= self.cols <= w):
            raise ValueError(f"grid {self.rows}x{self.cols} does not fit an image of {h}x{w} pixels")
        r = (np.arange(h) * self.rows) // h
        c = (np.arange(w) * self.cols) // w
        return (r[:, None] * self.cols + c[None, :]).astype(np.int32)


class FunctionSegmenter:
    """Wrap any ``image -> labels`` function and make its labels 0-based and contiguous.

    >>> FunctionSegmenter(lambda im: np.full(im.shape[:2], 3))(np.zeros((2, 2, 3))).tolist()
    [[0, 0], [0, 0]]
    """

    def __init__(self, fn: Callable[[np.ndarray], np.ndarray]) -> None:
        self.fn = fn

    def __call__(self, image: np.ndarray) -> np.ndarray:
        return relabel_contiguous(self.fn(image))

    def __repr__(self) -> str:
        return f"FunctionSegmenter({getattr(self.fn, '__name__', self.fn)!r})"


def make_segmenter(segmentation: str | Segmenter | Callable[[np.ndarray], np.ndarray] = "slic", **params) -> Segmenter:
    """Build a segmenter from a name (``"slic"``, ``"grid"``) or wrap a callable.

    >>> make_segmenter("grid", rows=2, cols=3)
    GridSegmenter(rows=2, cols=3)
    >>> make_segmenter("quickshift")
    Traceback (most recent call last):
    ...
    ValueError: segmentation must be one of 'slic', 'grid' or a callable, got 'quickshift'
    """
    if isinstance(segmentation, (SlicSegmenter, GridSegmenter, FunctionSegmenter)):
        return segmentation
    if isinstance(segmentation, str):
        if segmentation == "slic":
            return SlicSegmenter(**params)
        if segmentation == "grid":
            return GridSegmenter(**params)
        raise ValueError(f"segmentation must be one of 'slic', 'grid' or a callable, got {segmentation!r}")
    if callable(segmentation):
        return FunctionSegmenter(segmentation)
    raise ValueError(f"segmentation must be one of 'slic', 'grid' or a callable, got {segmentation!r}")
