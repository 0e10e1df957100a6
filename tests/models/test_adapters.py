"""Wrapping a user's own model (callable, nn.Module, ONNX file) as a Classifier."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from prodlens.data.types import OcrToken
from prodlens.errors import BadInputError
from prodlens.models import Classifier, as_classifier, build_classifier
from prodlens.models.adapters import CallableClassifier, OnnxClassifier, TorchClassifier
from prodlens.models.preprocess import PreprocessConfig


@pytest.fixture(autouse=True)
def _one_torch_thread():
    """These tests run tiny models: one torch thread is faster, much faster on a busy CI box."""
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)

IMGS = [np.zeros((10, 12, 3), np.uint8), np.full((8, 8, 3), 255, np.uint8), np.full((9, 9, 3), 30, np.uint8)]
TOKS = [[OcrToken("A", (0, 0, 1, 1))], [], []]


def test_callable_probs_and_logits():
    def fn(images, token_lists):
        return np.array([[len(t), 1.0] for t in token_lists])

    clf = as_classifier(fn, ["text", "none"])
    assert isinstance(clf, CallableClassifier) and isinstance(clf, Classifier)
    np.testing.assert_allclose(clf.predict_proba(IMGS, TOKS)[0], [0.5, 0.5])
    clf = as_classifier(fn, ["text", "none"], outputs="logits", batch_size=2)
    np.testing.assert_allclose(clf.predict_proba(IMGS, TOKS).sum(1), 1.0)
    np.testing.assert_allclose(clf.predict_proba(IMGS, TOKS)[1], [1 / (1 + np.e), np.e / (1 + np.e)])


def test_callable_bad_outputs_are_named():
    with pytest.raises(BadInputError, match=r"returned shape \(3, 3\), expected \(3, 2\)"):
        as_classifier(lambda i, t: np.ones((len(i), 3)), ["a", "b"]).predict_proba(IMGS, TOKS)
    with pytest.raises(BadInputError, match="negative probabilities.*outputs='logits'"):
        as_classifier(lambda i, t: -np.ones((len(i), 2)), ["a", "b"]).predict_proba(IMGS, TOKS)
    with pytest.raises(BadInputError, match="NaN"):
        as_classifier(lambda i, t: np.full((len(i), 2), np.nan), ["a", "b"]).predict_proba(IMGS, TOKS)
    with pytest.raises(ValueError, match="classes .* are required"):
        as_classifier(lambda i, t: None)
    with pytest.raises(TypeError, match="cannot wrap int"):
        as_classifier(3, ["a"])
    with pytest.raises(ValueError, match="outputs must be one of"):
        as_classifier(lambda i, t: None, ["a"], outputs="scores")


class TinyNet(nn.Module):
    def __init__(self, text: bool = False) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.img = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(3, 2))
        self.txt = nn.Linear(384, 2) if text else None

    def forward(self, x, t=None):
        out = self.img(x)
        return out + self.txt(t) if self.txt is not None else out


def test_torch_module_adapter():
    clf = as_classifier(TinyNet(), ["a", "b"], preprocess=PreprocessConfig(16))
    assert isinstance(clf, TorchClassifier)
    p = clf.predict_proba(IMGS, TOKS)
    assert p.shape == (3, 2)
    np.testing.assert_allclose(p.sum(1), 1.0)
    np.testing.assert_array_equal(p, clf.predict_proba(IMGS, TOKS))


def test_product_classifier_passes_through():
    clf = build_classifier("image", ["a", "b"], backbone_cfg={"pretrained": False, "input_size": 16})
    assert as_classifier(clf) is clf


# TinyNet below with fixed weights, exported once with torch.onnx.export (opset 17) and
# embedded here so the test needs no `onnx` package.
TINY_ONNX = (
    "CAgSB3B5dG9yY2gaBjIuMTQuMTrxAwpgCgZpbWFnZXMSJS9pbWcvaW1nLjAvR2xvYmFsQXZlcmFnZVBvb2xfb3V0cHV0XzAa"
    "HC9pbWcvaW1nLjAvR2xvYmFsQXZlcmFnZVBvb2wiEUdsb2JhbEF2ZXJhZ2VQb29sCm4KJS9pbWcvaW1nLjAvR2xvYmFsQXZl"
    "cmFnZVBvb2xfb3V0cHV0XzASGy9pbWcvaW1nLjEvRmxhdHRlbl9vdXRwdXRfMBoSL2ltZy9pbWcuMS9GbGF0dGVuIgdGbGF0"
    "dGVuKgsKBGF4aXMYAaABAgqGAQobL2ltZy9pbWcuMS9GbGF0dGVuX291dHB1dF8wCgxpbWcuMi53ZWlnaHQKCmltZy4yLmJp"
    "YXMSBmxvZ2l0cxoPL2ltZy9pbWcuMi9HZW1tIgRHZW1tKg8KBWFscGhhFQAAgD+gAQEqDgoEYmV0YRUAAIA/oAEBKg0KBnRy"
    "YW5zQhgBoAECEgptYWluX2dyYXBoKi4IAggDEAFCDGltZy4yLndlaWdodEoYAACAPwAAAMAAAAA/AACAvwAAAD8AAABAKhoI"
    "AhABQgppbWcuMi5iaWFzSgjNzMw9zczMvVohCgZpbWFnZXMSFwoVCAESEQoDEgFiCgIIAwoCCBAKAggQYhkKBmxvZ2l0cxIP"
    "Cg0IARIJCgMSAWIKAggCQgIQEQ=="
)


def _fixed_tiny_net() -> nn.Module:
    net = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(3, 2))
    with torch.no_grad():
        net[2].weight.copy_(torch.tensor([[1.0, -2.0, 0.5], [-1.0, 0.5, 2.0]]))
        net[2].bias.copy_(torch.tensor([0.1, -0.1]))
    return net


def test_onnx_adapter(tmp_path):
    import base64

    path = tmp_path / "net.onnx"
    path.write_bytes(base64.b64decode(TINY_ONNX))
    clf = as_classifier(path, ["a", "b"], preprocess=PreprocessConfig(16))
    assert isinstance(clf, OnnxClassifier) and clf.input_names == ["images"]
    ref = as_classifier(_fixed_tiny_net(), ["a", "b"], preprocess=PreprocessConfig(16)).predict_proba(IMGS, TOKS)
    np.testing.assert_allclose(clf.predict_proba(IMGS, TOKS), ref, atol=1e-6)
    assert not np.allclose(ref[0], ref[1])


def test_onnx_adapter_errors(tmp_path):
    with pytest.raises(BadInputError, match="ONNX file not found"):
        as_classifier(tmp_path / "none.onnx", ["a"])
    (tmp_path / "bad.onnx").write_bytes(b"garbage")
    with pytest.raises(BadInputError, match="onnxruntime cannot load it"):
        as_classifier(tmp_path / "bad.onnx", ["a"])
    with pytest.raises(BadInputError, match="only .onnx files"):
        as_classifier(tmp_path / "model.pt", ["a"])
