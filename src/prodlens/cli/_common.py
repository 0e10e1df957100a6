"""Helpers shared by command modules."""

from __future__ import annotations

import argparse


def add_parser(sub: argparse._SubParsersAction, name: str, help: str, example: str) -> argparse.ArgumentParser:
    """Add a sub-command whose help ends with an example, as every command's does."""
    return sub.add_parser(
        name,
        help=help,
        description=help,
        epilog=f"Example:\n  {example}",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
