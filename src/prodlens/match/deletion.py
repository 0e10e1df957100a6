"""Faithfulness of a match explanation: similarity deletion and insertion curves and their AUC.

Deletion: remove the parts an explanation ranks highest first (image cells by saliency,
shared words by attribution) and watch the similarity; do the same in random orders. A
faithful explanation makes the similarity fall faster, so its area under the curve
(``auc``, trapezoid over the fraction removed in ``[0, 1]``) is *lower* than the mean
random order's (``random_auc``). Insertion (``mode="insertion"``): start with every part
removed and put them back, highest ranked first; a faithful ranking makes the similarity
rise faster (``auc`` *higher* than random). ``gain`` is the margin over random in the
good direction for both (positive: better than random).
"""

from __future__ import annotations

import itertools
import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from prodlens.explain.interpretable import Fill
from prodlens.explain.segmentation import GridSegmenter
from prodlens.match._masking import blend, check_rgb, fill_for, resize_map, to_work

log = logging.getLogger(__name__)

MODES = ("deletion", "insertion")
#: with at most this many orders of the units (5 units: 120) every order is the random baseline
EXHAUSTIVE_ORDERS = 120

#: ``keep rows (n, n_units) bool -> (n,) scores``
RowScoreFn = Callable[[np.ndarray], np.ndarray]


def trapezoid_auc(x: np.ndarray, y: np.ndarray) -> float:
    """Area under ``y(x)`` by the trapezoid rule.

    >>> trapezoid_auc(np.array([0.0, 0.5, 1.0]), np.array([1.0, 0.5, 0.0]))
    0.5
    """
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    return float(((y[1:] + y[:-1]) * np.diff(x)).sum() / 2)


@dataclass(frozen=True)
class DeletionCurve:
    """Similarity after removing the top fraction of units, ranked vs random order.

    ``fractions`` ``(S+1,)`` from 0 to 1; ``scores`` for the explanation's order;
    ``random_scores`` the mean over ``n_random`` random orders (``random_std`` their
    spread); ``unit`` says what was removed (``"cell"`` or ``"word"``); ``mode`` is
    ``"deletion"`` (``fractions`` removed) or ``"insertion"`` (``fractions`` put back).

    >>> c = DeletionCurve(np.array([0.0, 1.0]), np.array([1.0, 0.0]), np.array([1.0, 0.5]), np.zeros(2), "cell", 3, 4)
    >>> c.auc, c.random_auc, c.faithful, c.gain
    (0.5, 0.75, True, 0.25)
    """

    fractions: np.ndarray
    scores: np.ndarray
    random_scores: np.ndarray
    random_std: np.ndarray
    unit: str
    n_random: int
    n_units: int
    mode: str = "deletion"

    @property
    def auc(self) -> float:
        return trapezoid_auc(self.fractions, self.scores)

    @property
    def random_auc(self) -> float:
        return trapezoid_auc(self.fractions, self.random_scores)

    @property
    def gain(self) -> float:
        """How much better than random order: ``random_auc - auc`` for deletion, ``auc - random_auc`` for insertion."""
        d = self.random_auc - self.auc
        return d if self.mode == "deletion" else -d

    @property
    def faithful(self) -> bool:
        """Whether the explanation's order changes the similarity faster than random order."""
        return self.gain > 0

    def to_dict(self) -> dict:
        return {
            "fractions": [float(v) for v in self.fractions],
            "scores": [float(v) for v in self.scores],
            "random_scores": [float(v) for v in self.random_scores],
            "random_std": [float(v) for v in self.random_std],
            "unit": self.unit,
            "n_random": int(self.n_random),
            "n_units": int(self.n_units),
            "mode": self.mode,
            "auc": self.auc,
            "random_auc": self.random_auc,
        }

    @classmethod
    def from_dict(cls, d: dict) -> DeletionCurve:
        return cls(
            np.asarray(d["fractions"], dtype=np.float64),
            np.asarray(d["scores"], dtype=np.float64),
            np.asarray(d["random_scores"], dtype=np.float64),
            np.asarray(d.get("random_std", np.zeros(len(d["fractions"]))), dtype=np.float64),
            d["unit"],
            int(d["n_random"]),
            int(d["n_units"]),
            d.get("mode", "deletion"),
        )


def _steps(n_units: int, n_steps: int | None) -> np.ndarray:
    """How many units are removed at each point of the curve (0 .. n_units)."""
    if n_steps is None or n_steps >= n_units:
        return np.arange(n_units + 1)
    return np.unique(np.rint(np.linspace(0, n_units, n_steps + 1)).astype(int))


