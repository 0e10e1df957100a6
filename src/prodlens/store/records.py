"""Plain records the store reads and writes besides :class:`~prodlens.explain.explanation.Explanation`
and :class:`~prodlens.data.types.ProductSample`.

They are data only; ``payload`` fields are JSON-able dicts whose conventional keys are
documented on each class (and in ``docs/store.md``) so that the app can read what the
aggregation step writes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from prodlens.explain.quality import ExplanationQuality

MODALITIES = ("image", "text")


@dataclass(frozen=True)
class Run:
    """One model + dataset + settings whose results are stored together.

    >>> Run(1, "effnet-concat", model="concat").name
    'effnet-concat'
    """

    id: int
    name: str
    model: str | None = None
    checkpoint: str | None = None
    dataset: str | None = None
    classes: tuple[str, ...] = ()
    config: dict = field(default_factory=dict, compare=False)
    versions: dict = field(default_factory=dict, compare=False)
    created_at: datetime | None = None
    notes: str | None = None


@dataclass(frozen=True)
class Prediction:
    """The model's answer for one sample in one run.

    ``top_k`` is ``[(class_name, probability), ...]`` best first (see
    :func:`prodlens.store.codec.top_k`); ``probabilities`` optionally keeps the whole
    vector in the run's class order. ``correct`` is ``None`` when the sample has no label.

    >>> p = Prediction("s1", "Oatly-Oat-Milk", [("Oatly-Oat-Milk", 0.9)], correct=True)
    >>> p.confidence
    0.9
    """

    sample_id: str
    predicted: str
    top_k: list[tuple[str, float]] = field(default_factory=list)
    correct: bool | None = None
    probabilities: tuple[float, ...] | None = None
    label: str | None = None  #: filled in on read from the samples table

    @property
    def confidence(self) -> float:
        return float(self.top_k[0][1]) if self.top_k else float("nan")


@dataclass(frozen=True)
class GlobalFeatureRecord:
    """One entry of a class's global explanation as the store keeps it (the stored form of an
    :class:`prodlens.aggregate.GlobalFeature`: its ``payload()`` gives the keys below).

    ``modality`` is ``"image"`` (a cluster of superpixels) or ``"text"`` (a group of
    OCR words). ``method`` tells rankings apart (``"cluster"``, ``"normlime"``, ...).
    Conventional ``payload`` keys:

    * image: ``representative`` ``{"sample_id", "superpixel"}``; ``members``
      ``[{"sample_id", "superpixel", "weight"}, ...]``; ``n_samples``.
    * text: ``text`` (most common spelling); ``variants`` ``{spelling: count}``;
      ``count``; ``sample_ids``.

    >>> GlobalFeatureRecord("Oatly-Oat-Milk", "text", 0, 0.42, {"text": "OATLY", "count": 12}).payload["text"]
    'OATLY'
    """

    class_name: str
    modality: str
    rank: int
    importance: float
    payload: dict = field(default_factory=dict)
    method: str = "cluster"

    def __post_init__(self) -> None:
        if self.modality not in MODALITIES:
            raise ValueError(f"modality must be one of {MODALITIES}, got {self.modality!r}")


@dataclass(frozen=True)
class DeletionResult:
    """Accuracy of ``model`` while the top features of ``modality`` are removed step by step.

    ``steps[i]`` is the number (or share) of removed features at which ``accuracies[i]``
    was measured; ``modality`` is ``"image"``, ``"text"`` or ``"both"``.

    >>> DeletionResult("concat", "image", [0, 1, 2], [0.9, 0.7, 0.5], ["s1"]).accuracies[-1]
    0.5
    """

    model: str
    modality: str
    steps: list[float]
    accuracies: list[float]
    sample_ids: list[str] = field(default_factory=list)
    config: dict = field(default_factory=dict)


@dataclass(frozen=True)
class MatchResult:
    """A generic product-matching result (shape decided by the matching step).

    ``kind`` names the result type (e.g. ``"retrieval"``), ``key`` is unique within a run
    and kind (e.g. the query sample id), ``payload`` holds the rest.

    >>> MatchResult("retrieval", "s1", {"neighbours": ["s7", "s9"]}).key
    's1'
    """

    kind: str
    key: str
    payload: dict = field(default_factory=dict)


@dataclass(frozen=True)
class MatchQuery:
    """One query of a retrieval (product matching) run: its best gallery matches.

    ``gallery_ids`` and ``scores`` (similarities) are best first. On write the store
    fills ``gallery_labels`` and ``correct`` (is the best match of the query's class?)
    from the samples table; on read ``label`` is the query's class. ``config`` says
    how the retrieval was made (embedding, kind, gallery, ...).

    >>> q = MatchQuery("q1", ("g7", "g2"), (0.91, 0.85), ("Arla-Milk", "Oatly-Oat-Milk"), label="Oatly-Oat-Milk")
    >>> q.hit_rank, q.correct_at(1), q.correct_at(2)
    (2, False, True)
    """

    query_id: str
    gallery_ids: tuple[str, ...]
    scores: tuple[float, ...]
    gallery_labels: tuple[str | None, ...] = ()
    label: str | None = None
    config: dict = field(default_factory=dict, compare=False)

    def __post_init__(self) -> None:
        if len(self.gallery_ids) != len(self.scores):
            raise ValueError(
                f"match query {self.query_id!r}: {len(self.gallery_ids)} gallery ids but {len(self.scores)} scores; "
                "give one score per gallery id"
            )

    @property
    def hit_rank(self) -> int | None:
        """1-based rank of the first match of the query's class (``None``: none in the top k)."""
        if self.label is None:
            return None
        return next((i + 1 for i, lab in enumerate(self.gallery_labels) if lab == self.label), None)

    @property
    def correct(self) -> bool | None:
        """Whether the best match has the query's class (``None`` without labels)."""
        return self.correct_at(1)

    def correct_at(self, k: int) -> bool | None:
        """Whether one of the first ``k`` matches has the query's class."""
        if self.label is None or not self.gallery_labels:
            return None
        rank = self.hit_rank
        return rank is not None and rank <= k


@dataclass(frozen=True)
class ExplanationSummary:
    """An explanation row without its arrays: what lists and histograms need."""

    id: int
    sample_id: str
    target: int
    target_name: str
    score: float
    prediction: float
    image_share: float
    n_features: int


@dataclass(frozen=True)
class QualitySummary:
    """An explanation's quality scores without its arrays: what the app's quality
    lists and histograms need (``quality`` is ``None`` when it was stored unscored).

    >>> QualitySummary(1, "s1", 0, "Oatly-Oat-Milk", None).flagged is None
    True
    """

    id: int
    sample_id: str
    target: int
    target_name: str
    quality: ExplanationQuality | None

    @property
    def flagged(self) -> bool | None:
        """Whether the scores say "do not trust this" (``None``: not scored)."""
        return None if self.quality is None else not self.quality.trusted
