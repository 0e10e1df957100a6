"""Result types of the global explanation: plain dataclasses with JSON-able ``to_dict``.

* :class:`FeatureOccurrence` -- one local feature (a superpixel or an OCR token) of one
  explanation that entered the aggregation;
* :class:`GlobalFeature` -- a superpixel cluster or a word group of one class, with its
  NormLIME importance, its supporting occurrences and a representative;
* :class:`ClassGlobalExplanation` -- the ranked image and text features of one class;
* :class:`GlobalExplanations` -- all classes plus the settings that produced them.

Data only: rendering lives in :mod:`prodlens.viz`; the store ingests ``to_dict()`` /
:meth:`GlobalFeature.payload`.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

from prodlens._validation import check_choice, check_int, did_you_mean

MODALITIES = ("image", "text")


@dataclass(frozen=True)
class FeatureOccurrence:
    """One local feature of one explanation.

    ``index`` is the superpixel label (image) or the token's position in the
    explanation's ``tokens`` (text); ``feature`` is its index in the explanation's
    shared feature space (superpixels first, then tokens). ``normalized_weight`` is the
    NormLIME-normalised weight (see :mod:`prodlens.aggregate.normlime`).

    >>> o = FeatureOccurrence("s1", "Oatly-Oat-Milk", "text", 2, 42, 0.3, 0.09, text="OATLY", raw_text="Oatly,")
    >>> FeatureOccurrence.from_dict(o.to_dict()) == o
    True
    """

    sample_id: str
    class_name: str
    modality: str
    index: int
    feature: int
    weight: float
    normalized_weight: float
    text: str | None = None  #: normalised word (text)
    raw_text: str | None = None  #: the OCR token as read (text)
    area: int | None = None  #: pixels in the superpixel (image)

    def to_dict(self) -> dict:
        d: dict = {
            "sample_id": self.sample_id,
            "class_name": self.class_name,
            "modality": self.modality,
            "index": int(self.index),
            "feature": int(self.feature),
            "weight": float(self.weight),
            "normalized_weight": float(self.normalized_weight),
        }
        if self.modality == "image":
            d["superpixel"] = int(self.index)
            if self.area is not None:
                d["area"] = int(self.area)
        else:
            d["token_index"] = int(self.index)
            d["text"] = self.text
            d["raw_text"] = self.raw_text
        return d

    @classmethod
    def from_dict(cls, d: dict) -> FeatureOccurrence:
        return cls(
            sample_id=str(d["sample_id"]),
            class_name=str(d["class_name"]),
            modality=str(d["modality"]),
            index=int(d["index"]),
            feature=int(d["feature"]),
            weight=float(d["weight"]),
            normalized_weight=float(d["normalized_weight"]),
            text=d.get("text"),
            raw_text=d.get("raw_text"),
            area=None if d.get("area") is None else int(d["area"]),
        )


@dataclass(frozen=True)
class GlobalFeature:
    """A superpixel cluster (image) or a word group (text) of one class.

    ``rank`` is 0-based within class and modality (0 = most important by NormLIME).
    ``representative`` is the occurrence at the cluster's medoid (image) or an
    occurrence of the most common spelling, ``text`` (text). An image cluster also
    keeps its ``centroid`` (mean member embedding, as clustered) and ``radius`` (largest
    member distance to it), so that superpixels of held-out photos can be matched to it
    (:class:`~prodlens.aggregate.deletion.ImageMatcher`).

    >>> occ = FeatureOccurrence("s1", "c", "text", 0, 5, 0.4, 0.16, text="OATLY", raw_text="OATLY")
    >>> f = GlobalFeature("c", "text", "text:OATLY", 0, 0.16, 1, 1, occ, (occ,), "OATLY", {"OATLY": 1})
    >>> f.sample_ids, f.payload()["text"]
    (('s1',), 'OATLY')
    """

    class_name: str
    modality: str
    id: str  #: ``"image:<cluster>"`` or ``"text:<spelling>"``, unique within the class
    rank: int
    importance: float  #: NormLIME importance
    support: int  #: explanations (samples) containing the feature
    count: int  #: occurrences (local features) mapped to it
    representative: FeatureOccurrence
    occurrences: tuple[FeatureOccurrence, ...] = ()
    text: str | None = None  #: most common spelling (text)
    variants: dict[str, int] = field(default_factory=dict)  #: spelling -> count (text)
    centroid: tuple[float, ...] = field(default=(), compare=False, repr=False)  #: mean member embedding (image)
    radius: float | None = None  #: largest member distance to ``centroid`` (image)

    @property
    def sample_ids(self) -> tuple[str, ...]:
        """Supporting samples, in first-occurrence order, without repeats."""
        return tuple(dict.fromkeys(o.sample_id for o in self.occurrences))

    @property
    def label(self) -> str:
        """A short human name: the spelling, or ``"cluster 3"``."""
        return self.text if self.text is not None else f"cluster {self.id.split(':', 1)[1]}"

    def payload(self) -> dict:
        """The store's conventional ``GlobalFeatureRecord.payload`` keys (see ``prodlens.store.records``),
        plus ``id``, ``support`` and ``occurrences``."""
        d: dict = {"id": self.id, "support": self.support, "count": self.count, "sample_ids": list(self.sample_ids)}
        if self.modality == "image":
            d["representative"] = {"sample_id": self.representative.sample_id, "superpixel": self.representative.index}
            d["members"] = [
                {"sample_id": o.sample_id, "superpixel": o.index, "weight": o.weight, "normalized_weight": o.normalized_weight}
                for o in self.occurrences
            ]
            d["n_samples"] = self.support
        else:
            d["text"] = self.text
            d["variants"] = dict(self.variants)
            d["members"] = [
                {"sample_id": o.sample_id, "token_index": o.index, "text": o.text, "raw_text": o.raw_text,
                 "weight": o.weight, "normalized_weight": o.normalized_weight}
                for o in self.occurrences
            ]
        return d

    def to_dict(self) -> dict:
        d = {
            "class_name": self.class_name,
            "modality": self.modality,
            "id": self.id,
            "rank": int(self.rank),
            "importance": float(self.importance),
            "support": int(self.support),
            "count": int(self.count),
            "text": self.text,
            "variants": dict(self.variants),
            "representative": self.representative.to_dict(),
            "occurrences": [o.to_dict() for o in self.occurrences],
        }
        if self.centroid:
            d["centroid"] = [round(float(v), 6) for v in self.centroid]
            d["radius"] = None if self.radius is None else float(self.radius)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> GlobalFeature:
        return cls(
            class_name=str(d["class_name"]),
            modality=str(d["modality"]),
            id=str(d["id"]),
            rank=int(d["rank"]),
            importance=float(d["importance"]),
            support=int(d["support"]),
            count=int(d["count"]),
            representative=FeatureOccurrence.from_dict(d["representative"]),
            occurrences=tuple(FeatureOccurrence.from_dict(o) for o in d.get("occurrences", [])),
            text=d.get("text"),
            variants={str(k): int(v) for k, v in (d.get("variants") or {}).items()},
            centroid=tuple(float(v) for v in d.get("centroid") or ()),
            radius=None if d.get("radius") is None else float(d["radius"]),
        )


@dataclass(frozen=True)
class ClassGlobalExplanation:
    """The global explanation of one class: ranked image clusters and word groups.

    ``noise`` holds the image occurrences HDBSCAN left out of every cluster (kept for
    inspection, never ranked).
    """

    class_name: str
    n_explanations: int
    image: tuple[GlobalFeature, ...] = ()
    text: tuple[GlobalFeature, ...] = ()
    noise: tuple[FeatureOccurrence, ...] = ()

    def features(self, modality: str) -> tuple[GlobalFeature, ...]:
        check_choice("modality", modality, MODALITIES)
        return self.image if modality == "image" else self.text

    def top(self, modality: str, k: int = 3) -> tuple[GlobalFeature, ...]:
        """The ``k`` most important features of ``modality``."""
        check_int("k", k, 0)
        return self.features(modality)[:k]

    def to_dict(self) -> dict:
        return {
            "class_name": self.class_name,
            "n_explanations": int(self.n_explanations),
            "image": [f.to_dict() for f in self.image],
            "text": [f.to_dict() for f in self.text],
            "noise": [o.to_dict() for o in self.noise],
        }

    @classmethod
    def from_dict(cls, d: dict) -> ClassGlobalExplanation:
        return cls(
            class_name=str(d["class_name"]),
            n_explanations=int(d["n_explanations"]),
            image=tuple(GlobalFeature.from_dict(f) for f in d.get("image", [])),
            text=tuple(GlobalFeature.from_dict(f) for f in d.get("text", [])),
            noise=tuple(FeatureOccurrence.from_dict(o) for o in d.get("noise", [])),
        )


@dataclass(frozen=True)
class GlobalExplanations:
    """Per-class global explanations of one model, with the settings that made them.

    >>> g = GlobalExplanations({"c": ClassGlobalExplanation("c", 0)}, {"top_k_local": 3})
    >>> GlobalExplanations.from_dict(g.to_dict()) == g, len(g)
    (True, 1)
    """

    classes: dict[str, ClassGlobalExplanation]
    config: dict = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.classes)

    def __iter__(self) -> Iterator[ClassGlobalExplanation]:
        return iter(self.classes.values())

    def __getitem__(self, class_name: str) -> ClassGlobalExplanation:
        try:
            return self.classes[class_name]
        except KeyError:
            hint = did_you_mean(class_name, self.classes)
            raise KeyError(f"no global explanation for class {class_name!r}{hint} ({len(self)} classes)") from None

    def top(self, class_name: str, modality: str, k: int = 3) -> tuple[GlobalFeature, ...]:
        """The ``k`` most important features of ``modality`` for a class (empty if the class is absent)."""
        c = self.classes.get(class_name)
        return c.top(modality, k) if c is not None else ()

    def to_dict(self) -> dict:
        return {"config": self.config, "classes": [c.to_dict() for c in self.classes.values()]}

    @classmethod
    def from_dict(cls, d: dict) -> GlobalExplanations:
        classes = [ClassGlobalExplanation.from_dict(c) for c in d.get("classes", [])]
        return cls({c.class_name: c for c in classes}, dict(d.get("config", {})))
