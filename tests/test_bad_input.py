"""Bad input never loses other work: every command that walks a dataset, fed one
unreadable photo among good ones, does the good ones and names the bad one."""

from __future__ import annotations

import json
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from prodlens.cli import global_cmds, main
from prodlens.cli._common import EXIT_SKIPPED
from prodlens.data.manifest import Dataset, read_dataset, write_dataset
from prodlens.data.types import OcrToken

CLASSES = ["Oatly-Oat-Milk", "Arla-Standard-Milk"]
BAD = "Oatly-Oat-Milk_999.jpg"


class ToyModel:
    """Two classes told apart by the word OATLY; ``encode_images`` is the mean colour."""

    classes = CLASSES
    input_size = 32

    def predict_proba(self, images, token_lists):
        z = np.array([[2.0 * any(t.text == "OATLY" for t in ts), 1.0] for ts in token_lists])
        p = np.exp(z - z.max(1, keepdims=True))
        return p / p.sum(1, keepdims=True)

    def encode_images(self, images):
        return np.array([np.asarray(im, float).reshape(-1, 3).mean(0) / 255 for im in images])


@pytest.fixture
def photos(tmp_path, sample_ds) -> Path:
    """``photos/<split>/<class>/*.jpg``: 2 train + 2 val real photos per class, and one
    garbage-bytes ``.jpg`` in val/Oatly."""
    root = tmp_path / "photos"
    for c in CLASSES:
        mine = [s for s in sample_ds.samples if s.label == c]
        for split in ("train", "val"):
            d = root / split / c
            d.mkdir(parents=True)
            for s in [s for s in mine if s.split == split][:2]:
                shutil.copyfile(s.image_path, d / s.image_path.name)
    (root / "val" / CLASSES[0] / BAD).write_bytes(b"not a jpeg at all")
    return root


def _words(label: str) -> tuple[OcrToken, ...]:
    return tuple(OcrToken(w.upper(), (10 * i, 0, 10 * i + 8, 8)) for i, w in enumerate(label.split("-")))


@pytest.fixture
def dataset(tmp_path, photos) -> Path:
    """A dataset folder whose manifest lists the bad photo too (as an older import would),
    with OCR words attached."""
    from prodlens.data.folders import _images
    from prodlens.data.types import ClassList, ProductSample

    samples = [
        ProductSample(f"{p.parent.parent.name}/{p.stem}", p, p.parent.name, p.parent.parent.name, _words(p.parent.name))
        for p in _images(photos)
    ]
    write_dataset(Dataset(samples, ClassList.from_names(CLASSES)), tmp_path / "ds")
    return tmp_path / "ds"


def _good(ds_dir: Path, split: str | None = None) -> list[str]:
    return [s.id for s in read_dataset(ds_dir).samples if BAD not in str(s.image_path) and split in (None, s.split)]


# -- importers ---------------------------------------------------------------------------


def test_import_folders_leaves_the_bad_photo_out_and_says_so(photos, tmp_path, capsys):
    assert main(["import-folders", str(photos), "--out", str(tmp_path / "ds")]) == 0
    out = capsys.readouterr().out
    ds = read_dataset(tmp_path / "ds")
    assert len(ds) == 8 and not any(BAD in str(s.image_path) for s in ds)
    assert "skipped 1" in out and BAD in out and "re-export it as JPEG or PNG" in out


def test_import_grocery_checks_each_image(photos, tmp_path):
    from prodlens.data.grocery import import_grocery_store

    root = tmp_path / "gs"
    header = "Class Name (str),Class ID (int),Coarse Class Name (str),Coarse Class ID (int),Iconic Image Path (str),Product Description Path (str)"
    rows = [f"{c},{i},Milk,0,/iconic/{c}.jpg,/iconic/{c}.txt" for i, c in enumerate(CLASSES)]
    (root / "train").mkdir(parents=True)
    (root / "classes.csv").write_text("\n".join([header, *rows]) + "\n")
    lines = []
    for p in sorted((photos / "val").rglob("*.jpg")):
        shutil.copyfile(p, root / "train" / p.name)
        lines.append(f"train/{p.name}, {CLASSES.index(p.parent.name)}, 0")
    (root / "train.txt").write_text("\n".join(lines) + "\n")
    ds = import_grocery_store(root)
    assert len(ds) == 4
    ((path, why),) = ds.skipped
    assert path.endswith(BAD) and "not a readable image" in why


