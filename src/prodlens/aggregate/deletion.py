"""The deletion test (paper Table 2): does deleting a class's top global features hurt?

For one model and one modality, the test set is every explained sample that contains
at least one of its class's top-``k`` global features of that modality. On those
samples three accuracies are measured:

* **no deletion** -- the untouched photo and OCR tokens;
* **top deletion** -- every local feature belonging to one of the top-``k`` global
  features removed: the cluster's member superpixels painted over (black by default),
  or every OCR token whose normalised word belongs to the word group (all matching
  tokens, not only those among the sample's top local features) left out of the list;
* **random deletion** -- the same number of other features removed, drawn at random
  (seeded): superpixels of similar area (within ``area_tolerance``, else the closest
  in area) or tokens.

If the global features matter, top deletion should cost far more accuracy than random
deletion. Results are :class:`DeletionRow` / :class:`DeletionTable` with ``to_dict``.
"""

from __future__ import annotations

import logging
import zlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from prodlens.aggregate._validation import check_choice, check_float, check_int
from prodlens.aggregate.crops import match_segments
from prodlens.aggregate.global_explainer import ImageSource, index_samples
from prodlens.aggregate.results import MODALITIES, GlobalExplanations, GlobalFeature
from prodlens.aggregate.text import get_scorer, normalize_word
from prodlens.errors import Skip
from prodlens.data.types import OcrToken, ProductSample
from prodlens.explain.explanation import Explanation
from prodlens.explain.interpretable import Fill, fill_image
from prodlens.models.base import Classifier

log = logging.getLogger(__name__)


def _num(x: float) -> float | None:
    """``None`` for NaN (no samples), so the JSON stays standard."""
    x = float(x)
    return None if x != x else x


def _float(x: float | None) -> float:
    return float("nan") if x is None else float(x)


@dataclass(frozen=True)
class DeletionRow:
    """One line of the deletion table: one model, one modality.

    A row with no samples has NaN accuracies (``null`` in JSON).

    >>> r = DeletionRow("concat", "image", 12, 0.9, 0.2, 0.85)
    >>> DeletionRow.from_dict(r.to_dict()) == r
    True
    """

    model: str
    modality: str
    samples: int
    no_deletion_accuracy: float
    top_deletion_accuracy: float
    random_deletion_accuracy: float
    random_deletion_std: float = 0.0  #: spread of the random-deletion accuracy over repeats
    mean_deleted: float = 0.0  #: features deleted per sample (same for top and random)
    sample_ids: tuple[str, ...] = ()
    config: dict = field(default_factory=dict, compare=False)
    skipped: tuple[Skip, ...] = field(default=(), compare=False)  #: (file, reason) of unreadable photos

    def to_dict(self) -> dict:
        return {
            "model": self.model,
            "modality": self.modality,
            "samples": int(self.samples),
            "no_deletion_accuracy": _num(self.no_deletion_accuracy),
            "top_deletion_accuracy": _num(self.top_deletion_accuracy),
            "random_deletion_accuracy": _num(self.random_deletion_accuracy),
            "random_deletion_std": _num(self.random_deletion_std),
            "mean_deleted": float(self.mean_deleted),
            "sample_ids": list(self.sample_ids),
            "config": self.config,
            "skipped": [list(x) for x in self.skipped],
        }

    def as_steps(self) -> dict:
        """The row as the store's step/accuracy record (``prodlens.store.records.DeletionResult``
        fields): steps ``[0, 1, 2]`` = no / top-k / random deletion, named in ``config["steps"]``.

        >>> DeletionRow("m", "text", 3, 1.0, 0.0, 1.0).as_steps()["accuracies"]
        [1.0, 0.0, 1.0]
        """
        return {
            "model": self.model,
            "modality": self.modality,
            "steps": [0.0, 1.0, 2.0],
            "accuracies": [self.no_deletion_accuracy, self.top_deletion_accuracy, self.random_deletion_accuracy],
            "sample_ids": list(self.sample_ids),
            "config": {**self.config, "kind": "global_vs_random", "steps": ["none", "top_global", "random"],
                       "samples": self.samples, "random_deletion_std": self.random_deletion_std,
                       "mean_deleted": self.mean_deleted},
        }

    @classmethod
    def from_dict(cls, d: dict) -> DeletionRow:
        return cls(
            model=str(d["model"]),
            modality=str(d["modality"]),
            samples=int(d["samples"]),
            no_deletion_accuracy=_float(d["no_deletion_accuracy"]),
            top_deletion_accuracy=_float(d["top_deletion_accuracy"]),
            random_deletion_accuracy=_float(d["random_deletion_accuracy"]),
            random_deletion_std=_float(d.get("random_deletion_std", 0.0)),
            mean_deleted=float(d.get("mean_deleted", 0.0)),
            sample_ids=tuple(d.get("sample_ids", ())),
            config=dict(d.get("config", {})),
            skipped=tuple((str(p), str(w)) for p, w in d.get("skipped", ())),
        )


