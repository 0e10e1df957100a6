"""Evaluation: top-1/top-5 accuracy, per-class accuracy and most-confused pairs.

:func:`evaluate_probs` is the pure metric on a probability matrix;
:func:`evaluate` runs any :class:`~prodlens.models.base.Classifier` over a dataset.
:class:`EvalReport` is data only; :func:`report_markdown` renders it and
:func:`write_report` writes JSON + Markdown.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
from tqdm.auto import tqdm

from prodlens._atomic import atomic_write
from prodlens.data.images import load_or_skip
from prodlens.data.manifest import Dataset
from prodlens.data.types import ProductSample
from prodlens.errors import BadInputError, Skip, skip_lines
from prodlens.models.base import Classifier

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ClassScore:
    """Accuracy of one class: ``correct`` of ``n`` samples."""

    name: str
    n: int
    correct: int

    @property
    def accuracy(self) -> float:
        return self.correct / self.n if self.n else float("nan")


@dataclass(frozen=True)
class Confusion:
    """``count`` samples of class ``true`` were predicted as ``predicted``."""

    true: str
    predicted: str
    count: int


@dataclass(frozen=True)
class EvalReport:
    """Result of an evaluation (data only)."""

    n: int
    top1: float
    top5: float
    per_class: tuple[ClassScore, ...]
    confusions: tuple[Confusion, ...]
    meta: dict[str, Any] = field(default_factory=dict)
    skipped: tuple[Skip, ...] = ()  #: (file, reason) of each photo that could not be read

    @property
    def mean_class_accuracy(self) -> float:
        accs = [c.accuracy for c in self.per_class if c.n]
        return float(np.mean(accs)) if accs else float("nan")

    def top1_interval(self, level: float = 0.95) -> tuple[float, float]:
        """Wilson score interval of :attr:`top1` over the ``n`` scored photos.

        >>> r = EvalReport(34, 28 / 34, 1.0, (), ())
        >>> tuple(round(x, 3) for x in r.top1_interval())
        (0.665, 0.917)
        """
        return wilson_interval(round(self.top1 * self.n), self.n, level)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["mean_class_accuracy"] = self.mean_class_accuracy
        d["per_class"] = [{**asdict(c), "accuracy": c.accuracy} for c in self.per_class]
        return d


def wilson_interval(successes: int, n: int, level: float = 0.95) -> tuple[float, float]:
    """Wilson score interval of a proportion ``successes / n`` (``(nan, nan)`` when ``n`` is 0).

    >>> tuple(round(x, 3) for x in wilson_interval(7, 10))
    (0.397, 0.892)
    """
    if n <= 0:
        return float("nan"), float("nan")
    from statistics import NormalDist

    z = NormalDist().inv_cdf(0.5 + level / 2)
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return float(max(0.0, centre - half)), float(min(1.0, centre + half))


def evaluate_probs(
    probs: np.ndarray, labels: Sequence[int], classes: Sequence[str], *, top_confusions: int = 20,
    meta: dict[str, Any] | None = None,
) -> EvalReport:
    """Metrics of a probability (or score) matrix ``(n, C)`` against integer labels.

    >>> r = evaluate_probs(np.array([[0.9, 0.1], [0.8, 0.2]]), [0, 1], ["a", "b"])
    >>> r.top1, r.confusions[0]
    (0.5, Confusion(true='b', predicted='a', count=1))
    """
    probs = np.asarray(probs, dtype=np.float64)
    y = np.asarray(labels, dtype=np.int64)
    if probs.ndim != 2 or probs.shape[0] != len(y) or probs.shape[1] != len(classes):
        raise ValueError(f"probs must be (n={len(y)}, C={len(classes)}), got {probs.shape}")
    n = len(y)
    if n == 0:
        return EvalReport(0, float("nan"), float("nan"), (), (), dict(meta or {}))
    k = min(5, probs.shape[1])
    order = np.argsort(-probs, axis=1, kind="stable")
    pred = order[:, 0]
    top1 = float((pred == y).mean())
    top5 = float((order[:, :k] == y[:, None]).any(1).mean())
    per_class = tuple(
        ClassScore(name, int((y == c).sum()), int(((y == c) & (pred == c)).sum())) for c, name in enumerate(classes)
    )
    pairs: dict[tuple[int, int], int] = {}
    for t, p in zip(y, pred):
        if t != p:
            pairs[(int(t), int(p))] = pairs.get((int(t), int(p)), 0) + 1
    conf = sorted(pairs.items(), key=lambda kv: (-kv[1], kv[0]))[:top_confusions]
    confusions = tuple(Confusion(classes[t], classes[p], c) for (t, p), c in conf)
    return EvalReport(n, top1, top5, per_class, confusions, dict(meta or {}))


class DatasetPredictions(NamedTuple):
    """What :func:`predict_dataset` gives: one row of ``probs`` per sample in ``samples``
    (the readable ones, in dataset order) and the ``(file, reason)`` of each photo skipped."""

    probs: np.ndarray
    samples: list[ProductSample]
    skipped: tuple[Skip, ...]


def _readable(chunk: Sequence[ProductSample], skipped: list[Skip]) -> tuple[list[ProductSample], list[np.ndarray]]:
    """The samples of ``chunk`` whose photo loads, with their photos; the others go to ``skipped``."""
    loaded = [(s, load_or_skip(s.image_path, skipped)) for s in chunk]
    return [s for s, im in loaded if im is not None], [im for _, im in loaded if im is not None]


def predict_dataset(clf: Classifier, ds: Dataset, *, batch_size: int = 16, progress: bool = True) -> DatasetPredictions:
    """``clf.predict_proba`` over every sample of ``ds`` (images loaded batch by batch).

    Samples whose OCR has not been run are given an empty token list (logged). A photo
    that cannot be read is skipped (logged, and listed in ``skipped``); the rest are scored.
    """
    no_ocr = sum(s.ocr_tokens is None for s in ds.samples)
    if no_ocr:
        log.warning("%d of %d samples have no OCR result; they are scored with no text", no_ocr, len(ds))
    out, done = [], []
    skipped: list[Skip] = []
    for i in tqdm(range(0, len(ds), batch_size), desc="predict", disable=not progress, unit="batch"):
        chunk, images = _readable(ds.samples[i : i + batch_size], skipped)
        if chunk:
            out.append(np.asarray(clf.predict_proba(images, [list(s.tokens) for s in chunk])))
            done += chunk
    probs = np.concatenate(out) if out else np.zeros((0, len(clf.classes)))
    return DatasetPredictions(probs, done, tuple(skipped))


def evaluate(clf: Classifier, ds: Dataset, *, batch_size: int = 16, progress: bool = True,
             meta: dict[str, Any] | None = None) -> EvalReport:
    """Evaluate ``clf`` on every labelled sample of ``ds``.

    The classifier's classes must contain every label of ``ds`` (matched by name).
    Photos that cannot be read are skipped and listed in ``report.skipped``; the
    metrics are those of the photos that were scored (``report.n``).

    >>> report = evaluate(load_classifier("runs/concat.pt"), read_dataset("data").split("val"))  # doctest: +SKIP
    >>> round(report.top1, 3)  # doctest: +SKIP
    0.845
    """
    labelled = Dataset([s for s in ds.samples if s.label is not None], ds.classes, ds.root)
    index = {c: i for i, c in enumerate(clf.classes)}
    unknown = sorted({s.label for s in labelled.samples if s.label not in index})  # type: ignore[misc]
    if unknown:
        raise BadInputError(
            ds.root or "dataset", f"{len(unknown)} label(s) the model does not know, e.g. {unknown[:3]}",
            "evaluate on a dataset with the classes the model was trained on (see the checkpoint's classes)",
        )
    probs, scored, skipped = predict_dataset(clf, labelled, batch_size=batch_size, progress=progress)
    y = [index[s.label] for s in scored]  # type: ignore[index]
    report = evaluate_probs(probs, y, list(clf.classes), meta={"n_unlabelled": len(ds) - len(labelled), **(meta or {})})
    return replace(report, skipped=skipped)


def report_markdown(report: EvalReport, *, title: str = "Evaluation", worst: int = 10, confusions: int = 10) -> str:
    """A Markdown summary: headline metrics, the worst classes and the most-confused pairs.

    >>> print(report_markdown(evaluate_probs(np.eye(2), [0, 1], ["a", "b"])).splitlines()[4])
    | 2 | 100.0% | 100.0% | 100.0% |
    """
    lines = [f"## {title}", "", "| samples | top-1 | top-5 | mean class acc. |", "|---:|---:|---:|---:|",
             f"| {report.n} | {report.top1:.1%} | {report.top5:.1%} | {report.mean_class_accuracy:.1%} |", ""]
    scored = sorted((c for c in report.per_class if c.n), key=lambda c: (c.accuracy, c.name))[:worst]
    if scored:
        lines += [f"### {len(scored)} lowest per-class accuracies", "", "| class | n | accuracy |", "|---|---:|---:|"]
        lines += [f"| {c.name} | {c.n} | {c.accuracy:.1%} |" for c in scored] + [""]
    if report.confusions:
        lines += ["### Most-confused pairs", "", "| true | predicted | count |", "|---|---|---:|"]
        lines += [f"| {c.true} | {c.predicted} | {c.count} |" for c in report.confusions[:confusions]] + [""]
    if report.skipped:
        lines += [f"### {len(report.skipped)} photos skipped (not scored)", ""]
        lines += [f"- {ln.strip()}" for ln in skip_lines(report.skipped, limit=worst)] + [""]
    return "\n".join(lines)


def write_report(report: EvalReport, out_dir: str | Path, stem: str = "eval", *, title: str = "Evaluation") -> tuple[Path, Path]:
    """Write ``{stem}.json`` and ``{stem}.md`` into ``out_dir``; returns both paths."""
    out_dir = Path(out_dir)
    jp, mp = out_dir / f"{stem}.json", out_dir / f"{stem}.md"
    with atomic_write(jp) as f:
        json.dump(report.to_dict(), f, indent=1, ensure_ascii=False)
    with atomic_write(mp) as f:
        f.write(report_markdown(report, title=title))
    return jp, mp
