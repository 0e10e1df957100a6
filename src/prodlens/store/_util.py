"""Small helpers shared by the store's modules."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from datetime import datetime, timezone

#: Rows per INSERT or ``IN (...)`` list.
CHUNK = 500


def now() -> str:
    """The current UTC time as ISO text, to the second (``created_at`` columns)."""
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def chunks(seq: Sequence, n: int = CHUNK) -> Iterator[Sequence]:
    """``seq`` in slices of at most ``n`` items.

    >>> [list(c) for c in chunks([1, 2, 3], 2)]
    [[1, 2], [3]]
    """
    for i in range(0, len(seq), n):
        yield seq[i : i + n]
