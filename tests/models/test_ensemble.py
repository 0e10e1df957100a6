"""EnsembleClassifier: the mean of several classifiers' probabilities, as one Classifier."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from prodlens.cli import main
from prodlens.data.types import OcrToken
from prodlens.errors import ConfigError
from prodlens.explain import MultimodalLime
from prodlens.models import Classifier, EnsembleClassifier, as_classifier, build_classifier, load_ensemble, save_checkpoint

pytestmark = pytest.mark.usefixtures("one_torch_thread")
CLASSES = ["apple", "milk", "juice"]


def _fixed(p):
    return as_classifier(lambda im, tk: np.tile(np.asarray(p, np.float32), (len(im), 1)), CLASSES)


def _fused(model, seed):
    torch.manual_seed(seed)
    clf = build_classifier(model, CLASSES, backbone_cfg={"pretrained": False, "input_size": 32}, text_backbone="char_ngrams")
    return clf.use_runtime("torch")


def _inputs(n=3):
    rng = np.random.default_rng(0)
    imgs = [rng.integers(0, 255, (40, 30, 3), dtype=np.uint8) for _ in range(n)]
    toks = [[OcrToken("MILK", (0, 0, 5, 5))], [], [OcrToken("JUICE", (0, 0, 5, 5)), OcrToken("1L", (6, 0, 9, 5))]][:n]
    return imgs, toks


def test_mean_and_weights():
    a, b = _fixed([0.6, 0.3, 0.1]), _fixed([0.0, 0.2, 0.8])
    imgs, toks = _inputs()
    ens = EnsembleClassifier([a, b])
    assert isinstance(ens, Classifier) and ens.classes == CLASSES
    np.testing.assert_allclose(ens.predict_proba(imgs, toks), np.tile([0.3, 0.25, 0.45], (3, 1)), atol=1e-6)
    np.testing.assert_allclose(EnsembleClassifier([a, b], weights=[1, 0]).predict_proba(imgs, toks)[0], [0.6, 0.3, 0.1],
                               atol=1e-6)
    assert not hasattr(ens, "encode_images"), "members without the fused seam: the ensemble has none either"


def test_rejects_mismatched_members_and_bad_weights():
    other = as_classifier(lambda im, tk: np.ones((len(im), 3)) / 3, ["apple", "juice", "milk"])
    with pytest.raises(ConfigError, match="same class list"):
        EnsembleClassifier([_fixed([1, 0, 0]), other])
    with pytest.raises(ConfigError, match="at least one member"):
        EnsembleClassifier([])
    for w in ([1], [1, -1], [0, 0], [1, float("nan")]):
        with pytest.raises(ConfigError, match="non-negative"):
            EnsembleClassifier([_fixed([1, 0, 0]), _fixed([0, 1, 0])], weights=w)


def test_fused_seam_matches_predict_proba():
    members = [_fused("image", 0), _fused("concat", 1), _fused("text", 2)]
    ens = EnsembleClassifier(members, weights=[1, 2, 1])
    imgs, toks = _inputs()
    img, txt = ens.encode_images(imgs), ens.encode_texts(toks)
    assert img.shape == (3, 1280 * 2) and txt.shape == (3, 4096 * 2), "the text-only member adds no image columns"
    want = sum(w * m.predict_proba(imgs, toks) for w, m in zip([0.25, 0.5, 0.25], members))
    np.testing.assert_allclose(ens.predict_proba(imgs, toks), want, atol=1e-6)
    np.testing.assert_allclose(ens.predict_from_features(img, txt), want, atol=1e-6)
    with pytest.raises(ValueError, match="columns"):
        ens.predict_from_features(img[:, :10], txt)


def test_hflip_tta_averages_plain_and_mirrored():
    members = [_fused("image", 0), _fused("concat", 1)]
    imgs, toks = _inputs()
    flipped = [np.ascontiguousarray(im[:, ::-1]) for im in imgs]
    ens = EnsembleClassifier(members, hflip=True)
    want = sum(0.25 * m.predict_proba(v, toks) for m in members for v in (imgs, flipped))
    np.testing.assert_allclose(ens.predict_proba(imgs, toks), want, atol=1e-6)
    img = ens.encode_images(imgs)
    assert img.shape == (3, 4 * 1280)
    np.testing.assert_allclose(ens.predict_from_features(img, ens.encode_texts(toks)), want, atol=1e-6)
    single = EnsembleClassifier(members[:1], hflip=True).predict_proba(imgs, toks)
    assert not np.allclose(single, members[0].predict_proba(imgs, toks), atol=1e-6), "the mirrored view counts"


def test_explainer_takes_an_ensemble():
    ens = EnsembleClassifier([_fused("concat", 0), _fused("embracenet", 1)])
    imgs, toks = _inputs(1)
    res = MultimodalLime(64, n_segments=10, progress=False).explain(ens, image=imgs[0], tokens=toks[0])
    ex = res.predicted_explanation
    assert ex.n_superpixels >= 2 and ex.n_features == ex.n_superpixels + 1 and np.isfinite(ex.weights).all()
    assert res.stats.get("n_image_encodes", 0) > 0, "the explainer took the ensemble's encode-once path"


def test_cli_evaluate_several_checkpoints(tmp_path, capsys, sample_ds):
    from prodlens.data.manifest import write_dataset

    names = sample_ds.classes.names[:3]
    ds = sample_ds.with_classes(names)
    data = tmp_path / "data"
    write_dataset(ds, data)
    paths = []
    for i in range(2):
        torch.manual_seed(i)
        clf = build_classifier("image", names, backbone_cfg={"pretrained": False, "input_size": 32})
        paths.append(str(save_checkpoint(clf, tmp_path / f"m{i}.pt")))
    rc = main(["evaluate", *paths, str(data), "--split", "val", "--out", str(tmp_path / "ev")])
    assert rc == 0 and "m0.pt + m1.pt on val" in capsys.readouterr().out
    rc = main(["evaluate", paths[0], str(data), "--split", "val", "--hflip-tta"])
    assert rc == 0 and "m0.pt (hflip TTA) on val" in capsys.readouterr().out
    ens = load_ensemble(paths)
    assert len(ens.members) == 2 and ens.classes == names
