"""OCR words of the top text features: normalised, then grouped by spelling similarity.

OCR reads the same printed word in several ways (``LAKTOSFRI``, ``LAKTOSFR1``,
``LAKTOSFRl``). Words are first normalised (:func:`normalize_word`) and then grouped
by string similarity (:class:`WordGrouper`); each group keeps its most common
spelling, every variant with its count, and (via the caller) the samples behind it.

Similarity
----------
``scorer="levenshtein"`` (default) is
``rapidfuzz.distance.Levenshtein.normalized_similarity``: ``1 - d / max(len(a), len(b))``
with ``d`` the Levenshtein distance (insertion, deletion and substitution each cost 1).
This is the textbook normalised Levenshtein similarity; one wrong character in a
9-letter word gives 0.889.

``scorer="indel"`` is ``rapidfuzz.distance.Indel.normalized_similarity``, equal to
``rapidfuzz.fuzz.ratio / 100`` and to python-Levenshtein's ``Levenshtein.ratio``:
``1 - d_indel / (len(a) + len(b))`` where a substitution costs 2. The two agree on
same-length words with substitutions (the usual OCR confusion) and differ when letters
are missing or extra: ``MILK``/``MILKS`` is 0.8 with ``"levenshtein"`` and 0.889 with
``"indel"``, which is more lenient.

Grouping is deterministic and independent of input order: spellings are visited by
decreasing count, then alphabetically.
"""

from __future__ import annotations

import logging
import unicodedata
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from prodlens._validation import check_choice, check_float, check_int

log = logging.getLogger(__name__)

CASES = ("upper", "casefold")
SCORERS = ("levenshtein", "indel")
LINKAGES = ("leader", "single")


def _strip_edges(text: str) -> str:
    """Drop punctuation (Unicode P*), symbols (S*) and spaces from both ends."""
    def junk(ch: str) -> bool:
        return ch.isspace() or unicodedata.category(ch)[0] in "PS"

    start, end = 0, len(text)
    while start < end and junk(text[start]):
        start += 1
    while end > start and junk(text[end - 1]):
        end -= 1
    return text[start:end]


def normalize_word(text: str, case: str = "upper", min_length: int = 2) -> str | None:
    """One OCR word in canonical form, or ``None`` when nothing useful is left.

    Steps: Unicode NFKC (full-width letters, ligatures, ...), inner white space
    collapsed, punctuation and symbols stripped from both ends, then ``case``:
    ``"upper"`` (``str.upper``; packages print in capitals) or ``"casefold"``. Words
    shorter than ``min_length`` characters are dropped.

    >>> normalize_word("  «Laktosfri»,"), normalize_word("ｍｉｌｋ", "casefold"), normalize_word("1.")
    ('LAKTOSFRI', 'milk', None)
    """
    check_choice("case", case, CASES)
    check_int("min_length", min_length, 1)
    t = " ".join(unicodedata.normalize("NFKC", text).split())
    t = _strip_edges(t)
    t = t.upper() if case == "upper" else t.casefold()
    return t if len(t) >= min_length else None


def get_scorer(name: str) -> Callable[..., float]:
    """The rapidfuzz similarity (0..1) for ``"levenshtein"`` or ``"indel"`` (see module docs).

    >>> round(get_scorer("levenshtein")("MILK", "MILKS"), 3), round(get_scorer("indel")("MILK", "MILKS"), 3)
    (0.8, 0.889)
    """
    check_choice("scorer", name, SCORERS)
    from rapidfuzz.distance import Indel, Levenshtein

    return Levenshtein.normalized_similarity if name == "levenshtein" else Indel.normalized_similarity


@dataclass(frozen=True)
class WordGroup:
    """Spellings taken for one word: the most common one, all variants and their counts."""

    text: str  #: most common spelling (ties: alphabetically first)
    variants: dict[str, int] = field(default_factory=dict)  #: spelling -> count, most common first
    count: int = 0  #: occurrences over all variants

    def to_dict(self) -> dict:
        return {"text": self.text, "variants": dict(self.variants), "count": self.count}

    @classmethod
    def from_dict(cls, d: dict) -> WordGroup:
        return cls(d["text"], {str(k): int(v) for k, v in d.get("variants", {}).items()}, int(d.get("count", 0)))


