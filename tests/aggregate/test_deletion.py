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
    random_region,
    random_words,
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


def image_world(n_per_class: int = 8, seed: int = 0, split: str = "test"):
    """Photos of grey noise with one saturated cell (red or blue) that decides the class;
    the explanation gives that cell the largest weight and two grey cells small ones."""
    rng = np.random.default_rng(seed)
    seg = grid_segments()
    ex, images, samples = [], {}, []
    for label, rgb in COLOURS.items():
        for i in range(n_per_class):
            sid = f"{split}/{label}_{i}"
            img = np.repeat(rng.integers(90, 160, (GRID * CELL, GRID * CELL, 1)), 3, axis=2).astype(np.uint8)
            key, a, b = rng.choice(GRID * GRID, 3, replace=False)
            img[seg == key] = rgb
            w = np.full(GRID * GRID, -0.01)
            w[key], w[a], w[b] = 0.5, 0.1, 0.05
            ex.append(Explanation(sid, ColourModel.classes.index(label), label, w, 0, 0.9, 0.9, seg, (), GRID * GRID))
            images[sid] = img
            samples.append(ProductSample(sid, Path(f"{i}.png"), label, split, ()))
    return ex, images, samples


def text_world(n_per_class: int = 6, split: str = "test"):
    fill = ["MILK", "1L", "ECO", "DRINK", "FRESH"]
    ex, images, samples = [], {}, []
    for label, word in (("oatly", "OATLY"), ("arla", "ARLA")):
        for i in range(n_per_class):
            sid = f"{split}/{label}_{i}"
            words = [word] + fill[i % 3 : i % 3 + 3]
            toks = tuple(OcrToken(t, (10 * k, 0, 10 * k + 9, 9)) for k, t in enumerate(words))
            w = np.array([0.0, 0.6] + [0.02] * 3)
            ex.append(Explanation(sid, ColourModel.classes.index(label), label, w, 0, 0.9, 0.9,
                                  np.zeros((4, 4), np.int32), toks, 1))
            images[sid] = np.full((4, 4, 3), 128, np.uint8)
            samples.append(ProductSample(sid, Path(f"{i}.png"), label, split, toks))
    return ex, images, samples


def held_out(world, **kw):
    """Global features built on a train world, and a val world to test them on."""
    ex, images, samples = world(split="train", **kw)
    vex, vimages, vsamples = world(split="val", **kw)
    return (ex, images, samples), (vex, {**images, **vimages}, samples + vsamples)


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


def test_random_region_is_the_same_shape_near_the_top_region_and_seeded():
    seg = grid_segments()
    top = np.isin(seg, [5, 6])
    for s in range(10):
        r = random_region(seg, [5, 6], np.random.default_rng(s), reach=2.0)
        assert r.pixels == top.sum() == r.mask.sum() and r.overlap == 0
        assert not (r.mask & top).any()
        ys, xs = np.nonzero(r.mask)
        ty, tx = np.nonzero(top)
        assert abs(ys.mean() - ty.mean()) <= 2 * CELL + CELL and abs(xs.mean() - tx.mean()) <= 2 * 2 * CELL + CELL
    a, b = (random_region(seg, [5, 6], np.random.default_rng(3)).mask for _ in range(2))
    assert (a == b).all()


def test_random_region_overlaps_only_when_nothing_else_fits():
    seg = np.zeros((8, 8), np.int32)
    seg[:, :6] = 1  # 75% of the photo: any move overlaps it
    r = random_region(seg, [1], np.random.default_rng(0))
    assert r.pixels == 48 and r.overlap > 0 and r.mask.sum() == 48


def test_random_words_are_real_words_never_the_deleted_ones():
    toks = [OcrToken(w, (0, 0, 1, 1)) for w in ("OATLY", "Oat1y", "%", "1", "MILK", "ECO", "-", "DRYCK")]
    for s in range(20):
        r = random_words(toks, [0, 1], np.random.default_rng(s))
        assert len(r) == 2 and set(r) <= {4, 5, 7}
    assert random_words(toks[:4], [0, 1], np.random.default_rng(0)) == []


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
    assert "| toy | text | 6 | 100.0% | 0.0% | 100.0% | +100.0% [+100.0%, +100.0%] | +100.0% [+100.0%, +100.0%] |" in md
    assert "global features built on an unrecorded split, tested on test (IN-SAMPLE: the drop is flattering)" in md
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
    assert "| image | 0 | - | - | - | - | - |" in format_deletion_table(DeletionTable((row,)))


