"""Samplers draw the binary on/off rows that perturb a sample.

A sampler never decides about the original: the explainer always makes row 0 the
all-on row (the unperturbed input), as lime does.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np


@runtime_checkable
class Sampler(Protocol):
    """Draws ``n`` rows of ``n_features`` booleans from ``rng``."""

    def sample(self, n: int, n_features: int, rng: np.random.Generator) -> np.ndarray: ...


@dataclass(frozen=True)
class BernoulliSampler:
    """Each feature is on independently with probability ``p`` (lime: ``p = 0.5``).

    >>> z = BernoulliSampler().sample(4, 3, np.random.default_rng(0))
    >>> z.shape, z.dtype
    ((4, 3), dtype('bool'))
    """

    p: float = 0.5

    def sample(self, n: int, n_features: int, rng: np.random.Generator) -> np.ndarray:
        if not 0 < self.p < 1:
            raise ValueError(f"p must be in (0, 1), got {self.p}")
        return rng.random((n, n_features)) < self.p


@dataclass(frozen=True)
class PairedSampler:
    """Bernoulli(0.5) rows in complementary pairs: ``z, 1 - z, z', 1 - z', ...``.

    Every row is still a Bernoulli(0.5) row, so the surrogate estimates the same LIME
    weights as with :class:`BernoulliSampler`; but within a pair each feature is on
    once and off once, which cancels the even-order interactions between features
    (the bulk of the surrogate's residual) out of the weight estimates. The same
    precision therefore needs fewer model calls (antithetic sampling, as in
    KernelSHAP's paired sampling). Any even-length prefix is made of whole pairs.

    >>> z = PairedSampler().sample(4, 3, np.random.default_rng(0))
    >>> bool((z[0] == ~z[1]).all() and (z[2] == ~z[3]).all())
    True
    """

    def sample(self, n: int, n_features: int, rng: np.random.Generator) -> np.ndarray:
        half = rng.random(((n + 1) // 2, n_features)) < 0.5
        out = np.empty((2 * len(half), n_features), dtype=bool)
        out[0::2] = half
        out[1::2] = ~half
        return out[:n]


def _sylvester(m: int) -> np.ndarray:
    h = np.ones((1, 1), dtype=np.int8)
    while h.shape[0] < m:
        h = np.block([[h, h], [h, -h]])
    return h


@dataclass(frozen=True)
class OrthogonalSampler:
    """Fold-over orthogonal blocks: rows of a randomised Hadamard design and their complements.

    A block takes ``F`` random non-constant columns of the Sylvester Hadamard matrix of
    order ``m`` (the smallest power of two above ``F``), flips each column's sign at
    random, and adds every row's complement (a fold-over), in random pair order:
    ``2m`` rows in which every feature is on in exactly half the rows, all pairs of
    features are balanced against each other, and main effects are not aliased with
    two-feature interactions (a resolution IV design). The random signs make every
    single row uniform over all on/off patterns, i.e. exactly a Bernoulli(0.5) row, so
    the surrogate estimates the same LIME weights as with :class:`BernoulliSampler`,
    with less sampling noise for the same number of model calls. Rows come in
    complementary pairs, so any even-length prefix is made of whole pairs.

    >>> z = OrthogonalSampler().sample(16, 5, np.random.default_rng(0))
    >>> z.shape, z.sum(0).tolist(), bool((z[0] == ~z[1]).all())
    ((16, 5), [8, 8, 8, 8, 8], True)
    """

    def sample(self, n: int, n_features: int, rng: np.random.Generator) -> np.ndarray:
        F = n_features
        if F == 0:
            return np.zeros((n, 0), dtype=bool)
        m = 2
        while m - 1 < F:
            m *= 2
        h = _sylvester(m)[:, 1:]  # drop the constant column
        blocks = []
        total = 0
        while total < n:
            cols = rng.choice(m - 1, size=F, replace=False)
            signs = rng.random(F) < 0.5
            half = (h[:, cols] > 0) ^ signs  # (m, F) booleans
            half = half[rng.permutation(m)]
            block = np.empty((2 * m, F), dtype=bool)
            block[0::2] = half
            block[1::2] = ~half
            blocks.append(block)
            total += 2 * m
        return np.concatenate(blocks)[:n]
