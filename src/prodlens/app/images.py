"""Pictures for the app: photos at display size, explanation overlays (drawn by
:mod:`prodlens.viz`), match saliency overlays and superpixel crops, with small LRU caches so that switching
views does not decode or draw the same thing twice.

Explanations are drawn at the size they are shown: the segment map is resized to the
displayed photo (nearest neighbour) and the OCR boxes are scaled with it, so a gallery
thumbnail costs a fraction of a full-size render.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable, Sequence
from pathlib import Path
from typing import Generic, TypeVar

import numpy as np
from PIL import Image, ImageDraw, ImageOps

from prodlens.explain.explanation import Explanation
from prodlens.explain.interpretable import resize_labels
from prodlens.viz import draw_token_boxes, joint_scores, overlay_superpixels

V = TypeVar("V")

#: Grey placeholder colour for a photo that cannot be read.
MISSING_GREY = 205


class LRU(Generic[V]):
    """A small thread-safe least-recently-used cache.

    >>> c = LRU(2)
    >>> c.get("a", lambda: 1), c.get("b", lambda: 2), c.get("a", lambda: 9)
    (1, 2, 1)
    >>> c.get("c", lambda: 3); "b" in c
    3
    False
    """

    def __init__(self, maxsize: int) -> None:
        self.maxsize = maxsize
        self._data: OrderedDict[Hashable, V] = OrderedDict()
        self._lock = threading.Lock()

    def __contains__(self, key: Hashable) -> bool:
        return key in self._data

    def __len__(self) -> int:
        return len(self._data)

    def clear(self) -> None:
        with self._lock:
            self._data.clear()

    def get(self, key: Hashable, make: Callable[[], V]) -> V:
        with self._lock:
            if key in self._data:
                self._data.move_to_end(key)
                return self._data[key]
        value = make()
        with self._lock:
            self._data[key] = value
            self._data.move_to_end(key)
            while len(self._data) > self.maxsize:
                self._data.popitem(last=False)
        return value


def placeholder(size: int) -> np.ndarray:
    """A plain grey square shown for a photo that is missing or unreadable.

    >>> placeholder(4).shape
    (4, 4, 3)
    """
    return np.full((size, size, 3), MISSING_GREY, np.uint8)


def read_photo(path: str | Path, max_side: int | None = None) -> np.ndarray:
    """Decode ``path`` as ``uint8`` RGB, EXIF-rotated, at most ``max_side`` pixels on its
    longer side (JPEGs are decoded at reduced scale directly, which is much faster).

    Raises ``OSError``/``ValueError`` for unreadable files (the caller shows a placeholder).

    >>> import tempfile
    >>> p = Path(tempfile.mkdtemp()) / "x.jpg"
    >>> Image.new("RGB", (400, 200), (10, 20, 30)).save(p)
    >>> read_photo(p, 100).shape
    (50, 100, 3)
    """
    with Image.open(path) as im:
        if max_side:
            im.draft("RGB", (max_side, max_side))
        im = ImageOps.exif_transpose(im).convert("RGB")
        if max_side and max(im.size) > max_side:
            im.thumbnail((max_side, max_side), Image.BILINEAR)
        return np.asarray(im, dtype=np.uint8)


def fit_explanation(e: Explanation, shape: tuple[int, int]) -> Explanation:
    """``e`` with segments resized to ``shape`` and OCR boxes scaled to match."""
    return e.fitted_to(shape)


def render_overlay(photo: np.ndarray, e: Explanation, *, alpha: float = 0.5) -> np.ndarray:
    """The multimodal explanation (JET superpixels + coloured OCR boxes) drawn on ``photo``.

    ``photo`` may be any size: the explanation is fitted to it.

    >>> from prodlens.data.types import OcrToken
    >>> e = Explanation("s", 0, "a", np.array([1.0, 0.0, 0.5]), 0, 1, 1, np.array([[0, 1]]),
    ...                 (OcrToken("X", (0, 0, 1, 1)),), 2)
    >>> render_overlay(np.zeros((10, 20, 3), np.uint8), e).shape
    (10, 20, 3)
    """
    fitted = fit_explanation(e, photo.shape[:2])
    scores = joint_scores(e)
    out = overlay_superpixels(photo, fitted, scores, alpha=alpha)
    lw = max(1, round(min(photo.shape[:2]) / 120))
    return draw_token_boxes(out, fitted, scores, line_width=lw)


def superpixel_box(segments: np.ndarray, superpixel: int) -> tuple[int, int, int, int] | None:
    """Bounding box ``(y0, y1, x0, x1)`` (end-exclusive) of one label, ``None`` if absent.

    >>> superpixel_box(np.array([[0, 0, 1], [0, 1, 1]]), 1)
    (0, 2, 1, 3)
    """
    mask = np.asarray(segments) == superpixel
    rows, cols = mask.any(axis=1), mask.any(axis=0)
    if not rows.any():
        return None
    y0, x0 = int(rows.argmax()), int(cols.argmax())
    y1, x1 = len(rows) - int(rows[::-1].argmax()), len(cols) - int(cols[::-1].argmax())
    return y0, y1, x0, x1


def superpixel_view(
    photo: np.ndarray,
    segments: np.ndarray,
    superpixel: int,
    size: int,
    *,
    margin: float = 0.2,
) -> np.ndarray:
    """A ``size x size`` picture of one superpixel: its bounding box with ``margin``
    context, pixels outside the superpixel faded towards white.

    ``segments`` are resized to the photo when their size differs.

    >>> seg = np.array([[0, 0, 1, 1]] * 4)
    >>> superpixel_view(np.zeros((4, 4, 3), np.uint8), seg, 1, 8).shape
    (8, 8, 3)
    """
    seg = resize_labels(segments, photo.shape[:2])
    box = superpixel_box(seg, superpixel)
    if box is None:
        return placeholder(size)
    y0, y1, x0, x1 = box
    dy, dx = int((y1 - y0) * margin), int((x1 - x0) * margin)
    H, W = seg.shape
    y0, y1, x0, x1 = max(0, y0 - dy), min(H, y1 + dy), max(0, x0 - dx), min(W, x1 + dx)
    crop = photo[y0:y1, x0:x1]
    outside = (seg[y0:y1, x0:x1] != superpixel)[..., None]
    crop = np.where(outside, (crop * 0.45 + 0.55 * 255).astype(np.uint8), crop)
    im = Image.fromarray(crop)
    im.thumbnail((size, size), Image.BILINEAR)
    canvas = Image.new("RGB", (size, size), (255, 255, 255))
    canvas.paste(im, ((size - im.width) // 2, (size - im.height) // 2))
    return np.asarray(canvas)


def montage(representative: np.ndarray, supporting: list[np.ndarray], *, big: int = 160, small: int = 76,
            gap: int = 4, per_row: int = 4) -> np.ndarray:
    """One picture for an image feature: the representative crop large (orange frame) on
    the left, the supporting crops in a grid of ``per_row`` columns on the right.

    >>> montage(np.zeros((10, 10, 3), np.uint8), [np.zeros((8, 8, 3), np.uint8)] * 5).shape
    (160, 484, 3)
    """
    rows = max(1, -(-len(supporting) // per_row))
    height = max(big, rows * small + (rows - 1) * gap)
    width = big + gap * 2 + per_row * (small + gap) - gap
    canvas = Image.new("RGB", (width, height), (255, 255, 255))
    rep = Image.fromarray(representative)
    if rep.size != (big - 6, big - 6):
        rep = rep.resize((big - 6, big - 6), Image.BILINEAR)
    frame = Image.new("RGB", (big, big), (242, 119, 36))
    frame.paste(rep, (3, 3))
    canvas.paste(frame, (0, 0))
    for i, crop in enumerate(supporting):
        r, c = divmod(i, per_row)
        im = Image.fromarray(crop)
        if im.size != (small, small):
            im = im.resize((small, small), Image.BILINEAR)
        canvas.paste(im, (big + gap * 2 + c * (small + gap), r * (small + gap)))
    return np.asarray(canvas)


def photo_shape(path: str | Path) -> tuple[int, int]:
    """``(height, width)`` of the photo as :func:`read_photo` shows it at full size
    (EXIF rotation applied), read from the file header only.

    >>> import tempfile
    >>> p = Path(tempfile.mkdtemp()) / "x.jpg"
    >>> Image.new("RGB", (40, 30)).save(p)
    >>> photo_shape(p)
    (30, 40)
    """
    with Image.open(path) as im:
        w, h = im.size
        if im.getexif().get(0x0112, 1) in (5, 6, 7, 8):  # rotated by 90 degrees
            w, h = h, w
    return h, w


def resize_map(values: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Bilinear resize of a float map to ``shape`` (``float32``).

    >>> resize_map(np.array([[0.0, 1.0]]), (1, 4)).shape
    (1, 4)
    """
    v = np.asarray(values, dtype=np.float32)
    if v.shape == tuple(shape):
        return v
    return np.asarray(Image.fromarray(v).resize((int(shape[1]), int(shape[0])), Image.BILINEAR), dtype=np.float32)


