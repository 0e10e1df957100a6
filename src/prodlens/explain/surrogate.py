"""Weighted linear surrogates fitted to the model's outputs on perturbed rows."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np


@dataclass(frozen=True)
class SurrogateFit:
    """One fit for ``k`` targets at once.

    ``coef`` is ``(k, F)``; ``intercept``, ``score`` (weighted R^2 on the fitted
    rows) and ``local_prediction`` (the surrogate at the all-on row) are ``(k,)``.
    ``rank`` is the rank of the weighted, centred design: below ``F`` some weights are
    set by the penalty, not by the data (``None`` when the surrogate does not tell).
    """

    coef: np.ndarray
    intercept: np.ndarray
    score: np.ndarray
    local_prediction: np.ndarray
    rank: int | None = None

    def identifies(self, n_features: int) -> bool:
        """Whether the rows identified all ``n_features`` weights (``True`` when the rank is unknown).

        >>> fit = SurrogateFit(np.zeros((1, 3)), np.zeros(1), np.ones(1), np.zeros(1), rank=2)
        >>> fit.identifies(3), fit.identifies(2)
        (False, True)
        """
        return self.rank is None or self.rank >= n_features


def design_rank(gram: np.ndarray) -> int:
    """Numerical rank of a symmetric positive semi-definite (centred, weighted) Gram matrix.

    >>> X = np.array([[1, 0], [0, 1], [1, 0], [0, 1]], float); Xc = X - X.mean(0)
    >>> design_rank(Xc.T @ Xc)   # the two columns are complements: one direction
    1
    """
    if gram.size == 0:
        return 0
    ev = np.linalg.eigvalsh(gram)
    return int((ev > max(float(ev.max()), 0.0) * gram.shape[0] * 1e-10).sum()) if ev.max() > 0 else 0


@runtime_checkable
class Surrogate(Protocol):
    """Fits ``y (n, k) ~ rows (n, F)`` with sample weights ``(n,)``."""

    def fit(self, rows: np.ndarray, y: np.ndarray, sample_weight: np.ndarray) -> SurrogateFit: ...


def weighted_r2(y: np.ndarray, pred: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Weighted R^2 per column, as ``sklearn.metrics.r2_score(..., sample_weight=w)``.

    A constant target gives 1.0 when predicted exactly, else 0.0 (sklearn's convention).

    >>> weighted_r2(np.array([[1.0], [2.0], [3.0]]), np.array([[1.0], [2.0], [3.0]]), np.ones(3)).tolist()
    [1.0]
    """
    w = w[:, None]
    ybar = (w * y).sum(0) / w.sum()
    num = (w * (y - pred) ** 2).sum(0)
    den = (w * (y - ybar) ** 2).sum(0)
    with np.errstate(divide="ignore", invalid="ignore"):
        r2 = 1.0 - num / den
    return np.where(den > 0, r2, np.where(num <= 1e-24, 1.0, 0.0))


