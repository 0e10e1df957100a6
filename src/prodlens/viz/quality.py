"""Quality scores -> small plots: an explanation's deletion / insertion curves against a
random order, and histograms of a score over many explanations. Drawn with PIL
(``uint8`` RGB arrays, no UI code, no matplotlib start-up).

>>> from prodlens.explain.quality import ExplanationQuality
>>> q = ExplanationQuality((0.0, 0.5, 1.0), (0.9, 0.2, 0.1), (0.1, 0.8, 0.9), (0.9, 0.5, 0.1), (0.1, 0.5, 0.9),
...                        0.9, 10, 0.7, 0.02)
>>> quality_curves(q).shape
(180, 440, 3)
>>> score_histogram([0.1, 0.2, 0.8], [0.8], np.linspace(0, 1, 6), threshold=0.5).shape
(190, 420, 3)
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from PIL import Image, ImageDraw

from prodlens.explain.quality import ExplanationQuality
from prodlens.viz.render import _font

#: Colours: the explanation's order, the random order, the flag threshold, histogram bars.
EXPLANATION_COLOUR = (31, 119, 180)
RANDOM_COLOUR = (140, 140, 140)
THRESHOLD_COLOUR = (214, 39, 40)
RUN_BAR_COLOUR = (205, 205, 205)
CLASS_BAR_COLOUR = (31, 119, 180)
_AXIS = (90, 90, 90)
_TEXT = (40, 40, 40)


class _Axes:
    """Maps data coordinates into a pixel box of an image and draws its frame and ticks."""

    def __init__(self, draw: ImageDraw.ImageDraw, box: tuple[int, int, int, int],
                 x_range: tuple[float, float], y_range: tuple[float, float]) -> None:
        self.draw = draw
        self.x0, self.y0, self.x1, self.y1 = box
        self.xr = x_range if x_range[1] > x_range[0] else (x_range[0], x_range[0] + 1.0)
        self.yr = y_range if y_range[1] > y_range[0] else (y_range[0], y_range[0] + 1.0)

    def px(self, x: float, y: float) -> tuple[float, float]:
        fx = (x - self.xr[0]) / (self.xr[1] - self.xr[0])
        fy = (y - self.yr[0]) / (self.yr[1] - self.yr[0])
        return self.x0 + fx * (self.x1 - self.x0), self.y1 - fy * (self.y1 - self.y0)

    def frame(self, x_ticks: Sequence[float], y_ticks: Sequence[float], *, digits: int = 1) -> None:
        font = _font(10)
        self.draw.rectangle([self.x0, self.y0, self.x1, self.y1], outline=_AXIS)
        for x in x_ticks:
            px, _ = self.px(x, self.yr[0])
            self.draw.line([px, self.y1, px, self.y1 + 3], fill=_AXIS)
            self.draw.text((px, self.y1 + 4), f"{x:.{digits}f}", fill=_TEXT, font=font, anchor="ma")
        for y in y_ticks:
            _, py = self.px(self.xr[0], y)
            self.draw.line([self.x0 - 3, py, self.x0, py], fill=_AXIS)
            self.draw.text((self.x0 - 5, py), f"{y:g}", fill=_TEXT, font=font, anchor="rm")

    def line(self, xs: Sequence[float], ys: Sequence[float], colour: tuple[int, int, int], *,
             dashed: bool = False, width: int = 2) -> None:
        pts = [self.px(float(x), float(y)) for x, y in zip(xs, ys, strict=True)]
        if len(pts) < 2:
            return
        if not dashed:
            self.draw.line(pts, fill=colour, width=width)
            return
        for (ax, ay), (bx, by) in zip(pts[:-1], pts[1:], strict=True):
            n = max(1, int(np.hypot(bx - ax, by - ay) // 6))
            for k in range(0, n, 2):
                t0, t1 = k / n, min(1.0, (k + 1) / n)
                self.draw.line([ax + (bx - ax) * t0, ay + (by - ay) * t0, ax + (bx - ax) * t1, ay + (by - ay) * t1],
                               fill=colour, width=width)


def _canvas(width: int, height: int) -> tuple[Image.Image, ImageDraw.ImageDraw]:
    im = Image.new("RGB", (width, height), (255, 255, 255))
    return im, ImageDraw.Draw(im)


def quality_curves(quality: ExplanationQuality, *, width: int = 440, height: int = 180) -> np.ndarray:
    """The deletion (left) and insertion (right) curves of one explanation: the target's
    probability as its top features are removed / inserted first (solid), against the
    same steps in a random order (dashed), with both AUCs in the titles.

    Deletion should fall faster than random (lower AUC), insertion rise faster (higher AUC).
    """
    im, draw = _canvas(width, height)
    font = _font(11)
    q = quality
    panels = (("deletion", q.deletion, q.random_deletion, q.deletion_auc, q.random_deletion_auc),
              ("insertion", q.insertion, q.random_insertion, q.insertion_auc, q.random_insertion_auc))
    half = width // 2
    for k, (name, curve, rand, auc, rand_auc) in enumerate(panels):
        left = k * half
        ax = _Axes(draw, (left + 30, 22, left + half - 12, height - 46), (0.0, 1.0), (0.0, 1.0))
        ax.frame([0.0, 0.5, 1.0], [0.0, 0.5, 1.0])
        ax.line(q.fractions, rand, RANDOM_COLOUR, dashed=True)
        ax.line(q.fractions, curve, EXPLANATION_COLOUR)
        draw.text((left + 30, 4), f"{name}: AUC {auc:.2f} vs random {rand_auc:.2f}", fill=_TEXT, font=font)
        draw.text(((ax.x0 + ax.x1) / 2, height - 30), f"share of features {'removed' if k == 0 else 'kept'}",
                  fill=_TEXT, font=_font(10), anchor="ma")
    y, mid = height - 8, width // 2
    legend = _Axes(draw, (mid - 110, y - 1, mid - 90, y + 1), (0.0, 1.0), (0.0, 1.0))
    legend.line([0, 1], [0.5, 0.5], EXPLANATION_COLOUR)
    draw.text((mid - 86, y), "explanation's order", fill=_TEXT, font=_font(10), anchor="lm")
    legend = _Axes(draw, (mid + 20, y - 1, mid + 44, y + 1), (0.0, 1.0), (0.0, 1.0))
    legend.line([0, 1], [0.5, 0.5], RANDOM_COLOUR, dashed=True)
    draw.text((mid + 48, y), "random order", fill=_TEXT, font=_font(10), anchor="lm")
    return np.asarray(im)


def score_histogram(
    run_values: Sequence[float],
    class_values: Sequence[float],
    edges: Sequence[float],
    *,
    threshold: float | None = None,
    title: str = "",
    width: int = 420,
    height: int = 190,
) -> np.ndarray:
    """Histogram of one score: every explanation of the run (grey bars) and those of one
    class (blue bars in front), over ``edges``; ``threshold`` as a red dashed line.

    Values outside ``edges`` are counted in the first / last bin.
    """
    edges = np.asarray(edges, dtype=np.float64)
    lo, hi = float(edges[0]), float(edges[-1])
    run_counts = np.histogram(np.clip(np.asarray(run_values, dtype=np.float64), lo, hi), edges)[0]
    cls_counts = np.histogram(np.clip(np.asarray(class_values, dtype=np.float64), lo, hi), edges)[0]
    im, draw = _canvas(width, height)
    top = max(1, int(run_counts.max(initial=0)), int(cls_counts.max(initial=0)))
    ax = _Axes(draw, (34, 22, width - 12, height - 30), (lo, hi), (0.0, top * 1.1))
    for counts, colour, inset in ((run_counts, RUN_BAR_COLOUR, 1), (cls_counts, CLASS_BAR_COLOUR, 3)):
        for i, c in enumerate(counts):
            if c:
                x0, y0 = ax.px(float(edges[i]), float(c))
                x1, y1 = ax.px(float(edges[i + 1]), 0.0)
                draw.rectangle([x0 + inset, y0, max(x0 + inset, x1 - inset), y1], fill=colour)
    span = hi - lo
    ax.frame([lo, lo + span / 2, hi], [0, top], digits=1 if span >= 0.5 else 2)
    if threshold is not None and lo <= threshold <= hi:
        ax.line([threshold, threshold], [0.0, top * 1.1], THRESHOLD_COLOUR, dashed=True)
    draw.text((34, 4), title, fill=_TEXT, font=_font(11))
    return np.asarray(im)
