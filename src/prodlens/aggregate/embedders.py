"""Which image model embeds the superpixel crops that the global step clusters.

The paper (sec. 4.2) found that ImageNet-pretrained embeddings give no usable clusters
of product parts and a model trained on the products does (prodlens' own bench,
``bench/global_embedding.py``, measured no difference on 10 GroceryStore package
classes; the choice stays explicit and recorded either way). :func:`image_embedder` turns a
classifier (or a checkpoint path) into an :class:`ImageEmbedder` that says which it
is, and warns when the backbone is pretrained only, so the choice is explicit
wherever global explanations are built (library, ``prodlens global --embed-model``,
the pipeline's ``[global] embedding``).

>>> class Frozen:  # a classifier whose image backbone still has its shipped weights
...     class image_backbone:
...         weights_id = "imagenet"
...     def encode_images(self, crops):
...         return [[0.0]] * len(crops)
>>> e = image_embedder(Frozen(), name="frozen", warn=False)
>>> e.name, e.trained, e.crop_size
('frozen', False, 224)
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from prodlens.models.base import input_side

log = logging.getLogger(__name__)

#: What :func:`image_embedder` logs for a pretrained-only backbone.
PRETRAINED_WARNING = (
    "superpixels are embedded with a pretrained-only image backbone ({name}); the paper (sec. 4.2) found such "
    "embeddings give no usable clusters (prodlens' bench on 10 GroceryStore package classes measured no "
    "difference, docs/global.md). To embed with a model trained on the products: an image model trained "
    "with --train-blocks 1 (pipeline: [train] adapt_blocks = 1) or --mode finetune"
)


@dataclass(frozen=True)
class ImageEmbedder:
    """An image model used as the embedding of superpixel crops.

    ``encode``: ``list of uint8 RGB crops -> (n, d) array``; ``name``: what it is (a
    checkpoint path or a description); ``trained``: whether its image backbone was
    trained on the task (``False``: shipped ImageNet weights); ``crop_size``: the side
    crops are resized to (the model's input size).
    """

    encode: Callable[[list[np.ndarray]], np.ndarray]
    name: str
    trained: bool
    crop_size: int = 224

    def __call__(self, crops: list[np.ndarray]) -> np.ndarray:
        return np.asarray(self.encode(crops))

    def memoised(self) -> ImageEmbedder:
        """The same embedder, remembering each crop's embedding (by its bytes), so that
        refitting on overlapping sets (cross-fitting folds) embeds each crop once.

        >>> calls = []
        >>> e = ImageEmbedder(lambda c: calls.append(len(c)) or np.ones((len(c), 2)), "m", True).memoised()
        >>> crop = np.zeros((2, 2, 3), np.uint8)
        >>> _ = e([crop]); _ = e([crop, crop + 1]); calls
        [1, 1]
        """
        memo: dict[bytes, np.ndarray] = {}
        encode = self.encode

        def cached(crops: list[np.ndarray]) -> np.ndarray:
            keys = [hashlib.sha1(np.ascontiguousarray(c).tobytes() + str(c.shape).encode()).digest() for c in crops]
            todo = {k: c for k, c in zip(keys, crops) if k not in memo}
            if todo:
                for k, v in zip(todo, np.asarray(encode(list(todo.values())))):
                    memo[k] = v
            return np.stack([memo[k] for k in keys]) if keys else np.zeros((0, 0))

        return ImageEmbedder(cached, self.name, self.trained, self.crop_size)

    def describe(self) -> dict[str, Any]:
        """JSON-able facts for a result's config.

        >>> ImageEmbedder(lambda c: c, "m.pt", True, 256).describe()
        {'model': 'm.pt', 'trained': True, 'crop_size': 256}
        """
        return {"model": self.name, "trained": self.trained, "crop_size": self.crop_size}


def backbone_is_trained(classifier: Any) -> bool:
    """Whether ``classifier``'s image backbone carries task-trained weights.

    prodlens backbones get a ``weights_id`` starting with ``ft`` once their weights
    changed (:meth:`~prodlens.models.image_backbones.ImageBackbone.mark_trained`); a
    model without that attribute (a user's model) counts as trained, since nothing
    says otherwise.
    """
    backbone = getattr(classifier, "image_backbone", None)
    wid = getattr(backbone, "weights_id", None)
    return True if wid is None else str(wid).startswith("ft")


def _input_side(classifier: Any) -> int:
    """The model's input side (:func:`~prodlens.models.base.input_side`; 224 when it does not tell)."""
    return input_side(classifier) or 224


def image_embedder(model: Any, *, name: str | None = None, warn: bool = True) -> ImageEmbedder:
    """An :class:`ImageEmbedder` from a classifier with ``encode_images`` or a checkpoint path.

    ``warn``: log :data:`PRETRAINED_WARNING` when the backbone is pretrained only.
    Raises ``ValueError`` when the model has no image encoder.
    """
    if isinstance(model, (str, Path)):
        from prodlens.models.checkpoint import load_classifier

        name = name or str(model)
        model = load_classifier(model)
    encode = getattr(model, "encode_images", None)
    if not callable(encode):
        raise ValueError(f"{name or type(model).__name__} has no encode_images: it cannot embed superpixel crops; "
                         "pass an image or fusion model")
    if getattr(model, "image_backbone", True) is None:
        raise ValueError(f"{name or type(model).__name__} reads no image (a text-only model): it cannot embed "
                         "superpixel crops; pass an image or fusion model")
    trained = backbone_is_trained(model)
    label = name or type(model).__name__
    if warn and not trained:
        log.warning(PRETRAINED_WARNING.format(name=label))
    return ImageEmbedder(encode, label, trained, _input_side(model))
