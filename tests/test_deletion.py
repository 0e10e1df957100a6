"""The deletion test with hand-built classifiers whose decisive superpixel / word is known."""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import pytest

from prodlens.aggregate import (
    DeletionTable,
    GlobalExplainer,
    deletion_table,
    deletion_test,
    format_deletion_table,
    random_superpixels,
    random_tokens,
    read_deletion_table,
    write_json,
)
from prodlens.data.types import OcrToken, ProductSample
from prodlens.explain.explanation import Explanation

CELL, GRID = 8, 4
COLOURS = {"red": (255, 0, 0), "blue": (0, 0, 255)}


def grid_segments() -> np.ndarray:
    r = np.arange(GRID * CELL) // CELL
    return (r[:, None] * GRID + r[None, :]).astype(np.int32)


class ColourModel:
    """Predicts "red"/"blue" from which saturated colour covers more pixels, else "none";
    reads the word OATLY / ARLA from the tokens for the text classes."""

    classes = ["red", "blue", "none", "oatly", "arla"]

    def __init__(self) -> None:
        self.calls = 0

    def predict_proba(self, images, token_lists):
        self.calls += 1
        out = np.zeros((len(images), len(self.classes)))
        for i, (img, toks) in enumerate(zip(images, token_lists)):
            words = {t.text for t in toks}
            img = np.asarray(img).astype(int)
            red = ((img[..., 0] > 200) & (img[..., 1] < 50) & (img[..., 2] < 50)).sum()
            blue = ((img[..., 2] > 200) & (img[..., 0] < 50) & (img[..., 1] < 50)).sum()
            if "OATLY" in words:
                out[i, 3] = 1
            elif "ARLA" in words:
                out[i, 4] = 1
            elif red > blue:
                out[i, 0] = 1
            elif blue > red:
                out[i, 1] = 1
            else:
                out[i, 2] = 1
        return out


def colour_embed(crops):
    """Mean colour, with a tiny per-crop offset so that no two embeddings coincide."""
    m = np.stack([c.reshape(-1, 3).mean(0) / 255.0 for c in crops])
    return np.hstack([m, np.random.default_rng(len(crops)).normal(0, 1e-3, (len(crops), 1))])


def image_world(n_per_class: int = 8, seed: int = 0):
    """Photos of grey noise with one saturated cell (red or blue) that decides the class;
    the explanation gives that cell the largest weight and two grey cells small ones."""
    rng = np.random.default_rng(seed)
    seg = grid_segments()
    ex, images, samples = [], {}, []
    for label, rgb in COLOURS.items():
        for i in range(n_per_class):
            sid = f"{label}_{i}"
            img = np.repeat(rng.integers(90, 160, (GRID * CELL, GRID * CELL, 1)), 3, axis=2).astype(np.uint8)
            key, a, b = rng.choice(GRID * GRID, 3, replace=False)
            img[seg == key] = rgb
            w = np.full(GRID * GRID, -0.01)
            w[key], w[a], w[b] = 0.5, 0.1, 0.05
            ex.append(Explanation(sid, ColourModel.classes.index(label), label, w, 0, 0.9, 0.9, seg, (), GRID * GRID))
            images[sid] = img
            samples.append(ProductSample(sid, Path(f"{sid}.png"), label, "test", ()))
    return ex, images, samples


def text_world(n_per_class: int = 6):
    fill = ["MILK", "1L", "ECO", "DRINK", "FRESH"]
    ex, images, samples = [], {}, []
    for label, word in (("oatly", "OATLY"), ("arla", "ARLA")):
        for i in range(n_per_class):
            sid = f"{label}_{i}"
            words = [word] + fill[i % 3 : i % 3 + 3]
            toks = tuple(OcrToken(t, (10 * k, 0, 10 * k + 9, 9)) for k, t in enumerate(words))
            w = np.array([0.0, 0.6] + [0.02] * 3)
            ex.append(Explanation(sid, ColourModel.classes.index(label), label, w, 0, 0.9, 0.9,
                                  np.zeros((4, 4), np.int32), toks, 1))
            images[sid] = np.full((4, 4, 3), 128, np.uint8)
            samples.append(ProductSample(sid, Path(f"{sid}.png"), label, "test", toks))
    return ex, images, samples


