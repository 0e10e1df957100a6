"""Attribute explanations of a match, with OCR words as the attributes (after SANE).

SANE (Plummer et al., ECCV 2020) explains an image-similarity score by the attributes
the two images share. For packaged products the words printed on both packages are
natural attributes: for every word the query and the match share (see
:func:`~prodlens.match.words.shared_words`) we measure how much the similarity drops
when the word is removed from the query's text (``text_drop``), when its box is masked
in the query photo (``image_drop``), and both at once (``drop``), plus the mean
saliency inside its box when a saliency map is given.
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

#: ``(images, token_lists) -> (n,)`` similarity of each perturbed query to the fixed match.
PairScoreFn = Callable[[Sequence[np.ndarray], Sequence[Sequence[OcrToken]]], np.ndarray]

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
    """Builds query inputs with any subset of the shared words removed (text and box)."""

    def __init__(self, image: np.ndarray, tokens: Sequence[OcrToken], words: Sequence[WordMatch],
                 fill: Fill, resolution: int | None) -> None:
        self.work = to_work(image, resolution)
        self.fill = fill_for(self.work, fill)
        self.tokens = tuple(tokens)
        self.masks = [box_mask([t.box for t in w.query_tokens], image.shape, self.work.shape) for w in words]
        self.word_tokens = [set(id(t) for t in w.query_tokens) for w in words]

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


def _score(pair_score: PairScoreFn, images: list, token_lists: list, batch_size: int) -> np.ndarray:
    out = []
    for s in range(0, len(images), batch_size):
        v = np.asarray(pair_score(images[s : s + batch_size], token_lists[s : s + batch_size]), dtype=np.float64).reshape(-1)
        if len(v) != len(images[s : s + batch_size]):
            raise ValueError(f"the score function returned {len(v)} values for {len(images[s : s + batch_size])} inputs; it must return one per input")
        out.append(v)
    return np.concatenate(out) if out else np.zeros(0)


def word_attributions(
    query_image: np.ndarray,
    query_tokens: Sequence[OcrToken],
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

    Drops are measured against the query at the same work resolution with nothing
    removed, so that they add up to the similarity change the words explain. ``rank_by``
    is one of ``"drop"``, ``"text_drop"``, ``"image_drop"``, ``"saliency"``.

    >>> q = [OcrToken("OATLY", (0, 0, 10, 4)), OcrToken("BARISTA", (0, 5, 10, 9))]
    >>> m = [OcrToken("0ATLY", (0, 0, 10, 4)), OcrToken("BARISTA", (0, 5, 10, 9))]
    >>> score = lambda ims, tls: np.array([0.5 * any(t.text == "BARISTA" for t in ts) + 0.1 * len(ts) for ts in tls])
    >>> atts = word_attributions(np.zeros((10, 10, 3), np.uint8), q, m, score, resolution=None)
    >>> [(a.word, round(a.drop, 2)) for a in atts]
    [('barista', 0.6), ('oatly', 0.1)]
    """
    if rank_by not in RANK_BY:
        raise ValueError(f"rank_by must be one of {RANK_BY}, got {rank_by!r}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if rank_by == "saliency" and saliency is None:
        raise ValueError("rank_by='saliency' needs a saliency map; pass saliency=... or rank by 'drop'")
    query_image = check_rgb(query_image, "query_image")
    words = shared_words(query_tokens, match_tokens, min_ratio=min_ratio, min_length=min_length)
    if not words:
        return []
    pert = _WordPerturber(query_image, query_tokens, words, fill, resolution)
    n = len(words)
    none = np.zeros((1, n), dtype=bool)
    eye = np.eye(n, dtype=bool)
    zeros = np.zeros((n, n), dtype=bool)
    remove_text = np.concatenate([none, eye, zeros, eye])
    remove_box = np.concatenate([none, zeros, eye, eye])
    images, token_lists = pert.inputs(remove_text, remove_box)
    s = _score(pair_score, images, token_lists, batch_size)
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
    attributions: Sequence[WordAttribution],
    pair_score: PairScoreFn,
    *,
    n_random: int = 3,
    fill: Fill = "blur",
    resolution: int | None = 256,
    batch_size: int = 16,
    seed: int = 0,
) -> DeletionCurve | None:
    """Deletion curve over the shared words in ``attributions`` order (text and box removed
    together) vs random orders; ``None`` when there are no shared words.

    >>> q = [OcrToken("OATLY", (0, 0, 10, 4)), OcrToken("BARISTA", (0, 5, 10, 9))]
    >>> score = lambda ims, tls: np.array([0.5 * any(t.text == "BARISTA" for t in ts) + 0.1 * len(ts) for ts in tls])
    >>> atts = word_attributions(np.zeros((10, 10, 3), np.uint8), q, q, score, resolution=None)
    >>> c = word_deletion_curve(np.zeros((10, 10, 3), np.uint8), q, atts, score, resolution=None, n_random=8)
    >>> c.scores.round(2).tolist(), c.faithful
    ([0.7, 0.1, 0.0], True)
    """
    if not attributions:
        return None
    query_image = check_rgb(query_image, "query_image")
    pert = _WordPerturber(query_image, query_tokens, [a.match for a in attributions], fill, resolution)

    def score_rows(keep: np.ndarray) -> np.ndarray:
        images, token_lists = pert.inputs(~keep, ~keep)
        return _score(pair_score, images, token_lists, batch_size)

    return deletion_curve(range(len(attributions)), len(attributions), score_rows, n_random=n_random, unit="word", seed=seed)
