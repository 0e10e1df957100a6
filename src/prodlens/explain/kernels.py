"""Similarity kernels: how much a perturbed row counts in the surrogate fit.

Distances are measured on the binary vector (as lime does), never in pixel or
token-id space (captum's default), so that an off superpixel costs the same whether it
was dark or bright.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np


@runtime_checkable
class Kernel(Protocol):
    """Maps rows ``(n, F)`` of booleans to non-negative sample weights ``(n,)``."""

    def __call__(self, rows: np.ndarray) -> np.ndarray: ...


def cosine_distance_to_ones(rows: np.ndarray) -> np.ndarray:
    """Cosine distance of each binary row to the all-on row; ``1`` for an all-off row.

    For a 0/1 row with ``k`` of ``F`` features on it is ``1 - sqrt(k / F)``.

    >>> cosine_distance_to_ones(np.array([[1, 1, 1, 1], [1, 0, 0, 0], [0, 0, 0, 0]])).round(3).tolist()
    [0.0, 0.5, 1.0]
    """
    rows = np.asarray(rows)
    F = rows.shape[1]
    if F == 0:
        return np.zeros(rows.shape[0])
    k = rows.astype(bool).sum(1)
    return 1.0 - np.sqrt(k / F)


@dataclass(frozen=True)
class ExponentialKernel:
    """lime's exponential kernel on the cosine distance: ``sqrt(exp(-d**2 / width**2))``.

    ``width = 0.25`` is lime's default for images.

    >>> ExponentialKernel(0.25)(np.array([[1, 1], [1, 0]])).round(3).tolist()
    [1.0, 0.503]
    """

    width: float = 0.25

    def __call__(self, rows: np.ndarray) -> np.ndarray:
        if self.width <= 0:
            raise ValueError(f"kernel width must be > 0, got {self.width}")
        d = cosine_distance_to_ones(rows)
        return np.sqrt(np.exp(-(d**2) / self.width**2))
