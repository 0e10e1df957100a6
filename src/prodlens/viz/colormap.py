"""The JET colour map in numpy (the paper's overlays), without matplotlib.

JET is piecewise linear in each channel: dark blue -> blue -> cyan -> yellow -> red ->
dark red. The breakpoints below are matplotlib's ``jet``, so colours match it.
"""

from __future__ import annotations

import numpy as np

_RED = ((0.0, 0.0), (0.35, 0.0), (0.66, 1.0), (0.89, 1.0), (1.0, 0.5))
_GREEN = ((0.0, 0.0), (0.125, 0.0), (0.375, 1.0), (0.64, 1.0), (0.91, 0.0), (1.0, 0.0))
_BLUE = ((0.0, 0.5), (0.11, 1.0), (0.34, 1.0), (0.65, 0.0), (1.0, 0.0))


def jet(values: np.ndarray | float) -> np.ndarray:
    """Map values in ``[0, 1]`` (clipped) to JET colours, ``uint8`` with a last axis of 3.

    >>> jet(np.array([0.0, 0.5, 1.0])).tolist()
    [[0, 0, 128], [123, 255, 123], [128, 0, 0]]
    """
    v = np.clip(np.asarray(values, dtype=np.float64), 0.0, 1.0)
    chans = []
    for pts in (_RED, _GREEN, _BLUE):
        xs, ys = zip(*pts)
        chans.append(np.interp(v, xs, ys))
    return np.rint(np.stack(chans, -1) * 255).astype(np.uint8)