def test_import_vision_skips_a_photo_that_does_not_open(dataset, tmp_path, capsys):
    vision = tmp_path / "vision"
    vision.mkdir()
    word = {"description": "OATLY", "boundingPoly": {"vertices": [{"x": 1, "y": 1}, {"x": 9, "y": 1}, {"x": 9, "y": 5}, {"x": 1, "y": 5}]}}
    for s in read_dataset(dataset):
        (vision / f"{s.image_path.stem}.json").write_text(json.dumps({"textAnnotations": [{"description": "OATLY"}, word]}))
    assert main(["import-vision", str(dataset), str(vision), "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "8 with JSON" in out and "1 skipped" in out and BAD in out


# -- commands that score or explain ------------------------------------------------------


def test_evaluate_scores_the_good_photos_and_reports_the_bad_one(dataset, tmp_path, monkeypatch, capsys):
    import prodlens.models.checkpoint as checkpoint

    monkeypatch.setattr(checkpoint, "load_classifier", lambda *a, **k: ToyModel())
    rc = main(["evaluate", "model.pt", str(dataset), "--split", "val", "--out", str(tmp_path / "eval")])
    assert rc == EXIT_SKIPPED
    captured = capsys.readouterr()
    assert "| 4 | 100.0% |" in captured.out and BAD in captured.out  # the Markdown lists it too
    assert "1 photos skipped" in captured.err and BAD in captured.err and "re-export" in captured.err
    report = json.loads((tmp_path / "eval" / "eval.json").read_text())
    assert report["n"] == 4 and report["skipped"][0][0].endswith(BAD)


def test_predict_dataset_says_which_samples_it_scored(dataset):
    from prodlens.train.metrics import predict_dataset

    ds = read_dataset(dataset).split("val")
    probs, scored, skipped = predict_dataset(ToyModel(), ds, batch_size=2, progress=False)
    assert [s.id for s in scored] == _good(dataset, "val") and probs.shape == (4, 2)
    assert len(skipped) == 1 and skipped[0][0].endswith(BAD)


@pytest.fixture
def explanations(dataset, tmp_path) -> Path:
    """One explanation per val photo, the bad one's too (as if it broke after explaining)."""
    from prodlens.explain.explanation import Explanation

    folder = tmp_path / "expl"
    folder.mkdir()
    segments = np.repeat(np.repeat(np.arange(4).reshape(2, 2), 8, 0), 8, 1)  # 4 quadrants, rescaled to each photo
    for s in read_dataset(dataset).split("val"):
        weights = np.array([0.5, 0.3, 0.0, -0.1] + [0.4] + [0.0] * (len(s.tokens) - 1))
        e = Explanation(s.id, CLASSES.index(s.label), s.label, weights, 0.0, 0.9, 0.9, segments, s.tokens, 4)
        (folder / f"{s.image_path.stem}.json").write_text(json.dumps(e.to_dict()))
    return folder


def test_global_aggregates_the_good_photos_and_reports_the_bad_one(dataset, explanations, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(global_cmds, "_load_classifier", lambda path: ToyModel())
    out = tmp_path / "global.json"
    rc = main(["global", str(explanations), "--data", str(dataset), "--model", "m.pt", "-o", str(out), "--min-support", "1",
               "--min-cluster-size", "2", "--min-samples", "1", "--no-progress"])
    assert rc == EXIT_SKIPPED
    assert BAD in capsys.readouterr().err
    g = json.loads(out.read_text())
    assert [Path(p).name for p, _ in g["config"]["skipped"]] == [BAD]
    oatly = {f["text"] for f in next(c for c in g["classes"] if c["class_name"] == CLASSES[0])["text"]}
    assert "OATLY" in oatly  # the text of all three explanations still counts


def test_deletion_scores_the_good_photos_and_reports_the_bad_one(dataset, explanations, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(global_cmds, "_load_classifier", lambda path: ToyModel())
    g = tmp_path / "global.json"
    main(["global", str(explanations), "-o", str(g), "--modality", "text", "--min-support", "1", "--no-progress"])
    out = tmp_path / "deletion.json"
    rc = main(["deletion", str(g), str(explanations), "--data", str(dataset), "--model", "m.pt", "-o", str(out),
               "--modality", "text", "--top-k", "1", "--no-progress"])
    assert rc == EXIT_SKIPPED
    assert BAD in capsys.readouterr().err
    (row,) = json.loads(out.read_text())["rows"]
    assert row["samples"] == 4 and sorted(row["sample_ids"]) == _good(dataset, "val")
    assert Path(row["skipped"][0][0]).name == BAD


@pytest.mark.slow
def test_match_fit_and_match_leave_the_bad_photo_out(dataset, tmp_path, capsys):
    common = ["--kind", "image", "--feature-cache", str(tmp_path / "features"), "--no-progress"]
    emb = tmp_path / "emb.pt"
    assert main(["match-fit", str(dataset), "--split", "val", "--out", str(emb), "--epochs", "2", "--out-dim", "4",
                 *common]) == EXIT_SKIPPED
    assert BAD in capsys.readouterr().err
    rc = main(["match", str(dataset), "--embedding", str(emb), "--queries", "val", "--gallery", "train", "-k", "2",
               "--json", str(tmp_path / "r.json"), *common])
    assert rc == EXIT_SKIPPED
    assert BAD in capsys.readouterr().err
    res = json.loads((tmp_path / "r.json").read_text())
    assert res["n_queries"] == 4 and [Path(p).name for p, _ in res["config"]["skipped"]] == [BAD]


def test_pipeline_trains_and_explains_around_a_bad_training_photo(dataset, tmp_path, capsys):
    from prodlens.pipeline import PipelineConfig

    ds = read_dataset(dataset)
    moved = [replace(s, split="train") if BAD in str(s.image_path) else s for s in ds.samples]
    write_dataset(replace(ds, samples=moved), dataset)
    cfg = PipelineConfig.from_dict({
        "name": "bad", "out": "out", "cache_dir": "cache", "data": {"dataset": str(dataset)}, "ocr": {"engine": "none"},
        "train": {"backbone": {"input_size": 64}, "text_backbone": "char_ngrams", "views": 1, "epochs": 3},
        "explain": {"split": "val", "max_samples": 24, "segments": 8, "quality": False},
        "global": {"min_support": 1}, "deletion": {"modalities": ["text"]}, "executor": {"threads": 1},
    }, base=tmp_path)
    (tmp_path / "run.json").write_text(json.dumps(cfg.to_dict()))
    assert main(["run", str(tmp_path / "run.json"), "--no-progress"]) == EXIT_SKIPPED
    err = capsys.readouterr().err
    assert f"failed train {dataset.parent / 'photos' / 'val' / CLASSES[0] / BAD}" in err and "re-export" in err
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    stages = {s["stage"]: s for s in summary["stages"]}
    assert all(s["status"] == "ok" for name, s in stages.items() if name not in ("match", "sanity"))  # disabled
    assert stages["explain"]["done"] == 4 and stages["deletion"]["done"] == 1


def test_train_leaves_the_bad_photo_out(dataset, tmp_path, capsys, one_torch_thread):
    rc = main(["train", str(dataset), "--model", "concat", "--text-backbone", "char_ngrams", "--backbone-opt", "input_size=64",
               "--views", "1", "--epochs", "2", "--train-split", "val", "--val-split", "train",
               "--feature-cache", str(tmp_path / "features"), "--out", str(tmp_path / "m.pt")])
    assert rc == EXIT_SKIPPED and (tmp_path / "m.pt").is_file()
    captured = capsys.readouterr()
    assert "4 train / 4 val samples" in captured.out and BAD in captured.err
