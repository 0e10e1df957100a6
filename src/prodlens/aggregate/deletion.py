"""The deletion test (paper Table 2): does deleting a class's top global features hurt?

For one model and one modality, the test set is every explained sample that contains
at least one of its class's top-``k`` global features of that modality. On those
samples three accuracies are measured:

* **no deletion** -- the untouched photo and OCR tokens;
* **top deletion** -- every local feature belonging to one of the top-``k`` global
  features removed: the matching superpixels painted over (black by default), or every
  OCR token whose normalised word belongs to the word group (all matching tokens, not
  only those among the sample's top local features) left out of the list;
* **random deletion** -- a control of the same size (:mod:`~prodlens.aggregate.controls`):
  the deleted superpixels' exact shapes moved nearby (the paper's control), or as many
  other real words.

The global features must come from another split than the tested samples (built on
train, tested on val): :func:`check_splits` refuses or warns on in-sample use and the
row's ``config`` names the splits. Held-out photos are matched to image clusters by
embedding (:class:`~prodlens.aggregate.membership.ImageMatcher`), words by spelling.

Each sample's three outcomes are kept (:class:`SampleOutcome`); the drops
``no - top``, ``no - random`` and their difference ``random - top`` get paired
bootstrap confidence intervals (:mod:`~prodlens.aggregate.paired`). If the global
features matter, top deletion should cost more than the control, with an interval of
``top_minus_random`` above 0. Results are :class:`DeletionRow` / :class:`DeletionTable`
with ``to_dict``.
"""

from __future__ import annotations

import logging
import zlib
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from prodlens._validation import check_choice, check_float, check_int
from prodlens.aggregate.controls import random_region, random_words
from prodlens.aggregate.crops import match_segments
from prodlens.aggregate.global_explainer import ImageSource, index_samples
from prodlens.aggregate.membership import ImageMatcher, WordMatcher, image_targets, support_ids
from prodlens.aggregate.paired import METHOD, Interval, paired_bootstrap
from prodlens.aggregate.results import MODALITIES, GlobalExplanations
from prodlens.errors import Skip
from prodlens.data.types import OcrToken, ProductSample
from prodlens.explain.explanation import Explanation
from prodlens.explain.interpretable import Fill, fill_image
from prodlens.models.base import Classifier

__all__ = ["DeletionRow", "DeletionTable", "ImageMatcher", "SampleOutcome", "WordMatcher", "check_splits",
           "crossfit_deletion_test", "crossfit_folds",
           "deletion_table", "deletion_test", "format_deletion_table", "image_targets"]

log = logging.getLogger(__name__)

#: What :func:`check_splits` does with in-sample use.
IN_SAMPLE = ("warn", "error", "allow")


def _num(x: float) -> float | None:
    """``None`` for NaN (no samples), so the JSON stays standard."""
    x = float(x)
    return None if x != x else x


def _float(x: float | None) -> float:
    return float("nan") if x is None else float(x)


@dataclass(frozen=True)
class SampleOutcome:
    """One tested sample: correct untouched / with the top features deleted / under the
    random control (mean over repeats), and how much each deletion removed.

    ``deleted`` counts superpixels or words; ``deleted_pixels`` and ``random_deleted``
    (image: pixels; text: words) show that the control removed as much; ``short`` says
    the sample had fewer other real words than the top deletion removed.

    >>> o = SampleOutcome("s1", "c", True, False, 1.0, 2, deleted_pixels=300, random_deleted=300.0)
    >>> SampleOutcome.from_dict(o.to_dict()) == o
    True
    """

    sample_id: str
    label: str
    correct: bool
    correct_top: bool
    correct_random: float
    deleted: int
    deleted_pixels: int | None = None
    random_deleted: float = 0.0
    random_overlap: float | None = None  #: image: share of the control that could not avoid the top region
    short: bool = False
    held_out: bool = True  #: the sample did not help build the global features

    def to_dict(self) -> dict:
        return {"sample_id": self.sample_id, "label": self.label, "correct": bool(self.correct),
                "correct_top": bool(self.correct_top), "correct_random": float(self.correct_random),
                "deleted": int(self.deleted), "deleted_pixels": self.deleted_pixels,
                "random_deleted": float(self.random_deleted), "random_overlap": self.random_overlap,
                "short": bool(self.short), "held_out": bool(self.held_out)}

    @classmethod
    def from_dict(cls, d: dict) -> SampleOutcome:
        return cls(str(d["sample_id"]), str(d["label"]), bool(d["correct"]), bool(d["correct_top"]),
                   float(d["correct_random"]), int(d["deleted"]), d.get("deleted_pixels"),
                   float(d.get("random_deleted", 0.0)), d.get("random_overlap"), bool(d.get("short", False)),
                   bool(d.get("held_out", True)))


