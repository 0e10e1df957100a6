"""The model-randomisation sanity check: randomised copies, the test itself, the store,
the command line and the explorer's Sanity check tab."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from prodlens.cli import main
from prodlens.data.manifest import Dataset, write_dataset
from prodlens.data.types import ClassList, OcrToken, ProductSample
from prodlens.errors import ConfigError
from prodlens.explain import MultimodalLime
from prodlens.models import as_classifier, build_classifier, create_model, randomised_copy
from prodlens.models.classifier import ProductClassifier
from prodlens.models.image_backbones import ImageBackbone
from prodlens.models.preprocess import PreprocessConfig
from prodlens.models.runtime import module_digest

pytestmark = pytest.mark.usefixtures("one_torch_thread")

GRID = 4  # the toy backbone pools the photo into GRID x GRID cells, the explainer cuts the same grid


class CellMeans(ImageBackbone):
    """A hand-built "backbone" without weights: the mean brightness of each grid cell."""

    name = "cell_means"
    weights_id = "none"

    def __init__(self) -> None:
        super().__init__()
        self.out_dim = GRID * GRID
        self.preprocess = PreprocessConfig(32, (0.0, 0.0, 0.0), (1.0, 1.0, 1.0), "bilinear")
        self.pool = nn.AdaptiveAvgPool2d(GRID)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool(x.mean(1, keepdim=True)).flatten(1)


#: the trained head: class "milk" rises with every cell, most with cell 0, then cell 1, ...
TRAINED = np.linspace(3.0, 0.2, GRID * GRID)


def toy_classifier() -> ProductClassifier:
    head = create_model("image", kind="head", num_classes=2, image_dim=GRID * GRID)
    with torch.no_grad():
        head.classifier[-1].weight.copy_(torch.tensor(np.stack([np.zeros_like(TRAINED), TRAINED]), dtype=torch.float32))
        head.classifier[-1].bias.copy_(torch.tensor([0.0, -9.0]))  # about half the cells on: p("milk") near 0.5
    return ProductClassifier(head, ["other", "milk"], CellMeans(), head_name="image", spec={"head": "image"})


def grid_lime(**kw) -> MultimodalLime:
    return MultimodalLime(n_samples=400, segmenter="grid", segmenter_params={"rows": GRID, "cols": GRID}, fill="black",
                          early_stop=False, runtime="torch", quality=False, **kw)


@pytest.fixture
def photos(tmp_path) -> list[ProductSample]:
    """Two plain grey photos (every cell alike: only the head decides what matters) and a broken file."""
    paths = []
    for i, grey in enumerate((200, 160)):
        p = tmp_path / f"grey{i}.png"
        Image.fromarray(np.full((32, 32, 3), grey, np.uint8)).save(p)
        paths.append(p)
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"not a jpeg")
    return [ProductSample(f"grey{i}", p, "milk", "val") for i, p in enumerate(paths)] + [
        ProductSample("broken", bad, "milk", "val")]


# ---------------------------------------------------------------- randomised copies
def test_randomised_head_changes_the_copy_not_the_original():
    clf = toy_classifier()
    before = {k: v.clone() for k, v in clf.state_dict().items()}
    rng_state = torch.get_rng_state()
    rnd = randomised_copy(clf, "head", seed=3)
    assert torch.equal(torch.get_rng_state(), rng_state), "the global torch random state is left alone"
    for k, v in clf.state_dict().items():
        assert torch.equal(v, before[k]), f"the original's {k} changed"
    assert not torch.equal(rnd.head.classifier[-1].weight, clf.head.classifier[-1].weight)
    assert rnd.image_backbone is clf.image_backbone and rnd.classes == clf.classes
    again = randomised_copy(clf, "head", seed=3)
    assert torch.equal(again.head.classifier[-1].weight, rnd.head.classifier[-1].weight), "same seed, same weights"
    assert not torch.equal(randomised_copy(clf, "head", seed=4).head.classifier[-1].weight, rnd.head.classifier[-1].weight)


def test_randomised_head_keeps_the_fitted_standardisation():
    clf = toy_classifier()
    clf.head.fit_feature_stats(torch.randn(20, GRID * GRID) * 3 + 1, None)
    rnd = randomised_copy(clf, "head")
    assert torch.equal(rnd.head.img_norm.mean, clf.head.img_norm.mean)
    assert torch.equal(rnd.head.img_norm.std, clf.head.img_norm.std)


def test_randomised_blocks_get_their_own_weights_id_and_onnx_export(tmp_path, monkeypatch):
    monkeypatch.setenv("PRODLENS_CACHE", str(tmp_path))
    clf = build_classifier("image", ["a", "b"], backbone_cfg={"pretrained": False, "input_size": 32})
    bb = clf.image_backbone
    before = {k: v.clone() for k, v in bb.state_dict().items()}
    rnd = randomised_copy(clf, "head+blocks2", seed=0)
    r_bb = rnd.image_backbone
    assert r_bb is not bb and r_bb.cache_key != bb.cache_key and bb.weights_id == "random"
    for k, v in bb.state_dict().items():
        assert torch.equal(v, before[k]), f"the original backbone's {k} changed"
    blocks, r_blocks = bb.blocks(), r_bb.blocks()
    same = [all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters())) for a, b in zip(blocks, r_blocks)]
    assert same == [True] * (len(blocks) - 2) + [False, False], "only the last two blocks are re-initialised"
    assert not torch.equal(r_bb.net.conv_head.weight, bb.net.conv_head.weight), "and the convolution above them"
    assert module_digest(r_bb, 32) != module_digest(bb, 32)
    # on ONNX Runtime the copy runs its own export, never the trained network's session
    clf.use_runtime("onnxruntime")
    rnd = randomised_copy(clf, "head+blocks1")
    assert rnd.runtime == "onnxruntime" and rnd._image_runner is not clf._image_runner
    img = [np.random.default_rng(0).integers(0, 255, (40, 40, 3), dtype=np.uint8)]
    onnx_feats = rnd.encode_images(img)
    np.testing.assert_allclose(onnx_feats, rnd.use_runtime("torch").encode_images(img), atol=1e-4)
    assert np.abs(onnx_feats - clf.encode_images(img)).max() > 1e-3
    head_only = randomised_copy(clf, "head")
    assert head_only._image_runner is clf._image_runner, "an unchanged backbone keeps its session"


@pytest.mark.parametrize(("name", "message"), [
    ("heads", r"randomise must be 'head' or 'head\+blocks<N>' .* got 'heads'; did you mean 'head'\?"),
    ("head+blocks0", r"got 'head\+blocks0'"),
    ("blocks1", r"randomise must be 'head' or"),
])
def test_unknown_randomisation_names_are_refused(name, message):
    with pytest.raises(ConfigError, match=message):
        randomised_copy(toy_classifier(), name)


def test_models_without_that_kind_of_head_or_blocks_are_refused():
    wrapped = as_classifier(lambda ims, tls: np.ones((len(ims), 2)), ["a", "b"])
    with pytest.raises(ConfigError, match="needs a prodlens ProductClassifier .* got CallableClassifier"):
        randomised_copy(wrapped, "head")
    with pytest.raises(ConfigError, match=r"image backbone cell_means cannot be cut into blocks; use randomise='head'"):
        randomised_copy(toy_classifier(), "head+blocks1")
    clf = build_classifier("image", ["a", "b"], backbone_cfg={"pretrained": False, "input_size": 32})
    with pytest.raises(ConfigError, match=r"has 16 blocks; N in 'head\+blocks<N>' must be in 1..16, got 17"):
        randomised_copy(clf, "head+blocks17")
