"""Matching on datasets: cached backbone features, galleries, fitting and evaluation.

These are the one-call library functions behind ``prodlens match``, ``prodlens
match-fit`` and ``prodlens match-explain``:

* :func:`product_features`: frozen-backbone features of samples, cached on disk by
  image content (reuses :mod:`prodlens.train.features`, so features computed for
  training are reused here and vice versa);
* :func:`catalogue_samples`: the class list's iconic catalogue images as a gallery;
* :func:`fit_matching`: fit a :class:`~prodlens.match.embedding.MatchEmbedding` on a split;
* :func:`evaluate_matching`: top-k retrieval accuracy of queries in a gallery;
* :func:`nearest_matches`: the best gallery matches of some queries.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from prodlens.data.images import image_opens
from prodlens.data.manifest import Dataset
from prodlens.data.types import SPLITS, ClassList, ProductSample
from prodlens.errors import Skip
from prodlens.match.backbones import load_backbones
from prodlens.match.base import check_kind, modalities
from prodlens.match.embedding import MatchEmbedding
from prodlens.match.errors import MatchError
from prodlens.match.index import Index, make_index
from prodlens.match.retrieval import RetrievalResult, evaluate_retrieval

log = logging.getLogger(__name__)

#: Environment variable naming prodlens' cache root (as for OCR); features go in ``features/``.
CACHE_ENV = "PRODLENS_CACHE"
GALLERIES = ("iconic",) + SPLITS


def default_feature_cache() -> Path:
    """``$PRODLENS_CACHE/features`` when the variable is set, else ``~/.cache/prodlens/features``.

    >>> os.environ["PRODLENS_CACHE"] = "/tmp/pl-cache"
    >>> default_feature_cache().as_posix()
    '/tmp/pl-cache/features'
    >>> del os.environ["PRODLENS_CACHE"]
    """
    root = os.environ.get(CACHE_ENV)
    base = Path(root).expanduser() if root else Path.home() / ".cache" / "prodlens"
    return base / "features"


@dataclass(frozen=True)
class ProductFeatures:
    """Backbone features of ``n`` products: ``image`` is ``(n, views, Di)``, ``text``
    ``(n, views, Dt)`` (either ``None`` when not computed); view 0 is the plain photo.
    ``has_text`` ``(n, views)`` marks the views whose OCR text is not empty (``None``:
    all of them).

    >>> pf = ProductFeatures(("a", "b"), ("x", "y"), np.zeros((2, 1, 4), np.float32), None)
    >>> len(pf), pf.subset([1]).ids, pf.plain_image.shape
    (2, ('b',), (2, 4))
    """

    ids: tuple[str, ...]
    labels: tuple[str | None, ...]
    image: np.ndarray | None
    text: np.ndarray | None
    has_text: np.ndarray | None = None

    def __post_init__(self) -> None:
        n = len(self.ids)
        for name in ("image", "text"):
            a = getattr(self, name)
            if a is not None and (a.ndim != 3 or len(a) != n):
                raise ValueError(f"ProductFeatures.{name} must be (n={n}, views, dim), got shape {a.shape}")
        if self.has_text is not None and (self.has_text.ndim != 2 or len(self.has_text) != n):
            raise ValueError(f"ProductFeatures.has_text must be (n={n}, views), got shape {self.has_text.shape}")

    def __len__(self) -> int:
        return len(self.ids)

    def subset(self, idx: Sequence[int] | np.ndarray) -> ProductFeatures:
        idx = np.asarray(idx)
        if idx.dtype == bool:
            idx = np.flatnonzero(idx)
        return ProductFeatures(
            tuple(self.ids[i] for i in idx), tuple(self.labels[i] for i in idx),
            None if self.image is None else self.image[idx], None if self.text is None else self.text[idx],
            None if self.has_text is None else self.has_text[idx],
        )

    @property
    def plain_image(self) -> np.ndarray | None:
        return None if self.image is None else self.image[:, 0]

    @property
    def plain_text(self) -> np.ndarray | None:
        return None if self.text is None else self.text[:, 0]

    @property
    def plain_has_text(self) -> np.ndarray | None:
        return None if self.has_text is None else self.has_text[:, 0]


def product_features(
    samples: Sequence[ProductSample],
    *,
    image_backbone: str | None = "efficientnet_lite0",
    text_backbone: str | None = "minilm",
    views: Sequence[int] = (0,),
    cache_dir: str | Path | None = None,
    batch_size: int = 8,
    progress: bool = True,
) -> ProductFeatures:
    """Frozen-backbone features of ``samples``, from the on-disk cache where possible.

    ``views``: 0 is the plain photo, ``-1`` its mirror image, positive numbers are the
    training augmentations of :mod:`prodlens.train.augment` (text views drop words
    at random, as in training). ``None`` for a backbone skips that modality.
    ``cache_dir`` defaults to :func:`default_feature_cache`.

    >>> from prodlens.data.sample import load_sample  # doctest: +SKIP
    >>> product_features(load_sample().samples[:4], text_backbone=None).image.shape  # doctest: +SKIP
    (4, 1, 1280)
    """
    from prodlens.train.augment import AugmentConfig
    from prodlens.train.features import FeatureCache, image_features, text_features, text_view

    if not samples:
        raise MatchError("no samples to compute features for (an empty split or gallery?)")
    if image_backbone is None and text_backbone is None:
        raise ValueError("give at least one of image_backbone and text_backbone")
    views = tuple(int(v) for v in views)
    if not views:
        raise ValueError("views must name at least one view (0 = the plain photo)")
    cache = FeatureCache(Path(cache_dir) if cache_dir is not None else default_feature_cache())
    ib, tb = load_backbones(image_backbone, text_backbone)
    img = txt = has_text = None
    if ib is not None:
        img = image_features(ib, samples, views, cache=cache, batch_size=batch_size, progress=progress)
    if tb is not None:
        aug = AugmentConfig()
        texts = [text_view(s, v, aug, 0) for s in samples for v in views]
        txt = text_features(tb, texts, cache=cache, progress=progress).reshape(len(samples), len(views), -1)
        has_text = np.array([bool(t.strip()) for t in texts], dtype=bool).reshape(len(samples), len(views))
    return ProductFeatures(tuple(s.id for s in samples), tuple(s.label for s in samples), img, txt, has_text)


def catalogue_samples(classes: ClassList) -> list[ProductSample]:
    """One sample per class with an iconic catalogue image (id ``"iconic/<class>"``).

    >>> from prodlens.data.sample import load_sample
    >>> gallery = catalogue_samples(load_sample().classes)
    >>> len(gallery), gallery[0].id
    (10, 'iconic/God-Morgon-Apple-Juice')
    """
    out = [
        ProductSample(f"iconic/{c.name}", c.iconic_image, c.name, "train", meta={"iconic": True})
        for c in classes if c.iconic_image is not None
    ]
    if not out:
        raise MatchError("the class list has no iconic catalogue images; use a split of photos as the gallery (--gallery train)")
    return out


def _needs_text(kind: str) -> bool:
    return "text" in modalities(kind)


def _with_ocr(samples: list[ProductSample], classes: ClassList, ocr_cache_dir: str | Path | None, progress: bool) -> list[ProductSample]:
    """Samples with OCR tokens: those without any are read with the default OCR engine (cached)."""
    missing = [s for s in samples if s.ocr_tokens is None]
    if not missing:
        return samples
    from prodlens.ocr.runner import run_ocr

    log.info("reading text of %d images without OCR tokens", len(missing))
    done = run_ocr(Dataset(missing, classes), cache_dir=ocr_cache_dir, progress=progress).dataset.by_id()
    return [done.get(s.id, s) for s in samples]


def select_samples(dataset: Dataset, which: str, *, kind: str = "fused", ocr_cache_dir: str | Path | None = None,
                   progress: bool = True, skipped: list[Skip] | None = None) -> list[ProductSample]:
    """The samples of a split (``"train"``, ``"val"``, ``"test"``) or the ``"iconic"`` catalogue.

    Catalogue images get OCR tokens (cached) when ``kind`` uses text; photos of a split
    without OCR tokens are used with empty text (a warning says so). When ``kind`` uses
    the image, photos that do not open are left out, logged and added to ``skipped``.
    """
    if which == "iconic":
        samples = catalogue_samples(dataset.classes)
    elif which in SPLITS:
        samples = [s for s in dataset.samples if s.split == which and s.label is not None]
    else:
        raise ValueError(f"gallery/queries must be one of {GALLERIES}, got {which!r}")
    if "image" in modalities(kind):
        bad: list[Skip] = [] if skipped is None else skipped
        samples = [s for s in samples if image_opens(s.image_path, bad, str(s.image_path))]
    if which == "iconic":
        return _with_ocr(samples, dataset.classes, ocr_cache_dir, progress) if _needs_text(kind) else samples
    if not samples:
        raise MatchError(f"the dataset has no labelled {which!r} samples; choose another split")
    if _needs_text(kind):
        no_ocr = sum(s.ocr_tokens is None for s in samples)
        if no_ocr:
            log.warning("%d of %d %s samples have no OCR tokens; their text is empty (run `prodlens ocr` first)", no_ocr, len(samples), which)
    return samples


def fit_matching(
    dataset: Dataset,
    embedding: MatchEmbedding | None = None,
    *,
    split: str = "train",
    views: Sequence[int] = (0,),
    cache_dir: str | Path | None = None,
    progress: bool = True,
    skipped: list[Skip] | None = None,
) -> MatchEmbedding:
    """Fit ``embedding`` (default ``MatchEmbedding()``: normalised softmax, fused) on a split.

    Photos that do not open are left out (see :func:`select_samples`) and added to ``skipped``.

    >>> from prodlens.data.sample import load_sample  # doctest: +SKIP
    >>> emb = fit_matching(load_sample(), MatchEmbedding(kind="image"))  # doctest: +SKIP
    """
    embedding = embedding if embedding is not None else MatchEmbedding()
    samples = select_samples(dataset, split, kind=embedding.kind, progress=progress, skipped=skipped)
    mods = modalities(embedding.kind)
    pf = product_features(
        samples, image_backbone=embedding.image_backbone if "image" in mods else None,
        text_backbone=embedding.text_backbone if "text" in mods else None,
        views=views, cache_dir=cache_dir, progress=progress,
    )
    return embedding.fit(pf.image, pf.text, pf.labels, has_text=pf.has_text)


def embed_features(embedding: MatchEmbedding, features: ProductFeatures, kind: str | None = None,
                   text_weight: float | None = None) -> np.ndarray:
    """Embeddings of the plain view of ``features`` (compare them by inner product)."""
    return embedding.transform(features.plain_image, features.plain_text, kind=kind, text_weight=text_weight,
                               has_text=features.plain_has_text)


def zero_shot(kind: str = "fused", text_weight: float = 0.2, image_backbone: str = "efficientnet_lite0",
              text_backbone: str = "minilm") -> MatchEmbedding:
    """The zero-shot embedding (backbone features, L2-normalised), already fitted.

    Builds the backbones once (memoised) to learn their feature sizes.

    >>> zero_shot("text").transform(None, np.ones((1, 384))).shape  # doctest: +SKIP
    (1, 384)
    """
    mods = modalities(kind)
    ib, tb = load_backbones(image_backbone if "image" in mods else None, text_backbone if "text" in mods else None)
    emb = MatchEmbedding("zero_shot", kind=kind, text_weight=text_weight, image_backbone=image_backbone, text_backbone=text_backbone)
    return emb.fit(None if ib is None else np.zeros((1, ib.out_dim)), None if tb is None else np.zeros((1, tb.out_dim)), ["-"])


def evaluate_matching(
    dataset: Dataset,
    embedding: MatchEmbedding | None = None,
    *,
    queries: str = "val",
    gallery: str = "train",
    kind: str | None = None,
    text_weight: float | None = None,
    index: str | Index = "exact",
    ks: Sequence[int] = (1, 5),
    cache_dir: str | Path | None = None,
    ocr_cache_dir: str | Path | None = None,
    keep_neighbors: bool = True,
    progress: bool = True,
) -> RetrievalResult:
    """Top-k accuracy of matching the ``queries`` split against a ``gallery`` (a split or ``"iconic"``).

    ``embedding`` defaults to the zero-shot baseline; ``kind``/``text_weight``
    override the embedding's. The result's ``neighbors`` are indices into the gallery
    (its ids are in ``config["gallery_ids"]``). Photos that do not open are left out and
    listed in ``config["skipped"]`` as ``[file, reason]``.

    >>> from prodlens.data.sample import load_sample  # doctest: +SKIP
    >>> evaluate_matching(load_sample(), kind="image").top1  # doctest: +SKIP
    0.76
    """
    kind = check_kind(kind or (embedding.kind if embedding is not None else "fused"))
    if embedding is None:
        embedding = MatchEmbedding("zero_shot", kind=kind, text_weight=0.2 if text_weight is None else text_weight)
    w = embedding.text_weight if text_weight is None else text_weight
    skipped: list[Skip] = []
    q_samples = select_samples(dataset, queries, kind=kind, ocr_cache_dir=ocr_cache_dir, progress=progress, skipped=skipped)
    g_samples = select_samples(dataset, gallery, kind=kind, ocr_cache_dir=ocr_cache_dir, progress=progress, skipped=skipped)
    mods = modalities(kind)
    feat_args: dict[str, Any] = dict(
        image_backbone=embedding.image_backbone if "image" in mods else None,
        text_backbone=embedding.text_backbone if "text" in mods else None,
        cache_dir=cache_dir, progress=progress,
    )
    qf = product_features(q_samples, **feat_args)
    gf = product_features(g_samples, **feat_args)
    if embedding.method == "zero_shot" and not hasattr(embedding, "modalities_"):
        embedding.fit(gf.plain_image, gf.plain_text, gf.labels)
    q = embed_features(embedding, qf, kind, w)
    g = embed_features(embedding, gf, kind, w)
    config = {
        "queries": queries, "gallery": gallery, "kind": kind, "text_weight": w if kind == "fused" else None,
        "method": embedding.method, "index": index if isinstance(index, str) else type(index).__name__,
        "image_backbone": feat_args["image_backbone"], "text_backbone": feat_args["text_backbone"],
        "gallery_ids": list(gf.ids), "skipped": [list(x) for x in skipped],
    }
    return evaluate_retrieval(q, qf.labels, g, gf.labels, ks=ks, index=index if not isinstance(index, str) else make_index(index, metric="ip"),
                              query_ids=qf.ids, keep_neighbors=keep_neighbors, config=config)


@dataclass(frozen=True)
class Neighbor:
    """One gallery match of a query."""

    query_id: str
    gallery_id: str
    label: str | None
    score: float
    rank: int


def nearest_matches(
    embedder_embedding: MatchEmbedding,
    queries: Sequence[ProductSample],
    gallery: Sequence[ProductSample],
    *,
    k: int = 5,
    kind: str | None = None,
    text_weight: float | None = None,
    index: str = "exact",
    cache_dir: str | Path | None = None,
    progress: bool = True,
) -> list[list[Neighbor]]:
    """The ``k`` best gallery matches of each query, best first.

    >>> from prodlens.data.sample import load_sample  # doctest: +SKIP
    >>> ds = load_sample()  # doctest: +SKIP
    >>> nearest_matches(zero_shot("image"), ds.split("val").samples[:1], ds.split("train").samples)[0][0].label  # doctest: +SKIP
    'Alpro-Fresh-Soy-Milk'
    """
    kind = check_kind(kind or embedder_embedding.kind)
    mods = modalities(kind)
    args: dict[str, Any] = dict(
        image_backbone=embedder_embedding.image_backbone if "image" in mods else None,
        text_backbone=embedder_embedding.text_backbone if "text" in mods else None,
        cache_dir=cache_dir, progress=progress,
    )
    qf = product_features(list(queries), **args)
    gf = product_features(list(gallery), **args)
    idx = make_index(index, metric="ip").add(embed_features(embedder_embedding, gf, kind, text_weight))
    res = idx.search(embed_features(embedder_embedding, qf, kind, text_weight), min(k, len(gallery)))
    return [
        [Neighbor(qf.ids[i], gf.ids[j], gf.labels[j], float(s), r) for r, (j, s) in enumerate(zip(res.ids[i], res.scores[i]))]
        for i in range(len(qf))
    ]


def get_sample(samples: Sequence[ProductSample], sample_id: str) -> ProductSample:
    """The sample with ``sample_id``; an unknown id raises :class:`MatchError` with close ids.

    >>> from prodlens.data.sample import load_sample
    >>> get_sample(load_sample().samples, "val/Oatly-Oat-Milk_01")
    Traceback (most recent call last):
    ...
    prodlens.match.errors.MatchError: no sample 'val/Oatly-Oat-Milk_01'; did you mean 'val/Oatly-Oat-Milk_001', ...
    """
    import difflib

    for s in samples:
        if s.id == sample_id:
            return s
    close = difflib.get_close_matches(sample_id, [s.id for s in samples], n=3, cutoff=0.6)
    hint = f"; did you mean {', '.join(repr(c) for c in close)}?" if close else ""
    raise MatchError(f"no sample {sample_id!r}{hint} (ids look like 'split/stem', or 'iconic/<class>' for catalogue images)")


@dataclass(frozen=True)
class ExplainedMatch:
    """A query, the gallery item it was explained against, and the explanation."""

    query: ProductSample
    match: ProductSample
    explanation: Any  # MatchExplanation (imported lazily)
    neighbors: tuple[Neighbor, ...] = ()


def explain_dataset_match(
    dataset: Dataset,
    query_id: str,
    *,
    match_id: str | None = None,
    gallery: str = "train",
    embedding: MatchEmbedding | None = None,
    kind: str | None = None,
    text_weight: float | None = None,
    cache_dir: str | Path | None = None,
    ocr_cache_dir: str | Path | None = None,
    progress: bool = True,
    **explainer_params: Any,
) -> ExplainedMatch:
    """Explain why ``query_id`` matches ``match_id`` (default: its best match in ``gallery``).

    ``embedding`` defaults to the zero-shot one; ``explainer_params`` configure the
    :class:`~prodlens.match.explainer.MatchExplainer` (``method``, ``n_masks``, ...).

    >>> from prodlens.data.sample import load_sample  # doctest: +SKIP
    >>> r = explain_dataset_match(load_sample(), "val/Oatly-Oat-Milk_001", kind="image", n_masks=200)  # doctest: +SKIP
    >>> r.explanation.similarity  # doctest: +SKIP
    0.83
    """
    from prodlens.match.embedder import BackboneEmbedder
    from prodlens.match.explainer import MatchExplainer

    kind = check_kind(kind or (embedding.kind if embedding is not None else "fused"))
    query = get_sample(dataset.samples + (catalogue_samples(dataset.classes) if query_id.startswith("iconic/") else []), query_id)
    if match_id is not None:
        pool = dataset.samples + (catalogue_samples(dataset.classes) if match_id.startswith("iconic/") else [])
        match = get_sample(pool, match_id)
    if embedding is None:
        embedding = zero_shot(kind, 0.2 if text_weight is None else text_weight)
    neighbors: tuple[Neighbor, ...] = ()
    if match_id is None:
        g_samples = [s for s in select_samples(dataset, gallery, kind=kind, ocr_cache_dir=ocr_cache_dir, progress=progress) if s.id != query.id]
        neighbors = tuple(nearest_matches(embedding, [query], g_samples, k=5, kind=kind, text_weight=text_weight,
                                          cache_dir=cache_dir, progress=progress)[0])
        match = get_sample(g_samples, neighbors[0].gallery_id)
    else:
        if match.ocr_tokens is None and "text" in modalities(kind):
            match = _with_ocr([match], dataset.classes, ocr_cache_dir, progress)[0]
    embedder = BackboneEmbedder(embedding, kind=kind, text_weight=text_weight)
    explanation = MatchExplainer(progress=progress, **explainer_params).explain(embedder, query, match)
    return ExplainedMatch(query, match, explanation, neighbors)
