"""RapidOcrEngine: the adapter's contract (with a stub) and real OCR on real GroceryStore photos."""

from __future__ import annotations

import json
import pickle
import shutil

import numpy as np
import pytest
from rapidfuzz import fuzz

from prodlens.cli import main as cli_main
from prodlens.data.images import load_image
from prodlens.data.manifest import Dataset, read_dataset, write_dataset
from prodlens.data.sample import sample_dir
from prodlens.data.types import ClassList, ProductSample
from prodlens.ocr import OcrEngine, RapidOcrEngine, run_ocr

# real GroceryStoreDataset photos from the bundled sample (train/Packages/Milk/Arla-Lactose-Medium-Fat-Milk)
TRAIN = sample_dir() / "images" / "train"
ARLA = TRAIN / "Arla-Lactose-Medium-Fat-Milk_001.jpg"
ARLA_3 = TRAIN / "Arla-Lactose-Medium-Fat-Milk_003.jpg"


def _fuzzy_in(word: str, texts: list[str], cutoff: float = 75) -> bool:
    return any(fuzz.ratio(word.lower(), t.lower()) >= cutoff for t in texts)


class StubOcr:
    """Stands in for rapidocr's RapidOCR: records its input, returns one fixed line."""

    def __init__(self, quad: list[list[float]]) -> None:
        self.quad = quad
        self.seen: list[np.ndarray] = []

    def __call__(self, img: np.ndarray):
        self.seen.append(img)
        return [[self.quad, "Arla LAKTOSFRI", 0.9]], [0.1, 0.0, 0.1]


# --------------------------------------------------------------------------- contract, no OCR


@pytest.mark.parametrize(
    ("upscale", "key"),
    [
        (1.0, "rapidocr_onnxruntime-1.4.4_x1.0"),
        (1, "rapidocr_onnxruntime-1.4.4_x1.0"),
        (2, "rapidocr_onnxruntime-1.4.4_x2.0"),
        (1.5, "rapidocr_onnxruntime-1.4.4_x1.5"),
    ],
)
def test_key_names_engine_version_and_upscale(upscale, key):
    eng = RapidOcrEngine(upscale=upscale)
    assert eng.key == key
    assert isinstance(eng, OcrEngine)


def test_key_does_not_depend_on_threads():
    assert RapidOcrEngine(threads=1).key == RapidOcrEngine().key == RapidOcrEngine().with_threads(2).key


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"upscale": 0}, "upscale must be a number > 0"),
        ({"upscale": -2.0}, "upscale must be a number > 0"),
        ({"upscale": "2"}, "upscale must be a number > 0"),
        ({"threads": 0}, r"threads must be None \(all cores\) or an int >= 1, got 0"),
    ],
)
def test_bad_options_are_named(kwargs, message):
    with pytest.raises(ValueError, match=message):
        RapidOcrEngine(**kwargs)


def test_image_is_handed_to_rapidocr_as_bgr():
    eng = RapidOcrEngine()
    eng._ocr = stub = StubOcr([[1, 2], [30, 2], [30, 12], [1, 12]])
    rgb = np.zeros((20, 40, 3), np.uint8)
    rgb[..., 0] = 255  # pure red
    eng.read_lines(rgb)
    (seen,) = stub.seen
    assert seen.flags["C_CONTIGUOUS"]
    assert seen[0, 0].tolist() == [0, 0, 255]  # red in BGR order


def test_upscaled_quads_are_mapped_back_to_original_pixels():
    eng = RapidOcrEngine(upscale=2.0)
    eng._ocr = stub = StubOcr([[10, 20], [60, 20], [60, 40], [10, 40]])
    lines = eng.read_lines(np.zeros((30, 50, 3), np.uint8))
    assert stub.seen[0].shape == (60, 100, 3)
    assert lines == [{"quad": [[5.0, 10.0], [30.0, 10.0], [30.0, 20.0], [5.0, 20.0]], "text": "Arla LAKTOSFRI",
                      "score": 0.9}]


@pytest.mark.parametrize(
    "image",
    [np.zeros((10, 10), np.uint8), np.zeros((10, 10, 4), np.uint8), np.zeros((10, 10, 3), np.float32), "a.jpg"],
)
def test_wrong_image_type_is_refused(image):
    with pytest.raises(ValueError, match=r"image must be a uint8 RGB array of shape \(H, W, 3\)"):
        RapidOcrEngine().read_lines(image)


