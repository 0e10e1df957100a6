"""Correcting the network's weights with a few real masks: LIME's fit with the network as prior.

:func:`refine_weights` solves LIME's kernel-weighted least squares on a photo's few
evaluated rows with a ridge penalty that pulls the weights toward the network's, not
toward zero::

    min_{w, b}  sum_k pi_k (y_k - b - z_k . w)^2  +  strength * |w - w_prior|^2

With no rows it returns the prior; with many rows it tends to plain LIME's answer on those
rows. ``strength`` is a prior precision in units of kernel weight (the kernel weights are
not normalised), so one value serves any number of rows: :func:`choose_strength` picks it
on the fitting photos the network was not trained on, by how well the refined weights
predict the rows that were not used to refine them.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

#: The prior precisions :func:`choose_strength` tries (kernel-weight units).
STRENGTHS = tuple(float(v) for v in np.logspace(-3, 2, 11))


def refine_weights(prior: np.ndarray, rows: np.ndarray, outputs: np.ndarray, kernel: np.ndarray,
                   strength: float) -> tuple[np.ndarray, np.ndarray]:
    """Weights ``(D, C)`` and intercepts ``(C,)`` of the refit (see the module docstring).

    ``prior`` ``(D, C)``, ``rows`` ``(n, D)`` 0/1, ``outputs`` ``(n, C)``, ``kernel`` ``(n,)``.

    >>> rng = np.random.default_rng(0); z = rng.random((400, 3)) < 0.5
    >>> y = z @ np.array([[1.0], [0.0], [-0.5]]) + 0.2
    >>> w, b = refine_weights(np.zeros((3, 1)), z, y, np.ones(400), strength=1e-6)
    >>> (np.round(w[:, 0], 3) + 0.0).tolist(), round(float(b[0]), 3)
    ([1.0, 0.0, -0.5], 0.2)
    >>> refine_weights(np.ones((3, 1)), z[:2], y[:2], np.ones(2), strength=1e9)[0][:, 0].round(3).tolist()
    [1.0, 1.0, 1.0]
    """
    prior = np.asarray(prior, np.float64)
    Z = np.asarray(rows, np.float64)
    y = np.asarray(outputs, np.float64)
    pi = np.asarray(kernel, np.float64)
    if strength <= 0:
        raise ValueError(f"strength must be > 0, got {strength!r}")
    total = max(float(pi.sum()), 1e-12)
    resid = y - Z @ prior
    mz = pi @ Z / total
    mr = pi @ resid / total
    Zc, rc = Z - mz, resid - mr
    gram = Zc.T @ (pi[:, None] * Zc) + strength * np.eye(Z.shape[1])
    delta = np.linalg.solve(gram, Zc.T @ (pi[:, None] * rc)) if Z.shape[1] else np.zeros_like(prior)
    w = prior + delta
    return w, pi @ y / total - mz @ w


def heldout_loss(w: np.ndarray, rows: np.ndarray, outputs: np.ndarray, kernel: np.ndarray) -> float:
    """LIME's kernel-weighted squared error of ``b + z . w`` on rows the weights did not see (best ``b``)."""
    pi = np.asarray(kernel, np.float64)
    pi = pi / max(float(pi.sum()), 1e-12)
    resid = np.asarray(outputs, np.float64) - np.asarray(rows, np.float64) @ w
    resid = resid - pi @ resid
    return float((pi[:, None] * resid**2).sum())


def choose_strength(photos: Sequence[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]],
                    n_refine: int, strengths: Sequence[float] = STRENGTHS) -> dict:
    """The prior precision that best predicts unseen rows, with and without the network's prior.

    ``photos``: ``(prior (D, C), rows (n, D), outputs (n, C), kernel (n,), targets)`` per
    photo; row 0 (the unperturbed photo) and the next ``n_refine`` refine, the rest score, on
    the ``targets`` columns. Returns ``strength`` (the best with the prior), the held-out loss
    per strength with the prior and with a zero prior (plain ridge on the same rows), and the
    loss of the prior alone.
    """
    with_prior = {s: 0.0 for s in strengths}
    without = {s: 0.0 for s in strengths}
    prior_only = 0.0
    for prior, rows, outputs, kernel, targets in photos:
        t = np.asarray(targets, int)
        fit, test = slice(0, 1 + n_refine), slice(1 + n_refine, None)
        p = prior[:, t]
        prior_only += heldout_loss(p, rows[test], outputs[test][:, t], kernel[test])
        for s in strengths:
            w, _ = refine_weights(p, rows[fit], outputs[fit][:, t], kernel[fit], s)
            with_prior[s] += heldout_loss(w, rows[test], outputs[test][:, t], kernel[test])
            w0, _ = refine_weights(np.zeros_like(p), rows[fit], outputs[fit][:, t], kernel[fit], s)
            without[s] += heldout_loss(w0, rows[test], outputs[test][:, t], kernel[test])
    n = max(len(photos), 1)
    best = min(with_prior, key=with_prior.get)
    return {"strength": best, "n_refine": int(n_refine), "photos": len(photos),
            "loss_prior_only": round(prior_only / n, 8),
            "loss_with_prior": {f"{s:.3g}": round(v / n, 8) for s, v in with_prior.items()},
            "loss_zero_prior": {f"{s:.3g}": round(v / n, 8) for s, v in without.items()}}
