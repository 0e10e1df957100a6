"""Explaining a match end to end with tiny embedders whose answers are known."""

from __future__ import annotations

import numpy as np
import pytest

from prodlens.data.images import load_image
from prodlens.data.types import OcrToken
from prodlens.match.explainer import MatchExplainer, explain_match
from prodlens.match.explanation import MatchExplanation
from prodlens.match.render import render_match


class QuadrantEmbedder:
    """Embedding = brightness of the top-left quarter, plus one dimension per known word.

    Brightness dominates, so the saliency should sit in the top-left quarter; the word
    OATLY weighs more than HAVRE, so it should rank first.
    """

    kind = "fused"
    input_size = 64
    WORDS = {"oatly": 1.0, "havre": 0.4, "eco": 0.8, "milk": 0.8}

    def embed(self, images, token_lists):
        out = []
        for im, toks in zip(images, token_lists):
            h, w = im.shape[:2]
            bright = im[: h // 2, : w // 2].mean() / 255.0
            words = {t.text.lower().replace("0", "o") for t in toks}  # reads OCR's 0ATLY as oatly
            out.append([2.0 * bright] + [v * (k in words) for k, v in self.WORDS.items()] + [0.3])
        return np.array(out)


def _pair():
    rng = np.random.default_rng(0)
    img = rng.integers(0, 40, (64, 80, 3)).astype(np.uint8)
    img[:32, :40] = 220
    toks = (OcrToken("OATLY", (44, 40, 70, 48)), OcrToken("HAVRE", (44, 50, 70, 58)), OcrToken("ECO", (0, 56, 20, 62)))
    other = (OcrToken("0ATLY", (44, 10, 70, 20)), OcrToken("HAVRE", (44, 22, 70, 30)), OcrToken("MILK", (0, 50, 20, 60)))
    return img, toks, other


def _explainer(**kw):
    params = dict(n_masks=200, grid=4, fill="black", n_random=4, deletion_grid=4, progress=False)
    params.update(kw)
    return MatchExplainer(**params)


def test_saliency_words_and_faithfulness_on_a_toy_embedder():
    img, toks, other = _pair()
    e = _explainer(insertion=True).explain(QuadrantEmbedder(), query_image=img, query_tokens=toks,
                                             match_image=img, match_tokens=other, query_id="q", match_id="m")
    # both photos get a map by default, each for the similarity with the other product held fixed
    assert e.saliency.shape == img.shape[:2] and e.match_saliency.shape == img.shape[:2]
    assert e.saliency[:32, :40].mean() > 3 * abs(e.saliency[32:, 40:].mean())
    assert e.match_saliency[:32, :40].mean() > 3 * abs(e.match_saliency[32:, 40:].mean())
    assert e.top_words() == ["oatly", "havre"]  # ECO/MILK are not shared
    oatly = e.words[0]
    # removed from both texts the shared word lowers the similarity; its boxes lie outside the bright quarter
    assert oatly.text_drop > 0 and oatly.image_drop == pytest.approx(0.0, abs=1e-6)
    assert oatly.drop == pytest.approx(oatly.text_drop, abs=1e-6)
    assert e.deletion.auc < e.deletion.random_auc
    assert e.word_deletion.auc <= e.word_deletion.random_auc
    assert set(e.curves) == {"match_deletion", "query_insertion", "match_insertion", "word_insertion"}
    assert e.curves["query_insertion"].mode == "insertion" and e.curves["query_insertion"].gain > 0
    assert MatchExplanation.from_dict(e.to_dict()).curves["word_insertion"].to_dict() == e.curves["word_insertion"].to_dict()
    assert 0 < e.similarity <= 1
    assert e.config["resolution"] == 64  # from the embedder's input_size


def test_a_shared_word_is_removed_from_both_products():
    """Identical products stay identical when a word goes from both: the counterfactual is two-sided."""
    img, toks, _ = _pair()
    e = _explainer(deletion=False).explain(QuadrantEmbedder(), query_image=img, query_tokens=toks,
                                            match_image=img, match_tokens=toks)
    assert e.similarity == pytest.approx(1.0) and [w.drop for w in e.words] == pytest.approx([0.0] * 3, abs=1e-6)


def test_explanations_are_deterministic_by_seed():
    img, toks, other = _pair()
    kw = dict(query_image=img, query_tokens=toks, match_image=img, match_tokens=other)
    a = _explainer(seed=1, n_masks=30).explain(QuadrantEmbedder(), **kw)
    b = _explainer(seed=1, n_masks=30).explain(QuadrantEmbedder(), **kw)
    c = _explainer(seed=2, n_masks=30).explain(QuadrantEmbedder(), **kw)
    assert np.array_equal(a.saliency, b.saliency) and a.deletion.to_dict() == b.deletion.to_dict()
    assert not np.array_equal(a.saliency, c.saliency)


def test_round_trip_and_render_on_real_sample_photos(sample_ds):
    q, m = sample_ds.split("val").samples[0], sample_ds.split("train").samples[0]
    q = q.with_tokens([OcrToken("HAVRE", (10, 10, 60, 30))])
    m = m.with_tokens([OcrToken("havre", (20, 40, 80, 60))])
    e = explain_match(QuadrantEmbedder(), q, m, n_masks=16, grid=4, deletion_steps=4, n_random=1, progress=False)
    assert e.query_id == q.id and e.match_id == m.id and e.top_words() == ["havre"]
    back = MatchExplanation.from_dict(e.to_dict())
    assert back.to_dict() == e.to_dict()
    assert np.allclose(back.saliency, e.saliency, atol=1e-5)
    slim = e.to_dict(include_maps=False)
    assert "saliency" not in slim and MatchExplanation.from_dict(slim, saliency=e.saliency).saliency is e.saliency
    out = render_match(load_image(q.image_path), load_image(m.image_path), e, height=120)
    assert out.dtype == np.uint8 and out.shape[2] == 3 and out.shape[0] > 120


def test_lime_method_and_text_only_embedders():
    img, toks, other = _pair()
    e = _explainer(method="lime", n_masks=60, deletion=False).explain(
        QuadrantEmbedder(), query_image=img, query_tokens=toks, match_image=img, match_tokens=other)
    assert e.method == "lime" and e.saliency.shape == img.shape[:2] and e.deletion is None

    class TextOnly(QuadrantEmbedder):
        kind = "text"

    t = _explainer().explain(TextOnly(), query_image=img, query_tokens=toks, match_image=img, match_tokens=other)
    assert t.saliency is None and t.deletion is None and t.top_words()[0] == "oatly"


@pytest.mark.parametrize(
    "params, match",
    [
        ({"rank_by": "votes"}, "rank_by must be one of"),
        ({"fill": "plaid"}, "fill must be one of"),
        ({"batch_size": 0}, "batch_size must be an int >= 1"),
        ({"resolution": "native"}, "resolution must be 'model', None or a positive int"),
        ({"method": "gradcam"}, "method must be one of"),
    ],
)
def test_bad_parameters(params, match):
    img, toks, other = _pair()
    with pytest.raises(ValueError, match=match):
        _explainer(**params).explain(QuadrantEmbedder(), query_image=img, query_tokens=toks, match_image=img, match_tokens=other)


def test_missing_inputs_and_bad_embedders():
    img, _, _ = _pair()
    with pytest.raises(ValueError, match="give the match as a ProductSample or as match_image"):
        _explainer().explain(QuadrantEmbedder(), query_image=img)
    with pytest.raises(ValueError, match="embedder must have an embed"):
        _explainer().explain(object(), query_image=img, match_image=img)

    class Wrong:
        def embed(self, images, token_lists):
            return np.ones(3)

    with pytest.raises(ValueError, match="it must return \\(n, d\\)"):
        _explainer().explain(Wrong(), query_image=img, match_image=img)