class WordGrouper:
    """Group normalised spellings whose similarity is at least ``threshold``.

    ``fit(words)`` takes one entry per occurrence (repeats count). Results:

    * ``groups_``: :class:`WordGroup` list, largest first (ties: alphabetical);
    * ``labels_``: group index of each input word;
    * ``vocabulary_``: spelling -> group index.

    ``linkage="leader"`` (default): spellings are visited by decreasing count then
    alphabetically; each joins the group whose leading (most common) spelling it
    resembles most, if that similarity is ``>= threshold``, else starts a group. No
    chaining: every member is close to the group's name. ``linkage="single"``: connected
    components of the ``>= threshold`` graph (transitive; may chain ``A~B~C``).

    >>> g = WordGrouper().fit(["LAKTOSFRI", "LAKTOSFR1", "EKOLOGISK", "LAKTOSFRI", "LAKTOSFRL"])
    >>> [(x.text, x.count) for x in g.groups_]
    [('LAKTOSFRI', 4), ('EKOLOGISK', 1)]
    >>> g.labels_.tolist()
    [0, 0, 1, 0, 0]
    """

    def __init__(self, threshold: float = 0.75, scorer: str = "levenshtein", linkage: str = "leader") -> None:
        self.threshold = threshold
        self.scorer = scorer
        self.linkage = linkage

    def _validate(self) -> None:
        check_float("threshold", self.threshold, 0.0, 1.0, "it is a similarity ratio, e.g. 0.75")
        check_choice("scorer", self.scorer, SCORERS)
        check_choice("linkage", self.linkage, LINKAGES)

    def similarity(self, a: str, b: str) -> float:
        """Similarity of two spellings with this grouper's scorer (0..1)."""
        return float(get_scorer(self.scorer)(a, b))

    def fit(self, words: Sequence[str]) -> WordGrouper:
        self._validate()
        counts = Counter(words)
        order = sorted(counts, key=lambda s: (-counts[s], s))
        assign = self._leader(order) if self.linkage == "leader" else self._single(order)
        members: dict[int, list[str]] = {}
        for s in order:
            members.setdefault(assign[s], []).append(s)
        groups = []
        for spellings in members.values():
            spellings.sort(key=lambda s: (-counts[s], s))
            groups.append(WordGroup(spellings[0], {s: counts[s] for s in spellings}, sum(counts[s] for s in spellings)))
        groups.sort(key=lambda g: (-g.count, g.text))
        self.groups_ = groups
        self.vocabulary_ = {s: i for i, g in enumerate(groups) for s in g.variants}
        self.labels_ = np.array([self.vocabulary_[w] for w in words], dtype=np.int64)
        log.debug("grouped %d spellings (%d words) into %d groups", len(counts), len(words), len(groups))
        return self

    def _leader(self, order: list[str]) -> dict[str, int]:
        score = get_scorer(self.scorer)
        leaders: list[str] = []
        assign: dict[str, int] = {}
        for s in order:
            best, best_sim = -1, -1.0
            for gi, lead in enumerate(leaders):
                sim = float(score(s, lead))
                if sim >= self.threshold and sim > best_sim:
                    best, best_sim = gi, sim
            if best < 0:
                leaders.append(s)
                best = len(leaders) - 1
            assign[s] = best
        return assign

    def _single(self, order: list[str]) -> dict[str, int]:
        from rapidfuzz import process

        n = len(order)
        parent = list(range(n))

        def find(i: int) -> int:
            while parent[i] != i:
                parent[i] = parent[parent[i]]
                i = parent[i]
            return i

        if n:
            sims = process.cdist(order, order, scorer=get_scorer(self.scorer), dtype=np.float64)
            for i, j in zip(*np.nonzero(sims >= self.threshold)):
                if i < j:
                    a, b = find(int(i)), find(int(j))
                    if a != b:
                        parent[max(a, b)] = min(a, b)
        return {s: find(i) for i, s in enumerate(order)}

    def predict(self, words: Sequence[str]) -> np.ndarray:
        """Group index of each word: its own group if seen in ``fit``, else the group whose
        name it resembles most (``>= threshold``), else ``-1``.

        >>> WordGrouper().fit(["OATLY", "OATLY", "MILK"]).predict(["OATIY", "JUICE"]).tolist()
        [0, -1]
        """
        out = np.full(len(words), -1, dtype=np.int64)
        for k, w in enumerate(words):
            if w in self.vocabulary_:
                out[k] = self.vocabulary_[w]
                continue
            sims = [self.similarity(w, g.text) for g in self.groups_]
            if sims and max(sims) >= self.threshold:
                out[k] = int(np.argmax(sims))
        return out
