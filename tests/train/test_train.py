"""Training (fast and finetune modes), feature cache, augmentation, metrics and the CLI."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest
import torch

from prodlens.cli import main
from prodlens.data.manifest import Dataset, write_dataset
from prodlens.data.types import OcrToken
from prodlens.errors import BadInputError, ConfigError
from prodlens.models import create_model, list_models, load_classifier, read_checkpoint
from prodlens.train import (
    AugmentConfig,
    FeatureCache,
    FeatureSet,
    TrainConfig,
    evaluate,
    evaluate_probs,
    fit_head,
    image_features,
    report_markdown,
    grouped_folds,
    stratified_holdout,
    train_model,
    write_report,
)
from prodlens.train.augment import augment_image, drop_tokens, view_rng


pytestmark = pytest.mark.usefixtures("one_torch_thread")

# -- synthetic features: each modality identifies half of the classes -----------------
def _synthetic(n_per_class=40, n_classes=6, seed=0):
    rng = np.random.default_rng(seed)
    y = np.repeat(np.arange(n_classes), n_per_class)
    img = rng.normal(size=(len(y), 16)).astype(np.float32)
    txt = rng.normal(size=(len(y), 8)).astype(np.float32)
    half = n_classes // 2
    # image separates the class groups {0,1,2} by class, but classes 3-5 look alike
    img[np.arange(len(y)), np.minimum(y, half)] += 4.0
    # text separates classes 3-5, says nothing about 0-2
    txt[np.arange(len(y)), np.maximum(y - half, 0) + 1] += 4.0 * (y >= half)
    return FeatureSet(img, txt, y)


@pytest.mark.parametrize("name", list_models("head"))
def test_heads_learn_synthetic_features(name):
    train, val = _synthetic(seed=0), _synthetic(seed=1)
    small = {"concat": {"hidden": 32}, "embracenet": {"embrace_size": 32}}.get(name, {})
    head = create_model(name, num_classes=6, image_dim=16, text_dim=8, **small)
    hist = fit_head(head, train, val, lr=1e-2, batch_size=32, epochs=12, patience=12, progress=False)
    best = max(h.val_top1 for h in hist)
    if head.modalities == ("image", "text"):
        assert best > 0.9, f"{name} should combine both modalities"
    else:
        assert 0.4 < best < 0.75, f"{name} sees only one modality: about 4 of 6 classes separable"


def test_fit_head_is_deterministic():
    train = _synthetic()
    states = []
    for _ in range(2):
        torch.manual_seed(0)
        head = create_model("embracenet", num_classes=6, image_dim=16, text_dim=8, embrace_size=16)
        torch.rand(7)  # fit_head must not depend on the global RNG state
        fit_head(head, train, None, epochs=2, seed=5, progress=False)
        states.append(head.state_dict())
    for k in states[0]:
        assert torch.equal(states[0][k], states[1][k]), k


def test_cosine_schedule_warms_up_then_decays_to_zero():
    from prodlens.train.heads_fit import _lr_factor

    f = _lr_factor("cosine", 200)
    assert f(0) == pytest.approx(0.1) and f(9) == pytest.approx(1.0)
    assert f(105) == pytest.approx(0.5, abs=0.02) and f(199) < 1e-3
    assert all(f(i) >= f(i + 1) for i in range(10, 199))
    assert {_lr_factor("constant", 200)(i) for i in (0, 100, 199)} == {1.0}
    fs = _synthetic()
    with pytest.raises(ValueError, match="schedule must be one of"):
        fit_head(create_model("image", num_classes=6, image_dim=16), fs, fs, schedule="step", progress=False)
    with pytest.raises(ValueError, match="schedule must be 'constant' or 'cosine'"):
        TrainConfig(schedule="step")


def test_featureset_checks_lengths():
    with pytest.raises(ValueError, match="has 3 rows but y has 2"):
        FeatureSet(np.zeros((3, 2)), None, np.zeros(2))


# -- metrics -------------------------------------------------------------------------
def test_evaluate_probs_metrics(tmp_path):
    probs = np.array([[0.7, 0.2, 0.1], [0.6, 0.3, 0.1], [0.1, 0.2, 0.7], [0.5, 0.4, 0.1]])
    r = evaluate_probs(probs, [0, 1, 2, 1], ["a", "b", "c"])
    assert r.n == 4 and r.top1 == 0.5 and r.top5 == 1.0
    assert [(c.name, c.n, c.correct) for c in r.per_class] == [("a", 1, 1), ("b", 2, 0), ("c", 1, 1)]
    assert r.confusions[0].true == "b" and r.confusions[0].predicted == "a" and r.confusions[0].count == 2
    assert r.mean_class_accuracy == pytest.approx(2 / 3)
    md = report_markdown(r, title="t")
    assert "| 4 | 50.0% | 100.0% | 66.7% |" in md and "| b | a | 2 |" in md
    jp, mp = write_report(r, tmp_path, "x")
    d = json.loads(jp.read_text())
    assert d["top1"] == 0.5 and d["per_class"][1]["accuracy"] == 0.0 and mp.read_text() == md.replace("## t", "## Evaluation")
    with pytest.raises(ValueError, match="probs must be"):
        evaluate_probs(probs, [0, 1], ["a", "b", "c"])


# -- augmentation ----------------------------------------------------------------------
def test_augmentation_is_deterministic_per_view():
    img = np.random.default_rng(0).integers(0, 255, (60, 50, 3), dtype=np.uint8)
    a = augment_image(img, AugmentConfig(), view_rng(0, "abc", 1))
    b = augment_image(img, AugmentConfig(), view_rng(0, "abc", 1))
    c = augment_image(img, AugmentConfig(), view_rng(0, "abc", 2))
    assert np.array_equal(a, b) and not np.array_equal(a, c)
    toks = [OcrToken(str(i), (0, 0, 1, 1)) for i in range(50)]
    assert drop_tokens(toks, 0.0, view_rng(0, "a", 1)) == toks
    with pytest.raises(ValueError, match="hflip must be a probability"):
        AugmentConfig(hflip=2)


# -- end to end on the bundled real sample ----------------------------------------------
@pytest.fixture(scope="module")
def tiny(sample_ds):
    """3 classes x 4 train / 2 val photos of the bundled sample, with synthetic OCR tokens."""
    names = sample_ds.classes.names[:3]
    ds = sample_ds.with_classes(names)
    words = {n: n.split("-") for n in names}
    out = []
    for split, k in (("train", 4), ("val", 2)):
        for n in names:
            for s in [s for s in ds.samples if s.label == n and s.split == split][:k]:
                toks = tuple(OcrToken(w.upper(), (10 * i, 0, 10 * i + 8, 5)) for i, w in enumerate(words[n]))
                out.append(replace(s, ocr_tokens=toks))
    return Dataset(out, ds.classes, ds.root)


def test_train_fast_mode_end_to_end(tiny, tmp_path):
    cfg = TrainConfig(views=2, epochs=20, patience=20, batch_size=4, feature_cache=str(tmp_path / "fc"), lr=3e-3)
    res = train_model(tiny.split("train"), tiny.split("val"), model="embracenet", backbone_cfg={"input_size": 64},
                      config=cfg, out=tmp_path / "embracenet.pt", progress=False)
    assert res.metrics["val_top1"] == 1.0, "the synthetic OCR words name the class"
    assert res.metrics["n_train"] == 12 and res.metrics["n_val"] == 6
    ck = read_checkpoint(res.checkpoint)
    assert "backbone_state" not in ck and ck["train_config"]["views"] == 2
    assert res.checkpoint.stat().st_size < 5_000_000
    # cached features: 12 images x 2 views + 6 val images
    assert len(list((tmp_path / "fc").glob("efficientnet_lite0-*/*/*/*.npy"))) == 12 * 2 + 6
    assert len(list((tmp_path / "fc").glob("minilm-*/text/*/*.npy"))) >= 3
    # reload: identical predictions, and the library evaluation agrees with training's
    clf = load_classifier(res.checkpoint)
    rep = evaluate(clf, tiny.split("val"), progress=False)
    assert rep.top1 == res.metrics["val_top1"]
    from prodlens.data.images import load_image

    imgs = [load_image(s.image_path) for s in tiny.samples[:3]]
    toks = [list(s.tokens) for s in tiny.samples[:3]]
    np.testing.assert_array_equal(clf.predict_proba(imgs, toks), res.classifier.predict_proba(imgs, toks))


def test_feature_cache_is_reused(tiny, tmp_path):
    bb = create_model("efficientnet_lite0", pretrained=False, input_size=32)
    cache = FeatureCache(tmp_path)
    a = image_features(bb, tiny.samples[:2], (0, 1), cache=cache, progress=False)
    with torch.no_grad():
        for p in bb.parameters():
            p.zero_()  # a recomputation would now give different features
    b = image_features(bb, tiny.samples[:2], (0, 1), cache=cache, progress=False)
    np.testing.assert_array_equal(a, b)
    assert a.shape == (2, 2, 1280)


def test_train_finetune_mode_tiny(tiny, tmp_path):
    train = Dataset(tiny.split("train").samples[:4], tiny.classes, tiny.root)
    cfg = TrainConfig(mode="finetune", epochs=1, batch_size=2)
    res = train_model(train, tiny.split("val"), model="image", backbone_cfg={"pretrained": False, "input_size": 32},
                      config=cfg, out=tmp_path / "ft.pt", progress=False)
    assert res.metrics["epochs_run"] == 1
    ck = read_checkpoint(res.checkpoint)
    assert set(ck["backbone_state"]) == {"image"} and ck["train_config"]["lr"] == 2e-5
    clf = load_classifier(res.checkpoint)
    assert clf.image_backbone.weights_id.startswith("ft") and clf.image_backbone.cache_key == res.classifier.image_backbone.cache_key
    from prodlens.data.images import load_image

    img = [load_image(tiny.samples[0].image_path)]
    np.testing.assert_allclose(clf.predict_proba(img, [[]]), res.classifier.predict_proba(img, [[]]), atol=1e-6)


def test_train_fast_mode_with_last_blocks(tiny, tmp_path):
    """train_blocks=1: the last block trains on cached trunk maps, the trunk stays as it was."""
    cfg = TrainConfig(views=2, epochs=3, patience=3, batch_size=4, feature_cache=str(tmp_path / "fc"), lr=3e-3,
                      train_blocks=1)
    pre = create_model("efficientnet_lite0", input_size=64)
    res = train_model(tiny.split("train"), tiny.split("val"), model="image", backbone_cfg={"input_size": 64},
                      config=cfg, out=tmp_path / "image.pt", progress=False)
    bb = res.classifier.image_backbone
    trunk_units, last = bb.blocks()[:-1], bb.blocks()[-1]
    for a, b in zip(pre.blocks()[:-1], trunk_units):
        for pa, pb in zip(a.parameters(), b.parameters()):
            torch.testing.assert_close(pa, pb, rtol=0, atol=0)
    assert any(not torch.equal(pa, pb) for pa, pb in zip(pre.blocks()[-1].parameters(), last.parameters()))
    assert not torch.equal(pre.net.conv_head.weight, bb.net.conv_head.weight)
    assert bb.cache_key != pre.cache_key and bb.weights_id.startswith("ft")
    # trunk maps cached in float16 under their own key: 12 images x 2 views + 6 val images
    maps = list((tmp_path / "fc").glob("efficientnet_lite0-*-trunk1/*/*/*.npy"))
    assert len(maps) == 12 * 2 + 6 and np.load(maps[0]).dtype == np.float16
    # the checkpoint carries the trained backbone; reloaded it predicts the same
    ck = read_checkpoint(res.checkpoint)
    assert set(ck["backbone_state"]) == {"image"} and ck["train_config"]["train_blocks"] == 1
    clf = load_classifier(res.checkpoint)
    assert clf.image_backbone.cache_key == bb.cache_key
    from prodlens.data.images import load_image

    imgs = [load_image(s.image_path) for s in tiny.samples[:3]]
    np.testing.assert_allclose(clf.predict_proba(imgs, [[]] * 3), res.classifier.predict_proba(imgs, [[]] * 3), atol=1e-5)
    rep = evaluate(clf, tiny.split("val"), progress=False)
    assert rep.top1 == pytest.approx(res.metrics["val_top1"])
    # two-stage: a fusion head on the adapted backbone's (frozen) features
    cfg2 = TrainConfig(views=1, epochs=3, batch_size=4, feature_cache=str(tmp_path / "fc"), init_from=str(res.checkpoint))
    res2 = train_model(tiny.split("train"), tiny.split("val"), model="concat", backbone_cfg={"input_size": 64},
                       text_backbone="char_ngrams", config=cfg2, out=tmp_path / "concat.pt", progress=False)
    assert res2.classifier.image_backbone.cache_key == bb.cache_key
    assert len(list((tmp_path / "fc").glob(f"{bb.cache_key}/*/*/*.npy"))) == 12 + 6, "features of the adapted backbone"
    assert "image" in read_checkpoint(res2.checkpoint)["backbone_state"]
    head_only = tmp_path / "head_only.pt"
    from prodlens.models import save_checkpoint

    save_checkpoint(res2.classifier, head_only)
    from prodlens.models.errors import CheckpointError

    with pytest.raises(CheckpointError, match="has no trained image backbone"):
        train_model(tiny.split("train"), tiny.split("val"), model="image", backbone_cfg={"input_size": 64},
                    config=replace(cfg2, init_from=str(head_only)), progress=False)
    with pytest.raises(CheckpointError, match="pass --image-backbone efficientnet_lite0"):
        train_model(tiny.split("train"), tiny.split("val"), model="image", image_backbone="efficientnet_lite2",
                    backbone_cfg={"input_size": 64, "pretrained": False}, config=cfg2, progress=False)


def test_train_blocks_validation(tiny):
    with pytest.raises(ValueError, match="train_blocks must be an int >= 0"):
        TrainConfig(train_blocks=-1)
    with pytest.raises(ValueError, match="applies to mode='fast'"):
        TrainConfig(mode="finetune", train_blocks=1)
    with pytest.raises(ValueError, match="needs a model with an image backbone"):
        train_model(tiny.split("train"), tiny.split("val"), model="text", config=TrainConfig(views=1, train_blocks=1),
                    progress=False)


def test_train_validates_inputs(tiny):
    empty = Dataset([], tiny.classes, tiny.root)
    with pytest.raises(BadInputError, match="training set is empty"):
        train_model(empty, model="image", progress=False)
    with pytest.raises(ValueError, match="mode must be one of"):
        TrainConfig(mode="slow")


def test_stratified_holdout(tiny):
    for by in ("tail", "random"):
        tr, ho = stratified_holdout(tiny.split("train"), 0.25, seed=1, by=by)
        assert len(tr) == 9 and len(ho) == 3 and {s.label for s in ho} == set(tiny.classes.names)
        assert all(s.split == "val" for s in ho)
    assert all(s.id.endswith("_004") for s in stratified_holdout(tiny.split("train"), 0.25)[1])
    with pytest.raises(ValueError, match="by must be one of"):
        stratified_holdout(tiny, 0.1, by="first")


def _runs(n_per_class: int, classes: str = "ab") -> Dataset:
    from prodlens.data.types import ClassList, ProductSample

    return Dataset([ProductSample(f"{c}_{i:03d}", "x.jpg", c) for c in classes for i in range(n_per_class)],
                   ClassList.from_names(list(classes)))


@pytest.mark.parametrize("k,group", [(2, 1), (3, 10), (5, 4)])
def test_grouped_folds_keep_runs_together_and_spread_classes(k, group):
    ds = _runs(40)
    fold = grouped_folds(ds, k, group_size=group, seed=3)
    by_id = {s.id: f for s, f in zip(ds.samples, fold)}
    for c in "ab":
        ids = [f"{c}_{i:03d}" for i in range(40)]
        for start in range(0, 40, group):  # every run of `group` consecutive ids sits in one fold
            assert len({by_id[i] for i in ids[start:start + group]}) == 1
        counts = np.bincount([by_id[i] for i in ids], minlength=k)
        assert counts.max() - counts.min() <= group  # each class spread over the folds
    assert fold == grouped_folds(ds, k, group_size=group, seed=3)  # deterministic


def test_grouped_folds_validates_arguments():
    with pytest.raises(ValueError, match="k must be an int >= 2"):
        grouped_folds(_runs(4), 1)
    with pytest.raises(ValueError, match="group_size must be an int >= 1"):
        grouped_folds(_runs(4), 2, group_size=0)


def test_holdout_none_trains_fixed_epochs_on_everything(tiny, tmp_path):
    cfg = TrainConfig(views=1, epochs=3, holdout="none", batch_size=4, feature_cache=str(tmp_path / "fc"))
    res = train_model(tiny.split("train"), model="text", config=cfg, progress=False)
    assert res.metrics["n_train"] == 12 and res.metrics["n_val"] == 0
    assert res.metrics["epochs_run"] == 3 and res.best_epoch == 3  # no early stopping: the last weights
    with pytest.raises(ConfigError, match="holdout='none' applies to mode='fast'"):
        TrainConfig(mode="finetune", holdout="none")
    with pytest.raises(ConfigError, match="holdout must be 'tail', 'random' or 'none'"):
        TrainConfig(holdout="head")


def test_cli_train_and_evaluate(tiny, tmp_path, capsys):
    data = tmp_path / "data"
    write_dataset(tiny, data)
    ck = tmp_path / "text.pt"
    rc = main(["train", str(data), "--model", "text", "--out", str(ck), "--views", "2", "--epochs", "20",
               "--lr", "0.01", "--feature-cache", str(tmp_path / "fc")])
    assert rc == 0
    out = capsys.readouterr().out
    assert "text: val top-1 1.0000" in out and "wrote" in out
    defaults = TrainConfig()
    recorded = read_checkpoint(ck)["train_config"]
    assert (recorded["tail_lr_scale"], recorded["schedule"]) == (defaults.tail_lr_scale, defaults.schedule), \
        "the CLI's defaults are TrainConfig's"
    rc = main(["evaluate", str(ck), str(data), "--split", "val", "--out", str(tmp_path / "ev")])
    assert rc == 0
    assert "| 6 | 100.0% | 100.0% | 100.0% |" in capsys.readouterr().out
    assert json.loads((tmp_path / "ev" / "eval.json").read_text())["n"] == 6
    assert main(["evaluate", str(tmp_path / "missing.pt"), str(data)]) == 2
    assert "checkpoint not found" in capsys.readouterr().err
    assert main(["train", str(data), "--model", "concatt", "--out", str(ck)]) == 2
    assert "did you mean 'concat'" in capsys.readouterr().err


def test_cli_train_last_blocks(tiny, tmp_path, capsys):
    data = tmp_path / "data"
    write_dataset(tiny, data)
    ck = tmp_path / "image_tb.pt"
    rc = main(["train", str(data), "--model", "image", "--out", str(ck), "--views", "1", "--epochs", "2",
               "--train-blocks", "2", "--schedule", "cosine", "--tail-lr-scale", "0.5", "--backbone-opt", "input_size=64",
               "--feature-cache", str(tmp_path / "fc")])
    assert rc == 0 and "wrote" in capsys.readouterr().out
    cfg = read_checkpoint(ck)["train_config"]
    assert (cfg["train_blocks"], cfg["schedule"], cfg["tail_lr_scale"]) == (2, "cosine", 0.5)
    assert main(["train", str(data), "--model", "text", "--out", str(ck), "--train-blocks", "1"]) == 2
    assert "needs a model with an image backbone" in capsys.readouterr().err
