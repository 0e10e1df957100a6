"""The on-disk dataset format: a folder with ``manifest.jsonl`` and ``classes.json``.

``manifest.jsonl`` holds one JSON object per sample and line::

    {"id": "Oatly-Oat-Milk_001", "image_path": "images/Oatly-Oat-Milk_001.jpg",
     "label": "Oatly-Oat-Milk", "split": "train",
     "ocr_tokens": [{"text": "OATLY", "box": [12, 30, 80, 52], "score": 0.98,
                     "quad": [[12, 30], [80, 30], [80, 52], [12, 52]]}]}

* ``image_path`` is relative to the manifest's folder (or absolute).
* ``label`` may be ``null`` for unlabelled images; ``split`` is ``train``, ``val``
  or ``test``; ``ocr_tokens`` is ``null`` (or absent) until OCR has run.
* ``box`` is ``[x0, y0, x1, y1]`` in pixels of the original image; ``quad`` is optional.

``classes.json`` is ``{"classes": [{"name": ..., "index": 0, "coarse": ...,
"iconic_image": ..., "description": ...}, ...], "language": "sv"}``; when it is missing
the class list is the sorted set of labels. The optional ``language`` (a preset of
:mod:`prodlens.ocr.scripts`, e.g. ``"sv"`` or ``"latin"``) says which scripts can occur
on the products; OCR drops tokens in other scripts by default.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path

from prodlens._atomic import atomic_write
from prodlens.data.types import SPLITS, ClassInfo, ClassList, OcrToken, ProductSample
from prodlens.errors import BadInputError, UnknownClassError

MANIFEST = "manifest.jsonl"
CLASSES = "classes.json"


@dataclass
class Dataset:
    """Samples plus their class list; image paths are absolute in memory.

    >>> ds = Dataset([], ClassList.from_names(["a"]))
    >>> len(ds)
    0
    """

    samples: list[ProductSample]
    classes: ClassList
    root: Path | None = None
    skipped: list[tuple[str, str]] = field(default_factory=list)
    language: str | None = None  #: script preset of the packaging text (``classes.json``); ``None``: unknown

    def __len__(self) -> int:
        return len(self.samples)

    def __iter__(self) -> Iterator[ProductSample]:
        return iter(self.samples)

    def split(self, *names: str) -> Dataset:
        """The samples of the given splits (``ds.split("train", "val")``)."""
        for n in names:
            if n not in SPLITS:
                raise ValueError(f"split must be one of {SPLITS}, got {n!r}")
        return replace(self, samples=[s for s in self.samples if s.split in names], skipped=[])

    def with_classes(self, names: Iterable[str]) -> Dataset:
        """Keep only samples of ``names`` and re-index the class list to them."""
        classes = self.classes.subset(names)
        return replace(self, samples=[s for s in self.samples if s.label in classes], classes=classes, skipped=[])

    def by_id(self) -> dict[str, ProductSample]:
        return {s.id: s for s in self.samples}

    def label_indices(self) -> list[int]:
        return [self.classes.index(s.label) for s in self.samples]  # type: ignore[arg-type]


def _relative(path: Path, root: Path) -> str:
    try:
        return path.resolve().relative_to(root.resolve()).as_posix()
    except ValueError:
        # outside the dataset folder: absolute, because a relative path would be read
        # back relative to the manifest's folder, not to the directory it was made from
        return str(path.resolve())


def _class_to_dict(c: ClassInfo, root: Path) -> dict:
    d = c.to_dict()
    if c.iconic_image is not None:
        d["iconic_image"] = _relative(root / c.iconic_image, root)
    return d


def _sample_to_dict(s: ProductSample, root: Path) -> dict:
    image = _relative(s.image_path, root)
    d: dict = {"id": s.id, "image_path": image, "label": s.label, "split": s.split}
    d["ocr_tokens"] = None if s.ocr_tokens is None else [t.to_dict() for t in s.ocr_tokens]
    if s.meta:
        d["meta"] = s.meta
    return d


def write_dataset(ds: Dataset, folder: str | Path) -> Path:
    """Write ``manifest.jsonl`` and ``classes.json`` into ``folder`` atomically."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    with atomic_write(folder / CLASSES) as f:
        meta: dict = {"classes": [_class_to_dict(c, folder) for c in ds.classes]}
        if ds.language:
            meta["language"] = ds.language
        json.dump(meta, f, indent=1, ensure_ascii=False)
    with atomic_write(folder / MANIFEST) as f:
        for s in ds.samples:
            f.write(json.dumps(_sample_to_dict(s, folder), ensure_ascii=False) + "\n")
    return folder / MANIFEST


