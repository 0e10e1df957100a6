"""ONNX Runtime for image networks: same outputs as PyTorch, cached exports, safe fallbacks."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import torch
from torch import nn

from prodlens.data.types import OcrToken
from prodlens.explain import MultimodalLime
from prodlens.models import PreprocessConfig, TorchClassifier, build_classifier
from prodlens.models import runtime as rt

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("PRODLENS_CACHE", str(tmp_path / "cache"))


def tiny_net(out: int = 5) -> nn.Module:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 8, 3, stride=2), nn.BatchNorm2d(8), nn.ReLU6(), nn.Conv2d(8, out, 3),
                        nn.AdaptiveAvgPool2d(1), nn.Flatten())
    with torch.no_grad():  # non-trivial batch-norm statistics, so folding them matters
        net[1].running_mean.uniform_(-1, 1)
        net[1].running_var.uniform_(0.5, 2)
    return net.eval()


def test_resolve_runtime():
    assert rt.resolve_runtime("torch") == "torch"
    assert rt.resolve_runtime("auto", "cpu") == "onnxruntime"
    assert rt.resolve_runtime("auto", "cuda") == "torch"
    with pytest.raises(ValueError, match="runtime must be one of"):
        rt.resolve_runtime("tensorrt")
    with pytest.raises(ValueError, match="CPU only"):
        rt.resolve_runtime("onnxruntime", "cuda")


def test_runner_matches_torch_and_caches(tmp_path):
    net = tiny_net()
    run = rt.onnx_image_runner(net, 24)
    files = list((tmp_path / "cache" / "onnx").glob("*.onnx"))
    assert len(files) == 1
    x = torch.from_numpy(np.random.default_rng(1).standard_normal((5, 3, 24, 24)).astype(np.float32))
    with torch.inference_mode():
        want = net(x).numpy()
    np.testing.assert_allclose(run(x), want, atol=1e-5)
    mtime = files[0].stat().st_mtime_ns
    rt.onnx_image_runner(net, 24)  # same weights: reuses the file
    assert files[0].stat().st_mtime_ns == mtime
    with torch.no_grad():
        net[0].weight.add_(0.1)  # new weights, new digest, new file
    rt.onnx_image_runner(net, 24)
    assert len(list((tmp_path / "cache" / "onnx").glob("*.onnx"))) == 2


def test_runner_refuses_training_mode_and_failed_check():
    net = tiny_net().train()
    with pytest.raises(ValueError, match="training mode"):
        rt.onnx_image_runner(net, 24)
    with pytest.raises(rt.RuntimeUnavailableError, match="differs from PyTorch"):
        rt.onnx_image_runner(net.eval(), 24, atol=-1.0)


def test_damaged_cache_entry_is_removed(tmp_path):
    net = tiny_net()
    path = tmp_path / "cache" / "onnx" / f"{rt.module_digest(net, 24)}.onnx"
    path.parent.mkdir(parents=True)
    path.write_bytes(b"not an onnx file")
    with pytest.raises(rt.RuntimeUnavailableError, match="was removed"):
        rt.onnx_image_runner(net, 24)
    assert not path.exists()
    assert rt.onnx_image_runner(net, 24)(np.zeros((1, 3, 24, 24), np.float32)).shape == (1, 5)


def _tiny_classifier():
    torch.manual_seed(0)  # the same random backbone and head every time
    return build_classifier("image", ["a", "b", "c"], backbone_cfg={"pretrained": False, "input_size": 32})


def test_product_classifier_runtime_same_features():
    clf = _tiny_classifier()
    imgs = [np.random.default_rng(i).integers(0, 255, (40, 30, 3), dtype=np.uint8) for i in range(3)]
    want = clf.encode_images(imgs)
    assert clf.runtime == "torch"
    assert clf.use_runtime("onnxruntime").runtime == "onnxruntime"
    np.testing.assert_allclose(clf.encode_images(imgs), want, atol=1e-4)
    assert clf.use_runtime("torch").runtime == "torch"
    np.testing.assert_array_equal(clf.encode_images(imgs), want)


def test_auto_falls_back_to_torch_with_a_warning(monkeypatch, caplog):
    clf = _tiny_classifier()

    def broken(*a, **k):
        raise rt.RuntimeUnavailableError("cannot export Broken to ONNX (test)")

    monkeypatch.setattr(rt, "onnx_image_runner", broken)
    with caplog.at_level(logging.WARNING):
        assert clf.use_runtime("auto").runtime == "torch"
    assert "cannot export Broken" in caplog.text
    with pytest.raises(rt.RuntimeUnavailableError, match="cannot export"):
        clf.use_runtime("onnxruntime")


def test_the_runtime_is_chosen_at_load_and_the_explainer_only_reads_it(tmp_path):
    from prodlens.models import load_classifier, save_checkpoint

    img = np.random.default_rng(0).integers(0, 255, (32, 32, 3), dtype=np.uint8)
    kw = dict(max_samples=40, segmenter="grid", segmenter_params={"rows": 3, "cols": 3}, early_stop=False, seed=3, progress=False)
    torch_clf = _tiny_classifier()
    ref = MultimodalLime(**kw).explain(torch_clf, image=img, tokens=())
    assert torch_clf.runtime == "torch"  # never switched by the explainer
    onnx_clf = _tiny_classifier().use_runtime("onnxruntime")
    fast = MultimodalLime(**kw).explain(onnx_clf, image=img, tokens=())
    assert onnx_clf.runtime == "onnxruntime"
    np.testing.assert_allclose(fast.explanations[0].weights, ref.explanations[0].weights, atol=1e-4)
    path = save_checkpoint(torch_clf, tmp_path / "tiny.pt")
    assert load_classifier(path).runtime == "torch"
    assert load_classifier(path, runtime="onnxruntime").runtime == "onnxruntime"
    with pytest.raises(ValueError, match="runtime must be"):
        load_classifier(path, runtime="gpu")
    with pytest.raises(TypeError):
        MultimodalLime(runtime="torch")


def test_torch_classifier_runtime():
    clf = TorchClassifier(tiny_net(3), ["a", "b", "c"], preprocess=PreprocessConfig(24), runtime="onnxruntime")
    ref = TorchClassifier(tiny_net(3), ["a", "b", "c"], preprocess=PreprocessConfig(24), runtime="torch")
    imgs = [np.full((30, 30, 3), v, np.uint8) for v in (0, 128, 255)]
    toks = [[OcrToken("MILK", (0, 0, 4, 4))]] * 3
    assert clf.runtime == "onnxruntime" and ref.runtime == "torch"
    np.testing.assert_allclose(clf.predict_proba(imgs, toks), ref.predict_proba(imgs, toks), atol=1e-5)
    assert TorchClassifier(tiny_net(3), ["a", "b", "c"], preprocess=PreprocessConfig(24)).runtime == "torch"