def _interval(d: dict | None) -> Interval | None:
    return None if d is None else Interval.from_dict(d)


@dataclass(frozen=True)
class DeletionRow:
    """One line of the deletion table: one model, one modality.

    A row with no samples has NaN accuracies (``null`` in JSON). ``top_drop`` (no - top),
    ``random_drop`` (no - random) and ``top_minus_random`` (random - top: how much more
    the top features cost than the control) are paired-bootstrap :class:`Interval` s;
    ``per_sample`` holds the paired outcomes. Rows written before these existed read
    back with ``None`` / ``()``.

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
    top_drop: Interval | None = None
    random_drop: Interval | None = None
    top_minus_random: Interval | None = None
    per_sample: tuple[SampleOutcome, ...] = field(default=(), compare=False)

    def intervals(self) -> dict:
        """``{"top_drop": {...}, "random_drop": {...}, "top_minus_random": {...}}`` (those present)."""
        named = {"top_drop": self.top_drop, "random_drop": self.random_drop, "top_minus_random": self.top_minus_random}
        return {k: v.to_dict() for k, v in named.items() if v is not None}

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
            **self.intervals(),
            "config": self.config,
            "skipped": [list(x) for x in self.skipped],
            "per_sample": [o.to_dict() for o in self.per_sample],
        }

    def as_steps(self) -> dict:
        """The row as the store's step/accuracy record (``prodlens.store.records.DeletionResult``
        fields): steps ``[0, 1, 2]`` = no / top-k / random deletion, named in ``config["steps"]``;
        the intervals, splits and paired outcomes go into ``config`` too.

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
                       "mean_deleted": self.mean_deleted, "intervals": self.intervals(),
                       "per_sample": [o.to_dict() for o in self.per_sample]},
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
            top_drop=_interval(d.get("top_drop")),
            random_drop=_interval(d.get("random_drop")),
            top_minus_random=_interval(d.get("top_minus_random")),
            per_sample=tuple(SampleOutcome.from_dict(o) for o in d.get("per_sample", ())),
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


def splits_note(table: DeletionTable) -> str:
    """One line per distinct split setting: where the global features come from and what was tested.

    >>> row = DeletionRow("m", "text", 3, 1.0, 0.0, 1.0, config={"global_splits": ["train"], "test_splits": ["val"],
    ...                                                          "in_sample": False})
    >>> splits_note(DeletionTable((row,)))
    'global features built on train, tested on val (held out)'
    """
    seen: dict[str, None] = {}
    for r in table.rows:
        c = r.config
        if "in_sample" not in c:
            continue
        built = ", ".join(c.get("global_splits") or ["an unrecorded split"])
        tested = ", ".join(c.get("test_splits") or ["an unrecorded split"])
        how = "IN-SAMPLE: the drop is flattering" if c["in_sample"] else "held out"
        if c.get("holdout"):
            seen[f"global features built on {built}, tested on {tested} ({c['holdout']}: {c.get('holdout_note', how)})"] = None
            continue
        seen[f"global features built on {built}, tested on {tested} ({how})"] = None
    return "\n".join(seen)


