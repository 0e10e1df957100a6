"""run_ocr: cache use, skipping unreadable images, resuming, reporting (with a fake engine)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from prodlens.data.manifest import Dataset
from prodlens.data.types import ClassList, ProductSample
from prodlens.errors import BadInputError
from prodlens.ocr import FixedOcrEngine, OcrCache, OcrEngine, default_cache_dir, file_sha256, ocr_image, run_ocr

LINES = [
    {"quad": [[0, 0], [30, 0], [30, 10], [0, 10]], "text": "Arla LAKTOSFRI", "score": 0.97},
    {"quad": [[0, 20], [30, 20], [30, 30], [0, 30]], "text": "FAFGHRAEZETE", "score": 0.52},
]


def _dataset(folder: Path, n: int = 3) -> Dataset:
    samples = []
    for i in range(n):
        p = folder / f"img{i}.png"
        Image.new("RGB", (32, 32), (i * 40, 0, 0)).save(p)  # distinct bytes -> distinct hashes
        samples.append(ProductSample(f"s{i}", p, "milk"))
    return Dataset(samples, ClassList.from_names(["milk"]), folder)


class RaisingEngine:
    """Reads one image, then behaves as if the user pressed Ctrl-C."""

    key = "raising-engine"

    def __init__(self) -> None:
        self.calls = 0

    def read_lines(self, image: np.ndarray) -> list:
        self.calls += 1
        if self.calls > 1:
            raise KeyboardInterrupt
        return list(LINES)


def test_fake_engines_satisfy_the_protocol():
    assert isinstance(FixedOcrEngine(LINES), OcrEngine)
    assert isinstance(RaisingEngine(), OcrEngine)


def test_tokens_are_attached_and_the_input_is_not_modified(tmp_path):
    ds = _dataset(tmp_path)
    out, report = run_ocr(ds, FixedOcrEngine(LINES), cache_dir=tmp_path / "c", progress=False)
    assert all(s.ocr_tokens is None for s in ds.samples)
    assert [t.text for t in out.samples[0].ocr_tokens] == ["Arla", "LAKTOSFRI", "FAFGHRAEZETE"]
    assert (report.images, report.computed, report.from_cache, report.skipped) == (3, 3, 0, ())
    assert (report.words, report.lines, report.words_per_image) == (9, 6, 3.0)
    assert out.classes == ds.classes and out.root == ds.root


def test_cache_hit_does_not_call_the_engine(tmp_path):
    ds = _dataset(tmp_path)
    first = FixedOcrEngine(LINES)
    run_ocr(ds, first, cache_dir=tmp_path / "c", progress=False)
    assert first.calls == 3
    again = FixedOcrEngine(LINES)
    out, report = run_ocr(ds, again, cache_dir=tmp_path / "c", progress=False)
    assert again.calls == 0
    assert (report.from_cache, report.computed) == (3, 0)
    assert math.isnan(report.seconds_per_image)
    assert out.samples[2].text == "Arla LAKTOSFRI FAFGHRAEZETE"


def test_cache_is_keyed_by_content_and_engine(tmp_path):
    ds = _dataset(tmp_path, 1)
    run_ocr(ds, FixedOcrEngine(LINES), cache_dir=tmp_path / "c", progress=False)
    sha = file_sha256(ds.samples[0].image_path)
    entry = json.loads(OcrCache(tmp_path / "c", "fixed-engine").path(sha).read_text())
    assert entry["engine"] == "fixed-engine" and entry["lines"][0]["text"] == "Arla LAKTOSFRI"
    other = FixedOcrEngine(LINES, key="other-engine")
    run_ocr(ds, other, cache_dir=tmp_path / "c", progress=False)
    assert other.calls == 1  # a different key is a different cache


def test_min_score_is_applied_to_cached_lines_without_new_ocr(tmp_path):
    ds = _dataset(tmp_path, 1)
    run_ocr(ds, FixedOcrEngine(LINES), cache_dir=tmp_path / "c", progress=False)
    eng = FixedOcrEngine(LINES)
    out, report = run_ocr(ds, eng, cache_dir=tmp_path / "c", min_score=0.9, progress=False)
    assert eng.calls == 0
    assert out.samples[0].text == "Arla LAKTOSFRI" and report.lines == 1


def test_corrupt_and_missing_images_are_skipped_and_the_rest_completes(tmp_path):
    ds = _dataset(tmp_path, 3)
    (tmp_path / "img1.png").write_bytes(b"\x89PNG\r\n\x1a\n not really a png")
    missing = ProductSample("gone", tmp_path / "gone.jpg", "milk")
    ds = Dataset([*ds.samples, missing], ds.classes, tmp_path)
    eng = FixedOcrEngine(LINES)
    out, report = run_ocr(ds, eng, cache_dir=tmp_path / "c", progress=False)
    assert eng.calls == 2
    assert report.computed == 2 and len(report.skipped) == 2
    skipped = dict(report.skipped)
    assert "not a readable image" in skipped[str(tmp_path / "img1.png")]
    assert "cannot read the file" in skipped[str(tmp_path / "gone.jpg")]
    assert out.samples[1].ocr_tokens is None and out.samples[3].ocr_tokens is None  # kept, unchanged
    assert out.samples[0].ocr_tokens and out.samples[2].ocr_tokens
    assert "2 skipped" in report.summary() and "img1.png" in report.summary()


def test_interrupted_run_leaves_complete_entries_and_resumes(tmp_path):
    ds = _dataset(tmp_path, 3)
    with pytest.raises(KeyboardInterrupt):
        run_ocr(ds, RaisingEngine(), cache_dir=tmp_path / "c", progress=False)
    files = sorted((tmp_path / "c").rglob("*"))
    entries = [f for f in files if f.is_file()]
    assert len(entries) == 1 and entries[0].suffix == ".json"  # no temporary leftovers
    resumed = FixedOcrEngine(LINES, key=RaisingEngine.key)
    _, report = run_ocr(ds, resumed, cache_dir=tmp_path / "c", progress=False)
    assert (report.from_cache, report.computed, resumed.calls) == (1, 2, 2)


def test_damaged_cache_entry_is_recomputed(tmp_path):
    ds = _dataset(tmp_path, 1)
    cache = OcrCache(tmp_path / "c", "fixed-engine")
    sha = file_sha256(ds.samples[0].image_path)
    cache.path(sha).parent.mkdir(parents=True)
    cache.path(sha).write_text('{"engine": "fixed-engine", "lines": [{"text": "no quad"}]}')
    eng = FixedOcrEngine(LINES)
    _, report = run_ocr(ds, eng, cache_dir=tmp_path / "c", progress=False)
    assert eng.calls == 1 and report.computed == 1
    assert cache.get(sha)["lines"][0]["text"] == "Arla LAKTOSFRI"


def test_use_cache_false_neither_reads_nor_writes(tmp_path):
    ds = _dataset(tmp_path, 2)
    eng = FixedOcrEngine(LINES)
    _, report = run_ocr(ds, eng, cache_dir=tmp_path / "c", use_cache=False, progress=False)
    assert eng.calls == 2 and report.computed == 2
    assert not (tmp_path / "c").exists()


def test_parallel_workers_give_the_same_tokens(tmp_path):
    ds = _dataset(tmp_path, 4)
    serial, _ = run_ocr(ds, FixedOcrEngine(LINES), cache_dir=tmp_path / "a", progress=False)
    parallel, report = run_ocr(ds, FixedOcrEngine(LINES), cache_dir=tmp_path / "b", workers=2, progress=False)
    assert report.computed == 4
    assert [s.ocr_tokens for s in parallel.samples] == [s.ocr_tokens for s in serial.samples]


def test_bad_engine_output_names_the_engine_and_image(tmp_path):
    class Broken:
        key = "broken"

        def read_lines(self, image):
            return [{"text": "no quad", "score": 1.0}]

    ds = _dataset(tmp_path, 1)
    with pytest.raises(ValueError, match=r"broken on .*img0\.png: line 0 must be"):
        run_ocr(ds, Broken(), cache_dir=tmp_path / "c", progress=False)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"workers": 0}, "workers must be an int >= 1, got 0"),
        ({"workers": 1.5}, "workers must be an int >= 1, got 1.5"),
        ({"min_score": 1.5}, "min_score must be between 0 and 1"),
    ],
)
def test_bad_arguments_are_named(tmp_path, kwargs, message):
    with pytest.raises(ValueError, match=message):
        run_ocr(_dataset(tmp_path, 1), FixedOcrEngine(LINES), cache_dir=tmp_path, progress=False, **kwargs)


def test_default_cache_dir_follows_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("PRODLENS_CACHE", str(tmp_path))
    assert default_cache_dir() == tmp_path / "ocr"
    monkeypatch.delenv("PRODLENS_CACHE")
    assert default_cache_dir() == Path.home() / ".cache" / "prodlens" / "ocr"


def test_ocr_image_uses_the_cache_and_raises_on_bad_input(tmp_path):
    ds = _dataset(tmp_path, 1)
    eng = FixedOcrEngine(LINES)
    for _ in range(2):
        tokens = ocr_image(ds.samples[0].image_path, eng, cache_dir=tmp_path / "c", min_score=0.9)
    assert [t.text for t in tokens] == ["Arla", "LAKTOSFRI"] and eng.calls == 1
    with pytest.raises(BadInputError, match=r"nope\.jpg: cannot read the file"):
        ocr_image(tmp_path / "nope.jpg", eng, cache_dir=tmp_path / "c")
