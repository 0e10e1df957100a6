"""`prodlens import-grocery`, `import-folders` and `info`."""

from __future__ import annotations

import argparse

from prodlens.cli._common import add_parser
from prodlens.data.folders import import_folders
from prodlens.data.grocery import import_grocery_store, package_classes
from prodlens.data.manifest import read_dataset, write_dataset
from prodlens.data.summary import dataset_summary


def _import_grocery(args: argparse.Namespace) -> int:
    ds = import_grocery_store(args.root, tuple(args.splits), coarse=args.coarse, classes=args.classes)
    if args.packages:
        ds = ds.with_classes(package_classes(ds))
    path = write_dataset(ds, args.out)
    print(dataset_summary(ds))
    print(f"wrote {path}")
    return 0


def _import_folders(args: argparse.Namespace) -> int:
    ds = import_folders(args.root, args.split)
    path = write_dataset(ds, args.out)
    print(dataset_summary(ds))
    print(f"wrote {path}")
    return 0


def _info(args: argparse.Namespace) -> int:
    print(dataset_summary(read_dataset(args.dataset)))
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = add_parser(
        sub, "import-grocery", "Import GroceryStoreDataset into a prodlens dataset folder.",
        "prodlens import-grocery ../shared/datasets/GroceryStoreDataset/dataset --out work/grocery",
    )
    p.add_argument("root", help="GroceryStoreDataset/dataset folder (with classes.csv)")
    p.add_argument("--out", required=True, help="folder to write manifest.jsonl and classes.json to")
    p.add_argument("--splits", nargs="+", default=["train", "val", "test"], choices=["train", "val", "test"])
    p.add_argument("--coarse", action="store_true", help="use the coarse classes as labels")
    p.add_argument("--classes", nargs="+", help="keep only these class names")
    p.add_argument("--packages", action="store_true", help="keep only the packaged-product classes (the ones with text)")
    p.set_defaults(func=_import_grocery)

    p = add_parser(
        sub, "import-folders", "Import a class-per-folder image tree (root/<class>/*.jpg or root/<split>/<class>/*.jpg).",
        "prodlens import-folders photos/ --out work/photos",
    )
    p.add_argument("root")
    p.add_argument("--out", required=True)
    p.add_argument("--split", default="train", choices=["train", "val", "test"], help="split when there are no split folders")
    p.set_defaults(func=_import_folders)

    p = add_parser(sub, "info", "Summarise a dataset folder.", "prodlens info work/grocery")
    p.add_argument("dataset", help="dataset folder or manifest.jsonl")
    p.set_defaults(func=_info)
