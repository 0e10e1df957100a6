"""Confidence intervals for the deletion test's paired accuracy differences.

Each sample is scored three times (untouched, top features deleted, random control),
so the differences are *paired*: the interval of a difference resamples samples, not
the three accuracies independently. :func:`paired_bootstrap` is the percentile
bootstrap over samples (``resamples`` draws of ``n`` samples with replacement, seeded),
applied to the per-sample differences ``correct_a - correct_b`` (values in ``{-1, 0,
1}``, or fractions when the random control is averaged over repeats). It needs no
normal approximation and handles the averaged control, which an exact McNemar test
(binary outcomes only) does not.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from prodlens._validation import check_float, check_int

#: How intervals are computed (stored with every result).
METHOD = "paired percentile bootstrap over samples"


@dataclass(frozen=True)
class Interval:
    """A point estimate with a two-sided confidence interval.

    >>> Interval.from_dict(Interval(0.2, 0.05, 0.35).to_dict())
    Interval(estimate=0.2, low=0.05, high=0.35)
    """

    estimate: float
    low: float
    high: float

    def to_dict(self) -> dict:
        return {"estimate": float(self.estimate), "low": float(self.low), "high": float(self.high)}

    @classmethod
    def from_dict(cls, d: dict) -> Interval:
        return cls(float(d["estimate"]), float(d["low"]), float(d["high"]))

    def __str__(self) -> str:
        return f"{self.estimate:+.1%} [{self.low:+.1%}, {self.high:+.1%}]"


def paired_bootstrap(
    differences: np.ndarray, *, level: float = 0.95, resamples: int = 2000, seed: int = 0
) -> Interval:
    """Mean of per-sample ``differences`` with its percentile-bootstrap interval.

    >>> d = np.array([1, 1, 0, 1, 0, 0, 1, 1, 0, 1], float)
    >>> iv = paired_bootstrap(d)
    >>> iv.estimate, iv.low <= iv.estimate <= iv.high, 0 < iv.low
    (0.6, True, True)
    """
    check_float("level", level, 0.0, 1.0)
    check_int("resamples", resamples, 1)
    d = np.asarray(differences, dtype=np.float64).ravel()
    if d.size == 0:
        return Interval(float("nan"), float("nan"), float("nan"))
    rng = np.random.default_rng([int(seed), 0xB007])
    means = d[rng.integers(0, d.size, size=(resamples, d.size))].mean(1)
    alpha = (1.0 - level) / 2
    low, high = np.quantile(means, [alpha, 1.0 - alpha])
    return Interval(float(d.mean()), float(min(low, d.mean())), float(max(high, d.mean())))
