"""The amortised explainer: known answers on unseen photos, save / load, refusal, verify mode."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from prodlens.data.images import load_image
from prodlens.data.types import ProductSample
from prodlens.errors import BadInputError, ProdlensError
from prodlens.explain import AmortisedExplainer, ClassifierMismatchError, MultimodalLime, SampleExplanations
from prodlens.explain.amortised import choose_verified, verify
from prodlens.explain.known_answer import AdditivePhotoModel
from prodlens.models import as_classifier


def photos(toy: AdditivePhotoModel, n: int, seed: int, folder: Path, split: str = "train") -> list[ProductSample]:
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for i in range(n):
        img, toks = toy.photo(rng)
        path = folder / f"{split}_{seed}_{i}.png"
        Image.fromarray(img).save(path)
        out.append(ProductSample(f"{split}/{seed}_{i}", path, "target", split, toks))
    return out


SETTINGS = {"n_masks": 48, "features": "simple", "segmenter": "grid", "segmenter_params": {"rows": 4, "cols": 4},
            "fill": "black", "epochs": 150, "patience": 20, "seed": 0, "progress": False}


@pytest.fixture(scope="module")
def fitted(tmp_path_factory):
    root = tmp_path_factory.mktemp("amortised")
    toy = AdditivePhotoModel(seed=0)
    train = photos(toy, 40, seed=1, folder=root / "img")
    unseen = photos(toy, 6, seed=2, folder=root / "img", split="val")
    am = AmortisedExplainer(**SETTINGS, cache_dir=root / "cache").fit(toy, train)
    return toy, am, train, unseen, root


def test_recovers_the_true_weights_on_unseen_photos(fitted):
    toy, am, train, unseen, _ = fitted
    assert am.fit_report_["model_rows"] == 40 * 48 and am.fit_report_["held_out_r2"] > 0.95
    calls = toy.calls
    for s in unseen:
        res = am.explain(toy, s, targets=["target"])
        assert isinstance(res, SampleExplanations) and res.n_samples == 1
        e = res.for_target(1)
        truth = toy.true_weights(load_image(s.image_path), s.tokens)
        assert e.n_features == len(truth) == 16 + len(s.tokens) and e.n_superpixels == 16
        assert np.corrcoef(e.weights, truth)[0, 1] > 0.95, s.id
        assert np.abs(e.weights - truth).max() < 0.5 * np.abs(truth).max(), s.id
        # the other class's weights mirror these (probabilities sum to one), learnt, not imposed
        assert np.corrcoef(res.for_target(0).weights, -truth)[0, 1] > 0.9 if 0 in res.targets else True
        assert e.config["explainer"] == "amortised" and e.surrogate_prediction == pytest.approx(e.prediction)
    assert toy.calls - calls == len(unseen)  # one model call per explained photo


def test_as_lime_on_the_same_photo(fitted):
    toy, am, _, unseen, _ = fitted
    s = unseen[0]
    lime = MultimodalLime(max_samples=600, segmenter="grid", segmenter_params={"rows": 4, "cols": 4}, fill="black",
                          early_stop=False, quality=False, alpha=1e-3, seed=0, progress=False)
    ref = lime.explain(toy, s, targets=["target"]).for_target(1)
    e = am.explain(toy, s, targets=["target"]).for_target(1)
    np.testing.assert_array_equal(e.segments, ref.segments)
    assert e.tokens == ref.tokens and np.corrcoef(e.weights, ref.weights)[0, 1] > 0.95


def test_masks_are_cached_so_a_refit_makes_no_model_calls(fitted):
    toy, am, train, _, root = fitted
    calls = toy.calls
    again = AmortisedExplainer(**{**SETTINGS, "epochs": 2}, cache_dir=root / "cache").fit(toy, train)
    assert toy.calls - calls == 3  # the fingerprint's probes only (synthetic + two fitting photos)
    assert again.fit_report_["photos_evaluated"] == 0


def test_refine_corrects_a_poor_network_with_a_few_real_masks(fitted, tmp_path):
    """A barely trained network (2 epochs) is far from the truth; 40 real masks per photo, with its
    weights as the prior, bring it close, at 41 model calls per photo."""
    toy, _, train, unseen, root = fitted
    poor = AmortisedExplainer(**{**SETTINGS, "epochs": 2, "patience": 1}, cache_dir=root / "cache").fit(toy, train)
    sel = poor.fit_report_["refine_selection"]
    assert poor.refine_strength_ == sel["strength"] and sel["n_refine"] == 16 and sel["photos"] >= 1
    # the selection scores the prior and plain ridge on the same held-out rows
    assert min(sel["loss_with_prior"].values()) <= sel["loss_prior_only"]
    before, after = [], []
    for s in unseen:
        truth = toy.true_weights(load_image(s.image_path), s.tokens)
        poor.refine = 0
        before.append(np.corrcoef(poor.explain(toy, s, targets=["target"]).for_target(1).weights, truth)[0, 1])
        poor.refine = 40
        calls = toy.calls
        res = poor.explain(toy, s, targets=["target"])
        assert toy.calls - calls <= 41 and res.n_samples == 41 and res.stats["n_model_calls"] == 41
        e = res.for_target(1)
        assert e.config["refine"] == 40 and e.config["refine_strength"] == poor.refine_strength_
        after.append(np.corrcoef(e.weights, truth)[0, 1])
    assert np.mean(after) > 0.9 and np.mean(after) > np.mean(before) + 0.05, (before, after)


def test_refine_is_deterministic_and_checked(fitted):
    toy, am, _, unseen, _ = fitted
    am.refine = 8
    try:
        a = am.explain(toy, unseen[0], targets=["target"]).for_target(1).weights
        b = am.explain(toy, unseen[0], targets=["target"]).for_target(1).weights
    finally:
        am.refine = 0
    np.testing.assert_array_equal(a, b)
    with pytest.raises(ValueError, match="refine must be an int >= 0"):
        AmortisedExplainer(refine=-1, features="simple").fit(toy, [])
    with pytest.raises(ValueError, match="refine_strength must be > 0"):
        AmortisedExplainer(refine_strength=0.0, features="simple").fit(toy, [])


def test_save_load_round_trip_and_refusal(fitted, tmp_path):
    toy, am, _, unseen, _ = fitted
    path = am.save(tmp_path / "toy.amortised.pt", checkpoint="toy.pt")
    back = AmortisedExplainer.load(path, toy)
    s = unseen[1]
    np.testing.assert_allclose(back.explain(toy, s).predicted_explanation.weights,
                               am.explain(toy, s).predicted_explanation.weights, rtol=0, atol=1e-7)
    assert back.checkpoint_ == "toy.pt" and back.get_params() == am.get_params()
    # the same model behind as_classifier is the same classifier
    wrapped = as_classifier(lambda ims, tls: toy.predict_proba(ims, tls), list(toy.classes))
    assert back.explain(wrapped, s).predicted == back.explain(toy, s).predicted
    # other weights, other classes: refused with the reason
    with pytest.raises(ClassifierMismatchError, match=r"fitted for another classifier: its outputs on the fixed probe"):
        back.explain(AdditivePhotoModel(seed=1), s)
    other = as_classifier(lambda ims, tls: np.tile([0.2, 0.3, 0.5], (len(ims), 1)), ["a", "b", "c"])
    with pytest.raises(ClassifierMismatchError, match=r"it has 3 classes \(a, b, c, \.\.\.\) where .* fitted for 2"):
        AmortisedExplainer.load(path, other)
    with pytest.raises(ProdlensError, match="not fitted"):
        AmortisedExplainer().explain(toy, s)


def test_load_bad_files_name_the_file(tmp_path):
    with pytest.raises(BadInputError, match="no amortised explainer here"):
        AmortisedExplainer.load(tmp_path / "missing.pt")
    (tmp_path / "junk.pt").write_bytes(b"junk")
    with pytest.raises(BadInputError, match=r"junk.pt: not a readable amortised explainer"):
        AmortisedExplainer.load(tmp_path / "junk.pt")


@pytest.mark.parametrize(("params", "match"), [({"n_masks": 1}, "n_masks must be an int >= 2"),
                                               ({"holdout": 1.5}, r"holdout must be a share in \[0, 1\)"),
                                               ({"features": "pixels"}, "features must be one of")])
def test_bad_settings_name_the_parameter(params, match, fitted):
    toy, _, train, _, _ = fitted
    with pytest.raises(ValueError, match=match):
        AmortisedExplainer(**{**SETTINGS, **params}).fit(toy, train[:4])


def test_choose_verified_takes_low_confidence_and_random():
    conf = {f"s{i}": i / 20 for i in range(20)}
    chosen = choose_verified(conf, 0.2, seed=3)
    assert [c for c in chosen if c[1] == "lowest-confidence"] == [("s0", "lowest-confidence"), ("s1", "lowest-confidence")]
    rand = [s for s, why in chosen if why == "random"]
    assert len(rand) == 2 and not set(rand) & {"s0", "s1"} and chosen == choose_verified(conf, 0.2, seed=3)
    assert choose_verified(conf, 0.0) == [] and len(choose_verified(conf, 0.01)) == 1
    with pytest.raises(ValueError, match=r"verified share must be in \[0, 1\]"):
        choose_verified(conf, 2)


def test_verify_reports_agreement_with_lime(fitted):
    toy, am, _, unseen, _ = fitted
    results = {s.id: am.explain(toy, s).predicted_explanation for s in unseen}
    lime = MultimodalLime(max_samples=400, segmenter="grid", segmenter_params={"rows": 4, "cols": 4}, fill="black",
                          early_stop=False, quality=False, seed=0, progress=False)
    rep = verify(toy, unseen, results, 0.5, lime, seed=0)
    summary = rep.summary()
    assert summary["photos"] == 3 and {p["chosen"] for p in rep.photos} == {"lowest-confidence", "random"}
    assert summary["spearman"] > 0.8 and summary["sign_top10"] > 0.8 and summary["top10_overlap"] >= 7
    assert rep.to_dict()["summary"] == summary


def test_cli_fits_saves_and_explains_with_amortised(tmp_path, monkeypatch, capsys):
    from prodlens.cli import explain_cmd, main
    from prodlens.data.manifest import Dataset, write_dataset
    from prodlens.data.types import ClassList

    toy = AdditivePhotoModel(seed=0)
    samples = photos(toy, 6, seed=1, folder=tmp_path / "img") + photos(toy, 1, seed=2, folder=tmp_path / "img", split="test")
    write_dataset(Dataset(samples, ClassList.from_names(list(toy.classes))), tmp_path / "ds")
    monkeypatch.setattr(explain_cmd, "_load_classifier", lambda path, runtime="auto": toy)
    path = tmp_path / "toy.amortised.pt"
    args = ["explain", "toy.pt", str(tmp_path / "ds"), "--sample", samples[-1].id, "--segments", "16",
            "--amortised", str(path), "--out", str(tmp_path / "out")]
    assert main([*args, "--fit", "--fit-masks", "8"]) == 0
    out = capsys.readouterr().out
    assert "fitted the amortised explainer on 6 train photos: 48 model rows" in out and "amortised: 1 model call" in out
    assert path.is_file() and AmortisedExplainer.load(path).checkpoint_ == "toy.pt"
    calls = toy.calls
    assert main(args) == 0  # loads it: the fingerprint's probes and the photo itself, nothing more
    assert toy.calls - calls == 3 + 1
    capsys.readouterr()
    assert main([*args, "--refine", "4"]) == 0  # 4 real masks correct the weights: 5 model calls
    assert "amortised: 5 model calls" in capsys.readouterr().out
    monkeypatch.setattr(explain_cmd, "_load_classifier", lambda path, runtime="auto": AdditivePhotoModel(seed=5))
    assert main(args) == 2
    assert "fitted for another classifier" in capsys.readouterr().err
