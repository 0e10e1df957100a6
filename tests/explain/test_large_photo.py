"""Photo size does not decide the cost: large photos are segmented and read by OCR on a
bounded copy, and what comes back is in a frame the renderers fit to the photo."""

from __future__ import annotations

import numpy as np
import pytest

from prodlens.data.types import OcrToken
from prodlens.explain import MultimodalLime
from prodlens.ocr.rapid import RapidOcrEngine
from prodlens.viz import render_explanation


class LeftWord:
    """Likes a bright left half and the word MILK; sees 32 px."""

    classes = ["other", "milk"]
    input_size = 32

    def predict_proba(self, images, token_lists):
        z = np.array([im[:, : im.shape[1] // 2].mean() / 128 + any(t.text == "MILK" for t in ts) for im, ts in zip(images, token_lists)])
        p = 1 / (1 + np.exp(-(z - 1)))
        return np.stack([1 - p, p], 1)


@pytest.fixture
def photo():
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:120, 0:160]
    img = np.stack([xx * 1.5, yy * 2, 255 - xx], -1) + rng.integers(0, 30, (120, 160, 3))
    return np.clip(img, 0, 255).astype(np.uint8)


TOKENS = (OcrToken("MILK", (20, 10, 60, 30)), OcrToken("FAT", (100, 90, 140, 110)))


def _explain(photo, **params):
    lime = MultimodalLime(max_samples=64, n_segments=20, early_stop=False, quality=False, seed=0, progress=False, **params)
    return lime.explain(LeftWord(), image=photo, tokens=TOKENS).predicted_explanation


def test_a_large_photo_is_segmented_at_a_bounded_size(photo):
    e = _explain(photo, max_pixels=4800)  # 120 x 160 = 19200 pixels: shrunk by 2 per side
    assert np.asarray(e.segments).shape == (60, 80)
    assert e.config["photo_size"] == [120, 160]
    assert e.tokens[0].box == pytest.approx((10, 5, 30, 15))  # boxes share the segments' frame
    fitted = e.fitted_to(photo.shape)
    assert fitted.segments.shape == (120, 160) and fitted.tokens[0].box == pytest.approx(TOKENS[0].box)
    panels = render_explanation(photo, e)  # drawn on the full-size photo
    assert panels.multimodal.shape == photo.shape


def test_a_photo_under_the_limit_is_explained_as_before(photo):
    e = _explain(photo)
    same = _explain(photo, max_pixels=None)
    assert np.asarray(e.segments).shape == (120, 160) and "photo_size" not in e.config
    assert np.array_equal(e.weights, same.weights) and e.tokens == TOKENS


class FakeRapid:
    """Stands in for RapidOCR: one line at a fixed place of the image it is given."""

    def __call__(self, bgr):
        self.shape = bgr.shape
        h, w = bgr.shape[:2]
        return [([[0.1 * w, 0.1 * h], [0.5 * w, 0.1 * h], [0.5 * w, 0.2 * h], [0.1 * w, 0.2 * h]], "MILK", 0.9)], 0.0


def test_ocr_reads_a_large_photo_from_a_bounded_copy(photo):
    eng = RapidOcrEngine(max_side=40)
    eng._ocr = fake = FakeRapid()
    (line,) = eng.read_lines(photo)
    assert fake.shape[:2] == (30, 40)  # longer side 160 -> 40
    assert np.allclose(line["quad"], [[16, 12], [80, 12], [80, 24], [16, 24]])  # in the photo's pixels
    assert eng.key.endswith("_max40") and RapidOcrEngine().key.endswith("_x1.0")
    big = RapidOcrEngine(max_side=None)
    big._ocr = fake
    big.read_lines(photo)
    assert fake.shape[:2] == (120, 160)
