"""On an image-only model, prodlens agrees with the reference ``lime`` package."""

from __future__ import annotations

import numpy as np
import pytest

from prodlens.explain import GridSegmenter, MultimodalLime

lime_image = pytest.importorskip("lime.lime_image")


class BlockModel:
    """Image-only and smooth: two classes, logit = sum over 8x8 blocks of ``a_b`` times
    (block brightness + 2 x block texture).

    The texture term (standard deviation) makes a mean-colour fill matter as much as a
    black fill. Each block has its own weight, so every superpixel has a distinct
    effect; five blocks matter most. The bias centres the photo's logit at 0.5.
    """

    STRONG = (3, 8, 14, 21, 30)

    def __init__(self, image: np.ndarray, scale: float = 0.4) -> None:
        a = np.random.default_rng(0).permutation(np.linspace(-1.0, 1.0, 36))
        a[list(self.STRONG)] = 3.0
        self.a = a * scale
        self.classes = ["c0", "c1"]
        self.bias = 0.0
        self.bias = 0.5 - self._logit([image])[0]

    def _logit(self, images) -> np.ndarray:
        g = np.stack([np.asarray(im, np.float64).mean(-1).reshape(6, 8, 6, 8) / 255 for im in images])
        feats = g.mean((2, 4)) + 2 * g.std((2, 4))
        return feats.reshape(len(g), -1) @ self.a + self.bias

    def predict_proba(self, images, token_lists=None):
        p = 1 / (1 + np.exp(-self._logit(images)))
        return np.stack([p, 1 - p], 1)


@pytest.mark.parametrize("fill, hide_color", [("mean", None), ("black", 0)])
def test_weights_agree_with_lime_image_explainer(fill, hide_color):
    from scipy.stats import spearmanr

    rng = np.random.default_rng(5)
    yy, xx = np.mgrid[0:48, 0:48]
    img = np.clip(np.stack([xx * 5, yy * 5, 255 - xx * 3], -1) + rng.integers(0, 120, (48, 48, 3)), 0, 255).astype(np.uint8)
    segments = GridSegmenter(6, 6)(img)  # 36 superpixels labelled 0..35 (lime indexes columns by label)
    clf = BlockModel(img)

    ours = MultimodalLime(max_samples=1500, segmenter="grid", segmenter_params={"rows": 6, "cols": 6},
                          fill=fill, early_stop=False, seed=0, progress=False)
    res = ours.explain(clf, image=img, tokens=())
    assert res.predicted == 0
    e = res.predicted_explanation

    explainer = lime_image.LimeImageExplainer(kernel_width=0.25, random_state=1)
    ref = explainer.explain_instance(
        img, lambda ims: clf.predict_proba(list(ims)), labels=(0,), top_labels=None,
        num_features=1000, num_samples=1500, batch_size=50, segmentation_fn=lambda im: segments,
        hide_color=hide_color, random_seed=1,
    )
    w_ref = np.zeros(36)
    for f, v in ref.local_exp[0]:
        w_ref[f] = v

    assert spearmanr(e.weights, w_ref).statistic > 0.9
    top5 = lambda w: set(np.argsort(-np.abs(w))[:5].tolist())  # noqa: E731
    assert top5(e.weights) == top5(w_ref) == set(BlockModel.STRONG)
    assert e.score == pytest.approx(ref.score, abs=0.1)
    assert e.intercept == pytest.approx(ref.intercept[0], abs=0.05)
    np.testing.assert_allclose(e.weights, w_ref, atol=0.2 * np.abs(w_ref).max())
