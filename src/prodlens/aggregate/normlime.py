r"""NormLIME: global importance of a feature from many normalised local explanations.

Ahern et al. 2019, *NormLIME: A New Feature Importance Metric for Explaining Deep
Neural Networks* (arXiv:1909.04200). Each local explanation :math:`i` gives weights
:math:`w_{i,f}` to its features. They are first normalised per explanation, so that an
explanation with large raw weights does not dominate, and the global importance of a
feature :math:`c` (here a superpixel cluster or a word group) for a class is the mean
over the explanations :math:`S_c` in which it occurs:

.. math::

    \tilde w_{i,f} = \frac{w_{i,f}^2}{\sum_{g} |w_{i,g}|}, \qquad
    I(c) = \frac{1}{|S_c|} \sum_{i \in S_c} \sum_{f \in i,\ f \mapsto c} \tilde w_{i,f}

This is the formula of the authors' group's reference code (PaddleX
``interpret.core.normlime_base.compute_normlime_weights`` and InterpretDL's
``compute_global_weights(g_name="normlime")``): squared weight over the L1 norm of the
explanation's weights, averaged over the explanations that contain the feature. The
square rewards features that are strong *within* their explanation (a share of the
explanation's L1 mass, times the weight itself); the mean over :math:`S_c` (not over all
explanations of the class) makes the score independent of how often the feature was
selected -- ``support`` reports that separately.

One deviation, documented: when several local features of one explanation map to the
same global feature (two superpixels of one photo in one cluster), their normalised
weights are summed first, so each explanation counts once in the mean. The reference
code appends each occurrence separately; both agree when an explanation contributes at
most one local feature per global feature, the usual case with the top 3 features.

``method="l1"`` (:math:`|w|/\sum|w|`) and ``"abs"`` (:math:`|w|`, InterpretDL's ``"avg"``)
are offered for comparison.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Hashable, Iterable
from dataclasses import dataclass

import numpy as np

from prodlens._validation import check_choice

NORMALIZATIONS = ("normlime", "l1", "abs")


def normalize_weights(weights: np.ndarray, method: str = "normlime") -> np.ndarray:
    """Per-explanation normalised weights (see the module docstring for the formula).

    ``weights`` are all the weights the normalisation runs over (one explanation's).
    An explanation whose weights are all zero gives zeros.

    >>> normalize_weights(np.array([0.5, -0.25, 0.25])).tolist()
    [0.25, 0.0625, 0.0625]
    >>> normalize_weights(np.array([0.5, -0.25, 0.25]), "l1").tolist()
    [0.5, 0.25, 0.25]
    """
    check_choice("method", method, NORMALIZATIONS)
    w = np.asarray(weights, dtype=np.float64)
    if method == "abs":
        return np.abs(w)
    total = float(np.abs(w).sum())
    if total == 0.0:
        return np.zeros_like(w)
    return w**2 / total if method == "normlime" else np.abs(w) / total


@dataclass(frozen=True)
class NormLimeScore:
    """The NormLIME importance of one global feature and how many explanations support it."""

    importance: float  #: mean over supporting explanations of their summed normalised weights
    support: int  #: number of explanations containing the feature
    occurrences: int  #: number of local features mapped to it (>= support)


def normlime(contributions: Iterable[tuple[Hashable, Hashable, float]]) -> dict[Hashable, NormLimeScore]:
    """Aggregate ``(explanation_key, feature_key, normalised_weight)`` triples into scores.

    Weights of one feature within one explanation are summed; the importance is their
    mean over the explanations that contain the feature.

    >>> scores = normlime([("e1", "logo", 0.25), ("e2", "logo", 0.05), ("e2", "logo", 0.05),
    ...                    ("e2", "cap", 0.3)])
    >>> round(scores["logo"].importance, 6), scores["logo"].support, scores["logo"].occurrences
    (0.175, 2, 3)
    >>> scores["cap"].importance
    0.3
    """
    per: dict[Hashable, dict[Hashable, float]] = defaultdict(lambda: defaultdict(float))
    counts: dict[Hashable, int] = defaultdict(int)
    for expl, feat, w in contributions:
        per[feat][expl] += float(w)
        counts[feat] += 1
    return {
        feat: NormLimeScore(float(np.mean(list(by_expl.values()))), len(by_expl), counts[feat])
        for feat, by_expl in per.items()
    }
