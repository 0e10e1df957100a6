"""Import the GroceryStoreDataset layout (Klasson et al., WACV 2019).

Expected layout (any of the split files may be missing)::

    dataset/
      classes.csv        Class Name, Class ID, Coarse Class Name, Coarse Class ID,
                         Iconic Image Path, Product Description Path
      train.txt          "train/Packages/Milk/X/X_001.jpg, 38, 20" per line
      val.txt, test.txt
      iconic-images-and-descriptions/...   (product catalogue)
"""

from __future__ import annotations

import csv
import logging
from pathlib import Path

from prodlens.data.images import image_opens
from prodlens.data.manifest import Dataset
from prodlens.data.types import SPLITS, ClassInfo, ClassList, ProductSample
from prodlens.errors import BadInputError

log = logging.getLogger(__name__)


def _find_root(root: Path) -> Path:
    if (root / "classes.csv").is_file():
        return root
    if (root / "dataset" / "classes.csv").is_file():
        return root / "dataset"
    raise BadInputError(root, "no classes.csv found here or in ./dataset", "point to the GroceryStoreDataset/dataset folder")


def read_grocery_classes(root: Path, coarse: bool = False) -> ClassList:
    """Read ``classes.csv``; with ``coarse=True`` the coarse classes become the labels."""
    path = root / "classes.csv"
    try:
        with open(path, encoding="utf-8") as f:
            rows = list(csv.reader(f))
    except OSError as e:
        raise BadInputError(path, f"cannot read ({e})") from None
    if not rows or len(rows[0]) < 4:
        raise BadInputError(path, "wrong schema: expected at least 4 columns", "Class Name, Class ID, Coarse Class Name, Coarse Class ID")
    classes: dict[int, ClassInfo] = {}
    for n, row in enumerate(rows[1:], 2):
        if not row:
            continue
        try:
            name, cid, cname, ccid = row[0].strip(), int(row[1]), row[2].strip(), int(row[3])
        except (IndexError, ValueError):
            raise BadInputError(f"{path}:{n}", f"bad row {row!r}", "class id and coarse id must be integers") from None
        icon = desc = None
        if len(row) > 5:
            icon_p = root / row[4].strip().lstrip("/")
            desc_p = root / row[5].strip().lstrip("/")
            icon = icon_p if icon_p.is_file() else None
            desc = desc_p.read_text(encoding="utf-8", errors="replace").strip() if desc_p.is_file() else None
        if coarse:
            if ccid not in classes:
                classes[ccid] = ClassInfo(cname, ccid)
        else:
            classes[cid] = ClassInfo(name, cid, cname, ccid, icon, desc)
    ids = sorted(classes)
    if ids != list(range(len(ids))):
        raise BadInputError(path, f"class ids are not 0..{len(ids) - 1}", "fix the Class ID column")
    return ClassList(classes[i] for i in ids)


def import_grocery_store(
    root: str | Path,
    splits: tuple[str, ...] = SPLITS,
    *,
    coarse: bool = False,
    classes: list[str] | None = None,
) -> Dataset:
    """Read GroceryStoreDataset into a :class:`Dataset` (no copying of images).

    Missing split files are skipped with a log line; missing or unreadable images
    (checked to open, not decoded) and unknown class ids are recorded in ``Dataset.skipped`` and the import goes on.
    ``classes`` restricts the import to those class names (re-indexed).

    >>> ds = import_grocery_store("GroceryStoreDataset/dataset", ("train",))  # doctest: +SKIP
    >>> len(ds), len(ds.classes)  # doctest: +SKIP
    (2640, 81)
    """
    root = _find_root(Path(root))
    class_list = read_grocery_classes(root, coarse)
    samples: list[ProductSample] = []
    skipped: list[tuple[str, str]] = []
    for split in splits:
        split_file = root / f"{split}.txt"
        if not split_file.is_file():
            log.info("%s not found; split %r skipped", split_file, split)
            continue
        for n, line in enumerate(split_file.read_text(encoding="utf-8").splitlines(), 1):
            if not line.strip():
                continue
            parts = [p.strip() for p in line.split(",")]
            where = f"{split_file}:{n}"
            try:
                rel, fine, coarse_id = parts[0], int(parts[1]), int(parts[2])
            except (IndexError, ValueError):
                skipped.append((where, f"{where}: malformed line {line!r}; expected 'path, class_id, coarse_id'"))
                continue
            cid = coarse_id if coarse else fine
            if not 0 <= cid < len(class_list):
                skipped.append((where, f"{where}: class id {cid} not in classes.csv ({len(class_list)} classes)"))
                continue
            path = root / rel
            if not path.is_file():
                skipped.append((str(path), f"{path}: image file not found (listed in {where})"))
                continue
            if not image_opens(path, skipped):
                continue
            samples.append(ProductSample(f"{split}/{Path(rel).stem}", path, class_list[cid].name, split))
    ds = Dataset(samples, class_list, root, skipped)
    if classes is not None:
        ds = Dataset(ds.with_classes(classes).samples, class_list.subset(classes), root, skipped)
    return ds


def package_classes(ds: Dataset) -> list[str]:
    """Names of the packaged-product classes (those with text), from the image paths."""
    return sorted({s.label for s in ds.samples if "Packages" in s.image_path.parts and s.label})
