"""Model calls for perturbed rows: batched, de-duplicated and cached.

:class:`CachedEvaluator` sends every distinct on/off row to the model once, however
often the sampler draws it and across early-stopping chunks. For fused models that
expose ``encode_images``, ``encode_texts`` and ``predict_from_features`` it goes one
level deeper: each distinct image mask is encoded once and each distinct token subset
once, and only the cheap fusion head runs per row: a
:class:`~prodlens.models.base.FusedClassifier`. Any :class:`~prodlens.models.base.Classifier` works.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import numpy as np

from prodlens._validation import check_int
from prodlens.explain.interpretable import MultimodalInput
from prodlens.models.base import FUSED_METHODS, Classifier, has_feature_path

log = logging.getLogger(__name__)


def _row_keys(rows: np.ndarray) -> list[bytes]:
    if rows.shape[1] == 0:
        return [b""] * rows.shape[0]
    return [r.tobytes() for r in np.packbits(rows, axis=1)]


def _to_numpy(x) -> np.ndarray:
    if hasattr(x, "detach"):
        x = x.detach().float().cpu().numpy()
    return np.asarray(x, dtype=np.float64)


class ModelOutputError(ValueError):
    """The classifier returned probabilities that cannot be explained (NaN, inf, wrong shape)."""


def _check_finite(probs: np.ndarray, where: str) -> np.ndarray:
    if not np.isfinite(probs).all():
        bad = int((~np.isfinite(probs).all(1)).sum())
        raise ModelOutputError(
            f"{where} returned NaN or infinite probabilities for {bad} of {len(probs)} perturbed inputs; "
            "LIME needs finite outputs: check the model on blank regions and on an empty word list "
            "(e.g. a softmax over -inf logits, or a division by the number of words)"
        )
    return probs


def _stack(items: list):
    if hasattr(items[0], "detach"):
        import torch

        return torch.stack(items)
    return np.stack(items)


class CachedEvaluator:
    """Probabilities ``(n, C)`` for on/off rows of one :class:`MultimodalInput`.

    >>> from prodlens.data.types import OcrToken
    >>> class Const:
    ...     classes = ["a", "b"]
    ...     def predict_proba(self, images, token_lists):
    ...         return np.tile([0.25, 0.75], (len(images), 1))
    >>> x = MultimodalInput(np.zeros((2, 2, 3), np.uint8), np.array([[0, 1], [0, 1]]))
    >>> ev = CachedEvaluator(Const(), x, batch_size=2)
    >>> ev(np.array([[1, 1], [1, 0], [1, 1]], bool)).shape, ev.n_model_rows
    ((3, 2), 2)
    """

    def __init__(
        self,
        classifier: Classifier,
        inputs: MultimodalInput,
        batch_size: int = 8,
        cache: bool = True,
        use_feature_path: bool | None = None,
        device: object | None = None,
        progress: Callable[[int], None] | None = None,
    ) -> None:
        check_int("batch_size", batch_size, 1)
        self.classifier = classifier
        self.inputs = inputs
        self.batch_size = batch_size
        self.cache = cache
        self.device = device
        self.progress = progress
        self.use_feature_path = has_feature_path(classifier) if use_feature_path is None else use_feature_path
        if self.use_feature_path and not has_feature_path(classifier):
            raise ValueError(f"use_feature_path=True needs a classifier with {', '.join(FUSED_METHODS)}")
        self._probs: dict[bytes, np.ndarray] = {}
        self._img_feats: dict[bytes, object] = {}
        self._txt_feats: dict[bytes, object] = {}
        self.n_requested = 0  #: rows asked for
        self.n_model_rows = 0  #: rows (or feature-path rows) actually evaluated
        self.n_image_encodes = 0
        self.n_text_encodes = 0

    def __call__(self, rows: np.ndarray) -> np.ndarray:
        rows = np.asarray(rows, dtype=bool)
        self.n_requested += len(rows)
        if not self.cache:
            out = self._evaluate(rows)
            if self.progress:
                self.progress(len(rows))
            return out
        keys = _row_keys(rows)
        todo: dict[bytes, int] = {}
        for i, k in enumerate(keys):
            if k not in self._probs and k not in todo:
                todo[k] = i
        if todo:
            idx = np.fromiter(todo.values(), dtype=np.int64, count=len(todo))
            probs = self._evaluate(rows[idx])
            for k, p in zip(todo, probs):
                self._probs[k] = p
        if self.progress:
            self.progress(len(rows))
        return np.stack([self._probs[k] for k in keys])

    # -- evaluation ---------------------------------------------------------------
    def _evaluate(self, rows: np.ndarray) -> np.ndarray:
        if self.use_feature_path:
            return self._evaluate_features(rows)
        out = []
        for s in range(0, len(rows), self.batch_size):
            out.append(self._predict(rows[s : s + self.batch_size]))
        self.n_model_rows += len(rows)
        return np.concatenate(out) if out else np.zeros((0, len(self.classifier.classes)))

    def _predict(self, rows: np.ndarray) -> np.ndarray:
        batch = self.inputs.to_inputs(rows, self.device)
        probs = _to_numpy(self.classifier.predict_proba(batch.images, batch.token_lists))
        if probs.shape != (len(rows), len(self.classifier.classes)):
            raise ModelOutputError(
                f"predict_proba returned shape {probs.shape}, expected ({len(rows)}, {len(self.classifier.classes)}) "
                "(one row per input, one column per class in classifier.classes)"
            )
        return _check_finite(probs, f"{type(self.classifier).__name__}.predict_proba")

    def _features(self, rows: np.ndarray, cache: dict, encode: Callable, counter: str) -> list:
        keys = _row_keys(rows)
        todo: dict[bytes, int] = {}
        for i, k in enumerate(keys):
            if k not in cache and k not in todo:
                todo[k] = i
        idx = list(todo.values())
        for s in range(0, len(idx), self.batch_size):
            part = rows[idx[s : s + self.batch_size]]
            feats = encode(part)
            for k, f in zip(list(todo)[s : s + self.batch_size], feats):
                cache[k] = f
            setattr(self, counter, getattr(self, counter) + len(part))
        return [cache[k] for k in keys]

    def _evaluate_features(self, rows: np.ndarray) -> np.ndarray:
        S = self.inputs.n_superpixels
        # an image mask lives in the first S columns, a token subset in the rest; zero the other part
        img_rows = rows.copy()
        img_rows[:, S:] = True
        txt_rows = rows.copy()
        txt_rows[:, :S] = True
        clf = self.classifier

        def enc_img(part: np.ndarray):
            imgs = self.inputs.images(part, self.device)
            return clf.encode_images(imgs if self.device is not None else list(imgs))  # type: ignore[attr-defined]

        def enc_txt(part: np.ndarray):
            return clf.encode_texts(self.inputs.token_lists(part))  # type: ignore[attr-defined]

        img_f = self._features(img_rows, self._img_feats, enc_img, "n_image_encodes")
        txt_f = self._features(txt_rows, self._txt_feats, enc_txt, "n_text_encodes")
        out = []
        step = max(self.batch_size, 64)  # the fusion head is cheap
        for s in range(0, len(rows), step):
            p = clf.predict_from_features(_stack(img_f[s : s + step]), _stack(txt_f[s : s + step]))  # type: ignore[attr-defined]
            out.append(_to_numpy(p))
        self.n_model_rows += len(rows)
        return _check_finite(np.concatenate(out), f"{type(clf).__name__}.predict_from_features")

    def stats(self) -> dict:
        """Counts for the explanation's diagnostics."""
        d = {"n_requested": self.n_requested, "n_model_rows": self.n_model_rows, "feature_path": self.use_feature_path}
        if self.use_feature_path:
            d.update(n_image_encodes=self.n_image_encodes, n_text_encodes=self.n_text_encodes)
        return d

