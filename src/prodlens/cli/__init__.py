"""Thin command line: each command parses arguments, calls one library function and
turns :class:`~prodlens.errors.ProdlensError` into a one-line message and exit code 2.

Commands live in sibling modules that expose ``register(subparsers)``; add a new one
to ``COMMANDS``.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence

from prodlens import __version__
from prodlens.errors import ProdlensError

#: Modules under ``prodlens.cli`` that each register one or more sub-commands.
COMMANDS = ["data_cmds", "ocr_cmd", "demo_cmd", "db_cmds", "global_cmds", "app_cmd", "explain_cmd", "train_cmds", "match_cmd", "run_cmd",
            "sanity_cmd"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="prodlens",
        description="Explain multimodal (image + OCR text) product-recognition models.",
        epilog="Example: prodlens demo",
    )
    parser.add_argument("--version", action="version", version=f"prodlens {__version__}")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more logging (-vv for debug)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        importlib.import_module(f"prodlens.cli.{name}").register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    level = [logging.WARNING, logging.INFO, logging.DEBUG][min(args.verbose, 2)]
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    if not getattr(args, "func", None):
        parser.print_help()
        return 1
    try:
        return int(args.func(args) or 0)
    except ProdlensError as e:
        print(f"prodlens {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"prodlens {args.command}: interrupted; finished work is saved, re-run to resume", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
