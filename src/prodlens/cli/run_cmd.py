"""`prodlens run CONFIG`: the whole batch pipeline, resumable (``prodlens.pipeline``)."""

from __future__ import annotations

import argparse
import sys

from prodlens.cli._common import add_parser


def _run(args: argparse.Namespace) -> int:
    from prodlens.pipeline import highlights, load_config, run_pipeline

    cfg = load_config(args.config).with_overrides(
        kind=args.executor, workers=args.workers, ray_address=args.ray_address, num_gpus=args.num_gpus,
    )
    summary = run_pipeline(cfg, progress=not args.no_progress)
    print(summary.text(), file=sys.stdout if summary.ok else sys.stderr)
    for line in highlights(summary):
        print(line)
    print(f"summary: {cfg.out_dir / 'summary.json'}")
    return 0 if summary.ok else 1


def register(sub: argparse._SubParsersAction) -> None:
    p = add_parser(
        sub, "run",
        "Run the batch pipeline of a TOML/JSON config: OCR, train, explain every photo, global "
        "explanations, deletion test, results store. Re-run the same command to resume after "
        "an interruption; finished work is skipped.",
        "prodlens run docs/pipeline.example.toml --executor ray --workers 4",
    )
    p.add_argument("config", help="pipeline config (.toml or .json; see docs/pipeline.md) or a shipped preset name (demo)")
    p.add_argument("--executor", choices=("local", "ray"), help="where the explain stage runs (default: the config's, else local)")
    p.add_argument("--workers", type=int, help="local processes or Ray actors explaining in parallel")
    p.add_argument("--ray-address", help="an existing Ray cluster (e.g. auto or ray://head:10001); default: start a local one")
    p.add_argument("--num-gpus", type=float, help="GPUs each Ray actor asks for (default 0)")
    p.add_argument("--no-progress", action="store_true", help="hide progress bars")
    p.set_defaults(func=_run)
