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


def text_table(header: list[str], rows: list[list]) -> str:
    """Rows as aligned plain-text columns under ``header`` (``None`` prints as blank).

    >>> print(text_table(["a", "bb"], [[1, None], ["xyz", 2]]))
    a    bb
    ---  --
    1
    xyz  2
    """
    cells = [header] + [["" if c is None else str(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)
