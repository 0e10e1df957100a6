"""`prodlens demo`: the main job on the bundled sample."""

from __future__ import annotations

import argparse

from prodlens.cli._common import add_parser


def _demo(args: argparse.Namespace) -> int:
    from prodlens.demo import run_demo

    run_demo(args.out, workers=args.workers, n_explain=args.explain, max_samples=args.samples,
             explain_match=args.explain_match)
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = add_parser(
        sub, "demo", "Run the whole tool end to end on the bundled real GroceryStore sample (no downloads).",
        "prodlens demo --out work/demo",
    )
    p.add_argument("--out", default="work/demo", help="output folder (default: work/demo)")
    p.add_argument("--workers", type=int, default=1, help="OCR worker processes")
    p.add_argument("--explain", type=int, default=3, help="val photos to explain (default 3, to stay within minutes on CPU)")
    p.add_argument("--samples", type=int, default=300, help="most LIME perturbations per photo (default 300; the paper: 2000)")
    p.add_argument("--explain-match", action="store_true",
                   help="also explain why one val photo matches its best train photo (about 40 s more on a busy 2-core CPU)")
    p.set_defaults(func=_demo)
