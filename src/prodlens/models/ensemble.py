"""Several trained classifiers as one: the (weighted) mean of their probabilities.

Models with different backbones make different mistakes; averaging their class
probabilities is the usual way to combine them (on GroceryStore val, Lite0 and Lite2
with their last block trained: see docs/models.md). An :class:`EnsembleClassifier` is
a :class:`~prodlens.models.base.Classifier` like any other, so evaluation, LIME and
the app take it as they are. When every member is a fused prodlens model it also
exposes ``encode_images`` / ``encode_texts`` / ``predict_from_features`` (the members'
features side by side), so explanations keep encoding each image mask once.

>>> ens = EnsembleClassifier([load_classifier("a.pt"), load_classifier("b.pt")])  # doctest: +SKIP
>>> ens = load_ensemble(["a.pt", "b.pt"])  # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from prodlens.data.types import OcrToken
from prodlens.errors import ConfigError
from prodlens.models.base import FUSED_METHODS, Classifier, has_feature_path


class EnsembleClassifier:
    """The weighted mean of ``members``' ``predict_proba``; all must share ``classes`` in order.

    ``hflip=True`` adds test-time augmentation: every member also sees each image
    mirrored left-right (OCR tokens unchanged) and the two predictions are averaged.
    A single member with ``hflip=True`` is plain test-time augmentation.

    >>> from prodlens.models.adapters import as_classifier
    >>> a = as_classifier(lambda im, tk: np.tile([0.8, 0.2], (len(im), 1)), ["x", "y"])
    >>> b = as_classifier(lambda im, tk: np.tile([0.2, 0.8], (len(im), 1)), ["x", "y"])
    >>> p = EnsembleClassifier([a, b], weights=[3, 1]).predict_proba([np.zeros((4, 4, 3), np.uint8)], [[]])
    >>> [round(float(v), 2) for v in p[0]]
    [0.65, 0.35]
    """

    def __init__(self, members: Sequence[Classifier], weights: Sequence[float] | None = None, *,
                 hflip: bool = False) -> None:
        members = list(members)
        if not members:
            raise ConfigError("an ensemble needs at least one member classifier")
        classes = list(members[0].classes)
        for i, m in enumerate(members[1:], 1):
            if list(m.classes) != classes:
                raise ConfigError(
                    f"ensemble member {i} has classes {list(m.classes)[:3]}... ({len(m.classes)}), member 0 has "
                    f"{classes[:3]}... ({len(classes)}); train the members on the same class list"
                )
        w = np.ones(len(members)) if weights is None else np.asarray(weights, np.float64)
        if w.shape != (len(members),) or not np.all(np.isfinite(w)) or np.any(w < 0) or w.sum() <= 0:
            raise ConfigError(f"weights must be {len(members)} non-negative numbers with a positive sum, got {weights!r}")
        self.members = members
        self.weights = w / w.sum()
        self.hflip = bool(hflip)
        self.classes = classes
        self._fused = all(has_feature_path(m) for m in members)

    def __repr__(self) -> str:
        tta = ", hflip" if self.hflip else ""
        return f"EnsembleClassifier({len(self.members)} members, weights={self.weights.round(3).tolist()}{tta})"

    def _views(self, images: Sequence[np.ndarray]) -> list[Sequence[np.ndarray]]:
        return [images, [np.ascontiguousarray(im[:, ::-1]) for im in images]] if self.hflip else [images]

    def predict_proba(self, images: Sequence[np.ndarray], token_lists: Sequence[Sequence[OcrToken]]) -> np.ndarray:
        views = self._views(images)
        out = sum(w / len(views) * np.asarray(m.predict_proba(v, token_lists), np.float64)
                  for w, m in zip(self.weights, self.members) for v in views)
        return np.asarray(out, np.float32)

    # -- the fused seam (only when every member has it) ---------------------------------
    def __getattr__(self, name: str) -> Any:
        # encode_images / encode_texts / predict_from_features exist only for fused members,
        # so that isinstance(ensemble, FusedClassifier) tells the truth
        if name in FUSED_METHODS and self.__dict__.get("_fused"):
            return getattr(self, f"_{name}")
        raise AttributeError(f"{type(self).__name__!s} has no attribute {name!r}")

    def _encode_images(self, images: Sequence[np.ndarray]) -> np.ndarray:
        """Every member's features of every view, side by side (view-major)."""
        return np.concatenate([m.encode_images(v) for v in self._views(images) for m in self.members], axis=1)  # type: ignore[attr-defined]

    def _encode_texts(self, token_lists: Sequence[Sequence[OcrToken]]) -> np.ndarray:
        return np.concatenate([m.encode_texts(token_lists) for m in self.members], axis=1)  # type: ignore[attr-defined]

    def _predict_from_features(self, img: np.ndarray | None, txt: np.ndarray | None) -> np.ndarray:
        n_views = 2 if self.hflip else 1
        img_parts = _split(img, [_member_dim(m, "image") for m in self.members] * n_views)
        txt_parts = _split(txt, [_member_dim(m, "text") for m in self.members])
        k = len(self.members)
        out = sum(self.weights[j] / n_views * np.asarray(  # type: ignore[attr-defined]
                  self.members[j].predict_from_features(img_parts[v * k + j], txt_parts[j]), np.float64)
                  for v in range(n_views) for j in range(k))
        return np.asarray(out, np.float32)

    # -- runtime -----------------------------------------------------------------------
    def use_runtime(self, runtime: str = "auto", *, strict: bool = False) -> EnsembleClassifier:
        """Ask every member that can switch runtimes to use ``runtime``; returns ``self``."""
        for m in self.members:
            if callable(getattr(m, "use_runtime", None)):
                m.use_runtime(runtime, strict=strict)  # type: ignore[attr-defined]
        return self

    def to(self, device: str | torch.device) -> EnsembleClassifier:
        for m in self.members:
            if callable(getattr(m, "to", None)):
                m.to(device)  # type: ignore[attr-defined]
        return self


def _member_dim(member: Any, kind: str) -> int:
    """The width of ``member``'s ``kind`` features (0 when it does not read that modality)."""
    backbone = getattr(member, f"{kind}_backbone", None)
    if backbone is not None:
        return int(backbone.out_dim)
    if hasattr(member, f"{kind}_backbone"):
        return 0
    raise ConfigError(f"cannot tell the {kind} feature width of {member!r}: it has no {kind}_backbone")


def _split(x: np.ndarray | None, dims: list[int]) -> list[np.ndarray | None]:
    if x is None:
        return [None] * len(dims)
    x = np.asarray(x)
    if x.shape[1] != sum(dims):
        raise ValueError(f"features have {x.shape[1]} columns, the members expect {sum(dims)} ({dims})")
    return np.split(x, np.cumsum(dims)[:-1], axis=1)


def load_ensemble(paths: Sequence[str | Path], *, weights: Sequence[float] | None = None, hflip: bool = False,
                  device: str | torch.device = "cpu", batch_size: int = 8,
                  runtime: str | None = None) -> EnsembleClassifier:
    """An :class:`EnsembleClassifier` of the checkpoints at ``paths`` (see :func:`load_classifier`)."""
    from prodlens.models.checkpoint import load_classifier

    return EnsembleClassifier([load_classifier(p, device=device, batch_size=batch_size, runtime=runtime)
                               for p in paths], weights, hflip=hflip)