def deletion_curve(
    order: Sequence[int],
    n_units: int,
    score_rows: RowScoreFn,
    *,
    n_steps: int | None = None,
    n_random: int = 3,
    unit: str = "unit",
    seed: int = 0,
    mode: str = "deletion",
) -> DeletionCurve:
    """The deletion (or insertion) curve of ``order`` (unit indices, most important first)
    and of ``n_random`` random orders, for any units that ``score_rows`` can switch off.

    ``score_rows(keep)`` scores a batch of boolean keep-rows ``(n, n_units)``. Units
    missing from ``order`` come last, in index order. ``mode="insertion"`` starts from
    nothing kept and keeps the first units of the order. With few units (at most
    ``EXHAUSTIVE_ORDERS`` orders: 5 units) the random baseline is the mean over *every*
    order, the exact expectation (a couple of random draws of two words would often be
    the explanation's own order); distinct rows are scored once, so that costs at most
    ``2 ** n_units`` scores.

    >>> w = np.array([3.0, 1.0, 0.0, 0.0])
    >>> c = deletion_curve([0, 1, 2, 3], 4, lambda keep: keep @ w, n_random=20)
    >>> c.scores.tolist(), c.faithful
    ([4.0, 1.0, 0.0, 0.0, 0.0], True)
    >>> c = deletion_curve([0, 1, 2, 3], 4, lambda keep: keep @ w, n_random=20, mode="insertion")
    >>> c.scores.tolist(), c.faithful
    ([0.0, 3.0, 4.0, 4.0, 4.0], True)
    """
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    if n_units < 1:
        raise ValueError("deletion_curve needs at least one unit to remove")
    if n_random < 1:
        raise ValueError(f"n_random must be >= 1, got {n_random}")
    if n_steps is not None and n_steps < 1:
        raise ValueError(f"n_steps must be None or >= 1, got {n_steps}")
    order = [int(i) for i in order]
    if any(not 0 <= i < n_units for i in order) or len(set(order)) != len(order):
        raise ValueError(f"order must list distinct unit indices in 0..{n_units - 1}, got {order}")
    order += [i for i in range(n_units) if i not in set(order)]
    steps = _steps(n_units, n_steps)
    rng = np.random.default_rng(seed)
    if math.factorial(n_units) <= EXHAUSTIVE_ORDERS:
        randoms = [np.asarray(p) for p in itertools.permutations(range(n_units))]
    else:
        randoms = [rng.permutation(n_units) for _ in range(n_random)]
    orders = [np.asarray(order), *randoms]
    insert = mode == "insertion"
    rows = np.full((len(orders) * len(steps), n_units), not insert, dtype=bool)
    for o, perm in enumerate(orders):
        for s, k in enumerate(steps):
            rows[o * len(steps) + s, perm[:k]] = insert
    # the all-kept and all-removed rows are shared by every order: score each distinct row once
    uniq, inverse = np.unique(rows, axis=0, return_inverse=True)
    scores = np.asarray(score_rows(uniq), dtype=np.float64).reshape(-1)[inverse.reshape(-1)]
    scores = scores.reshape(len(orders), len(steps))
    return DeletionCurve(
        fractions=steps / n_units,
        scores=scores[0],
        random_scores=scores[1:].mean(0),
        random_std=scores[1:].std(0),
        unit=unit,
        n_random=len(randoms),
        n_units=n_units,
        mode=mode,
    )


def image_deletion_curve(
    image: np.ndarray,
    saliency: np.ndarray,
    score_fn: Callable[[Sequence[np.ndarray]], np.ndarray],
    *,
    grid: int = 8,
    n_steps: int | None = 16,
    n_random: int = 3,
    fill: Fill = "blur",
    resolution: int | None = 256,
    batch_size: int = 16,
    seed: int = 0,
    mode: str = "deletion",
) -> DeletionCurve:
    """Deletion (or insertion) curve over a ``grid x grid`` of image cells ranked by mean saliency.

    Cells (not single pixels) are removed so that the random orders delete contiguous
    regions too, as the saliency order does; removed cells show ``fill``.

    >>> img = np.zeros((32, 32, 3), np.uint8); img[:16, :16] = 255
    >>> score = lambda ims: np.array([im[:16, :16].mean() / 255 for im in ims])
    >>> sal = np.zeros((32, 32)); sal[:16, :16] = 1
    >>> c = image_deletion_curve(img, sal, score, grid=4, fill="black", resolution=None, n_random=5)
    >>> c.auc < c.random_auc
    True
    """
    image = check_rgb(image, "image")
    saliency = np.asarray(saliency, dtype=np.float64)
    if saliency.shape != image.shape[:2]:
        raise ValueError(f"saliency has shape {saliency.shape}, the image is {image.shape[:2]}; give a map at the image's resolution")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    work = to_work(image, resolution)
    cells = GridSegmenter(grid, grid)(work)
    fill_img = fill_for(work, fill)
    sal = resize_map(saliency, work.shape)
    n_cells = grid * grid
    cell_sal = np.bincount(cells.ravel(), weights=sal.ravel(), minlength=n_cells) / np.maximum(np.bincount(cells.ravel(), minlength=n_cells), 1)
    order = np.argsort(-cell_sal, kind="stable")

    def score_rows(keep: np.ndarray) -> np.ndarray:
        out = []
        for s in range(0, len(keep), batch_size):
            out.append(np.asarray(score_fn(list(blend(work, fill_img, keep[s : s + batch_size][:, cells]))), dtype=np.float64))
        return np.concatenate(out)

    return deletion_curve(order, n_cells, score_rows, n_steps=n_steps, n_random=n_random, unit="cell", seed=seed, mode=mode)
