"""Rendering: JET colours, joint 0..1 scale, suppression below 0.2, box colours, PNGs."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from prodlens.data.types import OcrToken
from prodlens.explain import Explanation
from prodlens.viz import (
    colorbar,
    draw_token_boxes,
    jet,
    joint_scores,
    overlay_superpixels,
    render_explanation,
    save_pngs,
    summary_figure,
    with_colorbar,
)

H, W = 40, 60


def make_expl(weights, tokens=None) -> Explanation:
    seg = np.repeat(np.repeat(np.arange(6).reshape(2, 3), 20, 0), 20, 1)  # 6 superpixels of 20x20
    tokens = tokens if tokens is not None else (
        OcrToken("MILK", (2, 2, 18, 10)), OcrToken("OAT", (22, 22, 38, 30)), OcrToken("FAT", (42, 2, 58, 10)),
    )
    return Explanation("s1", 1, "milk", np.asarray(weights, float), 0.1, 0.9, 0.8, seg, tuple(tokens), 6)


def photo() -> np.ndarray:
    return np.full((H, W, 3), 200, np.uint8)


def test_jet_endpoints_and_matplotlib_agreement():
    assert jet(0.0).tolist() == [0, 0, 128]
    assert jet(1.0).tolist() == [128, 0, 0]
    assert jet(np.zeros((2, 3))).shape == (2, 3, 3)
    assert jet(-5).tolist() == jet(0).tolist() and jet(7).tolist() == jet(1).tolist()
    mpl = pytest.importorskip("matplotlib")
    v = np.linspace(0, 1, 257)
    ref = np.rint(mpl.colormaps["jet"](v)[:, :3] * 255)
    assert np.abs(jet(v).astype(int) - ref).max() <= 6  # matplotlib quantises to 256 entries


def test_joint_scores_share_one_scale():
    #            superpixels 0..5                    tokens
    e = make_expl([0.5, 0.1, -2.0, 0.0, 0.0, 0.0, 1.0, -0.3, 0.25])
    s = joint_scores(e)
    assert s.scale == 2.0  # max |weight| over both modalities
    np.testing.assert_allclose(s.image, [0.25, 0.05, 0, 0, 0, 0])
    np.testing.assert_allclose(s.text, [0.5, 0, 0.125])
    np.testing.assert_allclose(joint_scores(e, "negative").image[2], 1.0)
    np.testing.assert_allclose(joint_scores(e, "absolute").text, [0.5, 0.15, 0.125])
    with pytest.raises(ValueError, match="sign must be one of"):
        joint_scores(e, "both")


def test_all_zero_weights_render_the_plain_photo():
    e = make_expl(np.zeros(9))
    out = render_explanation(photo(), e)
    np.testing.assert_array_equal(out.multimodal, photo())


def test_superpixels_below_threshold_are_not_coloured():
    e = make_expl([1.0, 0.19, 0.21, 0.6, -1.0, 0.0, 0.0, 0.0, 0.0])
    out = overlay_superpixels(photo(), e, alpha=0.5)
    assert out.shape == (H, W, 3) and out.dtype == np.uint8
    seg = e.segments
    np.testing.assert_array_equal(out[seg == 1], 200)  # 0.19 < 0.2: suppressed
    np.testing.assert_array_equal(out[seg == 4], 200)  # negative: not shown
    np.testing.assert_array_equal(out[seg == 5], 200)
    for sp, score in [(0, 1.0), (2, 0.21), (3, 0.6)]:
        expected = np.rint(0.5 * 200 + 0.5 * jet(score).astype(float))
        np.testing.assert_array_equal(out[seg == sp][0], expected)
    # higher score -> redder (JET)
    assert out[seg == 0][0][0] > out[seg == 2][0][0] or out[seg == 0][0][2] < out[seg == 2][0][2]


def test_box_colour_follows_weight_and_weak_boxes_are_not_drawn():
    e = make_expl([0, 0, 0, 0, 0, 0, 1.0, 0.5, 0.1])
    out = draw_token_boxes(photo(), e, line_width=2)
    assert out.shape == (H, W, 3)
    # outline pixels: top-left corner of each box
    np.testing.assert_array_equal(out[2, 2], jet(1.0))
    np.testing.assert_array_equal(out[22, 22], jet(0.5))
    np.testing.assert_array_equal(out[2:10, 42:58], photo()[2:10, 42:58])  # 0.1 < 0.2: not drawn
    # light fill inside, tinted towards the box colour
    inside = out[6, 10].astype(int)
    assert not np.array_equal(inside, [200, 200, 200])
    np.testing.assert_array_equal(out[35, 5], [200, 200, 200])  # outside any box


def test_render_has_three_panels_of_the_photos_shape():
    e = make_expl([1.0, 0, 0, 0, 0, 0, 0.8, 0, 0])
    panels = render_explanation(photo(), e)
    for arr in (panels.multimodal, panels.image_only, panels.text_only):
        assert arr.shape == (H, W, 3) and arr.dtype == np.uint8
    np.testing.assert_array_equal(panels.text_only[e.segments == 0][-1], [200, 200, 200])  # no superpixels
    np.testing.assert_array_equal(panels.image_only[2, 2], panels.image_only[5, 5])  # no boxes
    assert not np.array_equal(panels.multimodal[2, 2], panels.image_only[2, 2])  # boxes on top


def test_colorbar_legend():
    bar = colorbar(100, threshold=0.2)
    assert bar.shape == (100, 56, 3)
    assert bar[6, 4].tolist() == jet(1.0).tolist()  # top is 1 (dark red)
    assert bar[92, 4].tolist() == [190, 190, 190]  # below the threshold: grey
    assert with_colorbar(photo()).shape == (H, W + 56, 3)


def test_image_must_match_the_segments():
    with pytest.raises(ValueError, match=r"image is \(10, 10\) but the explanation's segments are \(40, 60\)"):
        render_explanation(np.zeros((10, 10, 3), np.uint8), make_expl(np.ones(9)))


def test_save_pngs_writes_readable_files(tmp_path):
    e = make_expl([1.0, 0, 0.5, 0, 0, 0, 0.8, 0, 0])
    paths = save_pngs(photo(), e, tmp_path)
    assert set(paths) == {"multimodal", "image", "text", "summary"}
    for p in paths.values():
        assert p.exists() and p.name.startswith("s1_milk_")
        with Image.open(p) as im:
            assert im.mode == "RGB"
    with Image.open(paths["multimodal"]) as im:
        assert im.size == (W + 56, H)
    assert summary_figure(photo(), e).shape[0] == H + 22


def test_a_downscaled_explanation_is_fitted_to_the_full_size_photo():
    e = make_expl(np.ones(9))  # segments 40 x 60, as a large photo's explanation is smaller than the photo
    big = render_explanation(np.zeros((80, 120, 3), np.uint8), e)
    small = render_explanation(np.zeros((40, 60, 3), np.uint8), e)
    assert big.multimodal.shape == (80, 120, 3)
    assert np.array_equal(big.image_only[::2, ::2], small.image_only)
