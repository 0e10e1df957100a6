"""Shared OCR words between two products, tolerant to OCR misspellings."""

from __future__ import annotations

import pytest

from prodlens.data.types import OcrToken
from prodlens.match.words import normalize_word, shared_words, word_similarity


def tok(text, x=0, y=0):
    return OcrToken(text, (x, y, x + 10 * len(text), y + 10))


@pytest.mark.parametrize(
    "a, b, shared",
    [
        ("MJÖLK", "mjolk", True),      # accents and case
        ("OATLY", "0ATLY", True),      # one OCR confusion in 5 letters: 0.8
        ("ARLA", "ARIA", True),        # one in 4: exactly 0.75
        ("ARLA", "ALPRO", False),
        ("HAVREDRYCK", "HAVREDRVCK", True),
        ("LAKTOSFRI", "LAKTOSFRI.", True),  # punctuation at the end
        ("MILK", "MI", False),          # too short after normalisation
    ],
)
def test_misspellings_within_the_threshold_are_shared(a, b, shared):
    out = shared_words([tok(a)], [tok(b)])
    assert bool(out) is shared


def test_threshold_is_inclusive_and_configurable():
    assert word_similarity("ARLA", "ARIA") == 0.75
    assert shared_words([tok("ARLA")], [tok("ARIA")], min_ratio=0.8) == []


def test_query_duplicates_are_grouped_and_all_match_tokens_kept():
    q = [tok("HAVRE", 0, 0), tok("havre", 0, 50), tok("DRYCK", 0, 100)]
    m = [tok("HAVRE", 0, 0), tok("HAVRF", 0, 30), tok("OAT", 0, 60)]
    out = shared_words(q, m)
    assert [w.word for w in out] == ["havre"]
    assert len(out[0].query_tokens) == 2 and [t.text for t in out[0].match_tokens] == ["HAVRE", "HAVRF"]
    assert out[0].ratio == 1.0


def test_round_trip_and_errors():
    w = shared_words([tok("OATLY")], [tok("0ATLY")])[0]
    assert type(w).from_dict(w.to_dict()) == w
    with pytest.raises(ValueError, match="min_ratio must be in \\(0, 1\\]"):
        shared_words([], [], min_ratio=0)
    with pytest.raises(ValueError, match="min_length must be >= 1"):
        shared_words([], [], min_length=0)


def test_normalize_word():
    assert normalize_word("«Ekologisk»") == "ekologisk"
    assert normalize_word("...") == ""