def format_deletion_table(table: DeletionTable) -> str:
    """A Markdown table in the layout of the paper's Table 2, with the paired intervals
    and a line naming the splits.

    >>> print(format_deletion_table(DeletionTable((DeletionRow("concat", "text", 3, 1.0, 0.0, 2 / 3),))))
    | model | modality | samples | no deletion | top-3 deleted | random deleted | top drop [95% CI] | top - random [95% CI] |
    |---|---|---:|---:|---:|---:|---:|---:|
    | concat | text | 3 | 100.0% | 0.0% | 66.7% | - | - |
    """
    k = next((r.config.get("top_k") for r in table.rows if r.config.get("top_k")), 3)
    level = next((r.config["ci"]["level"] for r in table.rows if "ci" in r.config), 0.95)
    ci = f"[{level:.0%} CI]"
    lines = [
        f"| model | modality | samples | no deletion | top-{k} deleted | random deleted | top drop {ci} | top - random {ci} |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    def pct(x: float) -> str:
        return "-" if x != x else f"{x:.1%}"

    for r in table.rows:
        rnd = pct(r.random_deletion_accuracy) + (f" ± {r.random_deletion_std:.1%}" if r.random_deletion_std else "")
        drops = [str(iv) if iv is not None and iv.estimate == iv.estimate else "-" for iv in (r.top_drop, r.top_minus_random)]
        lines.append(
            f"| {r.model} | {r.modality} | {r.samples} | {pct(r.no_deletion_accuracy)} "
            f"| {pct(r.top_deletion_accuracy)} | {rnd} | {drops[0]} | {drops[1]} |"
        )
    note = splits_note(table)
    return "\n".join(lines) + (f"\n\n{note}" if note else "")


# -- which features to delete ------------------------------------------------------------
def _sample_rng(seed: int, sample_id: str, repeat: int) -> np.random.Generator:
    """A generator that depends on the seed, the sample and the repeat only (not on order)."""
    return np.random.default_rng([int(seed), zlib.crc32(sample_id.encode("utf-8")), int(repeat)])


def _splits(value: str | Sequence[str] | None) -> tuple[str, ...]:
    if value is None:
        return ()
    return (value,) if isinstance(value, str) else tuple(sorted(set(value)))


def check_splits(
    global_explanations: GlobalExplanations,
    tested: Mapping[str, ProductSample | None],
    *,
    global_split: str | Sequence[str] | None = None,
    test_split: str | Sequence[str] | None = None,
    in_sample: str = "warn",
) -> dict:
    """Which splits the global features come from and which are tested, and whether they overlap.

    The global features must be built on one split and tested on another: a sample that
    helped build them (it is among their occurrences, or its split is among the global
    explanation's splits) tests them in-sample, which flatters them. ``in_sample`` says
    what then happens: ``"error"`` refuses, ``"warn"`` (default) logs a warning and goes
    on, ``"allow"`` goes on quietly; either way the result's config says so.
    ``global_split`` defaults to the splits recorded by :class:`GlobalExplainer`
    (``config["fit_splits"]``), ``test_split`` to the tested samples' splits.
    """
    check_choice("in_sample", in_sample, IN_SAMPLE)
    built = _splits(global_split) or _splits(global_explanations.config.get("fit_splits"))
    tested_splits = _splits(test_split) or _splits([s.split for s in tested.values() if s is not None])
    both = sorted(set(tested) & support_ids(global_explanations))
    shared = sorted(set(built) & set(tested_splits))
    info = {"global_splits": list(built), "test_splits": list(tested_splits), "in_sample": bool(both or shared),
            "in_sample_samples": len(both), "in_sample_policy": in_sample}
    if info["in_sample"]:
        what = (f"{len(both)} of the {len(tested)} tested samples helped build the global features" if both else
                f"the tested split(s) {shared} are those the global features were built on")
        msg = (f"in-sample deletion test: {what}, so their selection is tested on its own data and the drop is "
               "flattering; build the global explanation on another split (e.g. train) and test on val/test")
        if in_sample == "error":
            raise ValueError(msg + " (or pass in_sample='warn' to run it anyway)")
        if in_sample == "warn":
            log.warning("%s", msg)
    return info


@dataclass
class _Case:
    sample_id: str
    label: str
    explanation: Explanation
    deleted: list[int]
    held_out: bool


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
    reach: float = 2.0,
    seed: int = 0,
    global_split: str | Sequence[str] | None = None,
    test_split: str | Sequence[str] | None = None,
    in_sample: str = "warn",
    embed_fn: Callable[[list[np.ndarray]], np.ndarray] | None = None,
    radius_scale: float = 1.0,
    ci_level: float = 0.95,
    resamples: int = 2000,
    batch_size: int = 16,
    images: Mapping[str, np.ndarray] | None = None,
    progress: bool = True,
) -> DeletionRow:
    """Accuracy with nothing, the top-``k`` global features, or a random control deleted.

    Parameters
    ----------
    classifier:
        Any :class:`~prodlens.models.base.Classifier` (the model the global explanations
        are of).
    global_explanations:
        That model's :class:`~prodlens.aggregate.results.GlobalExplanations`, built on
        another split than the tested one (see :func:`check_splits`).
    explanations:
        Local explanations of the test samples (their ``segments`` and ``tokens`` are
        the features deleted; with several per sample, the true class's is used).
    samples:
        The samples (labels, splits and photos); ``images`` may supply photos in memory. A
        photo that cannot be read is skipped (``row.skipped`` names it); the rest are scored.
    modality:
        ``"image"`` or ``"text"``.
    top_k:
        How many global features per class to delete (paper: 3).
    fill:
        What deleted pixels become: ``"black"`` (paper), ``"mean"``, ``"blur"`` or an RGB tuple.
    n_repeats:
        Random controls per sample; a sample's random outcome is the mean over them.
    reach:
        Image control: each deleted superpixel's shape moves by at most ``reach`` times
        its bounding box (see :mod:`~prodlens.aggregate.controls`).
    seed:
        One seed for the whole run; each sample's draw depends only on (seed, sample id, repeat).
    global_split, test_split, in_sample:
        The splits the global features were built on / are tested on (defaults: as
        recorded, and the samples' own), and what to do when they overlap: ``"warn"``,
        ``"error"`` or ``"allow"`` (:func:`check_splits`).
    embed_fn, radius_scale:
        Held-out image samples: the embedding the clusters were built with (default the
        classifier's ``encode_images``) and the radius factor of
        :class:`~prodlens.aggregate.membership.ImageMatcher`.
    ci_level, resamples:
        The paired bootstrap intervals on the accuracy drops (:mod:`~prodlens.aggregate.paired`).

    >>> class Toy:  # predicts "a" when the token OATLY is present
    ...     classes = ["a", "b"]
    ...     def predict_proba(self, images, token_lists):
    ...         return np.array([[1.0, 0.0] if any(t.text == "OATLY" for t in ts) else [0.0, 1.0] for ts in token_lists])
    >>> from prodlens.aggregate import GlobalExplainer
    >>> toks = (OcrToken("OATLY", (0, 0, 1, 1)), OcrToken("MILK", (0, 0, 1, 1)))
    >>> ex = [Explanation(f"s{i}", 0, "a", np.array([0.0, 0.6, 0.1]), 0.0, 0.9, 0.9,
    ...                   np.zeros((2, 2), int), toks, 1) for i in range(6)]
    >>> g = GlobalExplainer(modalities=("text",), progress=False).fit(ex[:3]).global_
    >>> imgs = {f"s{i}": np.zeros((2, 2, 3), np.uint8) for i in range(6)}
    >>> r = deletion_test(Toy(), g, ex[3:], images=imgs, modality="text", top_k=1, progress=False)
    >>> r.samples, r.no_deletion_accuracy, r.top_deletion_accuracy, r.random_deletion_accuracy
    (3, 1.0, 0.0, 1.0)
    >>> r.top_drop.estimate, r.config["in_sample"]
    (1.0, False)
    """
    _check_params(modality, top_k, n_repeats, reach, batch_size, seed, radius_scale, ci_level, resamples, fill)
    classes, by_id, labels, chosen = _prepare(classifier, explanations, samples)
    splits = check_splits(global_explanations, {sid: by_id.get(sid) for sid in chosen}, global_split=global_split,
                          test_split=test_split, in_sample=in_sample)
    source = ImageSource(by_id, images)
    config = _config(modality, top_k, fill, n_repeats, reach, seed, len(chosen), splits, radius_scale, ci_level, resamples)
    scored, outcomes = _score(classifier, classes, global_explanations, chosen, labels, source, modality=modality,
                              model=model, top_k=top_k, fill=fill, n_repeats=n_repeats, reach=reach, seed=seed,
                              embed_fn=embed_fn, radius_scale=radius_scale, batch_size=batch_size, progress=progress)
    return _finish(model, modality, scored, outcomes, config, ci_level, resamples, seed, tuple(source.skipped))


