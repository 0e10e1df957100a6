"""Import a plain class-per-folder layout.

Either ``root/<class>/<image>`` (every image goes to ``split``) or
``root/<split>/<class>/<image>`` with split folders named train, val, test.
"""

from __future__ import annotations

from pathlib import Path

from prodlens.data.images import image_opens
from prodlens.data.manifest import Dataset
from prodlens.data.types import SPLITS, ClassList, ProductSample
from prodlens.errors import BadInputError, Skip

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"}


def _images(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def import_folders(root: str | Path, split: str = "train") -> Dataset:
    """Read ``root`` as class-per-folder; files that are not images are ignored.

    Each image is checked to open (:func:`~prodlens.data.images.check_image`, no full
    decode); one that does not is left out and recorded in ``Dataset.skipped``.

    >>> import tempfile, pathlib
    >>> from PIL import Image
    >>> r = pathlib.Path(tempfile.mkdtemp()); (r / "Oatly").mkdir(); Image.new("RGB", (4, 4)).save(r / "Oatly" / "a.jpg")
    >>> _ = (r / "Oatly" / "b.jpg").write_bytes(b"not a jpeg")
    >>> ds = import_folders(r); ds.classes.names, ds.samples[0].id, len(ds.skipped)
    (['Oatly'], 'Oatly/a', 1)
    """
    root = Path(root)
    if not root.is_dir():
        raise BadInputError(root, "folder not found", "give a folder with one sub-folder per class")
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    split_dirs = [d for d in root.iterdir() if d.is_dir() and d.name in SPLITS]
    layout = [(d, d.name) for d in split_dirs] if split_dirs else [(root, split)]
    samples: list[ProductSample] = []
    skipped: list[Skip] = []
    names: set[str] = set()
    for base, sp in layout:
        for cdir in sorted(d for d in base.iterdir() if d.is_dir()):
            for img in _images(cdir):
                if not image_opens(img, skipped):
                    continue
                rel = img.relative_to(cdir).with_suffix("").as_posix()
                samples.append(ProductSample(f"{cdir.name}/{rel}", img, cdir.name, sp))
                names.add(cdir.name)
    if not samples and skipped:
        raise BadInputError(root, f"none of the {len(skipped)} images opens (first: {skipped[0][1]})",
                            "re-export the photos as JPEG or PNG")
    if not samples:
        raise BadInputError(root, "no images found in class folders", f"expected root/<class>/*.jpg; suffixes {sorted(IMAGE_SUFFIXES)}")
    ids = [s.id for s in samples]
    if len(set(ids)) != len(ids):  # same name in two splits: prefix the split
        samples = [ProductSample(f"{s.split}/{s.id}", s.image_path, s.label, s.split) for s in samples]
    return Dataset(samples, ClassList.from_names(sorted(names)), root, skipped)
