"""Deletion curves: a faithful ranking removes similarity faster than random order."""

from __future__ import annotations

import numpy as np
import pytest

from prodlens.data.types import OcrToken
from prodlens.match.attributes import word_attributions, word_deletion_curve
from prodlens.match.deletion import DeletionCurve, deletion_curve, image_deletion_curve, trapezoid_auc
from prodlens.match.saliency import RiseSaliency

REGION = (slice(8, 24), slice(24, 40))  # rows, cols the toy similarity looks at


def toy_image():
    rng = np.random.default_rng(1)
    img = rng.integers(0, 60, (48, 48, 3)).astype(np.uint8)
    img[REGION] = 230
    return img


def region_score(images):
    """Similarity to a reference that only depends on how bright REGION is."""
    return np.array([im[REGION].mean() / 255.0 for im in images])


def test_deletion_curve_maths_on_weighted_units():
    w = np.array([0.5, 0.3, 0.2, 0.0])
    c = deletion_curve([0, 1, 2, 3], 4, lambda keep: keep @ w, n_random=50, seed=0)
    assert c.fractions.tolist() == [0, 0.25, 0.5, 0.75, 1]
    assert np.allclose(c.scores, [1.0, 0.5, 0.2, 0.0, 0.0])
    assert c.auc == pytest.approx(trapezoid_auc(c.fractions, c.scores))
    worst = deletion_curve([3, 2, 1, 0], 4, lambda keep: keep @ w, n_random=50, seed=0)
    assert c.auc < c.random_auc < worst.auc
    assert c.faithful and not worst.faithful
    assert DeletionCurve.from_dict(c.to_dict()).auc == pytest.approx(c.auc)


def test_deletion_with_fewer_steps_than_units():
    c = deletion_curve(range(10), 10, lambda keep: keep.sum(1).astype(float), n_steps=5, n_random=2)
    assert c.fractions.tolist() == [0, 0.2, 0.4, 0.6, 0.8, 1.0] and c.scores.tolist() == [10, 8, 6, 4, 2, 0]


def test_image_deletion_auc_is_lower_for_true_saliency_than_random_and_inverted():
    img = toy_image()
    sal = RiseSaliency(n_masks=300, grid=6, fill="black", resolution=None, seed=0, progress=False)(img, region_score)
    good = image_deletion_curve(img, sal, region_score, grid=6, fill="black", resolution=None, n_random=5)
    bad = image_deletion_curve(img, -sal, region_score, grid=6, fill="black", resolution=None, n_random=5)
    assert good.auc < good.random_auc
    assert good.auc < bad.auc
    assert good.scores[0] == pytest.approx(region_score([img])[0])


def test_word_deletion_auc_is_lower_for_the_attribution_order_than_random():
    q = [OcrToken(t, (i * 10, 0, i * 10 + 9, 9)) for i, t in enumerate(["OATLY", "HAVRE", "DRYCK", "ORIGINAL"])]
    weights = {"OATLY": 0.6, "HAVRE": 0.25, "DRYCK": 0.1, "ORIGINAL": 0.05}

    def pair_score(q_images, q_tokens, m_images, m_tokens):
        # a word counts when both products still show it
        return np.array([sum(weights[t.text] for t in a if any(u.text == t.text for u in b)) for a, b in zip(q_tokens, m_tokens)])

    img = np.zeros((10, 40, 3), np.uint8)
    atts = word_attributions(img, q, img, q, pair_score, resolution=None)
    assert [a.word for a in atts] == ["oatly", "havre", "dryck", "original"]
    assert atts[0].text_drop == pytest.approx(0.6) and atts[0].image_drop == 0.0
    c = word_deletion_curve(img, q, img, q, atts, pair_score, resolution=None, n_random=20)
    assert c.unit == "word" and c.auc < c.random_auc and c.gain > 0
    ins = word_deletion_curve(img, q, img, q, atts, pair_score, resolution=None, n_random=20, mode="insertion")
    assert ins.mode == "insertion" and ins.scores[0] == 0.0 and ins.auc > ins.random_auc and ins.faithful


def test_errors():
    with pytest.raises(ValueError, match="order must list distinct unit indices"):
        deletion_curve([0, 0], 2, lambda k: k.sum(1))
    with pytest.raises(ValueError, match="n_random must be >= 1"):
        deletion_curve([0], 1, lambda k: k.sum(1), n_random=0)
    with pytest.raises(ValueError, match="saliency has shape"):
        image_deletion_curve(toy_image(), np.zeros((3, 3)), region_score)
    assert word_deletion_curve(toy_image(), [], toy_image(), [], [], lambda qi, qt, mi, mt: np.zeros(len(qi))) is None
    with pytest.raises(ValueError, match="mode must be one of"):
        deletion_curve([0], 1, lambda k: k.sum(1), mode="insert")
