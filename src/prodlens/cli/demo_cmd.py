"""`prodlens demo`: the main job on the bundled sample."""

from __future__ import annotations

import argparse

from prodlens.cli._common import add_parser


def _demo(args: argparse.Namespace) -> int:
    from prodlens.demo import run_demo

    run_demo(args.out, workers=args.workers)
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = add_parser(
        sub, "demo", "Run the whole tool end to end on the bundled real GroceryStore sample (no downloads).",
        "prodlens demo --out work/demo",
    )
    p.add_argument("--out", default="work/demo", help="output folder (default: work/demo)")
    p.add_argument("--workers", type=int, default=1, help="OCR worker processes")
    p.set_defaults(func=_demo)
