"""Plain records the store reads and writes besides :class:`~prodlens.explain.explanation.Explanation`
and :class:`~prodlens.data.types.ProductSample`.

They are data only; ``payload`` fields are JSON-able dicts whose conventional keys are
documented on each class (and in ``docs/store.md``) so that the app can read what the
aggregation step writes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

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
class GlobalFeature:
    """One entry of a class's global explanation.

    ``modality`` is ``"image"`` (a cluster of superpixels) or ``"text"`` (a group of
    OCR words). ``method`` tells rankings apart (``"cluster"``, ``"normlime"``, ...).
    Conventional ``payload`` keys:

    * image: ``representative`` ``{"sample_id", "superpixel"}``; ``members``
      ``[{"sample_id", "superpixel", "weight"}, ...]``; ``n_samples``.
    * text: ``text`` (most common spelling); ``variants`` ``{spelling: count}``;
      ``count``; ``sample_ids``.

    >>> GlobalFeature("Oatly-Oat-Milk", "text", 0, 0.42, {"text": "OATLY", "count": 12}).payload["text"]
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
