"""Pixel-level helpers shared by saliency, word attributions and deletion curves.

Perturbed images are built at a *work size* (the photo shrunk so that its shorter side
is the model's input size, see :func:`prodlens.explain.interpretable.work_size`): the
embedder resizes anyway, and small images are cheap to build.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
from PIL import Image

from prodlens.data.types import Box
from prodlens.explain.interpretable import Fill, fill_image, work_size


def check_rgb(image: np.ndarray, name: str) -> np.ndarray:
    arr = np.asarray(image)
    if arr.dtype != np.uint8 or arr.ndim != 3 or arr.shape[2] != 3 or arr.shape[0] == 0 or arr.shape[1] == 0:
        raise ValueError(
            f"{name} must be a uint8 RGB array of shape (H, W, 3), got {arr.dtype} {arr.shape}; "
            "load photos with prodlens.data.images.load_image"
        )
    return arr


def to_work(image: np.ndarray, resolution: int | None) -> np.ndarray:
    """The photo at its work size (unchanged when ``resolution`` is ``None`` or larger)."""
    h, w = work_size(image.shape, resolution)
    if (h, w) == image.shape[:2]:
        return image
    return np.asarray(Image.fromarray(image).resize((w, h), Image.Resampling.BILINEAR), dtype=np.uint8)


def fill_for(work: np.ndarray, fill: Fill) -> np.ndarray:
    """What shows through a masked pixel: ``"blur"``, ``"mean"`` (the photo's mean colour),
    ``"black"`` or an ``(R, G, B)`` colour (see :func:`~prodlens.explain.interpretable.fill_image`)."""
    return fill_image(work, np.zeros(work.shape[:2], dtype=np.int32), fill)


def blend(work: np.ndarray, fill: np.ndarray, keep: np.ndarray) -> np.ndarray:
    """``keep * work + (1 - keep) * fill`` for a batch of keep maps ``(B, h, w)`` in ``[0, 1]``."""
    keep = np.asarray(keep)
    if keep.dtype == bool:
        return np.where(keep[..., None], work[None], fill[None])
    k = keep[..., None].astype(np.float32)
    out = k * work[None].astype(np.float32) + (1.0 - k) * fill[None].astype(np.float32)
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def box_mask(boxes: Iterable[Box], original_shape: tuple[int, ...], work_shape: tuple[int, ...]) -> np.ndarray:
    """Boolean ``(h, w)`` map, true inside any of ``boxes`` (given in original-photo pixels).

    >>> box_mask([(0, 0, 2, 2)], (4, 4), (2, 2)).tolist()
    [[True, False], [False, False]]
    """
    H, W = original_shape[:2]
    h, w = work_shape[:2]
    sy, sx = h / H, w / W
    out = np.zeros((h, w), dtype=bool)
    for x0, y0, x1, y1 in boxes:
        r0, r1 = int(np.floor(y0 * sy)), int(np.ceil(y1 * sy))
        c0, c1 = int(np.floor(x0 * sx)), int(np.ceil(x1 * sx))
        out[max(r0, 0) : max(min(r1, h), 0), max(c0, 0) : max(min(c1, w), 0)] = True
    return out


def resize_map(values: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """Bilinear resize of a float map to ``shape[:2]`` (``float32``)."""
    h, w = shape[:2]
    values = np.asarray(values, dtype=np.float32)
    if values.shape == (h, w):
        return values
    return np.asarray(Image.fromarray(values).resize((w, h), Image.Resampling.BILINEAR), dtype=np.float32)


def mean_in_box(values: np.ndarray | None, box: Box) -> float | None:
    """Mean of a map inside a box in its own pixel coordinates (``None`` without a map)."""
    if values is None:
        return None
    m = box_mask([box], values.shape, values.shape)
    if not m.any():
        return None
    return float(values[m].mean())