def render_saliency(
    photo: np.ndarray,
    saliency: np.ndarray | None,
    boxes: Sequence[tuple[int, tuple[float, float, float, float]]] = (),
    *,
    source_shape: tuple[int, int] | None = None,
    alpha: float = 0.5,
) -> np.ndarray:
    """A match saliency map as a JET overlay on ``photo`` (via :mod:`prodlens.viz`'s
    colour map), with shared-word boxes outlined in the colour of their rank.

    ``saliency`` and ``boxes`` (``(rank, (x0, y0, x1, y1))``) are in the coordinates of
    the photo the explanation was computed on, of shape ``source_shape`` (default: the
    map's); ``photo`` may be any size. Without a map only the boxes are drawn.

    >>> sal = np.zeros((20, 20)); sal[:10, :10] = 1
    >>> out = render_saliency(np.full((10, 10, 3), 200, np.uint8), sal, [(0, (10.0, 10.0, 20.0, 20.0))])
    >>> out.shape, out[2, 2].tolist() != [200, 200, 200], out[9, 9].tolist() != [200, 200, 200]
    ((10, 10, 3), True, True)
    """
    from prodlens.match.render import WORD_COLOURS, overlay_saliency

    h, w = photo.shape[:2]
    src = source_shape or (saliency.shape if saliency is not None else (h, w))
    out = overlay_saliency(photo, resize_map(saliency, (h, w)), alpha=alpha) if saliency is not None else photo
    if not boxes:
        return out
    sy, sx = h / src[0], w / src[1]
    im = Image.fromarray(out)
    draw = ImageDraw.Draw(im)
    lw = max(2, round(min(h, w) / 140))
    for rank, (x0, y0, x1, y1) in boxes:
        colour = WORD_COLOURS[rank % len(WORD_COLOURS)]
        rect = [x0 * sx, y0 * sy, max(x0 * sx, x1 * sx - 1), max(y0 * sy, y1 * sy - 1)]
        draw.rectangle(rect, outline=colour, width=lw)
        draw.text((rect[0] + lw, rect[1] + lw), str(rank + 1), fill=colour)
    return np.asarray(im)
