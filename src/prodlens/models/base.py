"""The one prediction interface every explainer talks to.

Any model, ours or a user's, is wrapped as a :class:`Classifier`: a deterministic,
batched ``predict_proba(images, token_lists) -> (n, n_classes)`` function.
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
    """

    classes: Sequence[str]

    def predict_proba(
        self, images: Sequence[np.ndarray], token_lists: Sequence[Sequence[OcrToken]]
    ) -> np.ndarray: ...


#: The optional encode-once methods of a fused classifier (prodlens' ``ProductClassifier``):
#: explainers that find them encode each distinct image mask and each word mask once.
FUSED_METHODS = ("encode_images", "encode_texts", "predict_from_features")


def has_feature_path(classifier: object) -> bool:
    """Whether ``classifier`` exposes the optional encode-once methods."""
    return all(callable(getattr(classifier, m, None)) for m in FUSED_METHODS)
