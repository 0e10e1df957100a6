"""Per-class global explanations from many local (multimodal LIME) explanations.

:class:`GlobalExplainer` chains small steps, each in its own module:

1. :mod:`~prodlens.aggregate.occurrences` -- the top-k positive superpixels and OCR
   words of each explanation, with NormLIME-normalised weights;
2. :mod:`~prodlens.aggregate.crops` + ``embed_fn`` -- each superpixel cut out and
   embedded by the trained image model;
3. :mod:`~prodlens.aggregate.clustering` -- HDBSCAN per class over those embeddings;
   :mod:`~prodlens.aggregate.text` -- words grouped by spelling similarity;
4. :mod:`~prodlens.aggregate.normlime` -- each cluster / word group scored and ranked.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import replace
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from prodlens._validation import check_choice, check_float, check_int, check_colour
from prodlens.aggregate.clustering import SELECTION_METHODS, cluster_embeddings, l2_normalize, medoid
from prodlens.aggregate.crops import CROP_MODES, NEUTRAL_FILL, superpixel_crop
from prodlens.aggregate.normlime import NORMALIZATIONS, normlime
from prodlens.aggregate.occurrences import (
    NORMALIZE_OVER,
    group_by_class,
    image_occurrences,
    normalized_explanation_weights,
    text_occurrences,
)
from prodlens.aggregate.results import MODALITIES, ClassGlobalExplanation, FeatureOccurrence, GlobalExplanations, GlobalFeature
from prodlens.aggregate.text import CASES, LINKAGES, SCORERS, WordGrouper
from prodlens.data.images import load_image
from prodlens.data.types import ProductSample
from prodlens.errors import BadInputError, Skip, record_skip
from prodlens.explain.explanation import Explanation

log = logging.getLogger(__name__)

EmbedFn = Callable[[list[np.ndarray]], np.ndarray]


def index_samples(samples: Iterable[ProductSample] | Mapping[str, ProductSample] | None) -> dict[str, ProductSample]:
    """``{sample.id: sample}`` from a list, a dataset or a mapping (``None`` gives ``{}``)."""
    if samples is None:
        return {}
    if isinstance(samples, Mapping):
        return dict(samples)
    return {s.id: s for s in samples}


class ImageSource:
    """Where a sample's photo comes from: an in-memory ``images`` mapping, else the sample's file."""

    def __init__(self, samples: Mapping[str, ProductSample], images: Mapping[str, np.ndarray] | None = None) -> None:
        self.samples = samples
        self.images = images or {}
        self.skipped: list[Skip] = []  #: (file, reason) of each photo :meth:`load` could not read

    def load(self, sample_id: str) -> np.ndarray | None:
        """The photo, or ``None`` when its file cannot be read (logged and added to ``skipped``)."""
        try:
            return self(sample_id)
        except BadInputError as e:
            record_skip(self.skipped, e)
            return None

    def __call__(self, sample_id: str) -> np.ndarray:
        if sample_id in self.images:
            return np.asarray(self.images[sample_id])
        s = self.samples.get(sample_id)
        if s is None:
            raise ValueError(
                f"no image for sample {sample_id!r}: pass samples= (ProductSample list or dataset) "
                "or images= ({sample_id: uint8 RGB array}) that contain it"
            )
        return load_image(s.image_path)


class GlobalExplainer:
    """Build per-class global explanations (image clusters + word groups) ranked by NormLIME.

    ``__init__`` only stores settings; :meth:`fit` does the work. After ``fit``:

    * ``global_`` -- :class:`~prodlens.aggregate.results.GlobalExplanations`;
    * ``image_occurrences_`` -- ``{class: [FeatureOccurrence]}`` embedded superpixels;
    * ``embeddings_`` -- ``{class: (n, d) array}`` aligned with ``image_occurrences_``
      (as clustered: L2-normalised when ``normalize_embeddings``);
    * ``image_labels_`` -- ``{class: (n,) int array}`` cluster per occurrence, ``-1`` noise;
    * ``text_occurrences_`` -- ``{class: [FeatureOccurrence]}`` words that were grouped;
    * ``skipped_`` -- ``(file, reason)`` of each photo that could not be read: its
      explanation's superpixels are left out, the rest are aggregated.

    Parameters
    ----------
    embed_fn:
        ``list of uint8 RGB crops -> (n, d) array``: in production the trained
        classifier's ``encode_images``; required when ``"image"`` is in ``modalities``.
    modalities:
        Which global explanations to build: ``("image", "text")`` or one of them.
    top_k_local:
        Positive features taken from each explanation per modality (paper: 3).
    normalization, normalize_over:
        Per-explanation weight normalisation (:mod:`~prodlens.aggregate.normlime`:
        ``"normlime"`` = w^2 / sum|w|) and whether sum|w| runs over ``"all"`` features
        or within each ``"modality"``.
    min_support:
        Features supported by fewer explanations are not ranked (NormLIME averages only
        over the explanations that contain a feature, so a one-off would otherwise rank
        by a single weight).
    max_features:
        Keep at most this many ranked features per class and modality (``None``: all).
    crop, crop_fill, crop_size, crop_margin:
        How a superpixel becomes an image (see :func:`~prodlens.aggregate.crops.superpixel_crop`);
        ``crop_size`` should be the image model's input size.
    min_cluster_size, min_samples, metric, cluster_selection_epsilon, cluster_selection_method, allow_single_cluster:
        ``sklearn.cluster.HDBSCAN`` parameters, per class. ``min_samples`` defaults to 2
        (sklearn: ``None`` = ``min_cluster_size``): with 10-100 points per class in a
        1280-d embedding, ``min_samples=3`` left 4 of 7 classes of the bundled sample
        without any cluster, 2 left 1-3 (see ``docs/global.md``).
    normalize_embeddings:
        L2-normalise embeddings before clustering (Euclidean distance then ranks like cosine).
    word_threshold, word_scorer, word_linkage, word_case, min_word_length:
        Word grouping (:class:`~prodlens.aggregate.text.WordGrouper`, :func:`~prodlens.aggregate.text.normalize_word`).
    batch_size:
        Crops per ``embed_fn`` call.
    progress:
        Show progress bars.

    >>> from prodlens.data.types import OcrToken
    >>> toks = (OcrToken("OATLY", (0, 0, 9, 9)), OcrToken("1L", (0, 0, 9, 9)))
    >>> ex = [Explanation(f"s{i}", 0, "Oatly", np.array([0.1, 0.5, 0.2]), 0.0, 0.9, 0.9,
    ...                   np.zeros((4, 4), int), toks, 1) for i in range(3)]
    >>> g = GlobalExplainer(modalities=("text",), progress=False).fit(ex).global_
    >>> [(f.text, f.support, round(f.importance, 4)) for f in g["Oatly"].text]
    [('OATLY', 3, 0.3125), ('1L', 3, 0.05)]
    """

    def __init__(
        self,
        embed_fn: EmbedFn | None = None,
        *,
        modalities: Sequence[str] = MODALITIES,
        top_k_local: int = 3,
        normalization: str = "normlime",
        normalize_over: str = "all",
        min_support: int = 2,
        max_features: int | None = 10,
        crop: str = "masked",
        crop_fill: tuple[int, int, int] = NEUTRAL_FILL,
        crop_size: int | None = 224,
        crop_margin: float = 0.0,
        min_cluster_size: int = 3,
        min_samples: int | None = 2,
        metric: str = "euclidean",
        cluster_selection_epsilon: float = 0.0,
        cluster_selection_method: str = "eom",
        allow_single_cluster: bool = False,
        normalize_embeddings: bool = True,
        word_threshold: float = 0.75,
        word_scorer: str = "levenshtein",
        word_linkage: str = "leader",
        word_case: str = "upper",
        min_word_length: int = 2,
        batch_size: int = 32,
        progress: bool = True,
    ) -> None:
        self.embed_fn = embed_fn
        self.modalities = modalities
        self.top_k_local = top_k_local
        self.normalization = normalization
        self.normalize_over = normalize_over
        self.min_support = min_support
        self.max_features = max_features
        self.crop = crop
        self.crop_fill = crop_fill
        self.crop_size = crop_size
        self.crop_margin = crop_margin
        self.min_cluster_size = min_cluster_size
        self.min_samples = min_samples
        self.metric = metric
        self.cluster_selection_epsilon = cluster_selection_epsilon
        self.cluster_selection_method = cluster_selection_method
        self.allow_single_cluster = allow_single_cluster
        self.normalize_embeddings = normalize_embeddings
        self.word_threshold = word_threshold
        self.word_scorer = word_scorer
        self.word_linkage = word_linkage
        self.word_case = word_case
        self.min_word_length = min_word_length
        self.batch_size = batch_size
        self.progress = progress

    # -- settings ---------------------------------------------------------------------
    def _validate(self) -> tuple[str, ...]:
        mods = (self.modalities,) if isinstance(self.modalities, str) else tuple(self.modalities)
        if not mods:
            raise ValueError(f"modalities must name at least one of {MODALITIES}; got {self.modalities!r}")
        for m in mods:
            check_choice("modalities", m, MODALITIES)
        if "image" in mods and not callable(self.embed_fn):
            raise ValueError(
                "embed_fn is required for image global explanations: pass the trained classifier's "
                "encode_images (or any crops -> (n, d) array function), or use modalities=('text',)"
            )
        check_int("top_k_local", self.top_k_local, 1)
        check_choice("normalization", self.normalization, NORMALIZATIONS)
        check_choice("normalize_over", self.normalize_over, NORMALIZE_OVER)
        check_int("min_support", self.min_support, 1)
        if self.max_features is not None:
            check_int("max_features", self.max_features, 1, "or None to keep every feature")
        check_choice("crop", self.crop, CROP_MODES)
        check_colour("crop_fill", self.crop_fill)
        if self.crop_size is not None:
            check_int("crop_size", self.crop_size, 1, "use the image model's input size, or None")
        check_float("crop_margin", self.crop_margin, 0.0)
        check_int("min_cluster_size", self.min_cluster_size, 2, "HDBSCAN needs clusters of at least 2 points")
        if self.min_samples is not None:
            check_int("min_samples", self.min_samples, 1, "or None to use min_cluster_size")
        if not isinstance(self.metric, str):
            raise ValueError(f"metric must be a metric name accepted by sklearn.cluster.HDBSCAN; got {self.metric!r}")
        check_float("cluster_selection_epsilon", self.cluster_selection_epsilon, 0.0)
        check_choice("cluster_selection_method", self.cluster_selection_method, SELECTION_METHODS)
        check_float("word_threshold", self.word_threshold, 0.0, 1.0, "it is a similarity ratio, e.g. 0.75")
        check_choice("word_scorer", self.word_scorer, SCORERS)
        check_choice("word_linkage", self.word_linkage, LINKAGES)
        check_choice("word_case", self.word_case, CASES)
        check_int("min_word_length", self.min_word_length, 1)
        check_int("batch_size", self.batch_size, 1)
        return mods

    def get_config(self) -> dict[str, Any]:
        """The JSON-able settings (stored in ``global_.config``; ``embed_fn`` by name)."""
        fn = self.embed_fn
        name = None if fn is None else getattr(fn, "__qualname__", None) or type(fn).__name__
        return {
            "embed_fn": name,
            "modalities": list((self.modalities,) if isinstance(self.modalities, str) else self.modalities),
            "top_k_local": self.top_k_local,
            "normalization": self.normalization,
            "normalize_over": self.normalize_over,
            "min_support": self.min_support,
            "max_features": self.max_features,
            "crop": self.crop,
            "crop_fill": list(check_colour("crop_fill", self.crop_fill)),
            "crop_size": self.crop_size,
            "crop_margin": self.crop_margin,
            "min_cluster_size": self.min_cluster_size,
            "min_samples": self.min_samples,
            "metric": self.metric,
            "cluster_selection_epsilon": self.cluster_selection_epsilon,
            "cluster_selection_method": self.cluster_selection_method,
            "allow_single_cluster": self.allow_single_cluster,
            "normalize_embeddings": self.normalize_embeddings,
            "word_threshold": self.word_threshold,
            "word_scorer": self.word_scorer,
            "word_linkage": self.word_linkage,
            "word_case": self.word_case,
            "min_word_length": self.min_word_length,
        }

    # -- fitting ----------------------------------------------------------------------
    def fit(
        self,
        explanations: Sequence[Explanation],
        samples: Iterable[ProductSample] | Mapping[str, ProductSample] | None = None,
        images: Mapping[str, np.ndarray] | None = None,
    ) -> GlobalExplainer:
        """Aggregate ``explanations`` (one per sample and explained class) per class.

        ``samples`` (or ``images``, ``{sample_id: uint8 RGB}``) supply the photos for
        the image modality; the class of an explanation is its ``target_name``. Pass
        the explanations you want aggregated, e.g. each test sample's explanation for
        its true class.
        """
        mods = self._validate()
        by_class = group_by_class(explanations)
        if not by_class:
            raise ValueError("explanations is empty: pass at least one prodlens Explanation")
        log.info("global explanations for %d classes from %d explanations", len(by_class), sum(map(len, by_class.values())))
        norms = {
            id(e): normalized_explanation_weights(e, self.normalization, self.normalize_over)
            for es in by_class.values() for e in es
        }
        self.image_occurrences_: dict[str, list[FeatureOccurrence]] = {}
        self.embeddings_: dict[str, np.ndarray] = {}
        self.image_labels_: dict[str, np.ndarray] = {}
        self.text_occurrences_: dict[str, list[FeatureOccurrence]] = {}
        image_feats: dict[str, tuple[tuple[GlobalFeature, ...], tuple[FeatureOccurrence, ...]]] = {}
        text_feats: dict[str, tuple[GlobalFeature, ...]] = {}
        source = ImageSource(index_samples(samples), images)
        if "image" in mods:
            self._embed(by_class, norms, source)
            for c in tqdm(by_class, desc="cluster superpixels", disable=not self.progress, leave=False):
                image_feats[c] = self._image_features(c)
        if "text" in mods:
            for c, es in by_class.items():
                occ = [o for e in es for o in text_occurrences(e, norms[id(e)], self.top_k_local, self.word_case, self.min_word_length)]
                self.text_occurrences_[c] = occ
                text_feats[c] = self._text_features(c, occ)
        classes = {
            c: ClassGlobalExplanation(
                c, len(es),
                image=image_feats.get(c, ((), ()))[0],
                text=text_feats.get(c, ()),
                noise=image_feats.get(c, ((), ()))[1],
            )
            for c, es in by_class.items()
        }
        splits = Counter(s.split for s in index_samples(samples).values()
                         if s.id in {e.sample_id for es in by_class.values() for e in es})
        fitted = {"fit_samples": len({e.sample_id for es in by_class.values() for e in es}), "fit_splits": sorted(splits)}
        self.global_ = GlobalExplanations(classes, {**self.get_config(), **fitted})
        self.skipped_ = tuple(source.skipped)
        return self

    def _embed(self, by_class: dict[str, list[Explanation]], norms: dict[int, np.ndarray], source: ImageSource) -> None:
        """Crop and embed every top superpixel, in batches of ``batch_size``."""
        jobs = [(c, e) for c, es in by_class.items() for e in es]
        feats: list[np.ndarray] = []
        batch: list[np.ndarray] = []
        owners: list[str] = []
        dim: list[int] = []

        def flush() -> None:
            if not batch:
                return
            out = np.asarray(self.embed_fn(list(batch)))  # type: ignore[misc]
            if out.ndim != 2 or len(out) != len(batch):
                raise ValueError(f"embed_fn must return an (n, d) array for n={len(batch)} crops; got shape {out.shape}")
            if dim and out.shape[1] != dim[0]:
                raise ValueError(f"embed_fn returned {out.shape[1]}-d embeddings after {dim[0]}-d ones")
            dim[:] = [out.shape[1]]
            feats.append(out.astype(np.float64))
            batch.clear()

        for c in by_class:
            self.image_occurrences_[c] = []
        for c, e in tqdm(jobs, desc="embed superpixels", disable=not self.progress):
            occ = image_occurrences(e, norms[id(e)], self.top_k_local)
            if not occ:
                continue
            image = source.load(e.sample_id)
            if image is None:
                continue
            for o in occ:
                batch.append(superpixel_crop(
                    image, e.segments, o.index, mode=self.crop, fill=check_colour("crop_fill", self.crop_fill),
                    size=self.crop_size, margin=self.crop_margin,
                ))
                owners.append(c)
                self.image_occurrences_[c].append(o)
                if len(batch) >= self.batch_size:
                    flush()
        flush()
        allx = np.concatenate(feats) if feats else np.zeros((0, 0))
        owners_arr = np.array(owners, dtype=object)
        for c in by_class:
            x = allx[owners_arr == c] if len(owners_arr) else np.zeros((0, allx.shape[1] if allx.ndim == 2 else 0))
            self.embeddings_[c] = l2_normalize(x) if self.normalize_embeddings and len(x) else x

    def _image_features(self, c: str) -> tuple[tuple[GlobalFeature, ...], tuple[FeatureOccurrence, ...]]:
        occ = self.image_occurrences_[c]
        x = self.embeddings_[c]
        labels = cluster_embeddings(
            x, min_cluster_size=self.min_cluster_size, min_samples=self.min_samples, metric=self.metric,
            cluster_selection_epsilon=self.cluster_selection_epsilon,
            cluster_selection_method=self.cluster_selection_method,
            allow_single_cluster=self.allow_single_cluster,
        ) if len(occ) else np.zeros(0, np.int64)
        self.image_labels_[c] = labels
        scores = normlime((o.sample_id, int(lab), o.normalized_weight) for o, lab in zip(occ, labels) if lab >= 0)
        feats = []
        for lab, sc in scores.items():
            members = np.flatnonzero(labels == lab)
            rep = int(members[medoid(x[members], self.metric)])
            centre = x[members].mean(0)
            feats.append(GlobalFeature(
                c, "image", f"image:{lab}", -1, sc.importance, sc.support, sc.occurrences,
                occ[rep], tuple(occ[i] for i in members),
                centroid=tuple(centre.tolist()), radius=float(np.linalg.norm(x[members] - centre, axis=1).max()),
            ))
        noise = tuple(o for o, lab in zip(occ, labels) if lab < 0)
        log.info("class %r: %d superpixels -> %d clusters, %d noise", c, len(occ), len(feats), len(noise))
        return self._rank(feats), noise

    def _text_features(self, c: str, occ: list[FeatureOccurrence]) -> tuple[GlobalFeature, ...]:
        if not occ:
            return ()
        grouper = WordGrouper(self.word_threshold, self.word_scorer, self.word_linkage).fit([o.text for o in occ])  # type: ignore[misc]
        scores = normlime((o.sample_id, int(g), o.normalized_weight) for o, g in zip(occ, grouper.labels_))
        feats = []
        for gi, group in enumerate(grouper.groups_):
            members = [o for o, g in zip(occ, grouper.labels_) if g == gi]
            rep = next(o for o in members if o.text == group.text)
            sc = scores[gi]
            feats.append(GlobalFeature(
                c, "text", f"text:{group.text}", -1, sc.importance, sc.support, sc.occurrences,
                rep, tuple(members), group.text, dict(group.variants),
            ))
        log.info("class %r: %d words -> %d groups", c, len(occ), len(feats))
        return self._rank(feats)

    def _rank(self, feats: list[GlobalFeature]) -> tuple[GlobalFeature, ...]:
        kept = [f for f in feats if f.support >= self.min_support]
        kept.sort(key=lambda f: (-f.importance, -f.support, f.id))
        if self.max_features is not None:
            kept = kept[: self.max_features]
        return tuple(replace(f, rank=r) for r, f in enumerate(kept))


def global_explanations(
    explanations: Sequence[Explanation],
    samples: Iterable[ProductSample] | Mapping[str, ProductSample] | None = None,
    embed_fn: EmbedFn | None = None,
    *,
    images: Mapping[str, np.ndarray] | None = None,
    **params: Any,
) -> GlobalExplanations:
    """One-call form: ``GlobalExplainer(embed_fn, **params).fit(explanations, samples, images).global_``."""
    return GlobalExplainer(embed_fn, **params).fit(explanations, samples, images).global_
