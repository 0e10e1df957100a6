"""How far to trust one explanation: faithfulness, stability and fit, measured per explanation.

Three scores, computed by :class:`QualityCheck` right after the surrogate fit and kept in
:attr:`~prodlens.explain.explanation.Explanation.quality`:

* **faithfulness** — deletion and insertion curves over the joint ranking (superpixels
  and words together, by signed weight): the model's probability of the target after
  removing (deletion) or keeping only (insertion) the top-``j`` features, at ``n_steps``
  steps, with the explainer's own fill. The same steps are run for a random order. The
  score is the explanation's gain over random, averaged over both curves:
  ``((random_deletion_auc - deletion_auc) + (insertion_auc - random_insertion_auc)) / 2``,
  in probability units; ``0`` means no better than a random ranking. Because the random
  insertion order is the deletion order reversed, both random curves come from one set of
  ``n_steps - 1`` masks; the curves cost ``3 * (n_steps - 1) + 1`` model rows for the first
  target (about 28) and ``2 * (n_steps - 1)`` for each further one.
* **stability** — the expected top-``k`` overlap (as a fraction of ``k``) between two runs
  with different seeds, estimated with no model calls: the surrogate is refitted on
  bootstrap resamples of the rows already evaluated (for a factorised grid, image masks
  and text masks are resampled independently, as a new seed would redraw them), and the
  top-``k`` sets of pairs of replicates are compared. A bootstrap of independent units is
  conservative for the orthogonal designs, whose rows are less noisy than independent ones.
* **fit** — the surrogate's weighted R^2 on its rows, and ``local_error``: the absolute gap
  between the surrogate's prediction on the unperturbed input and the model's.

An explanation is *flagged* (``flags`` non-empty, ``trusted`` false) when a score crosses
its threshold, or ``unidentified`` when its rows cannot identify every weight (design rank
below the number of features: too few rows; the bootstrap cannot see this, since the
penalty makes rank-deficient fits look stable); the thresholds are :class:`QualityCheck` parameters, chosen from
``bench/explanation_quality.py`` (see ``docs/explain.md``).

>>> q = ExplanationQuality(fractions=(0.0, 0.5, 1.0), deletion=(0.9, 0.2, 0.1), insertion=(0.1, 0.8, 0.9),
...                        random_deletion=(0.9, 0.5, 0.1), random_insertion=(0.1, 0.5, 0.9),
...                        stability=0.9, stability_k=10, r2=0.7, local_error=0.02)
>>> round(q.deletion_auc, 3), round(q.insertion_auc, 3), round(q.faithfulness, 3), q.trusted
(0.35, 0.65, 0.15, True)
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace

import numpy as np

from prodlens._validation import check_int
from prodlens.explain.factorised import FactorGrid
from prodlens.explain.surrogate import RidgeSurrogate, Surrogate, ridge_grid_coef

#: names of the flags, in the order they are checked; ``unidentified``: the rows' design has
#: lower rank than there are weights, so some weights were set by the ridge penalty alone
FLAGS = ("unfaithful", "unstable", "poor_fit", "off_target", "unidentified")


def _auc(fractions: Sequence[float], values: Sequence[float]) -> float:
    x = np.asarray(fractions, dtype=np.float64)
    y = np.asarray(values, dtype=np.float64)
    if len(x) < 2:
        return float(y.mean()) if len(y) else float("nan")
    return float(np.sum((x[1:] - x[:-1]) * (y[1:] + y[:-1]) / 2.0))


@dataclass(frozen=True)
class ExplanationQuality:
    """The quality scores of one explanation (data only; see the module docstring)."""

    fractions: tuple[float, ...]  #: share of the features removed / inserted at each step
    deletion: tuple[float, ...]  #: target probability after removing the top features
    insertion: tuple[float, ...]  #: target probability keeping only the top features
    random_deletion: tuple[float, ...]
    random_insertion: tuple[float, ...]
    stability: float  #: expected top-k overlap of two seeds, as a fraction of k
    stability_k: int
    r2: float  #: weighted R^2 of the surrogate on its rows
    local_error: float  #: |surrogate prediction - model prediction| on the unperturbed input
    flags: tuple[str, ...] = ()
    n_model_rows: int = 0  #: model rows the curves added (after the cache)
    identified: bool = True  #: every weight identified by the rows (full-rank design)
    thresholds: dict = field(default_factory=dict, compare=False)

    @property
    def deletion_auc(self) -> float:
        return _auc(self.fractions, self.deletion)

    @property
    def insertion_auc(self) -> float:
        return _auc(self.fractions, self.insertion)

    @property
    def random_deletion_auc(self) -> float:
        return _auc(self.fractions, self.random_deletion)

    @property
    def random_insertion_auc(self) -> float:
        return _auc(self.fractions, self.random_insertion)

    @property
    def deletion_gain(self) -> float:
        """How much faster than random the probability falls when top features go."""
        return self.random_deletion_auc - self.deletion_auc

    @property
    def insertion_gain(self) -> float:
        """How much faster than random the probability rises when top features come first."""
        return self.insertion_auc - self.random_insertion_auc

    @property
    def faithfulness(self) -> float:
        """Gain over a random order, the mean of the deletion and insertion gains."""
        return (self.deletion_gain + self.insertion_gain) / 2.0

    @property
    def trusted(self) -> bool:
        return not self.flags

    def to_dict(self) -> dict:
        """JSON-ready dict, derived numbers included.

        >>> q = ExplanationQuality((0.0, 1.0), (0.8, 0.1), (0.1, 0.8), (0.8, 0.1), (0.1, 0.8), 1.0, 5, 0.5, 0.0)
        >>> ExplanationQuality.from_dict(q.to_dict()) == q
        True
        """
        return {
            "fractions": [float(v) for v in self.fractions],
            "deletion": [float(v) for v in self.deletion],
            "insertion": [float(v) for v in self.insertion],
            "random_deletion": [float(v) for v in self.random_deletion],
            "random_insertion": [float(v) for v in self.random_insertion],
            "stability": float(self.stability),
            "stability_k": int(self.stability_k),
            "r2": float(self.r2),
            "local_error": float(self.local_error),
            "flags": list(self.flags),
            "n_model_rows": int(self.n_model_rows),
            "identified": bool(self.identified),
            "thresholds": dict(self.thresholds),
            "deletion_auc": self.deletion_auc,
            "insertion_auc": self.insertion_auc,
            "random_deletion_auc": self.random_deletion_auc,
            "random_insertion_auc": self.random_insertion_auc,
            "faithfulness": self.faithfulness,
            "trusted": self.trusted,
        }

    @classmethod
    def from_dict(cls, d: dict) -> ExplanationQuality:
        """Inverse of :meth:`to_dict` (derived numbers are recomputed)."""
        return cls(
            fractions=tuple(float(v) for v in d["fractions"]),
            deletion=tuple(float(v) for v in d["deletion"]),
            insertion=tuple(float(v) for v in d["insertion"]),
            random_deletion=tuple(float(v) for v in d["random_deletion"]),
            random_insertion=tuple(float(v) for v in d["random_insertion"]),
            stability=float(d["stability"]),
            stability_k=int(d["stability_k"]),
            r2=float(d["r2"]),
            local_error=float(d["local_error"]),
            flags=tuple(d.get("flags", ())),
            n_model_rows=int(d.get("n_model_rows", 0)),
            identified=bool(d.get("identified", True)),
            thresholds=dict(d.get("thresholds", {})),
        )


def symmetric_steps(n_features: int, n_steps: int) -> np.ndarray:
    """Feature counts from ``0`` to ``F`` in about ``K = min(n_steps, F)`` steps, closed under ``j -> F - j``.

    The symmetry lets a random order's insertion curve reuse its deletion masks. With an
    even ``K`` and an odd ``F`` the middle step is split in two (``F // 2`` and ``F - F // 2``).

    >>> symmetric_steps(7, 4).tolist(), symmetric_steps(2, 10).tolist(), len(symmetric_steps(36, 10))
    ([0, 2, 3, 4, 5, 7], [0, 1, 2], 11)
    """
    F = int(n_features)
    K = max(1, min(int(n_steps), F))
    lower = [int(round(s * F / K)) for s in range((K + 1) // 2)]  # the steps below the middle
    middle = [F // 2, F - F // 2] if K % 2 == 0 else []
    return np.asarray(sorted(set(lower + [F - j for j in lower] + middle)), dtype=np.int64)


def _keep_rows(order: np.ndarray, counts: np.ndarray, n_features: int, keep_first: bool) -> np.ndarray:
    """Rows that keep the first (or all but the first) ``c`` features of ``order``, per count."""
    rank = np.empty(n_features, dtype=np.int64)
    rank[order] = np.arange(n_features)
    if keep_first:
        return rank[None, :] < counts[:, None]
    return rank[None, :] >= counts[:, None]


def _resample(masks: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Bootstrap multiplicities of a modality's masks; all ones when they are every on/off
    pattern (a new seed would draw exactly the same set, so resampling it would only add noise).

    >>> _resample(np.array([[1], [0]], bool), np.random.default_rng(0)).tolist()
    [1, 1]
    """
    n, width = masks.shape
    if width <= 20 and n == 2**width:
        return np.ones(n, dtype=np.int64)
    return _counts(n, rng)


def _counts(n: int, rng: np.random.Generator) -> np.ndarray:
    """How often each of ``n`` units is drawn by one bootstrap resample."""
    return np.bincount(rng.integers(0, n, n), minlength=n)


def _top_k(coef: np.ndarray, k: int) -> np.ndarray:
    return np.argsort(-np.abs(coef), axis=-1, kind="stable")[..., :k]


def _mean_pairwise_overlap(tops: np.ndarray) -> float:
    """Mean overlap fraction over all pairs of rows of ``tops`` (``(B, k)`` index sets)."""
    B, k = tops.shape
    if B < 2 or k == 0:
        return 1.0
    member = np.zeros((B, int(tops.max()) + 1), dtype=np.float64)
    np.put_along_axis(member, tops, 1.0, axis=1)
    inter = member @ member.T
    iu = np.triu_indices(B, 1)
    return float(inter[iu].mean() / k)


@dataclass(frozen=True)
class QualityCheck:
    """Scores every explanation of a run (``MultimodalLime(quality=...)``); stores parameters only.

    Parameters
    ----------
    n_steps:
        Steps of the deletion / insertion curves (fewer when there are fewer features).
    n_bootstrap:
        Bootstrap refits for the stability estimate (no model calls).
    top_k:
        The ``k`` of the stability overlap (at most half the features).
    min_faithfulness, min_stability, min_r2, max_local_error:
        Thresholds below (above) which an explanation is flagged ``unfaithful``,
        ``unstable``, ``poor_fit`` or ``off_target``.

    >>> QualityCheck().n_steps, QualityCheck(top_k=0)
    Traceback (most recent call last):
    ...
    ValueError: top_k must be an int >= 1, got 0
    """

    n_steps: int = 10
    n_bootstrap: int = 16
    top_k: int = 10
    min_faithfulness: float = 0.0
    min_stability: float = 0.5
    min_r2: float = 0.2
    max_local_error: float = 0.5

    def __post_init__(self) -> None:
        for name, low in (("n_steps", 1), ("n_bootstrap", 2), ("top_k", 1)):
            check_int(name, getattr(self, name), low)

    @property
    def thresholds(self) -> dict:
        return {"min_faithfulness": self.min_faithfulness, "min_stability": self.min_stability,
                "min_r2": self.min_r2, "max_local_error": self.max_local_error}

    def flags(self, faithfulness: float, stability: float, r2: float, local_error: float,
              identified: bool = True) -> tuple[str, ...]:
        """The flags these scores earn (empty: nothing says "do not trust this").

        >>> QualityCheck().flags(0.1, 0.9, 0.6, 0.01), QualityCheck().flags(-0.02, 0.3, 0.6, 0.6)
        ((), ('unfaithful', 'unstable', 'off_target'))
        >>> QualityCheck().flags(0.1, 0.9, 0.6, 0.01, identified=False)
        ('unidentified',)
        """
        out = []
        if not faithfulness > self.min_faithfulness:
            out.append("unfaithful")
        if not stability >= self.min_stability:
            out.append("unstable")
        if not r2 >= self.min_r2:
            out.append("poor_fit")
        if not local_error <= self.max_local_error:
            out.append("off_target")
        if not identified:
            out.append("unidentified")
        return tuple(out)

    # -- the scores ---------------------------------------------------------------------
    def curves(self, evaluate: Callable[[np.ndarray], np.ndarray], coef: np.ndarray, targets: Sequence[int],
               rng: np.random.Generator) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """Deletion / insertion curves for each target's ranking and for one random order.

        ``evaluate`` maps on/off rows ``(n, F)`` to probabilities ``(n, C)`` (the run's
        cached evaluator, so the fill is the explainer's). Returns the step fractions
        and arrays ``(targets, steps)`` named ``deletion``, ``insertion``,
        ``random_deletion`` and ``random_insertion``.
        """
        coef = np.atleast_2d(coef)
        F = coef.shape[1]
        counts = symmetric_steps(F, self.n_steps)
        perm = rng.permutation(F)
        # the random insertion order is the deletion order reversed: keeping its first c
        # features is keeping the last c of perm, i.e. the random deletion mask at F - c
        rand_del = _keep_rows(perm, counts, F, keep_first=False)
        blocks = [rand_del]
        for t in range(len(targets)):
            order = np.argsort(-coef[t], kind="stable")
            blocks += [_keep_rows(order, counts, F, keep_first=False), _keep_rows(order, counts, F, keep_first=True)]
        probs = evaluate(np.vstack(blocks))
        n = len(counts)
        tgt = np.asarray(targets)
        rd = probs[:n][:, tgt].T  # (targets, steps)
        out = {"random_deletion": rd, "random_insertion": rd[:, ::-1].copy(),
               "deletion": np.stack([probs[n * (1 + 2 * t): n * (2 + 2 * t), tgt[t]] for t in range(len(tgt))]),
               "insertion": np.stack([probs[n * (2 + 2 * t): n * (3 + 2 * t), tgt[t]] for t in range(len(tgt))])}
        return counts / max(F, 1), out

    def stability(self, surrogate: Surrogate, rows: np.ndarray, y: np.ndarray, weights: np.ndarray,
                  rng: np.random.Generator, grid: FactorGrid | None = None) -> tuple[np.ndarray, int]:
        """Expected top-k overlap of two seeds per target, from bootstrap refits; and the k used.

        For a factorised ``grid`` its image and text masks are resampled independently
        (rows are image-major; a modality whose masks are every on/off pattern is kept
        as it is, since another seed would draw the same set), and a closed-form ridge surrogate is refitted from the
        grid's blocks (:func:`~prodlens.explain.surrogate.ridge_grid_coef`: the same
        fit, without the rows); otherwise rows are resampled.
        """
        n, F = rows.shape
        k = min(self.top_k, max(1, F // 2))
        g = grid if grid is not None and grid.n_rows == n else None
        fast = g is not None and isinstance(surrogate, RidgeSurrogate) and surrogate.solver == "closed_form"
        tops = []
        for _ in range(self.n_bootstrap):
            if g is None:
                mult = _counts(n, rng).astype(np.float64)
            else:
                a, b = _resample(g.image_masks, rng), _resample(g.text_masks, rng)
                if fast:
                    ia, jb = a > 0, b > 0
                    wm = (weights.reshape(g.n_image, g.n_text) * np.outer(a, b))[np.ix_(ia, jb)]
                    ym = y.reshape(g.n_image, g.n_text, -1)[np.ix_(ia, jb)]
                    coef = ridge_grid_coef(g.image_masks[ia], g.text_masks[jb], ym.reshape(-1, y.shape[1]), wm.ravel(),
                                           surrogate.alpha)  # type: ignore[attr-defined]
                    tops.append(_top_k(coef, k))
                    continue
                mult = np.outer(a, b).ravel().astype(np.float64)
            use = mult > 0
            fit = surrogate.fit(rows[use], y[use], weights[use] * mult[use])
            tops.append(_top_k(fit.coef, k))  # (targets, k)
        tops_arr = np.stack(tops, axis=1)  # (targets, B, k)
        return np.array([_mean_pairwise_overlap(t) for t in tops_arr]), k

    def assess(self, evaluate: Callable[[np.ndarray], np.ndarray], surrogate: Surrogate, rows: np.ndarray,
               y: np.ndarray, weights: np.ndarray, coef: np.ndarray, score: np.ndarray, local_prediction: np.ndarray,
               prediction: np.ndarray, targets: Sequence[int], rng: np.random.Generator,
               grid: FactorGrid | None = None, identified: bool = True) -> list[ExplanationQuality]:
        """One :class:`ExplanationQuality` per target, in ``targets`` order.

        ``y`` holds the fitted rows' probabilities of ``targets``; ``score`` and
        ``local_prediction`` come from the surrogate fit, ``prediction`` is the model's
        probability of each target on the unperturbed input; ``identified`` says whether
        the fit's design had full rank.
        """
        counter = getattr(evaluate, "n_model_rows", None)
        before = counter if isinstance(counter, int) else 0
        fractions, curves = self.curves(evaluate, coef, targets, rng)
        after = getattr(evaluate, "n_model_rows", before)
        stab, k = self.stability(surrogate, rows, y, weights, rng, grid)
        out = []
        for t in range(len(targets)):
            q = ExplanationQuality(
                fractions=tuple(float(f) for f in fractions),
                deletion=tuple(float(v) for v in curves["deletion"][t]),
                insertion=tuple(float(v) for v in curves["insertion"][t]),
                random_deletion=tuple(float(v) for v in curves["random_deletion"][t]),
                random_insertion=tuple(float(v) for v in curves["random_insertion"][t]),
                stability=float(stab[t]),
                stability_k=int(k),
                r2=float(score[t]),
                local_error=float(abs(local_prediction[t] - prediction[t])),
                n_model_rows=int(after - before) if t == 0 else 0,
                identified=bool(identified),
                thresholds=self.thresholds,
            )
            out.append(replace(q, flags=self.flags(q.faithfulness, q.stability, q.r2, q.local_error, identified)))
        return out