def crossfit_deletion_test(
    classifier: Classifier,
    fit_global: Callable[[list[Explanation]], GlobalExplanations],
    explanations: Sequence[Explanation],
    samples: Iterable[ProductSample] | Mapping[str, ProductSample] | None = None,
    *,
    modality: str,
    folds: int = 2,
    model: str = "model",
    top_k: int = 3,
    fill: Fill = "black",
    n_repeats: int = 1,
    reach: float = 2.0,
    seed: int = 0,
    embed_fn: Callable[[list[np.ndarray]], np.ndarray] | None = None,
    radius_scale: float = 1.0,
    ci_level: float = 0.95,
    resamples: int = 2000,
    batch_size: int = 16,
    images: Mapping[str, np.ndarray] | None = None,
    progress: bool = True,
) -> DeletionRow:
    """The deletion test without a second explained split: K-fold cross-fitting.

    The explained samples are dealt into ``folds`` folds (round robin within each class,
    in id order); each fold is tested against global features that ``fit_global``
    builds from the *other* folds' explanations, so no sample tests a selection it took
    part in. The per-sample outcomes of all folds form one row (paired intervals over
    all of them). Other parameters as in :func:`deletion_test`.

    >>> class Toy:  # predicts "a" when the token OATLY is present
    ...     classes = ["a", "b"]
    ...     def predict_proba(self, images, token_lists):
    ...         return np.array([[1.0, 0.0] if any(t.text == "OATLY" for t in ts) else [0.0, 1.0] for ts in token_lists])
    >>> from prodlens.aggregate import GlobalExplainer
    >>> toks = (OcrToken("OATLY", (0, 0, 1, 1)), OcrToken("MILK", (0, 0, 1, 1)))
    >>> ex = [Explanation(f"s{i}", 0, "a", np.array([0.0, 0.6, 0.1]), 0.0, 0.9, 0.9,
    ...                   np.zeros((2, 2), int), toks, 1) for i in range(6)]
    >>> fit = lambda es: GlobalExplainer(modalities=("text",), progress=False).fit(es).global_
    >>> imgs = {f"s{i}": np.zeros((2, 2, 3), np.uint8) for i in range(6)}
    >>> r = crossfit_deletion_test(Toy(), fit, ex, images=imgs, modality="text", top_k=1, progress=False)
    >>> r.samples, r.top_drop.estimate, r.config["holdout"], r.config["in_sample"]
    (6, 1.0, '2-fold cross-fit', False)
    """
    _check_params(modality, top_k, n_repeats, reach, batch_size, seed, radius_scale, ci_level, resamples, fill)
    check_int("folds", folds, 2)
    classes, by_id, labels, chosen = _prepare(classifier, explanations, samples)
    if len(chosen) < folds:
        raise ValueError(f"{len(chosen)} explained samples cannot be dealt into {folds} folds; explain more photos")
    fold_of = crossfit_folds({sid: labels.get(sid, e.target_name) for sid, e in chosen.items()}, folds)
    source = ImageSource(by_id, images)
    scored: list[list[bool]] = []
    outcomes: list[SampleOutcome] = []
    for f in range(folds):
        test = {sid: e for sid, e in chosen.items() if fold_of[sid] == f}
        fit_on = [e for e in explanations if fold_of.get(e.sample_id, -1) != f]
        g = fit_global(fit_on)
        leaked = set(test) & support_ids(g)
        if leaked:  # fit_global must use only what it was given
            raise ValueError(f"fit_global used {len(leaked)} samples of the held-out fold (e.g. {sorted(leaked)[0]!r})")
        s, o = _score(classifier, classes, g, test, labels, source, modality=modality, model=model, top_k=top_k,
                      fill=fill, n_repeats=n_repeats, reach=reach, seed=seed, embed_fn=embed_fn,
                      radius_scale=radius_scale, batch_size=batch_size, progress=progress)
        scored += s
        outcomes += o
    split_names = sorted({str(s.split) for sid in chosen if (s := by_id.get(sid)) is not None and s.split})
    splits = {"global_splits": split_names, "test_splits": split_names, "in_sample": False, "in_sample_samples": 0,
              "in_sample_policy": "crossfit", "holdout": f"{folds}-fold cross-fit",
              "holdout_note": f"each sample tested against global features built from the other {folds - 1} fold(s)"}
    config = _config(modality, top_k, fill, n_repeats, reach, seed, len(chosen), splits, radius_scale, ci_level, resamples)
    return _finish(model, modality, scored, outcomes, config, ci_level, resamples, seed, tuple(source.skipped))


