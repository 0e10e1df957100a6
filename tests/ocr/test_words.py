"""Splitting engine lines into word tokens (prodlens.ocr.words)."""

from __future__ import annotations

import pytest

from prodlens.ocr.words import line_to_words, lines_to_words

RECT = [[0, 0], [100, 0], [100, 10], [0, 10]]


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("FRAN SVENSKA", ["FRAN", "SVENSKA"]),
        ("LAKTOSFRI", ["LAKTOSFRI"]),
        ("  Arla   mjölk ", ["Arla", "mjölk"]),
        ("1,5% FETT", ["1,5%", "FETT"]),
        ("", []),
        ("   ", []),
    ],
)
def test_words_are_split_on_whitespace(text, words):
    assert [t.text for t in line_to_words(RECT, text, 0.9)] == words


def test_word_boxes_are_proportional_slices_of_the_line():
    a, b = line_to_words(RECT, "AB CD", 0.8)
    assert a.box == (0.0, 0.0, 40.0, 10.0)
    assert b.box == (60.0, 0.0, 100.0, 10.0)
    assert a.score == b.score == 0.8
    assert a.quad == ((0.0, 0.0), (40.0, 0.0), (40.0, 10.0), (0.0, 10.0))


def test_words_of_a_rotated_line_follow_its_quad():
    # a line going down-right at 45 degrees: TL (0,0) TR (100,100) BR (90,110) BL (-10,10)
    quad = [[0, 0], [100, 100], [90, 110], [-10, 10]]
    first, second = line_to_words(quad, "AAAA BBBB", 0.9)
    assert first.quad[0] == (0.0, 0.0)
    assert second.quad[1] == (100.0, 100.0)
    assert first.center[0] < second.center[0] and first.center[1] < second.center[1]
    for t in (first, second):  # the axis-aligned box encloses the quad
        xs, ys = [p[0] for p in t.quad], [p[1] for p in t.quad]
        assert t.box == (min(xs), min(ys), max(xs), max(ys))


@pytest.mark.parametrize("scale", [1.0, 2.0, 0.5])
def test_scale_divides_coordinates(scale):
    (t,) = line_to_words([[0, 0], [40, 0], [40, 20], [0, 20]], "X", 1.0, scale=scale)
    assert t.box == (0.0, 0.0, 40 / scale, 20 / scale)


def test_lines_to_words_drops_low_scores():
    lines = [
        {"quad": RECT, "text": "Arla LAKTOSFRI", "score": 0.97},
        {"quad": RECT, "text": "FAFGHRAEZETE", "score": 0.52},
    ]
    assert [t.text for t in lines_to_words(lines)] == ["Arla", "LAKTOSFRI", "FAFGHRAEZETE"]
    assert [t.text for t in lines_to_words(lines, min_score=0.6)] == ["Arla", "LAKTOSFRI"]
