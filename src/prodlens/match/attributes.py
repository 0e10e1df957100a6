"""Attribute explanations of a match, with OCR words as the attributes (after SANE).

SANE (Plummer et al., ECCV 2020) explains an image-similarity score by the attributes
the two images share. For packaged products the words printed on both packages are
natural attributes: for every word the query and the match share (see
:func:`~prodlens.match.words.shared_words`) we measure, by a counterfactual on *both*
products, how much their similarity drops when the word is removed from both texts
(``text_drop``), when its boxes are masked in both photos (``image_drop``), and both
at once (``drop``, the attribute's effect: the explanation ranks words by it), plus the
mean saliency inside its boxes when saliency maps are given.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from prodlens.data.types import OcrToken
from prodlens.explain.interpretable import Fill
from prodlens.match._masking import blend, box_mask, check_rgb, fill_for, mean_in_box, to_work
from prodlens.match.deletion import DeletionCurve, deletion_curve
from prodlens.match.words import WordMatch, shared_words

#: ``(query_images, query_token_lists, match_images, match_token_lists) -> (n,)``: the
#: similarity of each perturbed query to the match perturbed the same way (row by row).
PairScoreFn = Callable[[Sequence[np.ndarray], Sequence[Sequence[OcrToken]], Sequence[np.ndarray], Sequence[Sequence[OcrToken]]], np.ndarray]

RANK_BY = ("drop", "text_drop", "image_drop", "saliency")


@dataclass(frozen=True)
class WordAttribution:
    """How much one shared word contributes to the similarity of a query and its match."""

    match: WordMatch
    text_drop: float
    image_drop: float
    drop: float
    saliency: float | None = None
    match_saliency: float | None = None

    @property
    def word(self) -> str:
        return self.match.word

    def to_dict(self) -> dict:
        return {
            **self.match.to_dict(),
            "text_drop": float(self.text_drop),
            "image_drop": float(self.image_drop),
            "drop": float(self.drop),
            "saliency": self.saliency,
            "match_saliency": self.match_saliency,
        }

    @classmethod
    def from_dict(cls, d: dict) -> WordAttribution:
        return cls(
            WordMatch.from_dict(d), float(d["text_drop"]), float(d["image_drop"]), float(d["drop"]),
            d.get("saliency"), d.get("match_saliency"),
        )


def _box_saliency(values: np.ndarray | None, tokens: Sequence[OcrToken]) -> float | None:
    vals = [v for v in (mean_in_box(values, t.box) for t in tokens) if v is not None]
    return float(np.mean(vals)) if vals else None


class _WordPerturber:
    """Builds one product's inputs with any subset of the shared words removed (text and box)."""

    def __init__(self, image: np.ndarray, tokens: Sequence[OcrToken], groups: Sequence[Sequence[OcrToken]],
                 fill: Fill, resolution: int | None) -> None:
        self.work = to_work(image, resolution)
        self.fill = fill_for(self.work, fill)
        self.tokens = tuple(tokens)
        self.masks = [box_mask([t.box for t in g], image.shape, self.work.shape) for g in groups]
        self.word_tokens = [set(id(t) for t in g) for g in groups]

    def inputs(self, remove_text: np.ndarray, remove_box: np.ndarray) -> tuple[list[np.ndarray], list[list[OcrToken]]]:
        """One input per row of the two ``(n, n_words)`` boolean removal matrices."""
        images, token_lists = [], []
        for rt, rb in zip(remove_text, remove_box):
            masked = np.zeros(self.work.shape[:2], dtype=bool)
            for j in np.flatnonzero(rb):
                masked |= self.masks[j]
            images.append(blend(self.work, self.fill, ~masked[None])[0] if masked.any() else self.work)
            gone = set().union(*(self.word_tokens[j] for j in np.flatnonzero(rt)))
            token_lists.append([t for t in self.tokens if id(t) not in gone])
        return images, token_lists


class _PairPerturber:
    """Both products with the same subset of shared words removed."""

    def __init__(self, query_image: np.ndarray, query_tokens: Sequence[OcrToken], match_image: np.ndarray,
                 match_tokens: Sequence[OcrToken], words: Sequence[WordMatch], fill: Fill, resolution: int | None) -> None:
        self.query = _WordPerturber(check_rgb(query_image, "query_image"), query_tokens, [w.query_tokens for w in words], fill, resolution)
        self.match = _WordPerturber(check_rgb(match_image, "match_image"), match_tokens, [w.match_tokens for w in words], fill, resolution)

    def score(self, pair_score: PairScoreFn, remove_text: np.ndarray, remove_box: np.ndarray, batch_size: int) -> np.ndarray:
        qi, qt = self.query.inputs(remove_text, remove_box)
        mi, mt = self.match.inputs(remove_text, remove_box)
        out = []
        for s in range(0, len(qi), batch_size):
            sl = slice(s, s + batch_size)
            v = np.asarray(pair_score(qi[sl], qt[sl], mi[sl], mt[sl]), dtype=np.float64).reshape(-1)
            if len(v) != len(qi[sl]):
                raise ValueError(f"the score function returned {len(v)} values for {len(qi[sl])} input pairs; it must return one per pair")
            out.append(v)
        return np.concatenate(out) if out else np.zeros(0)


