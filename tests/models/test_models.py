"""Registry, backbones, heads and the ProductClassifier contract."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from prodlens.data.types import OcrToken
from prodlens.errors import BadInputError, ConfigError, UnknownNameError
from prodlens.models import (
    CheckpointError,
    MissingWeightsError,
    ProductClassifier,
    build_classifier,
    create_model,
    list_models,
    load_classifier,
    register_model,
    save_checkpoint,
)
from prodlens.models.base import Classifier
from prodlens.models.heads import EmbraceNetHead
from prodlens.models.preprocess import PreprocessConfig, images_to_tensor
from prodlens.models.text_backbones import tokens_to_text


pytestmark = pytest.mark.usefixtures("one_torch_thread")

HEADS = list_models("head")
IMAGE_BACKBONES = list_models("image")


# -- registry -----------------------------------------------------------------------
def test_registry_lists_the_five_heads_and_backbones():
    assert HEADS == ["concat", "embracenet", "image", "score_fusion", "text"]
    assert "efficientnet_lite0" in IMAGE_BACKBONES and "resnet50" in IMAGE_BACKBONES
    assert list_models("text") == ["char_ngrams", "minilm"]
    assert list_models(pattern="efficientnet_*")[0] == "efficientnet_lite0"


def test_unknown_name_suggests_close_matches():
    with pytest.raises(UnknownNameError, match=r"unknown model 'embracnet'; did you mean 'embracenet'\?"):
        create_model("embracnet")
    with pytest.raises(UnknownNameError, match=r"unknown head model 'minilm'"):
        create_model("minilm", kind="head")
    with pytest.raises(ValueError, match="kind must be one of"):
        list_models("backbone")


def test_duplicate_registration_is_refused():
    with pytest.raises(ValueError, match="already registered"):
        register_model("head", name="concat")(lambda **kw: None)


# -- heads: contract over every registered head ---------------------------------------
def _feats(n=6, di=12, dt=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, di, generator=g), torch.randn(n, dt, generator=g)


@pytest.mark.parametrize("name", HEADS)
def test_head_contract(name):
    torch.manual_seed(0)
    head = create_model(name, num_classes=5, image_dim=12, text_dim=8)
    img, txt = _feats()
    head.eval()
    out = head(img, txt)
    assert out.shape == (6, 5)
    assert torch.equal(out, head(img, txt)), "eval outputs must be deterministic"
    # batch invariance: a row does not depend on the other rows of the batch
    assert torch.allclose(head(img[2:3], txt[2:3]), out[2:3], atol=1e-5)
    # trains: the loss has gradients for every parameter used
    head.train()
    loss = sum(torch.nn.functional.cross_entropy(o, torch.arange(6) % 5) for o in head.training_logits(img, txt))
    loss.backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in head.parameters())
    # rebuildable from its config (what checkpoints store)
    head.eval()
    clone = create_model(name, **head.config)
    clone.load_state_dict(head.state_dict())
    assert torch.equal(clone.eval()(img, txt), head(img, txt))


@pytest.mark.parametrize("name", HEADS)
def test_head_ignores_unused_modality(name):
    head = create_model(name, num_classes=3, image_dim=4, text_dim=4).eval()
    img, txt = _feats(2, 4, 4)
    if head.modalities == ("image",):
        assert head(img, None).shape == (2, 3)
    elif head.modalities == ("text",):
        assert head(None, txt).shape == (2, 3)
    else:
        with pytest.raises(ValueError, match="needs image features"):
            head(None, txt)


def test_head_rejects_missing_dim():
    with pytest.raises(ValueError, match="text_dim must be >= 1"):
        create_model("concat", num_classes=3, image_dim=4, text_dim=0)


def test_embracenet_inference_modes():
    torch.manual_seed(0)
    head = EmbraceNetHead(4, 6, 5, embrace_size=32).eval()
    img, txt = _feats(3, 6, 5)
    assert torch.equal(head(img, txt), head(img, txt))  # expectation (default)
    head.inference = "fixed"
    assert torch.equal(head(img, txt), head(img, txt))
    head.inference = "sample"
    torch.manual_seed(1)
    a = head(img, txt)
    b = head(img, txt)
    assert not torch.equal(a, b), "the reference's stochastic mode"
    # with a linear classifier the expectation mode equals the mean over random selections
    head.inference = "expectation"
    exp = head(img, txt)
    docked = head.dock(img, txt)
    reps = 4000
    sampled = head.classifier(head.embrace(docked.repeat(reps, 1, 1), mode="sample"))
    mean = sampled.view(reps, 3, 4).mean(0)
    assert torch.allclose(exp, mean, atol=0.05)


def test_embracenet_availability_and_modality_dropout():
    head = EmbraceNetHead(4, 6, 5, embrace_size=16, modality_dropout=0.5).eval()
    img, txt = _feats(3, 6, 5)
    docked = head.dock(img, txt)
    only_img = head.embrace(docked, torch.tensor([[1.0, 0.0]] * 3), mode="sample")
    assert torch.equal(only_img, docked[..., 0])
    avail = head._modality_dropout(1000, torch.device("cpu"))
    assert avail.sum(1).min() >= 1, "never drops both modalities"
    assert 0.3 < (avail.sum(1) == 1).float().mean() < 0.7
    with pytest.raises(ValueError, match="inference must be one of"):
        EmbraceNetHead(4, 6, 5, inference="random")


# -- backbones ----------------------------------------------------------------------
@pytest.mark.parametrize("name", IMAGE_BACKBONES)
def test_image_backbone_contract(name):
    bb = create_model(name, pretrained=False, input_size=32).eval()
    assert isinstance(bb.preprocess, PreprocessConfig) and bb.preprocess.input_size == 32
    x = images_to_tensor([np.zeros((40, 50, 3), np.uint8), np.full((20, 20, 3), 200, np.uint8)], bb.preprocess)
    with torch.inference_mode():
        f = bb.forward_features(x)
    assert f.shape == (2, bb.out_dim)
    assert bb.cache_key.startswith(f"{name}-random-sq32")


def test_shipped_lite0_weights_load():
    bb = create_model("efficientnet_lite0")
    assert bb.out_dim == 1280 and bb.weights_id.startswith("efficientnet-lite0")
    assert bb.preprocess == PreprocessConfig(256, (0.5, 0.5, 0.5), (0.5, 0.5, 0.5))
    assert bb.preprocess.key() in bb.cache_key


def test_resnet50_without_weights_says_how_to_get_them(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    with pytest.raises(MissingWeightsError, match=r"IMAGENET1K_V2.*weights_path"):
        create_model("resnet50")
    with pytest.raises(MissingWeightsError, match="does not exist"):
        create_model("resnet50", weights_path=str(tmp_path / "nope.pth"))


def test_concatenated_backbones():
    from prodlens.models.image_backbones import build_image_backbone

    bb = build_image_backbone("efficientnet_lite0+efficientnet_lite0", pretrained=False, input_size=32)
    assert bb.out_dim == 2560 and bb.name == "efficientnet_lite0+efficientnet_lite0"
    with pytest.raises(ValueError, match="different preprocessing"):
        build_image_backbone("efficientnet_lite0+resnet50", pretrained=False, input_size=32)


@pytest.mark.parametrize("name,n_blocks", [("efficientnet_lite0", 16), ("resnet50", 16)])
def test_backbone_split_is_the_same_function(name, n_blocks):
    bb = create_model(name, pretrained=False, input_size=64).eval()
    assert len(bb.blocks()) == n_blocks
    x = torch.from_numpy(np.random.default_rng(0).standard_normal((2, 3, 64, 64)).astype(np.float32))
    with torch.inference_mode():
        want = bb.forward_features(x)
        for k in (1, 3, n_blocks):
            trunk, tail = bb.split(k)
            torch.testing.assert_close(tail(trunk(x)), want, rtol=1e-4, atol=1e-5)
    trunk, tail = bb.split(2)
    # the two halves share the backbone's parameters and do not overlap
    ids = {id(p) for p in bb.parameters()}
    t_ids, h_ids = {id(p) for p in trunk.parameters()}, {id(p) for p in tail.parameters()}
    assert t_ids | h_ids == ids and not t_ids & h_ids
    for bad in (0, n_blocks + 1):
        with pytest.raises(ValueError, match=f"train_blocks must be in 1..{n_blocks}"):
            bb.split(bad)


def test_concatenated_backbones_split_part_by_part():
    from prodlens.models.image_backbones import build_image_backbone

    bb = build_image_backbone("efficientnet_lite0+efficientnet_lite0", pretrained=False, input_size=32).eval()
    torch.manual_seed(0)
    with torch.no_grad():
        bb.parts[1].net.conv_head.weight.normal_()  # the parts must not be interchangeable
    x = torch.from_numpy(np.random.default_rng(0).standard_normal((2, 3, 32, 32)).astype(np.float32))
    trunk, tail = bb.split(2)
    with torch.inference_mode():
        maps = trunk(x)
        assert maps.shape[1] == 2 * 192
        torch.testing.assert_close(tail(maps), bb.forward_features(x), rtol=1e-4, atol=1e-5)
    with pytest.raises(ConfigError, match="differ in size"):
        # 5 blocks from the end Lite0 is still in its 16x16 stage, Lite2 already in its 8x8 one
        build_image_backbone("efficientnet_lite0+efficientnet_lite2", pretrained=False, input_size=32).split(5)


def test_mark_trained_gives_changed_weights_their_own_cache_key():
    bb = create_model("efficientnet_lite0", pretrained=False, input_size=32)
    key0 = bb.cache_key
    bb.mark_trained()
    key1 = bb.cache_key
    assert key1 != key0 and "-ft" in key1 and "random" not in key1
    bb.mark_trained()
    assert bb.cache_key == key1, "same weights, same key (and no growing suffix)"
    with torch.no_grad():
        bb.net.conv_head.weight.add_(1.0)
    bb.mark_trained()
    assert bb.cache_key not in (key0, key1) and bb.cache_key.count("-ft") == 1


def test_text_input_is_reading_order():
    toks = [OcrToken("MILK", (0, 20, 30, 30)), OcrToken("ARLA", (0, 0, 30, 10)), OcrToken("1L", (40, 21, 50, 29))]
    assert tokens_to_text(toks) == "ARLA MILK 1L"
    assert tokens_to_text([]) == ""


@pytest.fixture(scope="module")
def minilm():
    return create_model("minilm")


def test_minilm_handles_empty_and_long_text(minilm):
    with torch.inference_mode():
        e = minilm.forward_features(["", "ARLA MILK", "word " * 1000])
    assert e.shape == (3, 384)
    assert torch.allclose(e.norm(dim=1), torch.ones(3), atol=1e-4)
    assert minilm.max_tokens == 256


@pytest.mark.parametrize("name", list_models("text"))
def test_text_backbone_contract(name):
    from prodlens.models.text_backbones import build_text_backbone

    tb = build_text_backbone(name).eval()
    with torch.inference_mode():
        e = tb.forward_features(["", "ARLA MILK", "XPPLE JUICE 1L"])
        again = tb.forward_features(["XPPLE JUICE 1L"])
    assert e.shape == (3, tb.out_dim) and torch.isfinite(e).all()
    assert torch.allclose(e[2:], again, atol=1e-5)
    assert tb.forward_features([]).shape == (0, tb.out_dim)
    assert name in tb.cache_key


def test_char_ngrams_match_noisy_ocr():
    tb = create_model("char_ngrams")
    e = tb.forward_features(["APPLE JUICE", "XPPLE JUICE", "OAT MILK"])
    assert float(e[0] @ e[1]) > float(e[0] @ e[2]) + 0.3
    both = create_model("minilm")
    from prodlens.models.text_backbones import build_text_backbone

    cat = build_text_backbone("minilm+char_ngrams")
    assert cat.out_dim == both.out_dim + tb.out_dim


def test_preprocess_rejects_bad_images():
    cfg = PreprocessConfig(8)
    with pytest.raises(BadInputError, match="dtype uint8"):
        images_to_tensor([np.zeros((4, 4, 3), np.float32)], cfg)
    with pytest.raises(BadInputError, match=r"shape \(H, W, 3\)"):
        images_to_tensor([np.zeros((4, 4), np.uint8)], cfg)


# -- the full classifier --------------------------------------------------------------
CLASSES = ["Arla-Milk", "Oatly-Oat-Milk", "God-Morgon-Juice"]


def _inputs(n=3):
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 255, (60 + 7 * i, 50, 3), dtype=np.uint8) for i in range(n)]
    tokens = [[OcrToken("OATLY", (0, 0, 10, 5)), OcrToken("OAT", (0, 10, 10, 15))], [], [OcrToken("ARLA", (1, 1, 9, 9))]]
    return images, (tokens * n)[:n]


@pytest.fixture(scope="module")
def fusion_clf():
    torch.manual_seed(0)
    return build_classifier("embracenet", CLASSES, backbone_cfg={"input_size": 64})


def test_classifier_is_a_classifier(fusion_clf):
    assert isinstance(fusion_clf, Classifier)
    images, tokens = _inputs()
    p = fusion_clf.predict_proba(images, tokens)
    assert p.shape == (3, 3) and p.dtype == np.float64
    np.testing.assert_allclose(p.sum(1), 1.0, atol=1e-12)
    np.testing.assert_array_equal(p, fusion_clf.predict_proba(images, tokens))
    # per-modality encoders + predict_from_features give the same answer
    fi, ft = fusion_clf.encode_images(images), fusion_clf.encode_texts(tokens)
    assert fi.shape == (3, 1280) and ft.shape == (3, 384)
    np.testing.assert_allclose(fusion_clf.predict_from_features(fi, ft), p, atol=1e-9)
    assert fusion_clf.predict(images, tokens)[0] in CLASSES
    with pytest.raises(ValueError, match="one \\(possibly empty\\) token list per image"):
        fusion_clf.predict_proba(images, tokens[:2])
    with pytest.raises(ValueError, match=r"image features must have shape \(n, 1280\)"):
        fusion_clf.predict_from_features(fi[:, :10], ft)


def test_checkpoint_round_trip(fusion_clf, tmp_path):
    with torch.no_grad():
        for p in fusion_clf.head.parameters():
            p.add_(0.01)  # not the fresh init
    path = save_checkpoint(fusion_clf, tmp_path / "m.pt", metrics={"val_top1": 0.5})
    assert path.stat().st_size < 3_000_000, "head weights only"
    loaded = load_classifier(path)
    assert isinstance(loaded, ProductClassifier) and loaded.classes == CLASSES
    assert loaded.metrics == {"val_top1": 0.5}
    assert loaded.preprocess == fusion_clf.preprocess
    images, tokens = _inputs()
    np.testing.assert_array_equal(loaded.predict_proba(images, tokens), fusion_clf.predict_proba(images, tokens))


def test_checkpoint_errors(tmp_path):
    with pytest.raises(CheckpointError, match="not found"):
        load_classifier(tmp_path / "missing.pt")
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="not a readable checkpoint"):
        load_classifier(tmp_path / "junk.pt")
    torch.save({"format": "other"}, tmp_path / "other.pt")
    with pytest.raises(CheckpointError, match="not a prodlens classifier checkpoint"):
        load_classifier(tmp_path / "other.pt")


def test_unimodal_classifier_reports_empty_other_modality():
    clf = build_classifier("image", CLASSES, backbone_cfg={"pretrained": False, "input_size": 32})
    images, tokens = _inputs(2)
    assert clf.encode_texts(tokens).shape == (2, 0)
    assert clf.text_backbone is None and clf.modalities == ("image",)
    np.testing.assert_allclose(clf.predict_proba(images, tokens).sum(1), 1.0)
