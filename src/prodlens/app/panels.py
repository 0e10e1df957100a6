"""The picture record every view returns, and the sizes pictures are drawn at."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

#: Longest side of photos in the single-sample, compare and matching views.
DISPLAY_SIDE = 420
#: Longest side of gallery thumbnails.
THUMB_SIDE = 160


@dataclass(frozen=True)
class Panel:
    """One picture with its caption (``image`` is ``None`` when there is nothing to show).

    >>> Panel("no sample chosen", None).caption
    'no sample chosen'
    """

    caption: str
    image: np.ndarray | None
