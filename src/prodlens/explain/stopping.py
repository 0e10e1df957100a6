"""When to stop drawing perturbations: a stable top-k ranking, or the fixed budget."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from prodlens._validation import check_int


def top_k_sets(coef: np.ndarray, k: int) -> list[frozenset[int]]:
    """Per target (row of ``coef``), the indices of the ``k`` largest ``|weight|``.

    >>> top_k_sets(np.array([[0.1, -0.9, 0.5]]), 2)
    [frozenset({1, 2})]
    """
    coef = np.atleast_2d(coef)
    k = min(k, coef.shape[1])
    order = np.argsort(-np.abs(coef), axis=1, kind="stable")[:, :k]
    return [frozenset(int(i) for i in row) for row in order]


@dataclass(frozen=True)
class EarlyStopping:
    """Stop once the top-k features have stayed (almost) the same across refits.

    The explainer draws ``chunk_size`` rows at a time and refits the surrogate after
    each chunk. It stops when, for every explained target, the ``top_k`` features by
    ``|weight|`` of each of the last ``patience`` refits share at least
    ``top_k - tolerance`` features with the refit before, and never before
    ``min_samples`` rows; it always stops at the explainer's ``max_samples``.

    ``tolerance=1`` lets one feature swap in and out at the rank-k boundary: two
    independent fixed-2000 LIME runs on the same photo disagree about that much (see
    ``docs/explain.md``), so demanding more would buy precision the reference does not
    have. When there are fewer than ``2 * top_k`` features, ``k`` shrinks to half the
    features and no swap is tolerated.

    >>> rule = EarlyStopping(top_k=1, tolerance=0, patience=1, min_samples=0)
    >>> rule.should_stop([np.array([[0.9, 0.1]]), np.array([[0.8, 0.2]])], n_done=400)
    True
    >>> rule.should_stop([np.array([[0.9, 0.1]]), np.array([[0.1, 0.8]])], n_done=400)
    False
    """

    chunk_size: int = 128
    top_k: int = 10
    tolerance: int = 1
    patience: int = 2
    min_samples: int = 256

    def __post_init__(self) -> None:
        for name in ("chunk_size", "top_k"):
            check_int(name, getattr(self, name), 1)
        if not 0 <= self.tolerance < self.top_k:
            raise ValueError(f"tolerance must be in 0..top_k-1 = 0..{self.top_k - 1}, got {self.tolerance}")
        check_int("patience", self.patience, 1, why="consecutive refits that must agree")
        check_int("min_samples", self.min_samples, 0)

    def required_overlap(self, n_features: int) -> tuple[int, int]:
        """``(k, overlap)`` used for ``n_features`` features."""
        k = min(self.top_k, max(1, n_features // 2))
        return k, (k - self.tolerance if k == self.top_k else k)

    def should_stop(self, history: Sequence[np.ndarray], n_done: int) -> bool:
        """``history`` holds the ``(targets, F)`` coefficients of every refit so far."""
        if n_done < self.min_samples or len(history) < self.patience + 1:
            return False
        k, need = self.required_overlap(np.atleast_2d(history[-1]).shape[1])
        recent = [top_k_sets(c, k) for c in history[-(self.patience + 1) :]]
        return all(
            len(a & b) >= need for prev, cur in zip(recent[:-1], recent[1:]) for a, b in zip(prev, cur)
        )
