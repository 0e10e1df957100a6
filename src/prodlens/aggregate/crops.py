"""Cut one superpixel out of a photo as a small image a backbone can embed.

A superpixel is an irregular region; the image model wants a rectangle. Two ways:

* ``"masked"`` (default): the superpixel's bounding box, with every pixel of the box
  that is *not* in the superpixel painted a neutral colour, so the embedding sees the
  superpixel's own content only;
* ``"box"``: the plain bounding-box crop, neighbours included (more context).

The crop is then letter-boxed onto a square of the same neutral colour (so its shape is
kept) and resized to the model's input size.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

from prodlens._validation import check_choice, check_float, check_int, check_colour
from prodlens.explain.interpretable import resize_labels

CROP_MODES = ("masked", "box")

#: ImageNet mean colour (0.485, 0.456, 0.406) x 255: what a normalised backbone reads as ~zero.
NEUTRAL_FILL = (124, 116, 104)


def match_segments(segments: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """``segments`` resized (nearest neighbour) to the image's ``(H, W)`` when they differ.

    >>> match_segments(np.array([[0, 1]]), (2, 4, 3)).tolist()
    [[0, 0, 1, 1], [0, 0, 1, 1]]
    """
    return resize_labels(segments, (int(shape[0]), int(shape[1])))


def superpixel_box(segments: np.ndarray, superpixel: int, margin: float = 0.0) -> tuple[int, int, int, int]:
    """Bounding box ``(y0, y1, x0, x1)`` (end-exclusive) of one superpixel, grown by ``margin``.

    ``margin`` is a share of the box's height/width added on each side, clipped to the image.

    >>> seg = np.array([[0, 0, 1], [0, 1, 1]])
    >>> superpixel_box(seg, 1)
    (0, 2, 1, 3)
    """
    ys, xs = np.nonzero(segments == superpixel)
    if ys.size == 0:
        n = int(segments.max()) + 1 if segments.size else 0
        raise ValueError(f"superpixel {superpixel} does not occur in the segments (labels 0..{n - 1})")
    y0, y1, x0, x1 = int(ys.min()), int(ys.max()) + 1, int(xs.min()), int(xs.max()) + 1
    if margin > 0:
        dy, dx = int(round((y1 - y0) * margin)), int(round((x1 - x0) * margin))
        H, W = segments.shape
        y0, y1, x0, x1 = max(0, y0 - dy), min(H, y1 + dy), max(0, x0 - dx), min(W, x1 + dx)
    return y0, y1, x0, x1


def letterbox(image: np.ndarray, size: int, fill: tuple[int, int, int] = NEUTRAL_FILL) -> np.ndarray:
    """Paste ``image`` centred on a square of ``fill`` and resize it to ``size x size``.

    >>> letterbox(np.zeros((2, 4, 3), np.uint8), 8).shape
    (8, 8, 3)
    """
    h, w = image.shape[:2]
    side = max(h, w)
    canvas = np.empty((side, side, 3), np.uint8)
    canvas[...] = np.asarray(fill, np.uint8)
    top, left = (side - h) // 2, (side - w) // 2
    canvas[top : top + h, left : left + w] = image
    if side == size:
        return canvas
    return np.asarray(Image.fromarray(canvas).resize((size, size), Image.BILINEAR), dtype=np.uint8)


def superpixel_crop(
    image: np.ndarray,
    segments: np.ndarray,
    superpixel: int,
    *,
    mode: str = "masked",
    fill: tuple[int, int, int] = NEUTRAL_FILL,
    size: int | None = 224,
    margin: float = 0.0,
) -> np.ndarray:
    """The image of one superpixel, ready for an image backbone: ``uint8`` RGB.

    Parameters
    ----------
    image:
        ``uint8`` RGB ``(H, W, 3)``.
    segments:
        ``(H, W)`` 0-based superpixel labels (resized to the image if their size differs).
    superpixel:
        The label to cut out.
    mode:
        ``"masked"`` paints the rest of the bounding box with ``fill``; ``"box"`` keeps it.
    fill:
        Neutral ``(R, G, B)`` for masked pixels and letter-boxing (ImageNet mean by default).
    size:
        Side of the square output (the model's input size); ``None`` returns the bare
        (masked) bounding-box crop at its own size.
    margin:
        Share of the box's size added on each side (``"box"`` mode context).

    >>> img = np.full((4, 4, 3), 200, np.uint8)
    >>> seg = np.array([[0, 0, 1, 1]] * 2 + [[0, 1, 1, 1]] * 2)
    >>> crop = superpixel_crop(img, seg, 0, size=None)
    >>> crop.shape, crop[2, 1].tolist(), crop[0, 0].tolist()
    ((4, 2, 3), [124, 116, 104], [200, 200, 200])
    >>> superpixel_crop(img, seg, 0, size=8).shape
    (8, 8, 3)
    """
    check_choice("mode", mode, CROP_MODES)
    fill = check_colour("fill", fill)
    margin = check_float("margin", margin, 0.0)
    if size is not None:
        check_int("size", size, 1, "pass None to keep the crop's own size")
    image = np.asarray(image)
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"image must be a uint8 RGB array of shape (H, W, 3), got {image.dtype} {image.shape}")
    segments = match_segments(segments, image.shape)
    y0, y1, x0, x1 = superpixel_box(segments, superpixel, margin)
    crop = image[y0:y1, x0:x1].copy()
    if mode == "masked":
        crop[segments[y0:y1, x0:x1] != superpixel] = np.asarray(fill, np.uint8)
    return crop if size is None else letterbox(crop, int(size), fill)
