"""Importing Google Cloud Vision OCR JSON (prodlens.data.vision_json)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image

from prodlens.cli import main as cli_main
from prodlens.data.manifest import Dataset, read_dataset, write_dataset
from prodlens.data.types import ClassList, ProductSample
from prodlens.data.vision_json import attach_vision_json, parse_vision_json, read_vision_json
from prodlens.errors import BadInputError


def _word(text: str, x0: int, y0: int, x1: int, y1: int, **extra) -> dict:
    verts = [{"x": x0, "y": y0}, {"x": x1, "y": y0}, {"x": x1, "y": y1}, {"x": x0, "y": y1}]
    return {"description": text, "boundingPoly": {"vertices": verts}, **extra}


BLOCK = {"locale": "sv", "description": "Arla\nLAKTOSFRI\n", "boundingPoly": {"vertices": [{"x": 0, "y": 0}]}}
RESPONSE = {"textAnnotations": [BLOCK, _word("Arla", 194, 96, 223, 111), _word("LAKTOSFRI", 186, 156, 228, 167)]}


@pytest.mark.parametrize("data", [RESPONSE, {"responses": [RESPONSE]}], ids=["bare", "wrapped"])
def test_words_become_tokens_and_the_block_is_skipped(data):
    tokens = parse_vision_json(data)
    assert [t.text for t in tokens] == ["Arla", "LAKTOSFRI"]
    assert tokens[1].box == (186.0, 156.0, 228.0, 167.0)
    assert tokens[1].quad == ((186.0, 156.0), (228.0, 156.0), (228.0, 167.0), (186.0, 167.0))
    assert tokens[0].score == 1.0


def test_missing_x_or_y_means_zero():
    word = {"description": "19", "boundingPoly": {"vertices": [{}, {"x": 12}, {"x": 12, "y": 8}, {"y": 8}]}}
    (t,) = parse_vision_json({"textAnnotations": [BLOCK, word]})
    assert t.box == (0.0, 0.0, 12.0, 8.0)


def test_normalized_vertices_need_and_use_the_image_size():
    word = {"description": "MJÖLK", "boundingPoly": {"normalizedVertices": [
        {"x": 0.1, "y": 0.5}, {"x": 0.5, "y": 0.5}, {"x": 0.5, "y": 0.75}, {"x": 0.1, "y": 0.75}]}}
    data = {"textAnnotations": [BLOCK, word]}
    (t,) = parse_vision_json(data, image_size=(200, 100))
    assert t.box == pytest.approx((20.0, 50.0, 100.0, 75.0))
    with pytest.raises(BadInputError, match=r"x\.json: annotation 'MJÖLK' uses normalizedVertices.*image_size"):
        parse_vision_json(data, source="x.json")


def test_given_confidence_is_kept():
    (t,) = parse_vision_json({"textAnnotations": [BLOCK, _word("Arla", 0, 0, 5, 5, confidence=0.8)]})
    assert t.score == 0.8


@pytest.mark.parametrize("data", [{}, {"textAnnotations": []}, {"responses": [{}]}, {"textAnnotations": [BLOCK]}])
def test_no_text_gives_no_tokens(data):
    assert parse_vision_json(data) == []


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ([RESPONSE], r"top level is a list, not a JSON object\. expected a Vision API response"),
        ({"responses": [RESPONSE, RESPONSE]}, r'"responses" must be a list with one response per file, got 2'),
        ({"responses": "x"}, r'"responses" must be a list with one response per file'),
        ({"textAnnotations": {"description": "x"}}, r'"textAnnotations" must be a list, got dict'),
        ({"textAnnotations": [BLOCK, "Arla"]}, r"an annotation needs a string 'description', got 'Arla'"),
        ({"textAnnotations": [BLOCK, {"description": "Arla"}]}, r"annotation 'Arla' has no 'boundingPoly' object"),
        ({"textAnnotations": [BLOCK, {"description": "Arla", "boundingPoly": {}}]},
         r"annotation 'Arla' has no vertices or normalizedVertices"),
        ({"textAnnotations": [BLOCK, {"description": "Arla", "boundingPoly": {"vertices": [[1, 2]]}}]},
         r"a vertex must be an object"),
        ({"textAnnotations": [BLOCK, {"description": "Arla", "boundingPoly": {"vertices": [{"x": "a"}]}}]},
         r"vertex coordinates must be numbers"),
        ({"error": {"code": 7, "message": "PERMISSION_DENIED"}}, r"the Vision API returned an error \(PERMISSION_DENIED\)"),
    ],
)
def test_wrong_shapes_name_the_file_and_the_expected_structure(data, message):
    with pytest.raises(BadInputError, match=r"^resp\.json: " + message):
        parse_vision_json(data, source="resp.json")


def test_read_vision_json_names_the_file(tmp_path):
    (tmp_path / "ok.json").write_text(json.dumps(RESPONSE))
    assert len(read_vision_json(tmp_path / "ok.json")) == 2
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(BadInputError, match=r"bad\.json: not valid JSON"):
        read_vision_json(tmp_path / "bad.json")
    with pytest.raises(BadInputError, match=r"gone\.json: Vision JSON file not found"):
        read_vision_json(tmp_path / "gone.json")


def _dataset(root: Path) -> Dataset:
    (root / "images" / "milk").mkdir(parents=True)
    samples = []
    for name in ("arla_001", "arla_002", "arla_003", "oatly_001"):
        p = root / "images" / "milk" / f"{name}.jpg"
        Image.new("RGB", (200, 100)).save(p)
        samples.append(ProductSample(name, p, "milk"))
    return Dataset(samples, ClassList.from_names(["milk"]), root)


def test_attach_matches_by_stem_and_records_missing_json_as_skips(tmp_path):
    ds = _dataset(tmp_path / "ds")
    js = tmp_path / "vision"
    (js / "sub").mkdir(parents=True)
    (js / "arla_001.json").write_text(json.dumps(RESPONSE))
    (js / "sub" / "arla_002.jpg.json").write_text(json.dumps({"responses": [RESPONSE]}))
    normalized = {"description": "OATLY", "boundingPoly": {"normalizedVertices": [
        {"x": 0.5, "y": 0.5}, {"x": 1, "y": 0.5}, {"x": 1, "y": 1}, {"x": 0.5, "y": 1}]}}
    (js / "oatly_001.json").write_text(json.dumps({"textAnnotations": [BLOCK, normalized]}))
    out, report = attach_vision_json(ds, js, progress=False)
    by_id = out.by_id()
    assert by_id["arla_001"].text == by_id["arla_002"].text == "Arla LAKTOSFRI"
    assert by_id["oatly_001"].tokens[0].box == (100.0, 50.0, 200.0, 100.0)  # from the image size
    assert by_id["arla_003"].ocr_tokens is None
    assert (report.images, report.attached, report.words) == (4, 3, 5)
    ((path, reason),) = report.skipped
    assert path.endswith("arla_003.jpg") and "no JSON file named arla_003.json" in reason
    assert "1 skipped" in report.summary()


def test_attach_skips_bad_json_and_ambiguous_names(tmp_path):
    ds = _dataset(tmp_path / "ds")
    js = tmp_path / "vision"
    (js / "a").mkdir(parents=True)
    (js / "b").mkdir()
    (js / "arla_001.json").write_text("[]")
    (js / "a" / "arla_002.json").write_text(json.dumps(RESPONSE))
    (js / "b" / "arla_002.json").write_text(json.dumps(RESPONSE))
    (js / "images" / "milk").mkdir(parents=True)
    (js / "images" / "milk" / "arla_003.json").write_text(json.dumps(RESPONSE))  # mirrors the dataset tree
    (js / "a" / "arla_003.json").write_text("[]")
    out, report = attach_vision_json(ds, js, progress=False)
    reasons = {Path(p).stem: r for p, r in report.skipped}
    assert "top level is a list" in reasons["arla_001"]
    assert "2 JSON files match 'arla_002'" in reasons["arla_002"]
    assert out.by_id()["arla_003"].text == "Arla LAKTOSFRI"
    assert report.attached == 1


def test_attach_needs_an_existing_folder(tmp_path):
    with pytest.raises(BadInputError, match=r"nope: Vision JSON folder not found"):
        attach_vision_json(_dataset(tmp_path), tmp_path / "nope")


def test_cli_import_vision(tmp_path, capsys):
    ds = _dataset(tmp_path / "ds")
    write_dataset(ds, tmp_path / "ds")
    (tmp_path / "vision").mkdir()
    (tmp_path / "vision" / "arla_001.json").write_text(json.dumps(RESPONSE))
    assert cli_main(["import-vision", str(tmp_path / "ds"), str(tmp_path / "vision"), "--no-progress"]) == 0
    assert "1 with JSON (2 words), 3 skipped" in capsys.readouterr().out
    assert read_dataset(tmp_path / "ds").by_id()["arla_001"].text == "Arla LAKTOSFRI"


def test_cli_refuses_to_drop_unreadable_manifest_lines(tmp_path, capsys):
    ds = _dataset(tmp_path / "ds")
    write_dataset(ds, tmp_path / "ds")
    with open(tmp_path / "ds" / "manifest.jsonl", "a") as f:
        f.write("{broken\n")
    (tmp_path / "vision").mkdir()
    assert cli_main(["import-vision", str(tmp_path / "ds"), str(tmp_path / "vision"), "--no-progress"]) == 2
    assert "1 manifest line(s) could not be read" in capsys.readouterr().err
    assert "{broken" in (tmp_path / "ds" / "manifest.jsonl").read_text()
