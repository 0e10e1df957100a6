"""Verify mode: amortised explanations for every photo, true LIME for a stated share of them.

The share is chosen as a user checking a large run would: half of it the photos the model
is least sure of (lowest predicted probability, where explanations are most fragile), the
rest drawn at random from the others (so the check also speaks for the typical photo).
Each is explained again by :class:`~prodlens.explain.MultimodalLime` on the same
segmentation and words, for the same (predicted) class, and the two are compared
(:mod:`prodlens.explain.agreement`: top-10 overlap, Spearman, sign agreement).

>>> choose_verified({"a": 0.9, "b": 0.3, "c": 0.8, "d": 0.5}, 0.5, seed=0)
[('b', 'lowest-confidence'), ('d', 'random')]
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
from tqdm.auto import tqdm

from prodlens.data.images import load_image
from prodlens.data.types import ProductSample
from prodlens.explain.agreement import agreement
from prodlens.explain.interpretable import shrink_photo
from prodlens.explain.explanation import Explanation
from prodlens.models.base import Classifier


def choose_verified(confidence: Mapping[str, float], fraction: float, seed: int = 0) -> list[tuple[str, str]]:
    """``ceil(fraction * n)`` sample ids (at least one when ``fraction`` > 0): the lower-confidence half
    first, then random others; each with why it was chosen."""
    if not 0 <= fraction <= 1:
        raise ValueError(f"the verified share must be in [0, 1], got {fraction!r}")
    ids = sorted(confidence)
    if not ids or fraction == 0:
        return []
    n = min(len(ids), max(1, math.ceil(fraction * len(ids))))
    n_low = math.ceil(n / 2)
    by_conf = sorted(ids, key=lambda s: (confidence[s], s))
    low = by_conf[:n_low]
    rest = [s for s in ids if s not in set(low)]
    rng = np.random.default_rng(seed)
    rand = [rest[i] for i in sorted(rng.choice(len(rest), size=n - n_low, replace=False))] if n > n_low else []
    return [(s, "lowest-confidence") for s in low] + [(s, "random") for s in rand]


@dataclass(frozen=True)
class VerifyReport:
    """Per verified photo: why chosen, class, confidence, words, agreement of amortised with LIME."""

    fraction: float
    photos: list[dict] = field(default_factory=list)

    def summary(self) -> dict:
        """Means over the verified photos (and the worst one by Spearman); what a run summary shows.

        >>> VerifyReport(0.1, [{"top10_overlap": 8, "spearman": 0.8, "sign_top10": 1.0, "sample_id": "a"}]).summary()["top10_overlap"]
        8.0
        """
        if not self.photos:
            return {"fraction": self.fraction, "photos": 0}

        def mean(k: str) -> float:
            v = [p[k] for p in self.photos if p.get(k) is not None and not np.isnan(p[k])]
            return round(float(np.mean(v)), 4) if v else float("nan")

        worst = min(self.photos, key=lambda p: -2 if np.isnan(p["spearman"]) else p["spearman"])
        return {"fraction": self.fraction, "photos": len(self.photos), "top10_overlap": mean("top10_overlap"),
                "spearman": mean("spearman"), "sign_top10": mean("sign_top10"),
                "lowest_confidence_spearman": round(float(np.nanmean([p["spearman"] for p in self.photos
                                                                       if p.get("chosen") == "lowest-confidence"] or [np.nan])), 4),
                "worst": {k: worst.get(k) for k in ("sample_id", "spearman", "top10_overlap", "target_name")}}

    def to_dict(self) -> dict:
        return {"fraction": self.fraction, "summary": self.summary(), "photos": self.photos}

    @classmethod
    def from_dict(cls, d: dict) -> VerifyReport:
        return cls(float(d["fraction"]), list(d.get("photos", [])))


def verify(classifier: Classifier, samples: Sequence[ProductSample], amortised: Mapping[str, Explanation],
           fraction: float, lime: object, *, max_pixels: int | None = None, seed: int = 0,
           progress: bool | None = None) -> VerifyReport:
    """Explain the chosen share of ``samples`` (:func:`choose_verified` over the predicted
    probabilities) again with ``lime`` (a ``MultimodalLime``) on the amortised explanation's
    segments and words, and compare the weights. ``amortised``: each sample's amortised
    explanation of its predicted class (``SampleExplanations.predicted_explanation``);
    ``max_pixels``: what the amortised explainer shrank photos to (its ``max_pixels``)."""
    by_id = {s.id: s for s in samples}
    conf = {sid: float(e.prediction) for sid, e in amortised.items() if sid in by_id}
    chosen = choose_verified(conf, fraction, seed)
    rows = []
    for sid, why in tqdm(chosen, desc="verify with LIME", unit="photo", disable=None if progress is None else not progress):
        s, e = by_id[sid], amortised[sid]
        image, _ = shrink_photo(load_image(s.image_path), s.tokens, max_pixels)
        ref = lime.explain(classifier, s, image=image, tokens=e.tokens, segments=e.segments,  # type: ignore[attr-defined]
                           targets=[e.target], sample_id=sid)
        w_ref = ref.for_target(e.target).weights
        rows.append({"sample_id": sid, "chosen": why, "target": int(e.target), "target_name": e.target_name,
                     "confidence": round(conf[sid], 4), "n_superpixels": int(e.n_superpixels), "n_words": len(e.tokens),
                     "lime_rows": int(ref.n_samples), **agreement(e.weights, w_ref)})
    return VerifyReport(float(fraction), rows)
