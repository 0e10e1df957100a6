"""What a classifier can do, as the explainers see it: declared here, only read there.

* :class:`Classifier`: any model, ours or a user's, wrapped as a deterministic, batched
  ``predict_proba(images, token_lists) -> (n, n_classes)`` function. It may tell its
  input resolution with an ``input_size`` attribute; :func:`input_side` is the one
  place that reads it.
* :class:`FusedClassifier`: a classifier with per-modality encoders and a fusion head
  (prodlens' ``ProductClassifier``, an ensemble of them): explainers that find one
  encode each distinct image mask and each word mask once.

Which runtime (PyTorch or ONNX Runtime) runs a model is chosen when it is loaded or
built (``load_classifier(path, runtime=...)``, ``use_runtime``); explainers never switch it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

import numpy as np

from prodlens.data.types import OcrToken


@runtime_checkable
class Classifier(Protocol):
    """A multimodal classifier as the explainers see it.

    ``images`` are ``uint8`` RGB arrays of shape ``(H, W, 3)`` at the photo's own
    resolution (the model resizes); ``token_lists`` hold the OCR tokens present, in
    any order (the model puts them in reading order). The result is an ``(n, C)``
    float array of class probabilities whose columns follow ``classes``.
    Calls must be deterministic: the same inputs give the same outputs.

    Optionally, ``input_size`` (an int, or ``(h, w)``) tells the side the model resizes
    photos to; explainers build perturbed images near it (read by :func:`input_side`).
    """

    classes: Sequence[str]

    def predict_proba(
        self, images: Sequence[np.ndarray], token_lists: Sequence[Sequence[OcrToken]]
    ) -> np.ndarray: ...


@runtime_checkable
class FusedClassifier(Classifier, Protocol):
    """A classifier with the encode-once seam: per-modality encoders and the fusion head.

    ``predict_proba(images, tokens)`` must equal
    ``predict_from_features(encode_images(images), encode_texts(tokens))``; a modality the
    model does not read encodes to ``None`` (or an empty array) and is ignored by the head.

    >>> class Plain:
    ...     classes = ["a"]
    ...     def predict_proba(self, images, token_lists): return np.ones((len(images), 1))
    >>> isinstance(Plain(), Classifier), isinstance(Plain(), FusedClassifier)
    (True, False)
    """

    def encode_images(self, images: Sequence[np.ndarray]) -> np.ndarray: ...

    def encode_texts(self, token_lists: Sequence[Sequence[OcrToken]]) -> np.ndarray: ...

    def predict_from_features(self, img_feats: np.ndarray | None, txt_feats: np.ndarray | None) -> np.ndarray: ...


#: The encode-once methods of a :class:`FusedClassifier` (named in error messages).
FUSED_METHODS = ("encode_images", "encode_texts", "predict_from_features")


def has_feature_path(classifier: object) -> bool:
    """Whether ``classifier`` is a :class:`FusedClassifier` (has the encode-once methods)."""
    return isinstance(classifier, FusedClassifier)


def input_side(classifier: object) -> int | None:
    """The side of the square the model resizes photos to, if it tells (its ``input_size``,
    an int or ``(h, w)``: the longer side); ``None`` when it does not.

    >>> class M: input_size = (224, 256)
    >>> input_side(M()), input_side(object())
    (256, None)
    """
    size = getattr(classifier, "input_size", None)
    if size is None:
        return None
    return int(max(size)) if isinstance(size, (tuple, list)) else int(size)