@dataclass(frozen=True)
class DeletionTable:
    """Rows of the deletion test; ``to_dict()`` is ``{"rows": [...]}``.

    >>> t = DeletionTable((DeletionRow("m", "text", 3, 1.0, 0.0, 1.0),))
    >>> DeletionTable.from_dict(t.to_dict()) == t, t.to_dict()["rows"][0]["top_deletion_accuracy"]
    (True, 0.0)
    """

    rows: tuple[DeletionRow, ...] = ()
    meta: dict = field(default_factory=dict, compare=False)

    def to_dict(self) -> dict:
        d: dict = {"rows": [r.to_dict() for r in self.rows]}
        if self.meta:
            d["meta"] = self.meta
        return d

    @classmethod
    def from_dict(cls, d: dict) -> DeletionTable:
        return cls(tuple(DeletionRow.from_dict(r) for r in d.get("rows", [])), dict(d.get("meta", {})))

    def merged(self, other: DeletionTable) -> DeletionTable:
        """This table with ``other``'s rows, replacing rows of the same model and modality."""
        new = {(r.model, r.modality) for r in other.rows}
        return DeletionTable(tuple(r for r in self.rows if (r.model, r.modality) not in new) + other.rows,
                             {**self.meta, **other.meta})


def format_deletion_table(table: DeletionTable) -> str:
    """A Markdown table in the layout of the paper's Table 2.

    >>> print(format_deletion_table(DeletionTable((DeletionRow("concat", "text", 3, 1.0, 0.0, 2 / 3),))))
    | model | modality | samples | no deletion | top-3 deleted | random deleted |
    |---|---|---:|---:|---:|---:|
    | concat | text | 3 | 100.0% | 0.0% | 66.7% |
    """
    k = next((r.config.get("top_k") for r in table.rows if r.config.get("top_k")), 3)
    lines = [
        f"| model | modality | samples | no deletion | top-{k} deleted | random deleted |",
        "|---|---|---:|---:|---:|---:|",
    ]
    def pct(x: float) -> str:
        return "-" if x != x else f"{x:.1%}"

    for r in table.rows:
        rnd = pct(r.random_deletion_accuracy) + (f" ± {r.random_deletion_std:.1%}" if r.random_deletion_std else "")
        lines.append(
            f"| {r.model} | {r.modality} | {r.samples} | {pct(r.no_deletion_accuracy)} "
            f"| {pct(r.top_deletion_accuracy)} | {rnd} |"
        )
    return "\n".join(lines)


# -- which features to delete ------------------------------------------------------------
def _sample_rng(seed: int, sample_id: str, repeat: int) -> np.random.Generator:
    """A generator that depends on the seed, the sample and the repeat only (not on order)."""
    return np.random.default_rng([int(seed), zlib.crc32(sample_id.encode("utf-8")), int(repeat)])


def image_targets(features: Sequence[GlobalFeature], sample_id: str) -> list[int]:
    """Superpixels of ``sample_id`` that are members of the given image clusters."""
    return sorted({o.index for f in features for o in f.occurrences if o.sample_id == sample_id})