def test_engine_pickles_without_its_onnx_sessions():
    eng = RapidOcrEngine(upscale=2.0, threads=1)
    eng._ocr = object()  # not picklable as a session would be
    clone = pickle.loads(pickle.dumps(eng))
    assert clone._ocr is None and (clone.upscale, clone.threads, clone.key) == (2.0, 1, eng.key)


# --------------------------------------------------------------------------- real OCR


@pytest.fixture(scope="module")
def engine() -> RapidOcrEngine:
    return RapidOcrEngine()


@pytest.fixture(scope="module")
def arla_lines(engine) -> list[dict]:
    return engine.read_lines(load_image(ARLA))


@pytest.mark.slow
def test_real_ocr_reads_the_brand_and_claim(arla_lines):
    texts = [ln["text"] for ln in arla_lines]
    assert _fuzzy_in("Arla", texts), texts
    assert _fuzzy_in("LAKTOSFRI", texts), texts
    assert all(0.5 <= ln["score"] <= 1.0 for ln in arla_lines)


@pytest.mark.slow
def test_real_ocr_gives_word_tokens_inside_the_image(engine, tmp_path):
    ds = Dataset([ProductSample("arla1", ARLA, "Arla-Lactose-Medium-Fat-Milk"),
                  ProductSample("arla3", ARLA_3, "Arla-Lactose-Medium-Fat-Milk")],
                 ClassList.from_names(["Arla-Lactose-Medium-Fat-Milk"]))
    out, report = run_ocr(ds, engine, cache_dir=tmp_path, progress=False)
    assert report.computed == 2 and not report.skipped
    for s in out.samples:
        h, w = load_image(s.image_path).shape[:2]
        words = [t.text for t in s.ocr_tokens]
        assert _fuzzy_in("LAKTOSFRI", words), words
        for t in s.ocr_tokens:
            assert t.text and not any(c.isspace() for c in t.text)  # word-level
            x0, y0, x1, y1 = t.box
            assert 0 <= x0 <= x1 <= w and 0 <= y0 <= y1 <= h, (t.text, t.box, (w, h))


@pytest.mark.slow
def test_real_upscaled_ocr_stays_in_original_coordinates(arla_lines):
    up = RapidOcrEngine(upscale=2.0).read_lines(load_image(ARLA))
    h, w = load_image(ARLA).shape[:2]

    def box(lines, word):
        ln = max(lines, key=lambda ln: fuzz.ratio(word, ln["text"]))
        xs, ys = [p[0] for p in ln["quad"]], [p[1] for p in ln["quad"]]
        return min(xs), min(ys), max(xs), max(ys)

    a, b = box(arla_lines, "LAKTOSFRI"), box(up, "LAKTOSFRI")
    assert all(0 <= v <= lim for v, lim in zip(b, (w, h, w, h)))
    ix = max(0, min(a[2], b[2]) - max(a[0], b[0])) * max(0, min(a[3], b[3]) - max(a[1], b[1]))
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - ix
    assert ix / union > 0.5, (a, b)


@pytest.mark.slow
def test_cli_ocr_writes_tokens_and_resumes_from_cache(tmp_path, capsys):
    images = tmp_path / "ds" / "images"
    images.mkdir(parents=True)
    shutil.copy(ARLA, images / "arla1.jpg")
    (images / "broken.jpg").write_bytes(ARLA.read_bytes()[:2000])  # truncated JPEG
    ds = Dataset([ProductSample("arla1", images / "arla1.jpg", "arla"),
                  ProductSample("broken", images / "broken.jpg", "arla")], ClassList.from_names(["arla"]))
    write_dataset(ds, tmp_path / "ds")
    argv = ["ocr", str(tmp_path / "ds"), "--cache-dir", str(tmp_path / "cache"), "--no-progress"]
    assert cli_main(argv) == 0
    out = capsys.readouterr().out
    assert "1 computed, 1 skipped" in out and "broken.jpg" in out
    back = read_dataset(tmp_path / "ds").by_id()
    assert _fuzzy_in("LAKTOSFRI", [t.text for t in back["arla1"].tokens])
    assert back["broken"].ocr_tokens is None
    raw = json.loads((tmp_path / "ds" / "manifest.jsonl").read_text().splitlines()[0])
    assert raw["image_path"] == "images/arla1.jpg"  # paths stay relative
    assert cli_main(argv) == 0
    assert "1 from cache, 0 computed" in capsys.readouterr().out
