"""Saliency maps for a similarity score: which pixels of a photo make it match.

A *score function* maps a batch of ``uint8`` RGB images to one number each (for a
match: the cosine similarity of the perturbed query's embedding to the fixed match
embedding). Two methods, both seeded and batched:

* :class:`RiseSaliency` (Petsiuk et al. 2018, used for similarity by SANE, Plummer et
  al. ECCV 2020): ``n_masks`` random low-resolution binary grids, upsampled
  bilinearly with a random shift; the saliency of a pixel is the score-weighted
  average of the masks, ``sum_i s_i M_i / (N p)`` (with ``center=True`` the mean score
  is subtracted first: same ranking, less noise, and the sign says whether showing the
  pixel raises or lowers the similarity).
* :class:`LimeSaliency`: superpixel LIME, reusing
  :class:`~prodlens.explain.lime.MultimodalLime` with the score as a one-class model;
  each pixel gets its superpixel's weight.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np
from tqdm.auto import tqdm

from prodlens.explain.interpretable import Fill, _check_fill
from prodlens.match._masking import blend, check_rgb, fill_for, resize_map, to_work

log = logging.getLogger(__name__)

#: ``images -> (n,)`` scores; images are ``uint8`` RGB arrays at any size.
ScoreFn = Callable[[Sequence[np.ndarray]], np.ndarray]


@runtime_checkable
class SaliencyMethod(Protocol):
    """Anything that turns an image and a score function into an ``(H, W)`` map."""

    name: str

    def __call__(self, image: np.ndarray, score_fn: ScoreFn) -> np.ndarray: ...


def _scores(score_fn: ScoreFn, images: Sequence[np.ndarray]) -> np.ndarray:
    s = np.asarray(score_fn(images), dtype=np.float64).reshape(-1)
    if len(s) != len(images):
        raise ValueError(f"the score function returned {len(s)} values for {len(images)} images; it must return one score per image")
    return s


def _interp_matrix(n_out: int, n_in: int) -> np.ndarray:
    """``(n_out, n_in)`` bilinear interpolation weights (half-pixel centres, edges clamped)."""
    src = (np.arange(n_out) + 0.5) * n_in / n_out - 0.5
    src = np.clip(src, 0, n_in - 1)
    lo = np.floor(src).astype(int)
    hi = np.minimum(lo + 1, n_in - 1)
    frac = src - lo
    A = np.zeros((n_out, n_in), dtype=np.float32)
    A[np.arange(n_out), lo] += 1 - frac
    A[np.arange(n_out), hi] += frac
    return A


def _draw_masks(n: int, shape: tuple[int, int], grid: int, p: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The randomness of ``n`` RISE masks: binary cells ``(n, grid, grid)`` and shifts."""
    h, w = shape
    ch, cw = -(-h // grid), -(-w // grid)
    cells = rng.random((n, grid, grid)) < p
    return cells, rng.integers(0, ch, n), rng.integers(0, cw, n)


def _upsample_masks(cells: np.ndarray, dy: np.ndarray, dx: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    h, w = shape
    grid = cells.shape[1]
    ch, cw = -(-h // grid), -(-w // grid)
    Ah = _interp_matrix((grid + 1) * ch, grid)
    Aw = _interp_matrix((grid + 1) * cw, grid)
    rows = Ah[dy[:, None] + np.arange(h)[None]]  # (n, h, grid)
    cols = Aw[dx[:, None] + np.arange(w)[None]]  # (n, w, grid)
    return np.einsum("nhg,ngk,nwk->nhw", rows, cells.astype(np.float32), cols, optimize=True)


def rise_masks(n: int, shape: tuple[int, int], grid: int, p: float, rng: np.random.Generator) -> np.ndarray:
    """``n`` RISE masks of ``shape`` (float32 in [0, 1]): random ``grid x grid`` binary
    cells (on with probability ``p``), bilinearly upsampled to one cell larger than the
    image and cropped at a random shift.

    >>> m = rise_masks(3, (16, 16), 4, 0.5, np.random.default_rng(0))
    >>> m.shape, bool(m.min() >= 0), bool(m.max() <= 1)
    ((3, 16, 16), True, True)
    """
    return _upsample_masks(*_draw_masks(n, shape, grid, p, rng), shape)


def _check_common(batch_size: int, resolution: int | None, fill: Fill) -> None:
    if not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        raise ValueError(f"batch_size must be an int >= 1, got {batch_size!r}")
    if resolution is not None and (not isinstance(resolution, (int, np.integer)) or resolution < 1):
        raise ValueError(f"resolution must be None or an int >= 1 (shorter side of the perturbed images), got {resolution!r}")
    _check_fill(fill)


@dataclass(frozen=True)
class RiseSaliency:
    """RISE saliency of a score function (see the module docstring).

    Parameters: ``n_masks`` random masks; ``grid`` cells per side; ``p`` probability a
    cell is kept; ``fill`` shows through masked pixels (``"blur"``, ``"mean"``,
    ``"black"`` or ``(R, G, B)``); masks are built at ``resolution`` (shorter side,
    ``None`` = the photo's); ``batch_size`` images per score call; ``center``
    subtracts the mean score; ``seed`` fixes the masks (the result does not depend on
    ``batch_size``).

    >>> img = np.zeros((32, 32, 3), np.uint8); img[:16, :16] = 255
    >>> score = lambda ims: np.array([im[:16, :16].mean() / 255 for im in ims])
    >>> sal = RiseSaliency(n_masks=200, grid=4, fill="black", resolution=None, seed=0)(img, score)
    >>> bool(sal[:16, :16].mean() > sal[16:, 16:].mean())
    True
    """

    n_masks: int = 1000
    grid: int = 8
    p: float = 0.5
    fill: Fill = "blur"
    resolution: int | None = 256
    batch_size: int = 16
    center: bool = True
    seed: int = 0
    progress: bool | None = None
    name: str = "rise"

    def _validate(self) -> None:
        if not isinstance(self.n_masks, (int, np.integer)) or self.n_masks < 1:
            raise ValueError(f"n_masks must be an int >= 1, got {self.n_masks!r}")
        if not isinstance(self.grid, (int, np.integer)) or self.grid < 1:
            raise ValueError(f"grid must be an int >= 1 (cells per side), got {self.grid!r}")
        if not 0.0 < self.p < 1.0:
            raise ValueError(f"p must be in (0, 1) (the probability a cell is kept), got {self.p!r}")
        _check_common(self.batch_size, self.resolution, self.fill)

    def __call__(self, image: np.ndarray, score_fn: ScoreFn) -> np.ndarray:
        """The ``(H, W)`` float32 saliency of ``image`` (original resolution) for ``score_fn``."""
        self._validate()
        image = check_rgb(image, "image")
        work = to_work(image, self.resolution)
        h, w = work.shape[:2]
        if self.grid > min(h, w):
            raise ValueError(f"grid={self.grid} cells per side does not fit an image of {h}x{w} pixels; lower grid")
        fill = fill_for(work, self.fill)
        rng = np.random.default_rng(self.seed)
        # draw every mask's randomness up front, so the result does not depend on batch_size
        cells, dy, dx = _draw_masks(self.n_masks, (h, w), self.grid, self.p, rng)
        weighted = np.zeros((h, w), dtype=np.float64)
        total = np.zeros((h, w), dtype=np.float64)
        score_sum = 0.0
        bar = tqdm(total=self.n_masks, desc="RISE", unit="mask", leave=False,
                   disable=None if self.progress is None else not self.progress)
        try:
            for s in range(0, self.n_masks, self.batch_size):
                b = slice(s, s + self.batch_size)
                masks = _upsample_masks(cells[b], dy[b], dx[b], (h, w))
                scores = _scores(score_fn, list(blend(work, fill, masks)))
                weighted += np.tensordot(scores, masks, axes=1)
                total += masks.sum(0)
                score_sum += float(scores.sum())
                bar.update(len(masks))
        finally:
            bar.close()
        if self.center:
            weighted -= (score_sum / self.n_masks) * total
        sal = weighted / (self.n_masks * self.p)
        return resize_map(sal.astype(np.float32), image.shape)


class _ScoreAsClassifier:
    """A score function seen as a one-class model, so that MultimodalLime can explain it."""

    classes = ["similarity"]

    def __init__(self, score_fn: ScoreFn, input_size: int | None) -> None:
        self.score_fn = score_fn
        self.input_size = input_size

    def predict_proba(self, images: Sequence[np.ndarray], token_lists: Sequence) -> np.ndarray:
        return _scores(self.score_fn, list(images))[:, None]


@dataclass(frozen=True)
class LimeSaliency:
    """Superpixel LIME of a score function: every pixel gets its superpixel's weight.

    ``n_samples`` perturbations of ``n_segments`` SLIC superpixels (or
    ``segmenter="grid"`` with ``segmenter_params``), switched off with ``fill``;
    ``early_stop`` as in :class:`~prodlens.explain.lime.MultimodalLime`.

    >>> img = np.zeros((32, 32, 3), np.uint8); img[:16, :16] = 255
    >>> score = lambda ims: np.array([im[:16, :16].mean() / 255 for im in ims])
    >>> lime = LimeSaliency(n_samples=100, segmenter="grid", segmenter_params={"rows": 2, "cols": 2},
    ...                     fill="black", resolution=None, progress=False)
    >>> sal = lime(img, score)
    >>> bool(sal[0, 0] > 0.9 and abs(sal[-1, -1]) < 0.05)
    True
    """

    n_samples: int = 1000
    n_segments: int = 50
    segmenter: str = "slic"
    segmenter_params: dict | None = None
    fill: Fill = "mean"
    kernel_width: float = 0.25
    alpha: float = 1.0
    early_stop: bool = False
    resolution: int | None = 256
    batch_size: int = 16
    seed: int = 0
    progress: bool | None = None
    name: str = "lime"

    def __call__(self, image: np.ndarray, score_fn: ScoreFn) -> np.ndarray:
        """The ``(H, W)`` float32 map of superpixel weights for ``score_fn``."""
        from prodlens.explain.lime import MultimodalLime

        _check_common(self.batch_size, self.resolution, self.fill)
        image = check_rgb(image, "image")
        lime = MultimodalLime(
            max_samples=self.n_samples, segmenter=self.segmenter, n_segments=self.n_segments,
            segmenter_params=self.segmenter_params, fill=self.fill, kernel_width=self.kernel_width,
            alpha=self.alpha, early_stop=self.early_stop, batch_size=self.batch_size,
            resolution=self.resolution, seed=self.seed, progress=self.progress,
        )
        res = lime.explain(_ScoreAsClassifier(score_fn, self.resolution), image=image, tokens=(), sample_id="match")
        e = res.explanations[0]
        return e.image_weights[e.segments].astype(np.float32)


SALIENCY_METHODS = ("rise", "lime")


def make_saliency(method: str | SaliencyMethod = "rise", **params) -> SaliencyMethod:
    """Build a saliency method by name (``"rise"``, ``"lime"``) or pass one through.

    >>> make_saliency("rise", n_masks=10).n_masks
    10
    >>> make_saliency("gradcam")
    Traceback (most recent call last):
    ...
    ValueError: method must be one of ('rise', 'lime') or a SaliencyMethod, got 'gradcam'
    """
    if isinstance(method, str):
        if method == "rise":
            return RiseSaliency(**params)
        if method == "lime":
            return LimeSaliency(**params)
    elif callable(method):
        return method
    raise ValueError(f"method must be one of {SALIENCY_METHODS} or a SaliencyMethod, got {method!r}")