def crossfit_folds(labels: Mapping[str, str], folds: int) -> dict[str, int]:
    """``{sample id: fold}``: round robin within each class in id order (balanced classes per fold).

    >>> crossfit_folds({"a1": "A", "a2": "A", "a3": "A", "b1": "B"}, 2)
    {'a1': 0, 'a2': 1, 'a3': 0, 'b1': 0}
    """
    out: dict[str, int] = {}
    by_class: dict[str, list[str]] = {}
    for sid in sorted(labels):
        by_class.setdefault(str(labels[sid]), []).append(sid)
    for ids in by_class.values():
        for i, sid in enumerate(ids):
            out[sid] = i % folds
    return dict(sorted(out.items()))


def _check_params(modality: str, top_k: int, n_repeats: int, reach: float, batch_size: int, seed: int,
                  radius_scale: float, ci_level: float, resamples: int, fill: Fill) -> None:
    check_choice("modality", modality, MODALITIES)
    check_int("top_k", top_k, 1)
    check_int("n_repeats", n_repeats, 1)
    check_float("reach", reach, 0.0)
    check_int("batch_size", batch_size, 1)
    check_int("seed", seed, 0)
    check_float("radius_scale", radius_scale, 0.0)
    check_float("ci_level", ci_level, 0.0, 1.0)
    check_int("resamples", resamples, 1)
    if isinstance(fill, str):
        fill_image(np.zeros((1, 1, 3), np.uint8), np.zeros((1, 1), np.int32), fill)  # validates the name


