"""Words that two products share, tolerant to OCR misspellings.

OCR reads ``MJÖLK`` on one photo and ``MJOLK`` or ``MJ0LK`` on another. Words are
compared after :func:`normalize_word` (case folded, accents removed, punctuation at
the ends stripped) with rapidfuzz's normalised Levenshtein similarity
``1 - distance / max(len)``; a pair counts as shared when it is at least
``min_ratio`` (0.75 by default: one wrong letter in four).
"""

from __future__ import annotations

import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass

from prodlens.data.types import OcrToken, reading_order


def normalize_word(text: str) -> str:
    """Case-fold, drop accents and strip non-alphanumerics at both ends.

    >>> normalize_word("Mjölk,"), normalize_word("«Laktosfri»"), normalize_word("1.5%")
    ('mjolk', 'laktosfri', '1.5')
    """
    decomposed = unicodedata.normalize("NFKD", text.casefold())
    plain = "".join(c for c in decomposed if not unicodedata.combining(c))
    start, end = 0, len(plain)
    while start < end and not plain[start].isalnum():
        start += 1
    while end > start and not plain[end - 1].isalnum():
        end -= 1
    return plain[start:end]


def word_similarity(a: str, b: str) -> float:
    """Normalised Levenshtein similarity of two words after :func:`normalize_word`.

    >>> word_similarity("MJÖLK", "mjolk"), round(word_similarity("OATLY", "0ATLY"), 2), word_similarity("", "a")
    (1.0, 0.8, 0.0)
    """
    from rapidfuzz.distance import Levenshtein

    na, nb = normalize_word(a), normalize_word(b)
    if not na or not nb:
        return 0.0
    return float(Levenshtein.normalized_similarity(na, nb))


@dataclass(frozen=True)
class WordMatch:
    """One word found in both products: the query's tokens that read it and the match's.

    ``word`` is the normalised query word; all of ``query_tokens`` normalise to it,
    ``match_tokens`` are the match's tokens within ``min_ratio`` of it and ``ratio`` is
    the best similarity between the two sides.
    """

    word: str
    query_tokens: tuple[OcrToken, ...]
    match_tokens: tuple[OcrToken, ...]
    ratio: float

    def to_dict(self) -> dict:
        return {
            "word": self.word,
            "query_tokens": [t.to_dict() for t in self.query_tokens],
            "match_tokens": [t.to_dict() for t in self.match_tokens],
            "ratio": float(self.ratio),
        }

    @classmethod
    def from_dict(cls, d: dict) -> WordMatch:
        return cls(
            d["word"],
            tuple(OcrToken.from_dict(t) for t in d["query_tokens"]),
            tuple(OcrToken.from_dict(t) for t in d["match_tokens"]),
            float(d["ratio"]),
        )


def shared_words(
    query_tokens: Sequence[OcrToken],
    match_tokens: Sequence[OcrToken],
    *,
    min_ratio: float = 0.75,
    min_length: int = 3,
) -> list[WordMatch]:
    """The words present in both token lists, one entry per distinct query word.

    Query tokens that normalise to the same word are grouped (removing the word
    removes all of them); words shorter than ``min_length`` characters after
    normalisation are ignored (``"OF"``, ``"1"``). Entries follow the query's reading
    order.

    >>> q = [OcrToken("ARLA", (0, 0, 40, 10)), OcrToken("MJÖLK", (0, 20, 50, 30)), OcrToken("3%", (0, 40, 9, 50))]
    >>> m = [OcrToken("MJOLK", (5, 5, 50, 15)), OcrToken("ARIA", (0, 30, 40, 40)), OcrToken("OAT", (0, 60, 30, 70))]
    >>> [(w.word, [t.text for t in w.match_tokens], w.ratio) for w in shared_words(q, m)]
    [('arla', ['ARIA'], 0.75), ('mjolk', ['MJOLK'], 1.0)]
    """
    if not 0.0 < min_ratio <= 1.0:
        raise ValueError(f"min_ratio must be in (0, 1], got {min_ratio!r}")
    if min_length < 1:
        raise ValueError(f"min_length must be >= 1, got {min_length!r}")
    from rapidfuzz.distance import Levenshtein

    groups: dict[str, list[OcrToken]] = {}
    for t in reading_order(query_tokens):
        w = normalize_word(t.text)
        if len(w) >= min_length:
            groups.setdefault(w, []).append(t)
    match_norm = [(t, normalize_word(t.text)) for t in reading_order(match_tokens)]
    out: list[WordMatch] = []
    for word, toks in groups.items():
        hits = []
        for t, w in match_norm:
            if len(w) < min_length:
                continue
            r = float(Levenshtein.normalized_similarity(word, w))
            if r >= min_ratio - 1e-12:
                hits.append((t, r))
        if hits:
            out.append(WordMatch(word, tuple(toks), tuple(t for t, _ in hits), max(r for _, r in hits)))
    return out
