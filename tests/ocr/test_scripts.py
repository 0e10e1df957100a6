"""The OCR script filter: invented glyphs in foreign scripts are dropped, counted, configurable."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image

from prodlens.cli import main
from prodlens.data.manifest import Dataset, read_dataset, write_dataset
from prodlens.data.types import ClassList, OcrToken, ProductSample
from prodlens.ocr import FixedOcrEngine, ScriptFilter, filter_dataset, ocr_image, run_ocr
from prodlens.pipeline.config import OcrConfig

SWEDISH = ["MJÖLK", "Färsk", "LÄTTMJÖLK", "Smör", "Crème", "Müsli", "1,5%", "500g", "1L", "ml", "ekologisk", "°C"]
FOREIGN = ["福", "口口", "МОЛОКО", "молоко", "乳", "ミルク", "福福L"]


def _tok(text: str) -> OcrToken:
    return OcrToken(text, (0, 0, 10, 10), 0.9)


def _line(text: str, y: int = 0) -> dict:
    return {"quad": [[0, y], [60, y], [60, y + 10], [0, y + 10]], "text": text, "score": 0.9}


@pytest.mark.parametrize("preset", ["sv", "latin", "en", "latin,greek"])
def test_swedish_preset_keeps_swedish_words_and_drops_cjk_and_cyrillic(preset):
    kept, report = ScriptFilter.from_preset(preset).apply([_tok(w) for w in SWEDISH + FOREIGN])
    assert [t.text for t in kept] == SWEDISH
    assert (report.tokens, report.dropped, report.cleaned) == (len(SWEDISH) + len(FOREIGN), len(FOREIGN), 0)
    assert set(report.dropped_examples) == set(FOREIGN)


def test_a_few_foreign_characters_are_stripped_not_the_whole_word():
    kept, report = ScriptFilter.from_preset("sv").apply([_tok("MJÖLK福"), _tok("福")])
    assert [t.text for t in kept] == ["MJÖLK"]
    assert (report.dropped, report.cleaned, report.cleaned_examples) == (1, 1, ("MJÖLK福",))
    assert kept[0].box == (0, 0, 10, 10)


def test_cyrillic_preset_keeps_cyrillic_and_allow_all_keeps_everything():
    words = [_tok(w) for w in SWEDISH + FOREIGN]
    kept, _ = ScriptFilter.from_preset("ru").apply(words)
    assert {"МОЛОКО", "молоко"} <= {t.text for t in kept} and "福" not in {t.text for t in kept}
    kept, report = ScriptFilter.from_preset("all").apply(words)
    assert kept == words and report.dropped == 0
    assert "every token kept" in report.summary()


def test_full_width_latin_counts_as_latin():
    kept, _ = ScriptFilter.from_preset("sv").apply([_tok("ＭＩＬＫ")])
    assert [t.text for t in kept] == ["ＭＩＬＫ"]


@pytest.mark.parametrize("bad", ["swedish", "sv,klingon", ""])
def test_unknown_preset_names_the_choices(bad):
    with pytest.raises(ValueError, match=r"script preset must be one of 'all', 'latin', .*'sv'.*; got"):
        ScriptFilter.from_preset(bad)


def test_close_match_is_suggested():
    with pytest.raises(ValueError, match=r"did you mean 'latin'"):
        ScriptFilter.from_preset("latn")


def _dataset(folder: Path, language: str | None) -> Dataset:
    Image.new("RGB", (64, 32)).save(folder / "a.png")
    return Dataset([ProductSample("a", folder / "a.png", "milk")], ClassList.from_names(["milk"]), folder,
                   language=language)


def test_run_ocr_filters_after_the_cache_and_counts_in_the_summary(tmp_path):
    eng = FixedOcrEngine([_line("ARLA MJÖLK 福"), _line("МОЛОКО 1,5%", 12)])
    ds = _dataset(tmp_path, "sv")
    out, report = run_ocr(ds, eng, cache_dir=tmp_path / "cache", progress=False)
    assert out.samples[0].text == "ARLA MJÖLK 1,5%"
    assert report.scripts.dropped == 2 and report.words == 3
    assert "script filter 'sv': dropped 2 of 5 tokens (e.g. '福', 'МОЛОКО')" in report.summary()
    # the cache holds the raw lines: another filter needs no new OCR
    cached = json.loads(next((tmp_path / "cache").rglob("*.json")).read_text(encoding="utf-8"))
    assert "福" in cached["lines"][0]["text"]
    again, rep2 = run_ocr(ds, eng, cache_dir=tmp_path / "cache", script_filter="all", progress=False)
    assert eng.calls == 1 and rep2.from_cache == 1
    assert again.samples[0].text == "ARLA MJÖLK 福 МОЛОКО 1,5%"


def test_dataset_without_language_keeps_everything_and_ocr_image_filters_on_request(tmp_path):
    eng = FixedOcrEngine([_line("OATLY 福")])
    out, report = run_ocr(_dataset(tmp_path, None), eng, cache_dir=tmp_path / "c", progress=False)
    assert out.samples[0].text == "OATLY 福" and report.scripts.dropped == 0
    assert [t.text for t in ocr_image(tmp_path / "a.png", eng, cache_dir=tmp_path / "c", script_filter="sv")] == ["OATLY"]


def test_language_is_stored_with_the_dataset_and_the_sample_is_swedish(tmp_path):
    from prodlens.data.sample import load_sample

    assert load_sample().language == "sv"
    ds = _dataset(tmp_path, "sv")
    write_dataset(ds, tmp_path / "out")
    assert read_dataset(tmp_path / "out").language == "sv"


def test_filter_dataset_after_an_import(tmp_path):
    ds = _dataset(tmp_path, "sv")
    ds.samples[0] = ds.samples[0].with_tokens([_tok("ÄGG"), _tok("福")])
    out, report = filter_dataset(ds)
    assert out.samples[0].text == "ÄGG" and report.dropped == 1


def test_cli_flag_and_pipeline_setting(tmp_path, capsys):
    ds = _dataset(tmp_path, None)
    ds.samples[0] = ds.samples[0].with_tokens([_tok("ÄGG"), _tok("福")])
    write_dataset(ds, tmp_path / "d")
    (tmp_path / "vision").mkdir()
    word = {"description": "福", "boundingPoly": {"vertices": [{"x": 1, "y": 1}, {"x": 9, "y": 1}, {"x": 9, "y": 5}, {"x": 1, "y": 5}]}}
    keep = {**word, "description": "MJÖLK"}
    (tmp_path / "vision" / "a.json").write_text(json.dumps({"textAnnotations": [{"description": "x"}, word, keep]}))
    assert main(["import-vision", str(tmp_path / "d"), str(tmp_path / "vision"), "--scripts", "sv", "--no-progress"]) == 0
    assert "script filter 'sv': dropped 1 of 2 tokens (e.g. '福')" in capsys.readouterr().out
    assert read_dataset(tmp_path / "d").samples[0].text == "MJÖLK"
    with pytest.raises(SystemExit):
        main(["ocr", str(tmp_path / "d"), "--scripts", "klingon"])
    assert "script preset must be one of" in capsys.readouterr().err
    assert OcrConfig(scripts="latin").scripts == "latin"
    with pytest.raises(ValueError, match=r"\[ocr\] scripts: script preset must be one of"):
        OcrConfig(scripts="klingon")
