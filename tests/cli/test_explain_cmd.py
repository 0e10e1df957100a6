"""`prodlens explain` end to end with a toy classifier in place of a checkpoint."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from prodlens.cli import explain_cmd, main
from prodlens.data.manifest import Dataset, write_dataset
from prodlens.data.types import ClassList, OcrToken, ProductSample


class WordModel:
    """Three classes; ``milk`` rises with the word MILK and the photo's left half."""

    classes = ["milk", "oat", "juice"]
    input_size = 32

    def predict_proba(self, images, token_lists):
        out = []
        for im, ts in zip(images, token_lists):
            words = {t.text for t in ts}
            z = np.array([1.5 * ("MILK" in words) + im[:, : im.shape[1] // 2].mean() / 128, 1.0 * ("OAT" in words), 0.8])
            p = np.exp(z - z.max())
            out.append(p / p.sum())
        return np.array(out)


@pytest.fixture
def dataset(tmp_path):
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:48, 0:64]
    img = np.clip(np.stack([xx * 4, yy * 5, 200 - xx * 2], -1) + rng.integers(0, 40, (48, 64, 3)), 0, 255).astype(np.uint8)
    (tmp_path / "images").mkdir()
    Image.fromarray(img).save(tmp_path / "images" / "a.png")
    tokens = (OcrToken("MILK", (2, 2, 20, 10)), OcrToken("OAT", (30, 30, 50, 40)))
    samples = [ProductSample("a_001", tmp_path / "images" / "a.png", "oat", "test", tokens)]
    write_dataset(Dataset(samples, ClassList.from_names(WordModel.classes)), tmp_path / "ds")
    return tmp_path / "ds"


def test_cli_writes_pngs_and_json(dataset, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(explain_cmd, "_load_classifier", lambda path, runtime="auto": WordModel())
    out = tmp_path / "out"
    rc = main(["explain", "model.pt", str(dataset), "--sample", "a_001", "--samples", "300",
               "--class", "juice", "--segments", "20", "--out", str(out)])
    assert rc == 0
    text = capsys.readouterr().out
    assert "predicted milk" in text and "MISCLASSIFIED" in text
    d = json.loads((out / "a_001.json").read_text())
    assert [e["target_name"] for e in d["explanations"]] == ["milk", "oat", "juice"]
    assert [e["config"]["role"] for e in d["explanations"]] == ["predicted", "true", "requested"]
    assert d["misclassified"] is True and np.asarray(d["segments"]).shape == (48, 64)
    for name in ("milk", "oat", "juice"):
        for kind in ("multimodal", "image", "text", "summary"):
            assert (out / f"a_001_{name}_{kind}.png").exists()
    milk = d["explanations"][0]
    top = int(np.argmax(milk["weights"]))
    assert top == milk["n_superpixels"]  # the token MILK


def test_cli_unknown_sample_and_class_are_friendly(dataset, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(explain_cmd, "_load_classifier", lambda path, runtime="auto": WordModel())
    rc = main(["explain", "m.pt", str(dataset), "--sample", "a_01", "--out", str(tmp_path / "o")])
    assert rc == 2
    assert "no sample 'a_01'" in capsys.readouterr().err
    rc = main(["explain", "m.pt", str(dataset), "--sample", "a_001", "--class", "jiuce", "--samples", "50",
               "--out", str(tmp_path / "o")])
    assert rc == 2
    assert "--class: unknown class 'jiuce'; did you mean 'juice'?" in capsys.readouterr().err


def test_cli_help_ends_with_an_example(capsys):
    with pytest.raises(SystemExit):
        main(["explain", "--help"])
    assert "Example:\n  prodlens explain" in capsys.readouterr().out
