"""The random controls of the deletion test: as much deleted as the top features, elsewhere.

* image (:func:`random_region`): each deleted superpixel's exact pixel shape, moved by a
  random offset of about its own size (at most ``reach`` times its bounding box in each
  direction), kept inside the photo and off the top-feature region and the pieces
  already placed whenever such a place exists. Same pixel count and shape, near the
  top feature (the paper's control), not superpixels from anywhere in the photo;
* text (:func:`random_words`): as many *real* words as the top deletion removed, where a
  real word is a token that survives the word groups' normalisation
  (:func:`~prodlens.aggregate.text.normalize_word`: not punctuation, not a lone letter);
  when the photo has too few other real words, all of them are removed and the case is
  reported as short.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from prodlens.aggregate.text import normalize_word
from prodlens.data.types import OcrToken

#: Candidate offsets drawn per superpixel and search window.
N_CANDIDATES = 64


@dataclass(frozen=True)
class RandomRegion:
    """A random control region: its pixel mask, and how much of it could not avoid the
    top-feature region (``overlap`` pixels; 0 whenever a free place existed)."""

    mask: np.ndarray
    pixels: int  #: pixels in the moved pieces (= pixels of the top region)
    overlap: int  #: of those, pixels on the top region or on another piece


def _place(ys: np.ndarray, xs: np.ndarray, blocked: np.ndarray, rng: np.random.Generator, reach: float) -> tuple[int, int, int]:
    """An offset ``(dy, dx)`` for the piece at ``(ys, xs)`` and the blocked pixels it covers."""
    H, W = blocked.shape
    y0, y1, x0, x1 = int(ys.min()), int(ys.max()), int(xs.min()), int(xs.max())
    h, w = y1 - y0 + 1, x1 - x0 + 1
    best = (0, 0, int(blocked[ys, xs].sum()))
    for window in (reach, None):  # near first, then anywhere in the photo
        lo_y, hi_y, lo_x, hi_x = -y0, H - 1 - y1, -x0, W - 1 - x1  # inside the photo
        if window is not None:
            lo_y, hi_y = max(lo_y, -round(window * h)), min(hi_y, round(window * h))
            lo_x, hi_x = max(lo_x, -round(window * w)), min(hi_x, round(window * w))
        dy = rng.integers(lo_y, hi_y + 1, N_CANDIDATES)
        dx = rng.integers(lo_x, hi_x + 1, N_CANDIDATES)
        for a, b in zip(dy.tolist(), dx.tolist()):
            hit = int(blocked[ys + a, xs + b].sum())
            if hit < best[2]:
                best = (a, b, hit)
            if hit == 0:
                return best
    return best


def random_region(
    segments: np.ndarray, deleted: Sequence[int], rng: np.random.Generator, reach: float = 2.0
) -> RandomRegion:
    """The control region for the superpixels ``deleted`` of ``segments`` (same shape as the photo).

    Pieces are placed largest first; each keeps its shape and size, so the control
    paints as many pixels as the top deletion unless a piece could not avoid overlap.

    >>> seg = np.zeros((20, 20), int); seg[8:12, 8:12] = 1
    >>> r = random_region(seg, [1], np.random.default_rng(0))
    >>> r.pixels, r.overlap, int(r.mask.sum()), bool((r.mask & (seg == 1)).any())
    (16, 0, 16, False)
    """
    seg = np.asarray(segments)
    top = np.isin(seg, np.asarray(list(deleted), dtype=seg.dtype))
    blocked = top.copy()
    mask = np.zeros_like(top)
    pixels = overlap = 0
    pieces = [np.nonzero(seg == d) for d in dict.fromkeys(int(d) for d in deleted)]
    for ys, xs in sorted((p for p in pieces if p[0].size), key=lambda p: -p[0].size):
        dy, dx, hit = _place(ys, xs, blocked, rng, reach)
        mask[ys + dy, xs + dx] = True
        blocked[ys + dy, xs + dx] = True
        pixels += ys.size
        overlap += hit
    return RandomRegion(mask, pixels, overlap)


def real_words(tokens: Sequence[OcrToken], case: str = "upper", min_length: int = 2) -> list[int]:
    """Indices of the tokens that survive the word groups' normalisation.

    >>> real_words([OcrToken(w, (0, 0, 1, 1)) for w in ("OATLY", "%", "1L", "a")])
    [0, 2]
    """
    return [j for j, t in enumerate(tokens) if normalize_word(t.text, case, min_length) is not None]


def random_words(
    tokens: Sequence[OcrToken], deleted: Sequence[int], rng: np.random.Generator, case: str = "upper", min_length: int = 2
) -> list[int]:
    """``len(deleted)`` other real words of ``tokens`` drawn uniformly (all of them when
    there are fewer: the caller reports such a case as short).

    >>> toks = [OcrToken(w, (0, 0, 1, 1)) for w in ("OATLY", "HAVRE", "%", "DRYCK", "1L")]
    >>> r = random_words(toks, [0], np.random.default_rng(0))
    >>> len(r), set(r) <= {1, 3, 4}
    (1, True)
    >>> sorted(random_words(toks, [0, 1, 3, 4], np.random.default_rng(0)))
    []
    """
    gone = set(int(d) for d in deleted)
    free = np.array([j for j in real_words(tokens, case, min_length) if j not in gone], dtype=np.int64)
    k = min(len(gone), len(free))
    return sorted(int(j) for j in rng.choice(free, size=k, replace=False)) if k else []