class WordMatcher:
    """Does an OCR token belong to one of the given word groups? (same normalisation and
    similarity as the grouping that made them)."""

    def __init__(self, features: Sequence[GlobalFeature], config: Mapping[str, Any]) -> None:
        self.case = config.get("word_case", "upper")
        self.min_length = int(config.get("min_word_length", 2))
        self.threshold = float(config.get("word_threshold", 0.75))
        self.score = get_scorer(config.get("word_scorer", "levenshtein"))
        self.variants = {v for f in features for v in (f.variants or {f.text: 1}) if v}
        self.names = [f.text for f in features if f.text]

    def __call__(self, token: OcrToken) -> bool:
        w = normalize_word(token.text, self.case, self.min_length)
        if w is None:
            return False
        return w in self.variants or any(self.score(w, n) >= self.threshold for n in self.names)


def random_superpixels(
    segments: np.ndarray, deleted: Sequence[int], rng: np.random.Generator, area_tolerance: float = 0.5
) -> list[int]:
    """As many other superpixels as ``deleted``, each of similar area to one deleted superpixel.

    For each deleted superpixel (largest first) one not-yet-chosen other superpixel is
    drawn uniformly among those whose area is within a factor ``1 + area_tolerance``
    (else among the closest in area). Fewer are returned when too few others exist.

    >>> seg = np.repeat(np.arange(6), [4, 4, 4, 4, 12, 12]).reshape(4, 10)
    >>> sorted(random_superpixels(seg, [0], np.random.default_rng(0))) in ([1], [2], [3])
    True
    """
    areas = np.bincount(np.asarray(segments).ravel())
    gone = set(int(d) for d in deleted)
    free = [i for i in range(len(areas)) if areas[i] > 0 and i not in gone]
    chosen: list[int] = []
    for d in sorted(gone, key=lambda i: (-areas[i] if i < len(areas) else 0, i)):
        if not free:
            break
        a = float(areas[d]) if d < len(areas) else 1.0
        cand = np.array(free)
        ratio = np.maximum(areas[cand] / a, a / np.maximum(areas[cand], 1))
        ok = cand[ratio <= 1 + area_tolerance]
        if ok.size == 0:
            ok = cand[ratio == ratio.min()]
        pick = int(rng.choice(ok))
        chosen.append(pick)
        free.remove(pick)
    return chosen


def random_tokens(n_tokens: int, deleted: Sequence[int], rng: np.random.Generator) -> list[int]:
    """``len(deleted)`` other token indices drawn uniformly (fewer if not enough exist).

    >>> r = random_tokens(5, [0, 1], np.random.default_rng(0))
    >>> len(r), set(r) <= {2, 3, 4}
    (2, True)
    """
    free = np.array([j for j in range(n_tokens) if j not in set(deleted)], dtype=np.int64)
    k = min(len(deleted), len(free))
    return sorted(int(j) for j in rng.choice(free, size=k, replace=False)) if k else []


# -- the test -----------------------------------------------------------------------
@dataclass
class _Case:
    sample_id: str
    label: str
    explanation: Explanation
    deleted: list[int]
    random: list[list[int]]


def _pick_explanations(explanations: Iterable[Explanation], labels: Mapping[str, str]) -> dict[str, Explanation]:
    """One explanation per sample (its true class's when there are several): segments + tokens."""
    out: dict[str, Explanation] = {}
    for e in explanations:
        cur = out.get(e.sample_id)
        if cur is None or (cur.target_name != labels.get(e.sample_id) and e.target_name == labels.get(e.sample_id)):
            out[e.sample_id] = e
    return out