def test_image_top_deletion_drops_accuracy_random_keeps_it():
    ex, images, samples = image_world()
    g = GlobalExplainer(colour_embed, modalities=("image",), crop_size=None, progress=False).fit(ex, images=images).global_
    assert g.top("red", "image", 1)[0].support == 8
    row = deletion_test(ColourModel(), g, ex, samples, modality="image", model="toy", images=images, progress=False)
    assert row.samples == 16
    assert row.no_deletion_accuracy == 1.0
    assert row.top_deletion_accuracy == 0.0
    assert row.random_deletion_accuracy == 1.0
    assert row.mean_deleted >= 1


def test_text_top_deletion_drops_accuracy_random_keeps_it():
    ex, images, samples = text_world()
    g = GlobalExplainer(modalities=("text",), progress=False).fit(ex).global_
    assert g.top("oatly", "text", 1)[0].text == "OATLY"
    row = deletion_test(ColourModel(), g, ex, samples, modality="text", top_k=1, images=images, progress=False, n_repeats=3)
    assert (row.samples, row.no_deletion_accuracy, row.top_deletion_accuracy, row.random_deletion_accuracy) == (12, 1.0, 0.0, 1.0)
    assert row.mean_deleted == 1.0 and row.random_deletion_std == 0.0


def test_text_deletion_removes_every_matching_spelling():
    ex, images, samples = text_world(3)
    g = GlobalExplainer(modalities=("text",), progress=False).fit(ex).global_
    e = ex[0]
    toks = e.tokens + (OcrToken("Oat1y", (90, 0, 99, 9)),)  # an OCR variant not among the top features
    e2 = Explanation(e.sample_id, e.target, e.target_name, np.append(e.weights, 0.0), 0, 0.9, 0.9, e.segments, toks, 1)
    row = deletion_test(ColourModel(), g, [e2], samples, modality="text", top_k=1, images=images, progress=False)
    assert row.mean_deleted == 2.0


def test_deletion_is_deterministic_and_order_independent():
    ex, images, samples = image_world(6, seed=1)
    g = GlobalExplainer(colour_embed, modalities=("image",), crop_size=None, progress=False).fit(ex, images=images).global_
    kw = dict(modality="image", images=images, progress=False, n_repeats=2, seed=7)
    a = deletion_test(ColourModel(), g, ex, samples, **kw)
    shuffled = ex[:]
    random.Random(0).shuffle(shuffled)
    b = deletion_test(ColourModel(), g, shuffled, samples, batch_size=3, **kw)
    assert a == b


def test_random_draws_depend_on_seed_only():
    seg = grid_segments()
    draws = {tuple(random_superpixels(seg, [0, 5], np.random.default_rng(s))) for s in range(10)}
    assert len(draws) > 1
    assert random_superpixels(seg, [0, 5], np.random.default_rng(3)) == random_superpixels(seg, [0, 5], np.random.default_rng(3))
    assert all(0 not in d and 5 not in d and len(d) == 2 for d in draws)


def test_random_superpixels_match_area():
    seg = np.repeat(np.arange(7), [4, 4, 4, 40, 40, 40, 40]).reshape(4, 43)
    for s in range(10):
        (pick,) = random_superpixels(seg, [0], np.random.default_rng(s), area_tolerance=0.5)
        assert pick in (1, 2)
    (big,) = random_superpixels(seg, [3], np.random.default_rng(0))
    assert big in (4, 5, 6)
    # nothing of similar area left: the closest in area is used
    assert random_superpixels(seg, [0, 1, 2], np.random.default_rng(0), 0.5) != []


def test_random_tokens_never_pick_deleted():
    for s in range(10):
        r = random_tokens(6, [1, 4], np.random.default_rng(s))
        assert len(r) == 2 and not set(r) & {1, 4}
    assert random_tokens(2, [0, 1], np.random.default_rng(0)) == []


