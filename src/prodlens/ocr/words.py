"""Turn an OCR engine's text lines (a quad + a string) into word-level tokens.

RapidOCR (PP-OCR) reads whole lines. The explainer treats each *word* as one
feature, so a line is split on whitespace and each word gets the slice of the line's
quad proportional to its character span.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from prodlens.data.types import OcrToken

Point = tuple[float, float]


def _lerp(p: Point, q: Point, t: float) -> Point:
    return (p[0] + (q[0] - p[0]) * t, p[1] + (q[1] - p[1]) * t)


def line_to_words(quad: Sequence[Sequence[float]], text: str, score: float, scale: float = 1.0) -> list[OcrToken]:
    """Split one line into word tokens.

    ``quad`` is top-left, top-right, bottom-right, bottom-left (PP-OCR order);
    coordinates are divided by ``scale`` (the upscaling factor used for OCR).

    >>> [t.text for t in line_to_words([[0, 0], [100, 0], [100, 10], [0, 10]], "FRAN SVENSKA", 0.9)]
    ['FRAN', 'SVENSKA']
    >>> line_to_words([[0, 0], [100, 0], [100, 10], [0, 10]], "AB CD", 0.9)[1].box
    (60.0, 0.0, 100.0, 10.0)
    """
    tl, tr, br, bl = [(float(x) / scale, float(y) / scale) for x, y in quad]
    n = len(text)
    tokens: list[OcrToken] = []
    if n == 0:
        return tokens
    i = 0
    for word in text.split():
        start = text.index(word, i)
        end = start + len(word)
        i = end
        a, b = start / n, end / n
        q = (_lerp(tl, tr, a), _lerp(tl, tr, b), _lerp(bl, br, b), _lerp(bl, br, a))
        xs, ys = [p[0] for p in q], [p[1] for p in q]
        tokens.append(OcrToken(word, (min(xs), min(ys), max(xs), max(ys)), score, q))
    return tokens


def lines_to_words(lines: Iterable[dict], scale: float = 1.0, min_score: float = 0.0) -> list[OcrToken]:
    """Apply :func:`line_to_words` to engine lines ``{"quad", "text", "score"}``."""
    out: list[OcrToken] = []
    for line in lines:
        if line["score"] < min_score:
            continue
        out.extend(line_to_words(line["quad"], line["text"], line["score"], scale))
    return out
