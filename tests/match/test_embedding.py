"""Metric learning on frozen features, fusion weights, persistence and fold-based selection."""

from __future__ import annotations

import numpy as np
import pytest

from prodlens.match.base import combine, fuse
from prodlens.match.embedding import MatchEmbedding
from prodlens.match.pipeline import ProductFeatures
from prodlens.match.retrieval import evaluate_retrieval
from prodlens.match.selection import best_setting, class_folds, cross_validate
from prodlens.models.errors import CheckpointError


def clusters(n_per=30, n_classes=6, dim=48, seed=0):
    """Clean class signal in a few small dims, drowned (for cosine) by large nuisance dims."""
    rng = np.random.default_rng(seed)
    y = np.repeat(np.arange(n_classes), n_per)
    x = rng.normal(0, 3.0, (len(y), dim))
    x[:, :n_classes] = np.eye(n_classes)[y] + rng.normal(0, 0.3, (len(y), n_classes))
    return x.astype(np.float32), np.array([f"c{i}" for i in y])


def test_finetuned_embedding_beats_zero_shot_on_noisy_features():
    x, y = clusters()
    xq, yq = clusters(seed=1)
    zs = MatchEmbedding("zero_shot", kind="image").fit(x, None, y)
    ft = MatchEmbedding("normsoftmax", kind="image", out_dim=16, epochs=60, lr=1e-2).fit(x, None, y)
    acc = {}
    for name, emb in (("zero_shot", zs), ("finetuned", ft)):
        acc[name] = evaluate_retrieval(emb.transform(xq, None), yq, emb.transform(x, None), y, ks=(1,)).top1
    assert acc["zero_shot"] < 0.35 and acc["finetuned"] > 0.6
    assert ft.history_["image"][-1] < ft.history_["image"][0]


def test_supcon_and_views_train():
    x, y = clusters(n_per=12)
    views = np.stack([x, x + 0.1], axis=1)  # (n, 2, dim)
    emb = MatchEmbedding("supcon", kind="image", out_dim=8, epochs=5, hidden=16).fit(views, None, y)
    z = emb.transform(x, None)
    assert z.shape == (len(x), 8) and np.allclose(np.linalg.norm(z, axis=1), 1, atol=1e-5)


def test_fit_is_deterministic_by_seed():
    x, y = clusters(n_per=10)
    a = MatchEmbedding(kind="image", epochs=3, seed=5).fit(x, None, y).transform(x, None)
    b = MatchEmbedding(kind="image", epochs=3, seed=5).fit(x, None, y).transform(x, None)
    c = MatchEmbedding(kind="image", epochs=3, seed=6).fit(x, None, y).transform(x, None)
    assert np.array_equal(a, b) and not np.allclose(a, c)


def test_fused_cosine_is_the_weighted_mean_of_modality_cosines():
    rng = np.random.default_rng(0)
    i1, i2, t1, t2 = rng.normal(size=(4, 1, 5))
    for w in (0.0, 0.3, 1.0):
        a, b = fuse(i1, t1, w), fuse(i2, t2, w)
        cos = lambda u, v: float((u @ v.T)[0, 0] / np.linalg.norm(u) / np.linalg.norm(v))  # noqa: E731
        assert float((a @ b.T)[0, 0]) == pytest.approx((1 - w) * cos(i1, i2) + w * cos(t1, t2), abs=1e-6)


def test_one_fused_fit_gives_every_kind_and_weight():
    x, y = clusters(n_per=10)
    t = x[:, ::-1].copy()[:, :20]
    emb = MatchEmbedding(kind="fused", out_dim=8, epochs=2).fit(x, t, y)
    assert emb.transform(x, t).shape == (len(y), 16)
    assert emb.transform(x, None, kind="image").shape == (len(y), 8)
    assert emb.transform(None, t, kind="text").shape == (len(y), 8)
    img, txt = emb.transform_parts(x, t)
    assert np.allclose(emb.transform(x, t, text_weight=0.2), combine(img, txt, "fused", 0.2))


