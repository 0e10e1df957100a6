"""Why the runner-up did not match: the difference of two explanations of one query.

Given the explanation of a query's match and that of its runner-up (the next gallery
product, of another class where there is one), :func:`contrast_matches` says what the
match has that the runner-up lacks:

* the similarity gap;
* the words the query shares with the match only (with their effect on that
  similarity), with the runner-up only, and with both (effect on the match minus effect
  on the runner-up);
* on the query photo, the match saliency minus the runner-up saliency: where the query
  looks more like the match than like the runner-up (both maps explain a similarity of
  the same query, so they share a scale).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from prodlens.match.explanation import MatchExplanation


@dataclass(frozen=True)
class WordContrast:
    """One word and its effect (similarity drop when removed from both products) on each pair."""

    word: str
    match_drop: float | None  #: ``None``: the match does not share the word
    runner_up_drop: float | None  #: ``None``: the runner-up does not share it

    @property
    def advantage(self) -> float:
        """How much more the word holds the match than the runner-up."""
        return (self.match_drop or 0.0) - (self.runner_up_drop or 0.0)

    @property
    def where(self) -> str:
        if self.match_drop is not None and self.runner_up_drop is not None:
            return "both"
        return "match only" if self.match_drop is not None else "runner-up only"


@dataclass(frozen=True)
class MatchContrast:
    """The difference of the explanations of ``query -> match`` and ``query -> runner-up``."""

    query_id: str
    match_id: str
    runner_up_id: str
    similarity_gap: float
    words: tuple[WordContrast, ...]  #: largest advantage first
    query_saliency_difference: np.ndarray | None

    def summary(self) -> str:
        """One paragraph.

        >>> MatchContrast("q", "m", "r", 0.05, (WordContrast("oatly", 0.04, None),), None).summary()
        'q is 0.050 closer to m than to r; words that favour m: oatly (+0.040, match only)'
        """
        out = f"{self.query_id} is {self.similarity_gap:.3f} closer to {self.match_id} than to {self.runner_up_id}"
        pro = [w for w in self.words if w.advantage > 0]
        con = [w for w in self.words if w.advantage < 0]
        if pro:
            out += f"; words that favour {self.match_id}: " + ", ".join(f"{w.word} ({w.advantage:+.3f}, {w.where})" for w in pro[:5])
        if con:
            out += f"; words that favour {self.runner_up_id}: " + ", ".join(f"{w.word} ({w.advantage:+.3f}, {w.where})" for w in con[-5:][::-1])
        if not self.words:
            out += "; no shared words on either side"
        return out


def contrast_matches(match: MatchExplanation, runner_up: MatchExplanation) -> MatchContrast:
    """Contrast two explanations of the same query (``match`` the better one).

    >>> from prodlens.data.types import OcrToken
    >>> from prodlens.match.attributes import WordAttribution
    >>> from prodlens.match.words import WordMatch
    >>> t = (OcrToken("OATLY", (0, 0, 1, 1)),)
    >>> def e(mid, sim, drop):
    ...     w = WordAttribution(WordMatch("oatly", t, t, 1.0), drop, 0.0, drop)
    ...     return MatchExplanation("q", mid, sim, "fused", "rise", np.ones((2, 2)) * sim, None, (w,), None, None, t, t)
    >>> c = contrast_matches(e("m", 0.9, 0.05), e("r", 0.7, 0.01))
    >>> round(c.similarity_gap, 3), [(w.word, round(w.advantage, 3), w.where) for w in c.words], c.query_saliency_difference.astype(float).round(1).tolist()
    (0.2, [('oatly', 0.04, 'both')], [[0.2, 0.2], [0.2, 0.2]])
    """
    if match.query_id != runner_up.query_id:
        raise ValueError(f"the two explanations are of different queries ({match.query_id!r} and {runner_up.query_id!r}); contrast explanations of one query")
    m = {w.word: w.drop for w in match.words}
    r = {w.word: w.drop for w in runner_up.words}
    words = [WordContrast(w, m.get(w), r.get(w)) for w in dict.fromkeys([*m, *r])]
    words.sort(key=lambda w: -w.advantage)
    diff = None
    if match.saliency is not None and runner_up.saliency is not None and match.saliency.shape == runner_up.saliency.shape:
        diff = (np.asarray(match.saliency, np.float32) - np.asarray(runner_up.saliency, np.float32)).astype(np.float32)
    return MatchContrast(match.query_id, match.match_id, runner_up.match_id, float(match.similarity - runner_up.similarity),
                         tuple(words), diff)
