"""Which local features of a sample belong to a class's global features, also for samples
the global explanation was not built on (held-out photos).

* text (:class:`WordMatcher`): a token belongs to a word group when its normalised word
  is one of the group's spellings or at least ``word_threshold`` similar to its name:
  works the same for any sample;
* image, in-sample (:func:`image_targets`): the sample's superpixels that are members
  of the clusters;
* image, held out (:class:`ImageMatcher`): the sample's own top ``top_k_local``
  positive superpixels (what the clusters were made of), cropped and embedded exactly
  like the cluster members were (the global explanation's ``config``), belong to a
  cluster when their distance to its ``centroid`` is at most ``radius_scale`` times the
  cluster's ``radius`` (its largest member distance to the centroid).

:func:`support_ids` lists the samples a global explanation was built from, so the
deletion test can tell in-sample from held-out use.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from prodlens._validation import check_float
from prodlens.aggregate.clustering import l2_normalize
from prodlens.aggregate.crops import NEUTRAL_FILL, superpixel_crop
from prodlens.aggregate.occurrences import image_occurrences, normalized_explanation_weights
from prodlens.aggregate.results import GlobalExplanations, GlobalFeature
from prodlens.aggregate.text import get_scorer, normalize_word
from prodlens.data.types import OcrToken
from prodlens.explain.explanation import Explanation


def image_targets(features: Sequence[GlobalFeature], sample_id: str) -> list[int]:
    """Superpixels of ``sample_id`` that are members of the given image clusters."""
    return sorted({o.index for f in features for o in f.occurrences if o.sample_id == sample_id})


def support_ids(g: GlobalExplanations) -> set[str]:
    """Samples that contributed a feature (a clustered or noise superpixel, or a word)."""
    ids = {o.sample_id for c in g for f in (*c.image, *c.text) for o in f.occurrences}
    return ids | {o.sample_id for c in g for o in c.noise}


class WordMatcher:
    """Does an OCR token belong to one of the given word groups? (same normalisation and
    similarity as the grouping that made them)."""

    def __init__(self, features: Sequence[GlobalFeature], config: Mapping[str, Any]) -> None:
        self.case = config.get("word_case", "upper")
        self.min_length = int(config.get("min_word_length", 2))
        self.threshold = float(config.get("word_threshold", 0.75))
        self.score = get_scorer(config.get("word_scorer", "levenshtein"))
        self.variants = {v for f in features for v in (f.variants or {f.text: 1}) if v}
        self.names = [f.text for f in features if f.text]

    def __call__(self, token: OcrToken) -> bool:
        w = normalize_word(token.text, self.case, self.min_length)
        if w is None:
            return False
        return w in self.variants or any(self.score(w, n) >= self.threshold for n in self.names)


class ImageMatcher:
    """Superpixels of a held-out sample that fall inside one of the given image clusters.

    ``embed_fn`` must be the function the clusters were embedded with (the classifier's
    ``encode_images``). Clusters from a global explanation written before centroids were
    stored cannot be matched: rebuild it (``prodlens global``).

    >>> from prodlens.aggregate.results import FeatureOccurrence
    >>> occ = FeatureOccurrence("train1", "c", "image", 1, 1, 0.5, 0.2)
    >>> f = GlobalFeature("c", "image", "image:0", 0, 0.2, 3, 3, occ, (occ,), centroid=(1.0, 0.0), radius=0.1)
    >>> m = ImageMatcher(lambda crops: np.array([[1.0, 0.05] for _ in crops]), {"crop_size": 8})
    >>> e = Explanation("val1", 0, "c", np.array([-0.1, 0.9]), 0.0, 0.9, 0.9, np.array([[0, 1], [0, 1]]), (), 2)
    >>> m(e, np.zeros((2, 2, 3), np.uint8), [f])
    [1]
    """

    def __init__(self, embed_fn: Callable[[list[np.ndarray]], np.ndarray], config: Mapping[str, Any],
                 radius_scale: float = 1.0) -> None:
        check_float("radius_scale", radius_scale, 0.0)
        self.embed_fn = embed_fn
        self.config = dict(config)
        self.radius_scale = radius_scale

    def __call__(self, explanation: Explanation, image: np.ndarray, features: Sequence[GlobalFeature]) -> list[int]:
        feats = [f for f in features if f.modality == "image"]
        missing = [f.id for f in feats if not f.centroid or f.radius is None]
        if missing:
            raise ValueError(
                f"image global features {missing} of class {feats[0].class_name!r} have no centroid, so held-out "
                "photos cannot be matched to them: rebuild the global explanation with this prodlens version"
            )
        cfg = self.config
        norm = normalized_explanation_weights(explanation, cfg.get("normalization", "normlime"),
                                              cfg.get("normalize_over", "all"))
        occ = image_occurrences(explanation, norm, int(cfg.get("top_k_local", 3)))
        if not occ or not feats:
            return []
        fill = tuple(cfg.get("crop_fill", NEUTRAL_FILL))
        crops = [superpixel_crop(image, explanation.segments, o.index, mode=cfg.get("crop", "masked"), fill=fill,
                                 size=cfg.get("crop_size", 224), margin=float(cfg.get("crop_margin", 0.0)))
                 for o in occ]
        x = np.asarray(self.embed_fn(crops), dtype=np.float64)
        if cfg.get("normalize_embeddings", True):
            x = l2_normalize(x)
        centres = np.array([f.centroid for f in feats])
        radii = np.array([f.radius for f in feats]) * self.radius_scale
        dist = np.linalg.norm(x[:, None, :] - centres[None], axis=2)
        return sorted({o.index for o, d in zip(occ, dist) if (d <= radii).any()})
