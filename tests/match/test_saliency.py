"""RISE and LIME saliency of a similarity score, on toys whose answer is known."""

from __future__ import annotations

import numpy as np
import pytest

from prodlens.match.saliency import LimeSaliency, RiseSaliency, make_saliency, rise_masks

H = W = 48
REGION = (slice(8, 24), slice(24, 40))  # rows, cols the toy similarity looks at


def toy_image():
    rng = np.random.default_rng(1)
    img = rng.integers(0, 60, (H, W, 3)).astype(np.uint8)
    img[REGION] = 230
    return img


def region_score(images):
    """Similarity to a reference that only depends on how bright REGION is."""
    return np.array([im[REGION].mean() / 255.0 for im in images])


def test_rise_peaks_inside_the_region_the_similarity_depends_on():
    sal = RiseSaliency(n_masks=300, grid=6, fill="black", resolution=None, seed=0, progress=False)(toy_image(), region_score)
    assert sal.shape == (H, W)
    inside = np.zeros((H, W), bool)
    inside[REGION] = True
    assert sal[inside].mean() > 3 * abs(sal[~inside].mean())
    r, c = np.unravel_index(np.argmax(sal), sal.shape)
    assert 4 <= r < 28 and 20 <= c < 44


def test_rise_is_deterministic_by_seed_and_independent_of_batch_size():
    img = toy_image()
    a = RiseSaliency(n_masks=40, grid=4, seed=3, batch_size=7, resolution=None, progress=False)(img, region_score)
    b = RiseSaliency(n_masks=40, grid=4, seed=3, batch_size=40, resolution=None, progress=False)(img, region_score)
    c = RiseSaliency(n_masks=40, grid=4, seed=4, resolution=None, progress=False)(img, region_score)
    assert np.allclose(a, b, atol=1e-6)
    assert not np.allclose(a, c)


def test_rise_at_a_work_resolution_returns_a_map_at_the_photo_size():
    img = np.repeat(np.repeat(toy_image(), 2, 0), 2, 1)  # 96 x 96
    sal = RiseSaliency(n_masks=30, grid=4, resolution=32, progress=False)(img, lambda ims: np.array([im.mean() for im in ims]))
    assert sal.shape == (96, 96)


def test_rise_masks_are_soft_and_have_the_expected_mean():
    m = rise_masks(400, (32, 32), 4, 0.3, np.random.default_rng(0))
    assert m.shape == (400, 32, 32) and 0 <= m.min() and m.max() <= 1
    assert abs(m.mean() - 0.3) < 0.03


def test_lime_saliency_finds_the_region():
    sal = LimeSaliency(n_samples=120, segmenter="grid", segmenter_params={"rows": 3, "cols": 3}, fill="black",
                       resolution=None, progress=False)(toy_image(), region_score)
    inside = np.zeros((H, W), bool)
    inside[REGION] = True
    assert sal[inside].mean() > sal[~inside].mean() + 0.05


@pytest.mark.parametrize(
    "params, match",
    [
        ({"n_masks": 0}, "n_masks must be an int >= 1"),
        ({"p": 1.0}, "p must be in \\(0, 1\\)"),
        ({"grid": 100}, "grid=100 cells per side does not fit"),
        ({"fill": "purple"}, "fill must be one of"),
        ({"batch_size": 0}, "batch_size must be an int >= 1"),
        ({"resolution": -3}, "resolution must be None or an int >= 1"),
    ],
)
def test_bad_rise_parameters(params, match):
    with pytest.raises(ValueError, match=match):
        RiseSaliency(**{"resolution": None, "progress": False, **params})(toy_image(), region_score)


def test_score_function_of_the_wrong_length_and_bad_images_are_reported():
    with pytest.raises(ValueError, match="returned 1 values for 4 images"):
        RiseSaliency(n_masks=4, grid=2, batch_size=4, progress=False)(toy_image(), lambda ims: np.zeros(1))
    with pytest.raises(ValueError, match="image must be a uint8 RGB array"):
        RiseSaliency(progress=False)(np.zeros((8, 8)), region_score)
    with pytest.raises(ValueError, match="method must be one of"):
        make_saliency("gradcam")
