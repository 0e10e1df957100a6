"""`prodlens demo`: the main job on the bundled sample (the pipeline preset ``demo``)."""

from __future__ import annotations

import argparse

from prodlens.cli._common import add_parser


def _demo(args: argparse.Namespace) -> int:
    from prodlens.demo import run_demo

    summary = run_demo(args.out, workers=args.workers, explain_match=args.explain_match, progress=not args.no_progress)
    return 0 if summary.ok else 1


def register(sub: argparse._SubParsersAction) -> None:
    p = add_parser(
        sub, "demo",
        "Run the whole tool end to end on the bundled real GroceryStore sample (no downloads): the pipeline "
        "preset 'demo' (the same as `prodlens run demo`). Re-running resumes.",
        "prodlens demo --out work/demo",
    )
    p.add_argument("--out", default="work/demo", help="output folder (default: work/demo)")
    p.add_argument("--workers", type=int, default=1, help="OCR worker processes")
    p.add_argument("--explain-match", action="store_true",
                   help="also explain why one val photo matches its best train photo (about 40 s more on a busy 2-core CPU)")
    p.add_argument("--no-progress", action="store_true", help="hide progress bars")
    p.set_defaults(func=_demo)
