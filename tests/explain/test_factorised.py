"""Factorised multimodal sampling: known answers from a hand-built fused model, call counts."""

from __future__ import annotations

import numpy as np
import pytest

from prodlens.data.types import OcrToken
from prodlens.explain import (
    FactorGrid,
    FactorisedSampler,
    FactorisedSamplingError,
    GridSegmenter,
    MultimodalLime,
    OrthogonalSampler,
    all_masks,
    distinct_masks,
)

GRID = 4  # 4 x 4 = 16 superpixels
WORDS = ("MILK", "OAT", "FAT", "ARLA")
CELL_W = {5: 1.6, 10: -1.2, 3: 0.6}
WORD_W = {"MILK": 1.4, "OAT": -0.9}


class LinearFused:
    """Per-modality encoders + a linear fusion head with known additive effects.

    The image encoder returns which of the 16 grid cells still show the original
    pixels, the text encoder which words are present; the head adds their weights.
    Every encoder pass and every ``predict_proba`` row is counted.
    """

    classes = ["neg", "pos"]

    def __init__(self, image: np.ndarray) -> None:
        self.image = image
        self.seg = GridSegmenter(GRID, GRID)(image)
        self.w_img = np.array([CELL_W.get(c, 0.0) for c in range(GRID * GRID)])
        self.w_txt = np.array([WORD_W.get(w, 0.0) for w in WORDS])
        self.image_encodes = self.text_encodes = self.head_rows = self.rows_seen = 0

    def encode_images(self, images) -> np.ndarray:
        self.image_encodes += len(images)
        return np.array([[np.array_equal(im[self.seg == c], self.image[self.seg == c]) for c in range(GRID * GRID)]
                         for im in images], float)

    def encode_texts(self, token_lists) -> np.ndarray:
        self.text_encodes += len(token_lists)
        return np.array([[any(t.text == w for t in ts) for w in WORDS] for ts in token_lists], float).reshape(-1, len(WORDS))

    def predict_from_features(self, img_f, txt_f) -> np.ndarray:
        self.head_rows += len(img_f)
        z = np.asarray(img_f) @ self.w_img + np.asarray(txt_f) @ self.w_txt - 0.5
        p = 1 / (1 + np.exp(-z))
        return np.stack([1 - p, p], 1)

    def predict_proba(self, images, token_lists) -> np.ndarray:
        self.rows_seen += len(images)
        return self.predict_from_features(self.encode_images(images), self.encode_texts(token_lists))


class PlainCallable:
    """A user's model: ``predict_proba`` only."""

    classes = ["neg", "pos"]

    def __init__(self, fused: LinearFused) -> None:
        self.fused = fused
        self.rows_seen = 0

    def predict_proba(self, images, token_lists) -> np.ndarray:
        self.rows_seen += len(images)
        return self.fused.predict_proba(images, token_lists)


@pytest.fixture
def photo() -> tuple[np.ndarray, tuple[OcrToken, ...]]:
    image = np.random.default_rng(7).integers(0, 256, size=(32, 32, 3), dtype=np.uint8)  # textured: a mean fill differs
    tokens = tuple(OcrToken(w, (8 * i, 1, 8 * i + 6, 6)) for i, w in enumerate(WORDS))
    return image, tokens


def lime(sampler, **kw) -> MultimodalLime:
    kw.setdefault("quality", False)  # call counts of the sampler alone; quality: test_explain_quality.py
    return MultimodalLime(sampler=sampler, segmenter="grid", segmenter_params={"rows": GRID, "cols": GRID},
                          progress=False, **kw)


def test_true_features_ranked_first(photo):
    image, tokens = photo
    res = lime(FactorisedSampler(n_image=64, n_text=16)).explain(LinearFused(image), image=image, tokens=tokens)
    e = res.predicted_explanation
    S = GRID * GRID
    truth = {c: w for c, w in CELL_W.items()} | {S + WORDS.index(t): w for t, w in WORD_W.items()}
    assert set(e.top_features(len(truth))) == set(truth)
    assert all(np.sign(e.weights[i]) == np.sign(w) for i, w in truth.items())
    assert e.top_features(1)[0] == 5  # the largest effect
    assert e.score > 0.8


def test_same_seed_same_weights_other_seed_differs(photo):
    image, tokens = photo
    s = FactorisedSampler(n_image=32, n_text=8)
    a, b, c = (lime(s, seed=seed).explain(LinearFused(image), image=image, tokens=tokens).predicted_explanation
               for seed in (3, 3, 4))
    np.testing.assert_array_equal(a.weights, b.weights)
    assert not np.allclose(a.weights, c.weights)


