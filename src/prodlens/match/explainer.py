"""Explain why two products match: saliency, shared-word attributes and faithfulness.

:class:`MatchExplainer` composes the parts of this package for one (query, match) pair
and an :class:`~prodlens.match.base.Embedder`:

1. the similarity ``s = e(query) . e(match)`` of their embeddings (cosine, or the
   inner product for embedders whose vectors are ``normalized`` already);
2. saliency maps on both photos (RISE or superpixel LIME): the query's for ``s`` with the
   match embedding held fixed, the match's with the query embedding held fixed;
3. the OCR words both products show, ranked by how much ``s`` drops when the word is
   removed from both products (text removed and boxes masked, on both sides;
   :mod:`~prodlens.match.attributes`);
4. deletion and insertion curves of the region order (each photo) and of the word order
   vs random orders (:mod:`~prodlens.match.deletion`).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from typing import Any

import numpy as np

from prodlens.data.images import load_image
from prodlens.data.types import OcrToken, ProductSample
from prodlens.explain.interpretable import Fill, _check_fill
from prodlens.match.attributes import RANK_BY, word_attributions, word_deletion_curve
from prodlens.match.base import Embedder
from prodlens.match.deletion import image_deletion_curve
from prodlens.match.explanation import MatchExplanation
from prodlens.match.index import l2_normalize
from prodlens.match.saliency import SaliencyMethod, make_saliency

log = logging.getLogger(__name__)


def _embed(embedder: Embedder, images: Sequence[np.ndarray], token_lists: Sequence[Sequence[OcrToken]]) -> np.ndarray:
    """Embeddings to compare by inner product: as given when the embedder says they are
    ``normalized``, else L2-normalised (cosine similarity)."""
    e = np.asarray(embedder.embed(list(images), [list(t) for t in token_lists]), dtype=np.float32)
    if e.ndim != 2 or len(e) != len(images):
        raise ValueError(f"embedder.embed returned shape {e.shape} for {len(images)} inputs; it must return (n, d)")
    return e if getattr(embedder, "normalized", False) else l2_normalize(e)


def _resolve(sample: ProductSample | None, image: np.ndarray | None, tokens: Sequence[OcrToken] | None,
             sid: str | None, role: str) -> tuple[np.ndarray, tuple[OcrToken, ...], str]:
    if sample is None and image is None:
        raise ValueError(f"give the {role} as a ProductSample or as {role}_image (with {role}_tokens)")
    if image is None:
        image = load_image(sample.image_path)  # type: ignore[union-attr]
    if tokens is None:
        tokens = sample.tokens if sample is not None else ()
    return image, tuple(tokens), sid or (sample.id if sample is not None else role)


class MatchExplainer:
    """Explains the similarity of a query product to its match.

    ``__init__`` only stores settings; :meth:`explain` does the work.

    Parameters
    ----------
    method:
        ``"rise"`` (default), ``"lime"`` or any
        :class:`~prodlens.match.saliency.SaliencyMethod`.
    n_masks:
        RISE masks, or LIME perturbation samples.
    grid, p:
        RISE: cells per side and the probability a cell is kept.
    n_segments:
        LIME: target number of SLIC superpixels.
    fill:
        What shows through masked pixels: ``"blur"`` (default), ``"mean"``,
        ``"black"`` or an ``(R, G, B)`` colour.
    resolution:
        Shorter side of the perturbed images: ``"model"`` (the embedder's
        ``input_size`` when it has one, else 256), ``None`` (the photo's) or an int.
    match_saliency:
        Also compute a saliency map on the match photo (default; ``False`` halves the cost).
    words, min_ratio, min_length, rank_by:
        Shared-word attributes: whether to compute them, the fuzzy-match threshold,
        the shortest word considered and the ranking key (``"drop"``,
        ``"text_drop"``, ``"image_drop"`` or ``"saliency"``).
    deletion, deletion_grid, deletion_steps, n_random:
        Faithfulness curves: whether to compute them, cells per side removed, points
        on the image curve and random orders averaged.
    insertion:
        Also the insertion curves (regions of each photo, words), and the deletion curve
        of the match photo: ``explanation.curves``.
    batch_size:
        Images per ``embed`` call.
    seed:
        The one seed of the run.

    Example
    -------
    >>> class Toy:  # similarity depends on the top-left quarter and the word OATLY
    ...     kind = "toy"
    ...     def embed(self, images, token_lists):
    ...         return np.array([[im[:8, :8].mean() / 255, float(any(t.text == "OATLY" for t in ts)), 0.2]
    ...                          for im, ts in zip(images, token_lists)])
    >>> img = np.zeros((16, 16, 3), np.uint8); img[:8, :8] = 255
    >>> toks = (OcrToken("OATLY", (8, 8, 16, 12)),)
    >>> ex = MatchExplainer(n_masks=100, grid=4, fill="black", resolution=None, progress=False)
    >>> e = ex.explain(Toy(), query_image=img, query_tokens=toks, match_image=img, match_tokens=toks)
    >>> round(e.similarity, 3), e.top_words(), bool(e.saliency[:8, :8].mean() > e.saliency[8:, 8:].mean())
    (1.0, ['oatly'], True)
    """

    def __init__(
        self,
        method: str | SaliencyMethod = "rise",
        *,
        n_masks: int = 1000,
        grid: int = 8,
        p: float = 0.5,
        n_segments: int = 50,
        fill: Fill = "blur",
        resolution: str | int | None = "model",
        match_saliency: bool = True,
        words: bool = True,
        min_ratio: float = 0.75,
        min_length: int = 3,
        rank_by: str = "drop",
        deletion: bool = True,
        deletion_grid: int = 8,
        deletion_steps: int = 16,
        n_random: int = 3,
        insertion: bool = False,
        batch_size: int = 16,
        seed: int = 0,
        progress: bool | None = None,
    ) -> None:
        self.method = method
        self.n_masks = n_masks
        self.grid = grid
        self.p = p
        self.n_segments = n_segments
        self.fill = fill
        self.resolution = resolution
        self.match_saliency = match_saliency
        self.words = words
        self.min_ratio = min_ratio
        self.min_length = min_length
        self.rank_by = rank_by
        self.deletion = deletion
        self.deletion_grid = deletion_grid
        self.deletion_steps = deletion_steps
        self.n_random = n_random
        self.insertion = insertion
        self.batch_size = batch_size
        self.seed = seed
        self.progress = progress

    def _resolution(self, embedder: object) -> int | None:
        r = self.resolution
        if r == "model":
            size = getattr(embedder, "input_size", None)
            return int(size) if size else 256
        if r is None or (isinstance(r, (int, np.integer)) and r > 0):
            return None if r is None else int(r)
        raise ValueError(f"resolution must be 'model', None or a positive int, got {r!r}")

    def _saliency_method(self, resolution: int | None) -> SaliencyMethod:
        common: dict[str, Any] = dict(fill=self.fill, resolution=resolution, batch_size=self.batch_size, seed=self.seed, progress=self.progress)
        if self.method == "rise":
            return make_saliency("rise", n_masks=self.n_masks, grid=self.grid, p=self.p, **common)
        if self.method == "lime":
            return make_saliency("lime", n_samples=self.n_masks, n_segments=self.n_segments, **common)
        return make_saliency(self.method)

    def _validate(self) -> None:
        _check_fill(self.fill)
        if self.rank_by not in RANK_BY:
            raise ValueError(f"rank_by must be one of {RANK_BY}, got {self.rank_by!r}")
        if self.rank_by == "saliency" and self.method is None:
            raise ValueError("rank_by='saliency' needs a saliency method")
        if not isinstance(self.batch_size, (int, np.integer)) or self.batch_size < 1:
            raise ValueError(f"batch_size must be an int >= 1, got {self.batch_size!r}")

    def explain(
        self,
        embedder: Embedder,
        query: ProductSample | None = None,
        match: ProductSample | None = None,
        *,
        query_image: np.ndarray | None = None,
        query_tokens: Sequence[OcrToken] | None = None,
        match_image: np.ndarray | None = None,
        match_tokens: Sequence[OcrToken] | None = None,
        query_id: str | None = None,
        match_id: str | None = None,
    ) -> MatchExplanation:
        """Explain the similarity of ``query`` to ``match`` under ``embedder``.

        Give each product as a :class:`~prodlens.data.types.ProductSample` (its photo is
        loaded and its OCR tokens used) or as an image with tokens; explicit images and
        tokens override the sample's.
        """
        t0 = time.perf_counter()
        self._validate()
        if not callable(getattr(embedder, "embed", None)):
            raise ValueError(f"embedder must have an embed(images, token_lists) method, got {type(embedder).__name__}")
        q_img, q_toks, qid = _resolve(query, query_image, query_tokens, query_id, "query")
        m_img, m_toks, mid = _resolve(match, match_image, match_tokens, match_id, "match")
        resolution = self._resolution(embedder)
        kind = str(getattr(embedder, "kind", "custom"))
        saliency_method = self._saliency_method(resolution)

        emb = _embed(embedder, [q_img, m_img], [q_toks, m_toks])
        q_emb, m_emb = emb[0], emb[1]
        similarity = float(np.clip(q_emb.astype(np.float64) @ m_emb.astype(np.float64), -1.0, 1.0))
        log.info("explaining match %s -> %s: similarity %.4f (%s)", qid, mid, similarity, kind)

        def query_score(images: Sequence[np.ndarray]) -> np.ndarray:
            return _embed(embedder, images, [q_toks] * len(images)) @ m_emb

        def match_score(images: Sequence[np.ndarray]) -> np.ndarray:
            return _embed(embedder, images, [m_toks] * len(images)) @ q_emb

        def pair_score(q_images: Sequence[np.ndarray], q_tokens: Sequence[Sequence[OcrToken]],
                       m_images: Sequence[np.ndarray], m_tokens: Sequence[Sequence[OcrToken]]) -> np.ndarray:
            e = _embed(embedder, [*q_images, *m_images], [*q_tokens, *m_tokens])
            return np.einsum("ij,ij->i", e[: len(q_images)], e[len(q_images) :])

        uses_image = kind != "text"
        saliency = match_sal = None
        if uses_image:
            saliency = saliency_method(q_img, query_score)
            if self.match_saliency:
                match_sal = saliency_method(m_img, match_score)
        else:
            log.info("text-only embedding: no image saliency (masking pixels cannot change it)")

        words: list = []
        if self.words:
            words = word_attributions(
                q_img, q_toks, m_img, m_toks, pair_score, saliency=saliency, match_saliency=match_sal,
                min_ratio=self.min_ratio, min_length=self.min_length,
                rank_by=self.rank_by if (self.rank_by != "saliency" or saliency is not None) else "drop",
                fill=self.fill, resolution=resolution, batch_size=self.batch_size,
            )
        deletion = word_deletion = None
        curves: dict = {}
        if self.deletion:
            common = dict(n_random=self.n_random, fill=self.fill, resolution=resolution, batch_size=self.batch_size, seed=self.seed)
            image_common = dict(grid=self.deletion_grid, n_steps=self.deletion_steps, **common)
            modes = ("deletion", "insertion") if self.insertion else ("deletion",)
            for mode in modes:
                if saliency is not None:
                    curves[f"query_{mode}"] = image_deletion_curve(q_img, saliency, query_score, mode=mode, **image_common)
                if match_sal is not None and self.insertion:
                    curves[f"match_{mode}"] = image_deletion_curve(m_img, match_sal, match_score, mode=mode, **image_common)
                if words:
                    curves[f"word_{mode}"] = word_deletion_curve(q_img, q_toks, m_img, m_toks, words, pair_score, mode=mode, **common)
            deletion, word_deletion = curves.pop("query_deletion", None), curves.pop("word_deletion", None)
        config = {
            "method": getattr(saliency_method, "name", type(saliency_method).__name__),
            "saliency": repr(saliency_method),
            "fill": list(self.fill) if isinstance(self.fill, tuple) else self.fill,
            "resolution": resolution,
            "min_ratio": self.min_ratio,
            "min_length": self.min_length,
            "rank_by": self.rank_by,
            "deletion_grid": self.deletion_grid,
            "deletion_steps": self.deletion_steps,
            "n_random": self.n_random,
            "words_removed_from": "both",
        }
        seconds = time.perf_counter() - t0
        out = MatchExplanation(
            query_id=qid, match_id=mid, similarity=similarity, kind=kind,
            method=config["method"], saliency=saliency, match_saliency=match_sal, words=tuple(words),
            deletion=deletion, word_deletion=word_deletion, query_tokens=q_toks, match_tokens=m_toks, curves=curves,
            seed=int(self.seed), seconds=seconds, config=config,
        )
        log.info("%s (%.1fs)", out.summary(), seconds)
        return out


def explain_match(embedder: Embedder, query: ProductSample | None = None, match: ProductSample | None = None, **params: Any) -> MatchExplanation:
    """One-call convenience: ``MatchExplainer(**params).explain(embedder, query, match)``.

    Keyword arguments of :meth:`MatchExplainer.explain` (``query_image``, ...) go
    there; the rest configure the explainer.

    >>> class Const:
    ...     def embed(self, images, token_lists):
    ...         return np.ones((len(images), 2))
    >>> img = np.zeros((8, 8, 3), np.uint8)
    >>> round(explain_match(Const(), query_image=img, match_image=img, n_masks=4, grid=2, deletion=False, progress=False).similarity, 4)
    1.0
    """
    call_keys = {"query_image", "query_tokens", "match_image", "match_tokens", "query_id", "match_id"}
    call = {k: params.pop(k) for k in list(params) if k in call_keys}
    return MatchExplainer(**params).explain(embedder, query, match, **call)