def _parse_line(raw: dict, where: str, root: Path) -> ProductSample:
    if not isinstance(raw, dict):
        raise BadInputError(where, f"expected a JSON object, got {type(raw).__name__}", "see docs/manifest format")
    missing = [k for k in ("id", "image_path") if k not in raw]
    if missing:
        raise BadInputError(where, f"missing required key(s) {missing}", "each line needs at least id and image_path")
    split = raw.get("split", "train")
    if split not in SPLITS:
        raise BadInputError(where, f"split {split!r} is not one of {SPLITS}", "fix the split value")
    toks = raw.get("ocr_tokens")
    try:
        tokens = None if toks is None else tuple(OcrToken.from_dict(t) for t in toks)
    except (KeyError, TypeError, ValueError) as e:
        raise BadInputError(where, f"malformed ocr_tokens ({e})", "each token needs text and box [x0,y0,x1,y1]") from None
    path = Path(raw["image_path"])
    if not path.is_absolute():
        path = root / path
    return ProductSample(str(raw["id"]), path, raw.get("label"), split, tokens, raw.get("meta") or {})


def read_dataset(folder: str | Path, *, strict: bool = False) -> Dataset:
    """Read a dataset folder (or a ``manifest.jsonl`` path).

    Bad lines and labels not in ``classes.json`` are skipped and recorded in
    ``Dataset.skipped`` (or raise, with ``strict=True``).
    """
    folder = Path(folder)
    manifest = folder if folder.suffix == ".jsonl" else folder / MANIFEST
    folder = manifest.parent
    if not manifest.is_file():
        raise BadInputError(manifest, "manifest not found", "import a dataset first (prodlens import ...)")
    samples: list[ProductSample] = []
    skipped: list[tuple[str, str]] = []
    with open(manifest, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            where = f"{manifest}:{n}"
            try:
                raw = json.loads(line)
            except json.JSONDecodeError as e:
                err = BadInputError(where, f"not valid JSON ({e.msg})", "fix or delete the line")
                if strict:
                    raise err from None
                skipped.append((where, str(err)))
                continue
            try:
                samples.append(_parse_line(raw, where, folder))
            except BadInputError as e:
                if strict:
                    raise
                skipped.append((where, str(e)))
    classes_file = folder / CLASSES
    language = None
    if classes_file.is_file():
        try:
            data = json.loads(classes_file.read_text(encoding="utf-8"))
            classes = ClassList(ClassInfo.from_dict(c) for c in data["classes"])
            language = data.get("language") or None
            classes = ClassList(
                replace(c, iconic_image=folder / c.iconic_image) if c.iconic_image else c for c in classes
            )
        except (json.JSONDecodeError, KeyError, TypeError, ValueError) as e:
            raise BadInputError(classes_file, f"wrong schema ({e})", 'expected {"classes": [{"name":..., "index":0}, ...]}') from None
    else:
        classes = ClassList.from_names(sorted({s.label for s in samples if s.label is not None}))
    kept = []
    seen: set[str] = set()
    for s in samples:
        if s.id in seen:
            err = BadInputError(manifest, f"duplicate sample id {s.id!r}", "sample ids must be unique; prefix them with the split")
            if strict:
                raise err
            skipped.append((str(s.image_path), str(err)))
            continue
        seen.add(s.id)
        if s.label is not None and s.label not in classes:
            try:
                classes.get(s.label)
            except UnknownClassError as e:
                if strict:
                    raise
                skipped.append((str(s.image_path), str(e)))
                continue
        kept.append(s)
    return Dataset(kept, classes, folder, skipped, language)
