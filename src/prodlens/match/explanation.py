"""The explanation of one match: data only, no rendering (see :mod:`prodlens.match.render`)."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from prodlens.data.types import OcrToken
from prodlens.match.attributes import WordAttribution
from prodlens.match.deletion import DeletionCurve


def _map_to_list(values: np.ndarray | None, decimals: int = 5) -> list | None:
    return None if values is None else np.round(np.asarray(values, dtype=np.float64), decimals).tolist()


def _list_to_map(values: list | None) -> np.ndarray | None:
    return None if values is None else np.asarray(values, dtype=np.float32)


@dataclass(frozen=True)
class MatchExplanation:
    """Why a query product matches another one.

    ``similarity`` is the cosine of their embeddings; ``saliency`` is an ``(H, W)`` map
    on the query photo (original resolution) of how much each pixel supports the
    similarity, ``match_saliency`` the same on the match photo (or ``None``);
    ``words`` are the shared OCR words, most important first; ``deletion`` and
    ``word_deletion`` are the faithfulness curves (``None`` when not computed or no
    shared words); ``curves`` holds the others when computed (``match_deletion``,
    ``query_insertion``, ``match_insertion``, ``word_insertion``).

    >>> e = MatchExplanation("q", "m", 0.8, "fused", "rise", np.zeros((2, 2)), None, (), None, None, (), ())
    >>> MatchExplanation.from_dict(e.to_dict()).similarity
    0.8
    """

    query_id: str
    match_id: str
    similarity: float
    kind: str
    method: str
    saliency: np.ndarray | None
    match_saliency: np.ndarray | None
    words: tuple[WordAttribution, ...]
    deletion: DeletionCurve | None
    word_deletion: DeletionCurve | None
    query_tokens: tuple[OcrToken, ...]
    match_tokens: tuple[OcrToken, ...]
    seed: int = 0
    seconds: float = 0.0
    config: dict = field(default_factory=dict)
    curves: dict = field(default_factory=dict)

    def top_words(self, k: int = 5) -> list[str]:
        """The ``k`` most important shared words (normalised)."""
        return [w.word for w in self.words[:k]]

    def summary(self) -> str:
        """One human-readable paragraph.

        >>> MatchExplanation("q", "m", 0.8, "fused", "rise", None, None, (), None, None, (), ()).summary()
        'q matches m with similarity 0.800 (fused embedding); no shared words'
        """
        out = f"{self.query_id} matches {self.match_id} with similarity {self.similarity:.3f} ({self.kind} embedding)"
        if self.words:
            out += "; shared words: " + ", ".join(f"{w.word} (-{w.drop:.3f})" for w in self.words[:5])
        else:
            out += "; no shared words"
        if self.deletion is not None:
            out += f"; deletion AUC {self.deletion.auc:.3f} vs random {self.deletion.random_auc:.3f}"
        return out

    def to_dict(self, include_maps: bool = True) -> dict:
        """JSON-ready dict; the saliency maps as nested lists unless ``include_maps`` is false."""
        d: dict = {
            "query_id": self.query_id,
            "match_id": self.match_id,
            "similarity": float(self.similarity),
            "kind": self.kind,
            "method": self.method,
            "words": [w.to_dict() for w in self.words],
            "deletion": None if self.deletion is None else self.deletion.to_dict(),
            "word_deletion": None if self.word_deletion is None else self.word_deletion.to_dict(),
            "query_tokens": [t.to_dict() for t in self.query_tokens],
            "match_tokens": [t.to_dict() for t in self.match_tokens],
            "seed": int(self.seed),
            "seconds": float(self.seconds),
            "config": self.config,
            "curves": {k: c.to_dict() for k, c in self.curves.items()},
        }
        if include_maps:
            d["saliency"] = _map_to_list(self.saliency)
            d["match_saliency"] = _map_to_list(self.match_saliency)
        return d

    @classmethod
    def from_dict(cls, d: dict, saliency: np.ndarray | None = None, match_saliency: np.ndarray | None = None) -> MatchExplanation:
        """Inverse of :meth:`to_dict`; pass the maps when the dict was saved without them."""
        dele, wdele = d.get("deletion"), d.get("word_deletion")
        return cls(
            query_id=d["query_id"],
            match_id=d["match_id"],
            similarity=float(d["similarity"]),
            kind=d["kind"],
            method=d["method"],
            saliency=saliency if saliency is not None else _list_to_map(d.get("saliency")),
            match_saliency=match_saliency if match_saliency is not None else _list_to_map(d.get("match_saliency")),
            words=tuple(WordAttribution.from_dict(w) for w in d.get("words", [])),
            deletion=None if dele is None else DeletionCurve.from_dict(dele),
            word_deletion=None if wdele is None else DeletionCurve.from_dict(wdele),
            query_tokens=tuple(OcrToken.from_dict(t) for t in d.get("query_tokens", [])),
            match_tokens=tuple(OcrToken.from_dict(t) for t in d.get("match_tokens", [])),
            seed=int(d.get("seed", 0)),
            seconds=float(d.get("seconds", 0.0)),
            config=dict(d.get("config", {})),
            curves={k: DeletionCurve.from_dict(c) for k, c in d.get("curves", {}).items()},
        )