def test_table_json_and_markdown(tmp_path):
    ex, images, samples = text_world(3)
    g = GlobalExplainer(modalities=("text",), progress=False).fit(ex).global_
    table = deletion_table({"toy": (ColourModel(), g, ex)}, samples, modalities=("text",), images=images, progress=False)
    path = write_json(table, tmp_path / "deletion.json")
    d = json.loads(path.read_text())
    assert set(d["rows"][0]) >= {"model", "modality", "samples", "no_deletion_accuracy",
                                 "top_deletion_accuracy", "random_deletion_accuracy"}
    assert read_deletion_table(path) == table
    md = format_deletion_table(table)
    assert "| toy | text | 6 | 100.0% | 0.0% | 100.0% |" in md
    merged = table.merged(DeletionTable(table.rows))
    assert len(merged.rows) == 1


def test_no_matching_samples_gives_nan_row():
    ex, images, samples = text_world(2)
    g = GlobalExplainer(modalities=("text",), progress=False).fit(ex).global_
    row = deletion_test(ColourModel(), g, ex, samples, modality="image", images=images, progress=False)
    assert row.samples == 0 and np.isnan(row.top_deletion_accuracy)
    d = DeletionTable((row,)).to_dict()
    assert d["rows"][0]["top_deletion_accuracy"] is None  # standard JSON, no NaN
    json.dumps(d, allow_nan=False)
    assert np.isnan(DeletionTable.from_dict(d).rows[0].no_deletion_accuracy)
    assert "| image | 0 | - | - | - |" in format_deletion_table(DeletionTable((row,)))


@pytest.mark.parametrize(
    "kwargs, match",
    [({"modality": "audio"}, "modality must be one of 'image', 'text'; got 'audio'"),
     ({"modality": "text", "top_k": 0}, "top_k must be an integer >= 1; got 0"),
     ({"modality": "text", "n_repeats": 0}, "n_repeats must be an integer >= 1; got 0"),
     ({"modality": "text", "area_tolerance": -1}, "area_tolerance must be a number in \\[0, inf\\]; got -1"),
     ({"modality": "image", "fill": "white"}, "fill must be one of")],
)
def test_deletion_errors(kwargs, match):
    ex, images, samples = text_world(2)
    g = GlobalExplainer(modalities=("text",), progress=False).fit(ex).global_
    with pytest.raises(ValueError, match=match):
        deletion_test(ColourModel(), g, ex, samples, images=images, progress=False, **kwargs)


def test_cli_deletion(tmp_path, monkeypatch, capsys):
    from prodlens.cli import global_cmds, main
    from prodlens.data.manifest import Dataset, write_dataset
    from prodlens.data.types import ClassList
    from PIL import Image

    ex, images, samples = text_world(3)
    data = tmp_path / "data"
    (data / "images").mkdir(parents=True)
    for s in samples:
        Image.fromarray(images[s.id]).save(data / "images" / f"{s.id}.png")
    samples = [ProductSample(s.id, data / "images" / f"{s.id}.png", s.label, "test", s.ocr_tokens) for s in samples]
    write_dataset(Dataset(samples, ClassList.from_names(ColourModel.classes), data), data)
    folder = tmp_path / "ex"
    folder.mkdir()
    for e in ex:
        (folder / f"{e.sample_id}.json").write_text(json.dumps(e.to_dict()))
    monkeypatch.setattr(global_cmds, "_load_classifier", lambda path: ColourModel())
    gpath, out = tmp_path / "g.json", tmp_path / "del.json"
    assert main(["global", str(folder), "--modality", "text", "-o", str(gpath), "--no-progress"]) == 0
    args = ["deletion", str(gpath), str(folder), "--data", str(data), "--model", "toy.pt", "--modality", "text",
            "--top-k", "1", "-o", str(out), "--no-progress"]
    assert main(args + ["--name", "a"]) == 0
    assert main(args + ["--name", "b", "--append"]) == 0
    rows = json.loads(out.read_text())["rows"]
    assert [(r["model"], r["top_deletion_accuracy"]) for r in rows] == [("a", 0.0), ("b", 0.0)]
    assert "| b | text | 6 | 100.0% | 0.0% | 100.0% |" in capsys.readouterr().out
