"""All explanations of one sample from one shared set of perturbations (data only)."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from prodlens.explain.explanation import Explanation


@dataclass(frozen=True)
class SampleExplanations:
    """The explanations of one sample for several target classes.

    ``explanations`` starts with the predicted class, then the true class when the
    sample is misclassified, then any other requested classes. All of them were fitted
    on the same perturbation rows and model outputs.

    >>> e = Explanation("s", 1, "b", np.array([0.5]), 0.0, 1.0, 0.7, np.zeros((1, 1), int), (), 1)
    >>> r = SampleExplanations("s", (e,), predicted=1, true=0, probabilities=np.array([0.3, 0.7]))
    >>> r.misclassified, r.for_target(1).target_name, r.true_explanation is None
    (True, 'b', True)
    """

    sample_id: str
    explanations: tuple[Explanation, ...]
    predicted: int
    true: int | None
    probabilities: np.ndarray  #: model probabilities on the unperturbed input
    n_samples: int = 0  #: perturbation rows used (after early stopping)
    stopped_early: bool = False
    seconds: float = 0.0
    stats: dict = field(default_factory=dict)  #: model-call counts (see CachedEvaluator.stats)

    @property
    def misclassified(self) -> bool:
        return self.true is not None and self.true != self.predicted

    @property
    def targets(self) -> list[int]:
        return [e.target for e in self.explanations]

    def for_target(self, target: int) -> Explanation:
        for e in self.explanations:
            if e.target == target:
                return e
        raise KeyError(f"target {target} was not explained; explained targets: {self.targets}")

    def for_class(self, name: str) -> Explanation:
        for e in self.explanations:
            if e.target_name == name:
                return e
        raise KeyError(f"class {name!r} was not explained; explained: {[e.target_name for e in self.explanations]}")

    @property
    def predicted_explanation(self) -> Explanation:
        return self.for_target(self.predicted)

    @property
    def true_explanation(self) -> Explanation | None:
        if self.true is None:
            return None
        try:
            return self.for_target(self.true)
        except KeyError:
            return None

    def to_dict(self, include_segments: bool = True) -> dict:
        """JSON-ready dict (segments stored once, at the top level)."""
        d = {
            "sample_id": self.sample_id,
            "predicted": int(self.predicted),
            "true": None if self.true is None else int(self.true),
            "misclassified": self.misclassified,
            "probabilities": [float(p) for p in self.probabilities],
            "n_samples": int(self.n_samples),
            "stopped_early": bool(self.stopped_early),
            "seconds": round(float(self.seconds), 4),
            "stats": self.stats,
            "explanations": [e.to_dict(include_segments=False) for e in self.explanations],
        }
        if include_segments and self.explanations:
            d["segments"] = np.asarray(self.explanations[0].segments).tolist()
        return d