def test_n_times_m_rows_from_n_plus_m_encoder_passes(photo):
    image, tokens = photo
    model = LinearFused(image)
    res = lime(FactorisedSampler(n_image=40, n_text=16), early_stop=True).explain(model, image=image, tokens=tokens)
    assert res.n_samples == 40 * 16 and not res.stopped_early  # fixed grid, all of it
    assert model.image_encodes == 40 and model.text_encodes == 16
    assert model.rows_seen == 0 and model.head_rows == 40 * 16
    assert res.stats["n_image_encodes"] == 40 and res.stats["n_text_encodes"] == 16
    assert res.predicted_explanation.config["factorised"] == {"n_image": 40, "n_text": 16}


def test_zero_tokens_is_image_only_sampling(photo):
    image, _ = photo
    model = LinearFused(image)
    res = lime(FactorisedSampler(n_image=50, n_text=64)).explain(model, image=image, tokens=())
    e = res.predicted_explanation
    assert res.n_samples == 50 and model.image_encodes == 50 and model.text_encodes == 1
    assert e.weights.shape == (GRID * GRID,)
    assert set(e.top_features(3)) == set(CELL_W)


def test_few_tokens_cap_text_masks_at_two_to_the_t(photo):
    image, tokens = photo
    model = LinearFused(image)
    res = lime(FactorisedSampler(n_image=30, n_text=64)).explain(model, image=image, tokens=tokens[:2])
    assert res.predicted_explanation.config["factorised"] == {"n_image": 30, "n_text": 4}
    assert model.text_encodes == 4 and res.n_samples == 120


def test_model_without_encoders_errors_or_falls_back_to_joint(photo):
    image, tokens = photo
    user = PlainCallable(LinearFused(image))
    with pytest.raises(FactorisedSamplingError, match="per-modality encoders.*lacks encode_images.*fallback='joint'"):
        lime(FactorisedSampler(n_image=20, n_text=8)).explain(user, image=image, tokens=tokens)
    res = lime(FactorisedSampler(n_image=20, n_text=8, fallback="joint")).explain(user, image=image, tokens=tokens)
    assert res.n_samples == 28 and user.rows_seen == 28 and "factorised" not in res.predicted_explanation.config


def test_sampler_by_name(photo):
    image, tokens = photo
    res = lime("factorised").explain(LinearFused(image), image=image, tokens=tokens)
    assert res.predicted_explanation.config["factorised"] == {"n_image": 256, "n_text": 16}


def test_grid_rows_cross_every_image_mask_with_every_text_mask():
    # capped below full rank, so that the grid keeps the asked-for sizes
    g = FactorisedSampler(n_image=6, n_text=5, max_image=6, max_text=5).grid(12, 6, np.random.default_rng(0))
    rows = g.rows()
    assert rows.shape == (30, 18) and rows[0].all() and not g.full_rank
    assert len({r.tobytes() for r in rows}) == 30
    np.testing.assert_array_equal(rows[7, :12], g.image_masks[1])
    np.testing.assert_array_equal(rows[7, 12:], g.text_masks[2])
    assert isinstance(g, FactorGrid)


def test_masks_are_fair_coins_and_exhaustive_when_few():
    m = all_masks(4)
    assert m.shape == (16, 4) and m[0].all() and len({r.tobytes() for r in m}) == 16
    np.testing.assert_array_equal(m.sum(0), [8, 8, 8, 8])
    d = distinct_masks(2001, 30, OrthogonalSampler(), np.random.default_rng(1))
    assert len({r.tobytes() for r in d}) == 2001
    assert abs(d[1:].mean() - 0.5) < 0.01


@pytest.mark.parametrize(
    "kw, match",
    [({"n_image": 0}, "n_image must be an int >= 1"), ({"n_text": 2.5}, "n_text must be an int >= 1"),
     ({"n_image": 1, "n_text": 1}, "n_image \\* n_text must be >= 2"), ({"fallback": "x"}, "fallback must be one of")],
)
def test_sampler_validates(kw, match):
    with pytest.raises(ValueError, match=match):
        FactorisedSampler(**kw)


def test_default_is_factorised_only_for_fused_models_with_words(photo):
    image, tokens = photo
    fused = LinearFused(image)
    auto = MultimodalLime(max_samples=100, segmenter="grid", segmenter_params={"rows": GRID, "cols": GRID},
                          progress=False, quality=False)
    res = auto.explain(fused, image=image, tokens=tokens)
    assert res.predicted_explanation.config["factorised"] == {"n_image": 100, "n_text": 16}  # min(512, n_samples)
    assert fused.image_encodes == 100 and res.n_samples == 1600
    for model, toks in ((PlainCallable(LinearFused(image)), tokens), (LinearFused(image), ())):
        cfg = auto.explain(model, image=image, tokens=toks).predicted_explanation.config
        assert "factorised" not in cfg and cfg["sampler"].startswith("OrthogonalSampler")
    auto.early_stop = False  # plain LIME stays plain LIME
    cfg = auto.explain(LinearFused(image), image=image, tokens=tokens).predicted_explanation.config
    assert "factorised" not in cfg and cfg["sampler"].startswith("BernoulliSampler")