@dataclass(frozen=True)
class RidgeSurrogate:
    """Weighted ridge regression, ``min sum_i w_i (y_i - b - x_i beta)^2 + alpha |beta|^2``.

    ``solver="closed_form"`` solves the normal equations for all targets at once
    (fast, used by the refits of early stopping); ``solver="sklearn"`` calls
    ``sklearn.linear_model.Ridge`` exactly as lime does. Both minimise the same
    objective and agree to numerical precision.

    >>> rng = np.random.default_rng(0); X = rng.random((200, 3)) < 0.5
    >>> y = (X @ np.array([1.0, -2.0, 0.5]))[:, None] + 0.3
    >>> fit = RidgeSurrogate(alpha=1e-6).fit(X, y, np.ones(200))
    >>> fit.coef.round(3).tolist(), fit.intercept.round(3).tolist()
    ([[1.0, -2.0, 0.5]], [0.3])
    """

    alpha: float = 1.0
    solver: str = "closed_form"

    def fit(self, rows: np.ndarray, y: np.ndarray, sample_weight: np.ndarray) -> SurrogateFit:
        if self.alpha < 0:
            raise ValueError(f"alpha must be >= 0, got {self.alpha}")
        X = np.asarray(rows, dtype=np.float64)
        y = np.asarray(y, dtype=np.float64)
        if y.ndim == 1:
            y = y[:, None]
        w = np.asarray(sample_weight, dtype=np.float64)
        if self.solver == "closed_form":
            coef, intercept, rank = self._closed_form(X, y, w)
        elif self.solver == "sklearn":
            from sklearn.linear_model import Ridge

            model = Ridge(alpha=self.alpha, fit_intercept=True).fit(X, y, sample_weight=w)
            coef = np.atleast_2d(model.coef_)
            intercept = np.atleast_1d(model.intercept_)
            Xc = X - (w @ X) / w.sum()
            rank = design_rank(Xc.T @ (Xc * w[:, None]))
        else:
            raise ValueError(f"solver must be 'closed_form' or 'sklearn', got {self.solver!r}")
        pred = X @ coef.T + intercept
        score = weighted_r2(y, pred, w)
        local = coef.sum(1) + intercept
        return SurrogateFit(coef, intercept, score, local, rank)

    def _closed_form(self, X: np.ndarray, y: np.ndarray, w: np.ndarray) -> tuple[np.ndarray, np.ndarray, int]:
        sw = w.sum()
        xm = (w @ X) / sw
        ym = (w @ y) / sw
        Xc = X - xm
        Xw = Xc * w[:, None]
        A = Xc.T @ Xw
        rank = design_rank(A)
        A[np.diag_indices_from(A)] += self.alpha
        B = Xw.T @ (y - ym)
        try:
            beta = np.linalg.solve(A, B)
        except np.linalg.LinAlgError:
            beta = np.linalg.lstsq(A, B, rcond=None)[0]
        coef = beta.T
        return coef, ym - xm @ beta, rank


def ridge_grid_coef(image_masks: np.ndarray, text_masks: np.ndarray, y: np.ndarray, w: np.ndarray,
                    alpha: float) -> np.ndarray:
    """:class:`RidgeSurrogate`'s closed-form coefficients for a factorised grid, without its rows.

    The rows are every image mask (``(n, S)``) crossed with every text mask (``(m, T)``),
    image-major, with targets ``y`` ``(n * m, k)`` and weights ``w`` ``(n * m,)``. The
    weighted Gram matrix of a cross splits into per-modality blocks, so this costs
    ``O(n m (S + T + k))`` instead of ``O(n m (S + T)^2)``; the result is the same
    (used by the bootstrap refits of :mod:`prodlens.explain.quality`).

    >>> rng = np.random.default_rng(0)
    >>> I, T = rng.random((6, 3)) < 0.5, rng.random((5, 2)) < 0.5
    >>> rows = np.hstack([np.repeat(I, 5, 0), np.tile(T, (6, 1))])
    >>> y, w = rng.random((30, 2)), rng.random(30)
    >>> bool(np.allclose(ridge_grid_coef(I, T, y, w, 1.0), RidgeSurrogate(1.0).fit(rows, y, w).coef))
    True
    """
    Im = np.asarray(image_masks, dtype=np.float64)
    Tm = np.asarray(text_masks, dtype=np.float64)
    n, m = len(Im), len(Tm)
    W = np.asarray(w, dtype=np.float64).reshape(n, m)
    Y = np.asarray(y, dtype=np.float64).reshape(n, m, -1)
    sw = W.sum()
    r, c = W.sum(1), W.sum(0)
    xm = np.concatenate([r @ Im, c @ Tm]) / sw
    ym = np.einsum("ij,ijk->k", W, Y) / sw
    S = Im.shape[1]
    A = np.empty((len(xm), len(xm)))
    A[:S, :S] = (Im * r[:, None]).T @ Im
    A[S:, S:] = (Tm * c[:, None]).T @ Tm
    A[:S, S:] = Im.T @ W @ Tm
    A[S:, :S] = A[:S, S:].T
    A -= sw * np.outer(xm, xm)
    A[np.diag_indices_from(A)] += alpha
    WY = W[..., None] * (Y - ym)
    B = np.vstack([Im.T @ WY.sum(1), Tm.T @ WY.sum(0)])
    try:
        beta = np.linalg.solve(A, B)
    except np.linalg.LinAlgError:
        beta = np.linalg.lstsq(A, B, rcond=None)[0]
    return beta.T