@pytest.mark.parametrize(
    "kwargs, match",
    [({"modality": "audio"}, "modality must be one of 'image', 'text'; got 'audio'"),
     ({"modality": "text", "top_k": 0}, "top_k must be an int >= 1, got 0"),
     ({"modality": "text", "n_repeats": 0}, "n_repeats must be an int >= 1, got 0"),
     ({"modality": "text", "reach": -1}, "reach must be a number in \\[0, inf\\]; got -1"),
     ({"modality": "text", "in_sample": "ignore"}, "in_sample must be one of 'warn', 'error', 'allow'; got 'ignore'"),
     ({"modality": "image", "fill": "white"}, "fill must be one of")],
)
def test_deletion_errors(kwargs, match):
    ex, images, samples = text_world(2)
    g = GlobalExplainer(modalities=("text",), progress=False).fit(ex).global_
    with pytest.raises(ValueError, match=match):
        deletion_test(ColourModel(), g, ex, samples, images=images, progress=False, **kwargs)


def _write_world(tmp_path, ex, images, samples):
    """A dataset folder with the world's photos, and a folder with its explanations."""
    from PIL import Image

    from prodlens.data.manifest import Dataset, write_dataset
    from prodlens.data.types import ClassList

    data, folder = tmp_path / "data", tmp_path / "ex"
    (data / "images").mkdir(parents=True)
    folder.mkdir()
    stored = []
    for s in samples:
        path = data / "images" / f"{s.id.replace('/', '_')}.png"
        Image.fromarray(images[s.id]).save(path)
        stored.append(ProductSample(s.id, path, s.label, s.split, s.ocr_tokens))
    write_dataset(Dataset(stored, ClassList.from_names(ColourModel.classes), data), data)
    for e in ex:
        (folder / f"{e.sample_id.replace('/', '_')}.json").write_text(json.dumps(e.to_dict()))
    return data, folder


def test_cli_deletion(tmp_path, monkeypatch, capsys):
    from prodlens.cli import global_cmds, main

    ex, images, samples = text_world(3)
    data, folder = _write_world(tmp_path, ex, images, samples)
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
    # --in-sample error refuses features tested on their own samples
    assert main(args + ["--name", "c", "--in-sample", "error"]) == 2
    assert "in-sample deletion test" in capsys.readouterr().err


def test_held_out_image_deletion_drops_accuracy_near_same_size_control_does_not():
    (ex, images, samples), (vex, vimages, vsamples) = held_out(image_world)
    g = GlobalExplainer(colour_embed, modalities=("image",), crop_size=None, progress=False).fit(ex, samples, images).global_
    assert g.config["fit_splits"] == ["train"]
    row = deletion_test(ColourModel(), g, vex, vsamples, modality="image", images=vimages, progress=False,
                        embed_fn=colour_embed, n_repeats=3, radius_scale=3.0)
    assert row.samples == 16 and all(o.held_out for o in row.per_sample)
    assert (row.no_deletion_accuracy, row.top_deletion_accuracy, row.random_deletion_accuracy) == (1.0, 0.0, 1.0)
    for o in row.per_sample:  # the control paints exactly as many pixels, off the top region
        assert o.random_deleted == o.deleted_pixels and o.random_overlap == 0
    assert row.top_drop.low <= row.top_drop.estimate == 1.0 <= row.top_drop.high
    assert row.top_minus_random.estimate == 1.0
    assert row.config["global_splits"] == ["train"] and row.config["test_splits"] == ["val"]
    assert row.config["in_sample"] is False and "paired percentile bootstrap" in row.config["ci"]["method"]


def test_held_out_image_needs_an_embedding():
    (ex, images, samples), (vex, vimages, vsamples) = held_out(image_world, n_per_class=3)
    g = GlobalExplainer(colour_embed, modalities=("image",), crop_size=None, progress=False).fit(ex, samples, images).global_
    with pytest.raises(ValueError, match="held-out image samples are matched .* pass embed_fn="):
        deletion_test(ColourModel(), g, vex, vsamples, modality="image", images=vimages, progress=False)


