"""Helpers shared by command modules."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from prodlens.errors import Skip, skip_lines

#: Exit code of a command that finished but skipped bad input (unreadable photos):
#: its results cover the rest. 2 means an error stopped the command; 0, all done.
EXIT_SKIPPED = 1

#: Appended to the help of every command that skips bad photos and exits ``EXIT_SKIPPED``.
SKIPS_HELP = (" Unreadable photos are skipped and listed; the rest are done, and the exit code is "
              f"{EXIT_SKIPPED} (0 when nothing was skipped, 2 on an error that stopped the command).")


def positive_int(text: str) -> int:
    """An argparse ``type`` for counts: an int >= 1.

    >>> positive_int("3")
    3
    """
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {text}")
    return value


def add_parser(sub: argparse._SubParsersAction, name: str, help: str, example: str,
               skips: bool = False) -> argparse.ArgumentParser:
    """Add a sub-command whose help ends with an example, as every command's does
    (``skips``: its description says how it reports skipped photos, :data:`SKIPS_HELP`)."""
    return sub.add_parser(
        name,
        help=help.replace("%", "%%"),  # argparse %-formats the command list's help; a literal "95%" broke --help
        description=help + (SKIPS_HELP if skips else ""),
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


def report_skips(skipped: Sequence[Skip], what: str = "photos") -> int:
    """Print the skipped items to stderr; the exit code: 0, or :data:`EXIT_SKIPPED` if any.

    >>> report_skips([])
    0
    """
    if not skipped:
        return 0
    print(f"{len(skipped)} {what} skipped (bad input); the rest were done:", file=sys.stderr)
    print("\n".join(skip_lines(skipped)), file=sys.stderr)
    return EXIT_SKIPPED