def _prepare(classifier: Classifier, explanations: Sequence[Explanation],
             samples: Iterable[ProductSample] | Mapping[str, ProductSample] | None
             ) -> tuple[list[str], dict[str, ProductSample], dict[str, str], dict[str, Explanation]]:
    """(class names, samples by id, labels by id, one explanation per tested sample), checked."""
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
    return classes, by_id, labels, chosen


def _config(modality: str, top_k: int, fill: Fill, n_repeats: int, reach: float, seed: int, n_explained: int,
            splits: dict, radius_scale: float, ci_level: float, resamples: int) -> dict:
    return {"top_k": top_k, "fill": fill if isinstance(fill, str) else list(fill), "n_repeats": n_repeats,
            "reach": reach, "seed": seed, "explained_samples": n_explained, **splits,
            "control": CONTROLS[modality], "radius_scale": radius_scale,
            "ci": {"level": ci_level, "method": METHOD, "resamples": resamples}}


def _score(classifier: Classifier, classes: list[str], global_explanations: GlobalExplanations,
           chosen: Mapping[str, Explanation], labels: Mapping[str, str], source: ImageSource, *, modality: str,
           model: str, top_k: int, fill: Fill, n_repeats: int, reach: float, seed: int, embed_fn: Callable | None,
           radius_scale: float, batch_size: int, progress: bool) -> tuple[list[list[bool]], list[SampleOutcome]]:
    """Per-sample correctness (original, top deleted, each random control) and outcomes."""
    cases = _cases(chosen, labels, global_explanations, modality, top_k, source,
                   embed_fn or getattr(classifier, "encode_images", None), radius_scale)
    log.info("%s/%s deletion test: %d of %d samples contain a top-%d global feature (%d held out)",
             model, modality, len(cases), len(chosen), top_k, sum(c.held_out for c in cases))
    g_cfg = global_explanations.config
    case_, min_len = g_cfg.get("word_case", "upper"), int(g_cfg.get("min_word_length", 2))
    scored: list[list[bool]] = []
    outcomes: list[SampleOutcome] = []
    step = max(1, batch_size // (2 + n_repeats))
    with tqdm(total=len(cases), desc=f"deletion {model}/{modality}", disable=not progress) as bar:
        for start in range(0, len(cases), step):
            chunk = []
            imgs: list[np.ndarray] = []
            toks: list[list[OcrToken]] = []
            facts: list[dict] = []
            for c in cases[start : start + step]:
                image = source.load(c.sample_id)
                if image is None:
                    continue
                inputs, fact = _variants(c, image, modality, fill, n_repeats, seed, reach, case_, min_len)
                chunk.append(c)
                imgs += [im for im, _ in inputs]
                toks += [ts for _, ts in inputs]
                facts.append(fact)
            bar.update(min(step, len(cases) - start))
            if not chunk:
                continue
            proba = np.asarray(classifier.predict_proba(imgs, toks))
            if proba.shape != (len(imgs), len(classes)):
                raise ValueError(f"predict_proba returned shape {proba.shape}; expected {(len(imgs), len(classes))}")
            pred = proba.argmax(1).reshape(len(chunk), 2 + n_repeats)
            for k, (c, fact) in enumerate(zip(chunk, facts)):
                ok = [classes[p] == c.label for p in pred[k]]
                scored.append(ok)
                outcomes.append(SampleOutcome(c.sample_id, c.label, ok[0], ok[1], float(np.mean(ok[2:])),
                                              len(c.deleted), held_out=c.held_out, **fact))
    return scored, outcomes


def _finish(model: str, modality: str, scored: list[list[bool]], outcomes: list[SampleOutcome], config: dict,
            ci_level: float, resamples: int, seed: int, skipped: tuple) -> DeletionRow:
    if not outcomes:
        return DeletionRow(model, modality, 0, float("nan"), float("nan"), float("nan"), config=config, skipped=skipped)
    row = _row(model, modality, np.array(scored, dtype=bool), outcomes, config, ci_level, resamples, seed)
    return replace(row, skipped=skipped)


#: How each modality's random control is drawn (stored in the result's config).
CONTROLS = {
    "image": "each deleted superpixel's shape moved by a random offset of up to reach x its size, inside the "
             "photo and off the top region where possible (same pixels, near the top feature)",
    "text": "as many other real words (tokens that survive the word groups' normalisation) as the top deletion "
            "removed; all of them when fewer exist (counted as short)",
}


def _cases(chosen: Mapping[str, Explanation], labels: Mapping[str, str], g: GlobalExplanations, modality: str,
           top_k: int, source: ImageSource, embed_fn: Callable | None, radius_scale: float) -> list[_Case]:
    """The samples that contain one of their class's top-k global features, with those features."""
    cases: list[_Case] = []
    matchers: dict[str, WordMatcher] = {}
    members = support_ids(g)
    image_matcher: ImageMatcher | None = None
    for sid in sorted(chosen):
        e = chosen[sid]
        label = labels.get(sid, e.target_name)
        top = g.top(label, modality, top_k)
        if not top:
            continue
        held_out = sid not in members
        if modality == "text":
            if label not in matchers:
                matchers[label] = WordMatcher(top, g.config)
            deleted = [j for j, t in enumerate(e.tokens) if matchers[label](t)]
        elif not held_out:
            deleted = [i for i in image_targets(top, sid) if i < e.n_superpixels]
        else:
            if image_matcher is None:
                if not callable(embed_fn):
                    raise ValueError(
                        "held-out image samples are matched to the clusters by embedding their superpixels: pass "
                        "embed_fn= (the classifier's encode_images), or a classifier that has encode_images"
                    )
                image_matcher = ImageMatcher(embed_fn, g.config, radius_scale)
            photo = source.load(sid)  # an unreadable photo is recorded in source.skipped, not raised
            if photo is None:
                continue
            deleted = image_matcher(e, photo, top)
        if deleted:
            cases.append(_Case(sid, label, e, deleted, held_out))
    return cases


def _variants(c: _Case, image: np.ndarray, modality: str, fill: Fill, n_repeats: int, seed: int, reach: float,
              case: str, min_length: int) -> tuple[list[tuple[np.ndarray, list[OcrToken]]], dict]:
    """The inputs (original, top deleted, each random control) and facts about the controls."""
    tokens = list(c.explanation.tokens)
    rngs = [_sample_rng(seed, c.sample_id, r) for r in range(n_repeats)]
    if modality == "text":
        def without(ids: Sequence[int]) -> list[OcrToken]:
            return [t for j, t in enumerate(tokens) if j not in set(ids)]

        rnd = [random_words(tokens, c.deleted, rng, case, min_length) for rng in rngs]
        inputs = [(image, tokens), (image, without(c.deleted))] + [(image, without(r)) for r in rnd]
        return inputs, {"random_deleted": float(np.mean([len(r) for r in rnd])),
                        "short": any(len(r) < len(c.deleted) for r in rnd)}
    seg = match_segments(c.explanation.segments, image.shape)
    background = fill_image(image, seg, fill)

    def paint(mask: np.ndarray) -> np.ndarray:
        return np.where(mask[..., None], background, image)

    regions = [random_region(seg, c.deleted, rng, reach) for rng in rngs]
    top = np.isin(seg, np.asarray(c.deleted, dtype=seg.dtype))
    inputs = [(image, tokens), (paint(top), tokens)] + [(paint(r.mask), tokens) for r in regions]
    pixels = int(top.sum())
    return inputs, {"deleted_pixels": pixels, "random_deleted": float(np.mean([r.mask.sum() for r in regions])),
                    "random_overlap": float(np.mean([r.overlap for r in regions])) / max(pixels, 1),
                    "short": False}


def _row(model: str, modality: str, correct: np.ndarray, outcomes: list[SampleOutcome], config: dict,
         level: float, resamples: int, seed: int) -> DeletionRow:
    none, top, rand = correct[:, 0].astype(float), correct[:, 1].astype(float), correct[:, 2:].mean(1)
    def ci(d: np.ndarray) -> Interval:
        return paired_bootstrap(d, level=level, resamples=resamples, seed=seed)

    per_repeat = correct[:, 2:].mean(0)
    config = {**config, "random_short_samples": sum(o.short for o in outcomes)}
    return DeletionRow(
        model=model,
        modality=modality,
        samples=len(outcomes),
        no_deletion_accuracy=float(none.mean()),
        top_deletion_accuracy=float(top.mean()),
        random_deletion_accuracy=float(rand.mean()),
        random_deletion_std=float(per_repeat.std()) if correct.shape[1] > 3 else 0.0,
        mean_deleted=float(np.mean([o.deleted for o in outcomes])),
        sample_ids=tuple(o.sample_id for o in outcomes),
        config=config,
        top_drop=ci(none - top),
        random_drop=ci(none - rand),
        top_minus_random=ci(rand - top),
        per_sample=tuple(outcomes),
    )


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