def test_text_control_removes_exactly_as_many_real_words_and_reports_short_samples():
    (ex, images, samples), (vex, vimages, vsamples) = held_out(text_world)
    g = GlobalExplainer(modalities=("text",), progress=False).fit(ex, samples).global_
    e = vex[0]  # add a second spelling of the top word and two junk tokens: 2 words deleted, junk never drawn
    toks = e.tokens + (OcrToken("Oat1y", (90, 0, 99, 9)), OcrToken("%", (0, 0, 1, 1)), OcrToken("1", (0, 0, 1, 1)))
    e2 = Explanation(e.sample_id, e.target, e.target_name, np.append(e.weights, [0.0] * 3), 0, 0.9, 0.9, e.segments, toks, 1)
    short = Explanation(vex[1].sample_id, vex[1].target, vex[1].target_name, vex[1].weights[:4], 0, 0.9, 0.9,
                        vex[1].segments, vex[1].tokens[:2] + (OcrToken("0ATLY", (0, 0, 1, 1)),), 1)  # 2 deleted, 1 other
    row = deletion_test(ColourModel(), g, [e2, short, *vex[2:]], vsamples, modality="text", top_k=1, images=vimages,
                        progress=False, n_repeats=5)
    by_id = {o.sample_id: o for o in row.per_sample}
    assert by_id[e2.sample_id].deleted == 2 and by_id[e2.sample_id].random_deleted == 2.0
    assert by_id[short.sample_id].short and by_id[short.sample_id].random_deleted == 1.0
    assert all(o.random_deleted == o.deleted for o in row.per_sample if not o.short)
    assert row.config["random_short_samples"] == 1
    assert row.top_drop.low <= row.top_drop.estimate <= row.top_drop.high


def test_in_sample_use_is_warned_or_refused(caplog):
    ex, images, samples = text_world(3)
    g = GlobalExplainer(modalities=("text",), progress=False).fit(ex, samples).global_
    kw = dict(modality="text", top_k=1, images=images, progress=False)
    with caplog.at_level("WARNING"):
        row = deletion_test(ColourModel(), g, ex, samples, **kw)
    assert "in-sample deletion test: 6 of the 6 tested samples helped build the global features" in caplog.text
    assert row.config["in_sample"] is True and row.config["in_sample_samples"] == 6
    with pytest.raises(ValueError, match="in-sample deletion test: .* build the global explanation on another split"):
        deletion_test(ColourModel(), g, ex, samples, in_sample="error", **kw)
    (tex, _, tsamples), (vex, vimages, vsamples) = held_out(text_world)
    g = GlobalExplainer(modalities=("text",), progress=False).fit(tex, tsamples).global_
    with pytest.raises(ValueError, match=r"the tested split\(s\) \['val'\] are those"):
        deletion_test(ColourModel(), g, vex, vsamples, modality="text", images=vimages, progress=False,
                      global_split="val", in_sample="error")


def test_rows_without_intervals_read_back():
    old = {"model": "m", "modality": "text", "samples": 3, "no_deletion_accuracy": 1.0,
           "top_deletion_accuracy": 0.0, "random_deletion_accuracy": 1.0, "config": {"top_k": 3}}
    row = DeletionTable.from_dict({"rows": [old]}).rows[0]
    assert row.top_drop is None and row.per_sample == ()
    assert "| m | text | 3 | 100.0% | 0.0% | 100.0% | - | - |" in format_deletion_table(DeletionTable((row,)))


def test_cli_held_out_splits(tmp_path, monkeypatch, capsys):
    from prodlens.cli import global_cmds, main

    (ex, _, _), (vex, images, samples) = held_out(text_world, n_per_class=3)
    data, folder = _write_world(tmp_path, ex + vex, images, samples)
    monkeypatch.setattr(global_cmds, "_load_classifier", lambda path: ColourModel())
    gpath, out = tmp_path / "g.json", tmp_path / "del.json"
    assert main(["global", str(folder), "--data", str(data), "--modality", "text", "--split", "train", "-o", str(gpath),
                 "--no-progress"]) == 0
    assert main(["deletion", str(gpath), str(folder), "--data", str(data), "--model", "toy.pt", "--modality", "text",
                 "--top-k", "1", "--split", "val", "--in-sample", "error", "-o", str(out), "--no-progress"]) == 0
    printed = capsys.readouterr().out
    assert "global features built on train, tested on val (held out)" in printed
    row = json.loads(out.read_text())["rows"][0]
    assert row["samples"] == 6 and row["config"]["in_sample"] is False and row["top_drop"]["estimate"] == 1.0
    assert main(["global", str(folder), "--data", str(data), "--modality", "text", "--split", "test", "-o", str(gpath),
                 "--no-progress"]) == 2