def test_save_and_load_round_trip(tmp_path):
    x, y = clusters(n_per=8)
    emb = MatchEmbedding(kind="fused", out_dim=4, epochs=2, text_weight=0.3).fit(x, x[:, :10], y)
    back = MatchEmbedding.load(emb.save(tmp_path / "emb.pt"))
    assert back.get_params() == emb.get_params()
    assert np.allclose(back.transform(x, x[:, :10]), emb.transform(x, x[:, :10]))
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="not a readable matching embedding"):
        MatchEmbedding.load(tmp_path / "junk.pt")
    with pytest.raises(CheckpointError, match="matching embedding not found; train one with `prodlens match-fit`"):
        MatchEmbedding.load(tmp_path / "missing.pt")


@pytest.mark.parametrize(
    "params, match",
    [
        ({"method": "triplet"}, "method must be one of"),
        ({"kind": "audio"}, "kind must be one of"),
        ({"text_weight": 1.5}, "text_weight must be between 0 and 1"),
        ({"out_dim": 0}, "out_dim must be an int >= 1"),
        ({"dropout": 1.0}, "dropout must be in \\[0, 1\\)"),
        ({"scale": 0}, "scale must be > 0"),
    ],
)
def test_bad_parameters(params, match):
    x, y = clusters(n_per=4)
    with pytest.raises(ValueError, match=match):
        MatchEmbedding(**{"kind": "image", **params}).fit(x, None, y)


def test_misuse_is_explained():
    x, y = clusters(n_per=4)
    with pytest.raises(ValueError, match="not fitted yet"):
        MatchEmbedding().transform(x, x)
    with pytest.raises(ValueError, match="kind='fused' needs text_features"):
        MatchEmbedding(kind="fused").fit(x, None, y)
    emb = MatchEmbedding("zero_shot", kind="image").fit(x, None, y)
    with pytest.raises(ValueError, match="needs the text projection"):
        emb.transform(x, x, kind="fused")
    with pytest.raises(ValueError, match="must have shape \\(n, 48\\)"):
        emb.transform(x[:, :5], None)
    with pytest.raises(ValueError, match="unknown parameter 'epoch'"):
        emb.set_params(epoch=3)
    with pytest.raises(ValueError, match="needs at least 2 classes"):
        MatchEmbedding(kind="image").fit(x[:3], None, ["a"] * 3)


def test_class_folds_are_contiguous_per_class():
    ids = [f"{c}_{i:03d}" for c in "ab" for i in range(6)]
    folds = class_folds(ids, [i[0] for i in ids], 3)
    assert folds.tolist() == [0, 0, 1, 1, 2, 2] * 2
    with pytest.raises(ValueError, match="n_folds must be >= 2"):
        class_folds(ids, ids, 1)


def test_cross_validation_selects_the_informative_modality():
    x, y = clusters(n_per=12)
    noise = np.random.default_rng(3).normal(size=(len(y), 1, 8)).astype(np.float32)  # useless "text"
    pf = ProductFeatures(tuple(f"{c}_{i:03d}" for i, c in enumerate(y)), tuple(y), x[:, None], noise)
    scores = cross_validate(pf, MatchEmbedding("normsoftmax", out_dim=8, epochs=30, lr=1e-2), text_weights=(0.1, 0.9),
                            extra_gallery=("iconic", pf.subset(np.arange(0, len(y), 12))))
    assert {s.gallery for s in scores} == {"train", "iconic"}
    best = best_setting(scores, kind="fused")
    assert best.text_weight == 0.1
    assert best_setting(scores, kind="image").accuracy[1] > best_setting(scores, kind="text").accuracy[1]


def test_products_without_text_get_no_text_similarity():
    x, y = clusters(n_per=6)
    t = np.random.default_rng(0).normal(size=(len(y), 10)).astype(np.float32)
    has = np.arange(len(y)) % 2 == 0
    emb = MatchEmbedding("zero_shot", kind="fused", text_weight=0.4).fit(x, t, y, has_text=has)
    z = emb.transform(x, t, has_text=has)
    img = emb.transform(x, None, kind="image")
    # a text-less product's similarity to anything is the image part alone
    assert np.allclose(z[1] @ z.T, 0.6 * (img[1] @ img.T), atol=1e-6)
    assert np.allclose(emb.transform(None, t, kind="text", has_text=has)[1], 0)
    with pytest.raises(ValueError, match="too few to learn a text projection"):
        MatchEmbedding(kind="fused", epochs=1).fit(x, t, y, has_text=np.zeros(len(y), bool))
    ft = MatchEmbedding(kind="fused", epochs=1, out_dim=4).fit(x, t, y, has_text=has)
    assert ft.transform(x, t, has_text=has).shape == (len(y), 8)
