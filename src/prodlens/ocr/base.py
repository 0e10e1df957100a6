"""The seam every OCR engine plugs into: :class:`OcrEngine`.

An engine turns one RGB image into raw text *lines*::

    {"quad": [[x, y], [x, y], [x, y], [x, y]], "text": "FRAN SVENSKA", "score": 0.93}

Coordinate convention (one rule, so cached lines never need a scale factor):
``quad`` is always in pixels of the **original** image passed to
:meth:`OcrEngine.read_lines`, in the order top-left, top-right, bottom-right,
bottom-left. An engine that resizes the image internally (e.g. ``upscale=2.0``)
maps its quads back before returning them. Options that change *what* is read
(engine, version, upscale factor, score threshold) go into :attr:`OcrEngine.key`,
which names the cache folder; options that only change speed (thread counts) do not.

Lines are split into word tokens later, by :func:`prodlens.ocr.words.lines_to_words`,
so the cache holds raw engine output and word splitting can change freely.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Protocol, TypedDict, runtime_checkable

import numpy as np


class Line(TypedDict):
    """One raw engine line: four ``[x, y]`` corners (TL, TR, BR, BL), text, confidence."""

    quad: list[list[float]]
    text: str
    score: float


@runtime_checkable
class OcrEngine(Protocol):
    """Anything that reads text lines off an RGB ``uint8`` image.

    >>> isinstance(FixedOcrEngine([]), OcrEngine)
    True
    """

    #: Cache key: engine name, version and every option that changes the output.
    key: str

    def read_lines(self, image: np.ndarray) -> list[Line]:
        """Read ``image`` (``(H, W, 3)`` ``uint8`` RGB); quads in its pixel coordinates."""
        ...


@runtime_checkable
class ThreadLimitable(Protocol):
    """An engine whose CPU thread count can be capped (used by parallel runs)."""

    def with_threads(self, threads: int) -> OcrEngine:
        """A copy of the engine that uses at most ``threads`` CPU threads."""
        ...


def validate_lines(lines: Sequence[Mapping], where: str = "engine output") -> list[Line]:
    """Check and normalise engine lines to plain JSON types (floats, str).

    >>> validate_lines([{"quad": [[0, 0], [4, 0], [4, 2], [0, 2]], "text": "HI", "score": 1}])
    [{'quad': [[0.0, 0.0], [4.0, 0.0], [4.0, 2.0], [0.0, 2.0]], 'text': 'HI', 'score': 1.0}]
    >>> validate_lines([{"text": "HI"}])
    Traceback (most recent call last):
    ...
    ValueError: engine output: line 0 must be {"quad": [[x, y] * 4], "text": str, "score": float}, got {'text': 'HI'}
    """
    out: list[Line] = []
    for i, line in enumerate(lines):
        try:
            quad = [[float(x), float(y)] for x, y in line["quad"]]
            if len(quad) != 4:
                raise ValueError("quad needs 4 points")
            out.append(Line(quad=quad, text=str(line["text"]), score=float(line["score"])))
        except (KeyError, TypeError, ValueError):
            raise ValueError(
                f'{where}: line {i} must be {{"quad": [[x, y] * 4], "text": str, "score": float}}, got {line!r}'
            ) from None
    return out


class FixedOcrEngine:
    """An engine that returns the same lines for every image (for tests and examples).

    Counts its calls in :attr:`calls`, so a test can check that a cache hit skipped it.

    >>> eng = FixedOcrEngine([{"quad": [[0, 0], [8, 0], [8, 4], [0, 4]], "text": "OAT MILK", "score": 0.9}])
    >>> eng.read_lines(np.zeros((4, 8, 3), np.uint8))[0]["text"], eng.calls
    ('OAT MILK', 1)
    """

    def __init__(self, lines: Sequence[Mapping], key: str = "fixed-engine") -> None:
        self.lines = validate_lines(lines, "FixedOcrEngine")
        self.key = key
        self.calls = 0

    def read_lines(self, image: np.ndarray) -> list[Line]:
        self.calls += 1
        return [Line(quad=[list(p) for p in ln["quad"]], text=ln["text"], score=ln["score"]) for ln in self.lines]

    def __repr__(self) -> str:
        return f"FixedOcrEngine({len(self.lines)} lines, key={self.key!r})"
