import json

import pytest

from prodlens.data.manifest import Dataset, read_dataset, write_dataset
from prodlens.data.types import ClassList, OcrToken, ProductSample
from prodlens.errors import BadInputError, UnknownClassError


def _ds(tmp_path):
    img = tmp_path / "img" / "a.jpg"
    img.parent.mkdir()
    img.write_bytes(b"")
    s = ProductSample("train/a", img, "Oatly", "train", (OcrToken("OATLY", (1, 2, 3, 4), 0.9),))
    u = ProductSample("val/b", img, "Arla", "val", None)
    return Dataset([s, u], ClassList.from_names(["Arla", "Oatly"]), tmp_path)


def test_roundtrip_relative_paths(tmp_path):
    ds = _ds(tmp_path)
    write_dataset(ds, tmp_path / "out")
    line = json.loads((tmp_path / "out" / "manifest.jsonl").read_text().splitlines()[0])
    assert line["image_path"].endswith("img/a.jpg")
    back = read_dataset(tmp_path / "out")
    assert [s.id for s in back] == ["train/a", "val/b"]
    assert back.samples[0].ocr_tokens == ds.samples[0].ocr_tokens
    assert back.samples[1].ocr_tokens is None
    assert back.classes == ds.classes
    assert back.samples[0].image_path.resolve() == ds.samples[0].image_path.resolve()


def test_bad_lines_are_skipped_with_location(tmp_path):
    write_dataset(_ds(tmp_path), tmp_path)
    with open(tmp_path / "manifest.jsonl", "a") as f:
        f.write("{not json\n")
        f.write(json.dumps({"id": "c"}) + "\n")
        f.write(json.dumps({"id": "d", "image_path": "x.jpg", "label": "Valio"}) + "\n")
        f.write(json.dumps({"id": "e", "image_path": "x.jpg", "split": "holdout"}) + "\n")
        f.write(json.dumps({"id": "train/a", "image_path": "x.jpg", "label": "Arla"}) + "\n")
    ds = read_dataset(tmp_path)
    assert len(ds) == 2
    reasons = " | ".join(r for _, r in ds.skipped)
    assert "manifest.jsonl:3: not valid JSON" in reasons
    assert "missing required key(s) ['image_path']" in reasons
    assert "unknown class 'Valio'" in reasons
    assert "split 'holdout'" in reasons
    assert "duplicate sample id 'train/a'" in reasons
    with pytest.raises(BadInputError, match="not valid JSON"):
        read_dataset(tmp_path, strict=True)


def test_unknown_class_strict(tmp_path):
    write_dataset(_ds(tmp_path), tmp_path)
    with open(tmp_path / "manifest.jsonl", "a") as f:
        f.write(json.dumps({"id": "d", "image_path": "x.jpg", "label": "Valio"}) + "\n")
    with pytest.raises(UnknownClassError, match="Valio"):
        read_dataset(tmp_path, strict=True)


def test_wrong_classes_schema(tmp_path):
    write_dataset(_ds(tmp_path), tmp_path)
    (tmp_path / "classes.json").write_text('["Arla"]')
    with pytest.raises(BadInputError, match="classes.json: wrong schema"):
        read_dataset(tmp_path)


def test_missing_manifest_says_what_to_do(tmp_path):
    with pytest.raises(BadInputError, match="import a dataset first"):
        read_dataset(tmp_path)


def test_write_is_atomic_on_interrupt(tmp_path, monkeypatch):
    ds = _ds(tmp_path)
    write_dataset(ds, tmp_path / "out")
    before = (tmp_path / "out" / "manifest.jsonl").read_text()

    class Boom(ProductSample):
        pass

    bad = Dataset(ds.samples + [object()], ds.classes)  # type: ignore[list-item]
    with pytest.raises(AttributeError):
        write_dataset(bad, tmp_path / "out")
    assert (tmp_path / "out" / "manifest.jsonl").read_text() == before
    assert not [p for p in (tmp_path / "out").iterdir() if p.name.endswith(".tmp")]


def test_cwd_relative_paths_outside_the_folder_survive_a_roundtrip(tmp_path, monkeypatch):
    # `prodlens import-grocery ../shared/... --out work/grocery`: the photos lie outside
    # the dataset folder and were named relative to the working directory
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "a.jpg").write_bytes(b"")
    (tmp_path / "cwd").mkdir()
    monkeypatch.chdir(tmp_path / "cwd")
    ds = Dataset([ProductSample("a", __import__("pathlib").Path("../data/a.jpg"), "Arla", "train")],
                 ClassList.from_names(["Arla"]), tmp_path / "cwd")
    write_dataset(ds, "work/grocery")
    back = read_dataset("work/grocery")
    assert back.samples[0].image_path.resolve() == (tmp_path / "data" / "a.jpg").resolve()
    assert back.samples[0].image_path.is_file()
