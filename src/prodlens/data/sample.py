"""The real sample bundled with prodlens: 134 GroceryStoreDataset photos of 10 packages.

10 hard-to-tell-apart classes (four Arla milks, two Alpro soy milks, Oatly oat milk
and oatghurt, two God Morgon juices); 10 train photos each and all their val photos
(34) as held-back images, plus each class's iconic catalogue image and description.
GroceryStoreDataset is (c) 2019 Marcus Klasson, MIT licence (see the LICENSE file in
the sample folder). Rebuild with ``scripts/make_sample.py``.
"""

from __future__ import annotations

from pathlib import Path

from prodlens.data.manifest import Dataset, read_dataset

SAMPLE_DIR = Path(__file__).resolve().parent.parent / "sample_data" / "grocery_mini"


def sample_dir() -> Path:
    """Folder of the bundled sample (``manifest.jsonl``, ``classes.json``, images)."""
    return SAMPLE_DIR


def load_sample() -> Dataset:
    """Read the bundled sample.

    >>> ds = load_sample()
    >>> len(ds.classes), len(ds.split("train")), len(ds.split("val"))
    (10, 100, 34)
    """
    return read_dataset(SAMPLE_DIR, strict=True)
