"""Human-readable summaries of a dataset and of what an import skipped."""

from __future__ import annotations

from collections import Counter

from prodlens.data.manifest import Dataset


def dataset_summary(ds: Dataset, max_classes: int = 12) -> str:
    """A short text report: sizes per split, classes, OCR coverage, skips.

    >>> from prodlens.data.types import ClassList
    >>> print(dataset_summary(Dataset([], ClassList.from_names(["a"]))))
    0 samples, 1 classes
    """
    lines = [f"{len(ds)} samples, {len(ds.classes)} classes" + (f", language {ds.language}" if ds.language else "")]
    splits = Counter(s.split for s in ds.samples)
    if splits:
        lines.append("splits: " + ", ".join(f"{k} {v}" for k, v in sorted(splits.items())))
    with_ocr = [s for s in ds.samples if s.ocr_tokens is not None]
    if with_ocr:
        words = sum(len(s.tokens) for s in with_ocr)
        no_text = sum(1 for s in with_ocr if not s.tokens)
        lines.append(
            f"OCR: {len(with_ocr)}/{len(ds)} images read, {words / len(with_ocr):.1f} words/image, "
            f"{no_text} with no text"
        )
    per_class = Counter(s.label for s in ds.samples)
    if per_class:
        shown = ", ".join(f"{n} {per_class.get(n, 0)}" for n in ds.classes.names[:max_classes])
        more = f", ... ({len(ds.classes) - max_classes} more)" if len(ds.classes) > max_classes else ""
        lines.append(f"per class: {shown}{more}")
    if ds.skipped:
        lines.append(f"skipped {len(ds.skipped)}:")
        lines.extend(f"  - {why}" for _, why in ds.skipped[:20])
        if len(ds.skipped) > 20:
            lines.append(f"  ... and {len(ds.skipped) - 20} more")
    return "\n".join(lines)