def word_attributions(
    query_image: np.ndarray,
    query_tokens: Sequence[OcrToken],
    match_image: np.ndarray,
    match_tokens: Sequence[OcrToken],
    pair_score: PairScoreFn,
    *,
    saliency: np.ndarray | None = None,
    match_saliency: np.ndarray | None = None,
    min_ratio: float = 0.75,
    min_length: int = 3,
    rank_by: str = "drop",
    fill: Fill = "blur",
    resolution: int | None = 256,
    batch_size: int = 16,
) -> list[WordAttribution]:
    """Rank the words the query shares with its match by their effect on the similarity.

    Each word is removed from both products at once (text, box, or both), and the drop
    is measured against the pair at the same work resolution with nothing removed.
    ``rank_by`` is one of ``"drop"`` (text and box: the default), ``"text_drop"``,
    ``"image_drop"``, ``"saliency"``.

    >>> q = [OcrToken("OATLY", (0, 0, 10, 4)), OcrToken("BARISTA", (0, 5, 10, 9))]
    >>> m = [OcrToken("0ATLY", (0, 0, 10, 4)), OcrToken("BARISTA", (0, 5, 10, 9))]
    >>> score = lambda qi, qt, mi, mt: np.array([0.5 * any(t.text == "BARISTA" for t in a) * any(t.text == "BARISTA" for t in b)
    ...                                          + 0.05 * (len(a) + len(b)) for a, b in zip(qt, mt)])
    >>> img = np.zeros((10, 10, 3), np.uint8)
    >>> atts = word_attributions(img, q, img, m, score, resolution=None)
    >>> [(a.word, round(a.drop, 2)) for a in atts]
    [('barista', 0.6), ('oatly', 0.1)]
    """
    if rank_by not in RANK_BY:
        raise ValueError(f"rank_by must be one of {RANK_BY}, got {rank_by!r}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if rank_by == "saliency" and saliency is None:
        raise ValueError("rank_by='saliency' needs a saliency map; pass saliency=... or rank by 'drop'")
    words = shared_words(query_tokens, match_tokens, min_ratio=min_ratio, min_length=min_length)
    if not words:
        return []
    pert = _PairPerturber(query_image, query_tokens, match_image, match_tokens, words, fill, resolution)
    n = len(words)
    none = np.zeros((1, n), dtype=bool)
    eye = np.eye(n, dtype=bool)
    zeros = np.zeros((n, n), dtype=bool)
    remove_text = np.concatenate([none, eye, zeros, eye])
    remove_box = np.concatenate([none, zeros, eye, eye])
    s = pert.score(pair_score, remove_text, remove_box, batch_size)
    base, text_s, img_s, both_s = s[0], s[1 : n + 1], s[n + 1 : 2 * n + 1], s[2 * n + 1 :]
    atts = [
        WordAttribution(
            w, float(base - text_s[i]), float(base - img_s[i]), float(base - both_s[i]),
            _box_saliency(saliency, w.query_tokens), _box_saliency(match_saliency, w.match_tokens),
        )
        for i, w in enumerate(words)
    ]

    def key(a: WordAttribution) -> float:
        v = getattr(a, rank_by)
        return -np.inf if v is None else v

    return sorted(atts, key=key, reverse=True)


def word_deletion_curve(
    query_image: np.ndarray,
    query_tokens: Sequence[OcrToken],
    match_image: np.ndarray,
    match_tokens: Sequence[OcrToken],
    attributions: Sequence[WordAttribution],
    pair_score: PairScoreFn,
    *,
    n_random: int = 3,
    fill: Fill = "blur",
    resolution: int | None = 256,
    batch_size: int = 16,
    seed: int = 0,
    mode: str = "deletion",
) -> DeletionCurve | None:
    """Deletion (or insertion) curve over the shared words in ``attributions`` order, each
    removed from both products (text and boxes) vs random orders; ``None`` without shared words.

    >>> q = [OcrToken("OATLY", (0, 0, 10, 4)), OcrToken("BARISTA", (0, 5, 10, 9))]
    >>> score = lambda qi, qt, mi, mt: np.array([0.5 * any(t.text == "BARISTA" for t in a) + 0.1 * len(a) for a in qt])
    >>> img = np.zeros((10, 10, 3), np.uint8)
    >>> atts = word_attributions(img, q, img, q, score, resolution=None)
    >>> c = word_deletion_curve(img, q, img, q, atts, score, resolution=None, n_random=8)
    >>> c.scores.round(2).tolist(), c.faithful
    ([0.7, 0.1, 0.0], True)
    >>> word_deletion_curve(img, q, img, q, atts, score, resolution=None, n_random=8, mode="insertion").scores.round(2).tolist()
    [0.0, 0.6, 0.7]
    """
    if not attributions:
        return None
    pert = _PairPerturber(query_image, query_tokens, match_image, match_tokens, [a.match for a in attributions], fill, resolution)

    def score_rows(keep: np.ndarray) -> np.ndarray:
        return pert.score(pair_score, ~keep, ~keep, batch_size)

    return deletion_curve(range(len(attributions)), len(attributions), score_rows, n_random=n_random, unit="word", seed=seed, mode=mode)
