"""Build the bundled sample (src/prodlens/sample_data/grocery_mini) from GroceryStoreDataset.

Run once by maintainers:  python scripts/make_sample.py ../shared/datasets/GroceryStoreDataset/dataset
Takes the first 10 train and all val photos of 10 hard-to-tell-apart package classes,
copies them unchanged (348x348 JPEG), plus each class's iconic image and description.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

from prodlens.data.grocery import import_grocery_store
from prodlens.data.manifest import Dataset, write_dataset
from prodlens.data.types import ClassInfo, ClassList, ProductSample

CLASSES = [
    "Arla-Ecological-Medium-Fat-Milk",
    "Arla-Lactose-Medium-Fat-Milk",
    "Arla-Medium-Fat-Milk",
    "Arla-Standard-Milk",
    "Alpro-Fresh-Soy-Milk",
    "Alpro-Shelf-Soy-Milk",
    "Oatly-Oat-Milk",
    "Oatly-Natural-Oatghurt",
    "God-Morgon-Apple-Juice",
    "God-Morgon-Orange-Juice",
]
N_TRAIN = 10

def main(src: str, dst: str = "src/prodlens/sample_data/grocery_mini") -> None:
    out = Path(dst)
    for sub in ("images", "catalogue"):  # README.md is hand-written and kept
        if (out / sub).exists():
            shutil.rmtree(out / sub)
    full = import_grocery_store(src, ("train", "val"), classes=CLASSES)
    samples: list[ProductSample] = []
    count: dict[tuple[str, str], int] = {}
    for s in full.samples:
        key = (s.label, s.split)
        count[key] = count.get(key, 0) + 1
        if s.split == "train" and count[key] > N_TRAIN:
            continue
        rel = Path("images") / f"{s.id}.jpg"  # ids are "split/stem"
        (out / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(s.image_path, out / rel)
        samples.append(ProductSample(s.id, out / rel, s.label, s.split))
    infos = []
    for c in full.classes:
        icon = None
        if c.iconic_image is not None:
            icon = Path("catalogue") / f"{c.name}_Iconic.jpg"
            (out / icon).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(c.iconic_image, out / icon)
        infos.append(ClassInfo(c.name, c.index, c.coarse, c.coarse_index, icon, c.description))
    write_dataset(Dataset(samples, ClassList(infos), out, language="sv"), out)  # Swedish packaging: OCR keeps Latin script
    shutil.copyfile(Path(src).parent / "LICENSE", out / "LICENSE")
    print(f"wrote {len(samples)} samples of {len(infos)} classes to {out}")


if __name__ == "__main__":
    main(*sys.argv[1:])
