import pytest

from prodlens.data.types import ClassList, OcrToken, ProductSample, reading_order
from prodlens.errors import UnknownClassError


def test_token_roundtrip_keeps_quad():
    t = OcrToken("EKOLOGISK", (1, 2, 30, 12), 0.8, ((1, 2), (30, 2), (30, 12), (1, 12)))
    assert OcrToken.from_dict(t.to_dict()) == t


@pytest.mark.parametrize("box", [(10, 0, 5, 5), (0, 10, 5, 5)])
def test_token_rejects_inverted_box(box):
    with pytest.raises(ValueError, match="x0<=x1"):
        OcrToken("x", box)


def test_reading_order_lines_then_left_to_right():
    toks = [
        OcrToken("MJOLK", (60, 40, 100, 52)),
        OcrToken("Arla", (40, 0, 80, 12)),
        OcrToken("SOMMAR", (0, 41, 55, 53)),
    ]
    assert [t.text for t in reading_order(toks)] == ["Arla", "SOMMAR", "MJOLK"]


def test_sample_text_and_none_vs_empty():
    s = ProductSample("a", "x.jpg", "A")
    assert s.ocr_tokens is None and s.text == ""
    assert s.with_tokens([]).ocr_tokens == ()


def test_class_list_close_match_error():
    cl = ClassList.from_names(["Arla-Standard-Milk", "Oatly-Oat-Milk"])
    with pytest.raises(UnknownClassError, match="did you mean 'Oatly-Oat-Milk'"):
        cl.index("Oatly-Oatmilk")
    assert cl.subset(["Oatly-Oat-Milk"]).names == ["Oatly-Oat-Milk"]
    assert cl.subset(["Oatly-Oat-Milk"])[0].index == 0