def deletion_test(
    classifier: Classifier,
    global_explanations: GlobalExplanations,
    explanations: Sequence[Explanation],
    samples: Iterable[ProductSample] | Mapping[str, ProductSample] | None = None,
    *,
    modality: str,
    model: str = "model",
    top_k: int = 3,
    fill: Fill = "black",
    n_repeats: int = 1,
    area_tolerance: float = 0.5,
    seed: int = 0,
    batch_size: int = 16,
    images: Mapping[str, np.ndarray] | None = None,
    progress: bool = True,
) -> DeletionRow:
    """Accuracy with nothing, the top-``k`` global features, or random features deleted.

    Parameters
    ----------
    classifier:
        Any :class:`~prodlens.models.base.Classifier` (the model the global explanations
        are of).
    global_explanations:
        That model's :class:`~prodlens.aggregate.results.GlobalExplanations`.
    explanations:
        Local explanations of the test samples (their ``segments`` and ``tokens`` are
        the features deleted; with several per sample, the true class's is used).
    samples:
        The samples (labels and photos); ``images`` may supply photos in memory. A photo
        that cannot be read is skipped (``row.skipped`` names it); the rest are scored.
    modality:
        ``"image"`` or ``"text"``.
    top_k:
        How many global features per class to delete (paper: 3).
    fill:
        What a deleted superpixel becomes: ``"black"`` (paper), ``"mean"``, ``"blur"`` or an RGB tuple.
    n_repeats:
        Random deletions per sample; the random accuracy is their mean (std reported).
    area_tolerance:
        A random superpixel's area may differ by this factor from the one it replaces (0.5: within 1.5x).
    seed:
        One seed for the whole run; each sample's draw depends only on (seed, sample id, repeat).

    >>> class Toy:  # predicts "a" when the token OATLY is present
    ...     classes = ["a", "b"]
    ...     def predict_proba(self, images, token_lists):
    ...         return np.array([[1.0, 0.0] if any(t.text == "OATLY" for t in ts) else [0.0, 1.0] for ts in token_lists])
    >>> from prodlens.aggregate import GlobalExplainer
    >>> toks = (OcrToken("OATLY", (0, 0, 1, 1)), OcrToken("MILK", (0, 0, 1, 1)))
    >>> ex = [Explanation(f"s{i}", 0, "a", np.array([0.0, 0.6, 0.1]), 0.0, 0.9, 0.9,
    ...                   np.zeros((2, 2), int), toks, 1) for i in range(3)]
    >>> g = GlobalExplainer(modalities=("text",), progress=False).fit(ex).global_
    >>> imgs = {f"s{i}": np.zeros((2, 2, 3), np.uint8) for i in range(3)}
    >>> r = deletion_test(Toy(), g, ex, images=imgs, modality="text", top_k=1, progress=False)
    >>> r.samples, r.no_deletion_accuracy, r.top_deletion_accuracy, r.random_deletion_accuracy
    (3, 1.0, 0.0, 1.0)
    """
    check_choice("modality", modality, MODALITIES)
    check_int("top_k", top_k, 1)
    check_int("n_repeats", n_repeats, 1)
    check_float("area_tolerance", area_tolerance, 0.0)
    check_int("batch_size", batch_size, 1)
    check_int("seed", seed, 0)
    if isinstance(fill, str):
        fill_image(np.zeros((1, 1, 3), np.uint8), np.zeros((1, 1), np.int32), fill)  # validates the name
    if not hasattr(classifier, "predict_proba"):
        raise TypeError(f"classifier must have predict_proba(images, token_lists); got {type(classifier).__name__}")
    classes = list(getattr(classifier, "classes", []))
    if not classes:
        raise ValueError("classifier.classes is empty: the deletion test needs the class names to score accuracy")
    by_id = index_samples(samples)
    labels = {sid: s.label for sid, s in by_id.items() if s.label is not None}
    chosen = _pick_explanations(explanations, labels)
    if not chosen:
        raise ValueError("explanations is empty: pass the local explanations of the test samples")
    missing_labels = [sid for sid in chosen if sid not in labels]
    if missing_labels:
        log.warning("%d samples have no label in samples=; using their explanation's class instead (e.g. %r)",
                    len(missing_labels), missing_labels[0])
    source = ImageSource(by_id, images)

    cases: list[_Case] = []
    matchers: dict[str, WordMatcher] = {}
    for sid in sorted(chosen):
        e = chosen[sid]
        label = labels.get(sid, e.target_name)
        top = global_explanations.top(label, modality, top_k)
        if not top:
            continue
        if modality == "image":
            deleted = [i for i in image_targets(top, sid) if i < e.n_superpixels]
            rnd = [random_superpixels(e.segments, deleted, _sample_rng(seed, sid, r), area_tolerance) for r in range(n_repeats)] if deleted else []
        else:
            if label not in matchers:
                matchers[label] = WordMatcher(top, global_explanations.config)
            deleted = [j for j, t in enumerate(e.tokens) if matchers[label](t)]
            rnd = [random_tokens(len(e.tokens), deleted, _sample_rng(seed, sid, r)) for r in range(n_repeats)] if deleted else []
        if deleted:
            cases.append(_Case(sid, label, e, deleted, rnd))
    log.info("%s/%s deletion test: %d of %d samples contain a top-%d global feature",
             model, modality, len(cases), len(chosen), top_k)
    config = {"top_k": top_k, "fill": fill if isinstance(fill, str) else list(fill), "n_repeats": n_repeats,
              "area_tolerance": area_tolerance, "seed": seed, "explained_samples": len(chosen)}
    if not cases:
        return DeletionRow(model, modality, 0, float("nan"), float("nan"), float("nan"), config=config)

    results: list[np.ndarray] = []
    scored: list[_Case] = []
    step = max(1, batch_size // (2 + n_repeats))
    with tqdm(total=len(cases), desc=f"deletion {model}/{modality}", disable=not progress) as bar:
        for start in range(0, len(cases), step):
            chunk = []
            imgs: list[np.ndarray] = []
            toks: list[list[OcrToken]] = []
            for c in cases[start : start + step]:
                image = source.load(c.sample_id)
                if image is None:
                    continue
                chunk.append(c)
                for i, ims, ts in _variants(c, image, modality, fill):
                    imgs.append(ims)
                    toks.append(ts)
            bar.update(min(step, len(cases) - start))
            if not chunk:
                continue
            proba = np.asarray(classifier.predict_proba(imgs, toks))
            if proba.shape != (len(imgs), len(classes)):
                raise ValueError(f"predict_proba returned shape {proba.shape}; expected {(len(imgs), len(classes))}")
            pred = proba.argmax(1).reshape(len(chunk), 2 + n_repeats)
            results += [np.array([classes[p] == c.label for p in pred[k]]) for k, c in enumerate(chunk)]
            scored += chunk
    skipped = tuple(source.skipped)
    if not scored:
        return DeletionRow(model, modality, 0, float("nan"), float("nan"), float("nan"), config=config, skipped=skipped)
    cases, correct = scored, np.stack(results)
    rand = correct[:, 2:].mean(0)
    return DeletionRow(
        model=model,
        modality=modality,
        samples=len(cases),
        no_deletion_accuracy=float(correct[:, 0].mean()),
        top_deletion_accuracy=float(correct[:, 1].mean()),
        random_deletion_accuracy=float(rand.mean()),
        random_deletion_std=float(rand.std()) if n_repeats > 1 else 0.0,
        mean_deleted=float(np.mean([len(c.deleted) for c in cases])),
        sample_ids=tuple(c.sample_id for c in cases),
        config=config,
        skipped=skipped,
    )


def _variants(c: _Case, image: np.ndarray, modality: str, fill: Fill):
    """(index, image, tokens) for: original, top deleted, each random deletion."""
    tokens = list(c.explanation.tokens)
    if modality == "text":
        yield 0, image, tokens
        yield 1, image, [t for j, t in enumerate(tokens) if j not in set(c.deleted)]
        for r, rnd in enumerate(c.random):
            yield 2 + r, image, [t for j, t in enumerate(tokens) if j not in set(rnd)]
        return
    seg = match_segments(c.explanation.segments, image.shape)
    background = fill_image(image, seg, fill)

    def paint(ids: Sequence[int]) -> np.ndarray:
        mask = np.isin(seg, np.asarray(ids, dtype=seg.dtype))
        return np.where(mask[..., None], background, image)

    yield 0, image, tokens
    yield 1, paint(c.deleted), tokens
    for r, rnd in enumerate(c.random):
        yield 2 + r, paint(rnd), tokens


def deletion_table(
    runs: Mapping[str, tuple[Classifier, GlobalExplanations, Sequence[Explanation]]],
    samples: Iterable[ProductSample] | Mapping[str, ProductSample] | None = None,
    *,
    modalities: Sequence[str] = MODALITIES,
    images: Mapping[str, np.ndarray] | None = None,
    **params: Any,
) -> DeletionTable:
    """:func:`deletion_test` for every model and modality: ``runs`` is
    ``{model_name: (classifier, global_explanations, explanations)}``."""
    samples = index_samples(samples)
    rows = [
        deletion_test(clf, g, ex, samples, modality=m, model=name, images=images, **params)
        for name, (clf, g, ex) in runs.items()
        for m in modalities
    ]
    return DeletionTable(tuple(rows))
