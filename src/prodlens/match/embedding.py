"""Embeddings for matching: zero-shot backbone features or a metric-learned projection.

:class:`MatchEmbedding` follows the scikit-learn contract: ``__init__`` stores
parameters, :meth:`~MatchEmbedding.fit` learns from frozen backbone features and
labels and returns ``self`` (fitted attributes end in ``_``),
:meth:`~MatchEmbedding.transform` maps features to L2-normalised embeddings.

* ``method="zero_shot"``: the backbones' own features (ImageNet EfficientNet-Lite0,
  MiniLM), L2-normalised; ``fit`` only records the dimensions.
* ``method="normsoftmax"``: per modality, a projection (standardise -> dropout ->
  linear, or an MLP with ``hidden``) trained with a normalised-softmax loss with
  additive cosine margin (NormFace / CosFace): class proxies on the unit sphere,
  logits ``scale * (cos - margin * [true class])``.
* ``method="supcon"``: the same projection trained with the supervised contrastive
  loss (Khosla et al. 2020) at ``temperature``.

Fused embeddings concatenate the per-modality embeddings (see
:func:`~prodlens.match.base.fuse`), so one fitted object gives image, text and fused
embeddings. Training runs on cached features (the torch loop is
:mod:`prodlens.match.projection`). :class:`~prodlens.match.embedder.BackboneEmbedder`
turns photos + OCR tokens into embeddings end to end; the backbones are built once per
process by :func:`~prodlens.match.backbones.load_backbones`.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from prodlens.match.base import check_kind, check_text_weight, combine, modalities
from prodlens.match.index import l2_normalize
from prodlens.match.projection import build_projection, train_projection

METHODS = ("zero_shot", "normsoftmax", "supcon")
FORMAT = "prodlens-match-embedding"
VERSION = 1


def _as_views(x: np.ndarray | None, name: str, n: int | None = None) -> np.ndarray | None:
    """Features as ``(n, V, D)``: a 2-D array is one view per example."""
    if x is None:
        return None
    a = np.asarray(x, dtype=np.float32)
    if a.ndim == 2:
        a = a[:, None, :]
    if a.ndim != 3:
        raise ValueError(f"{name} must be (n, dim) or (n, views, dim), got shape {a.shape}")
    if n is not None and len(a) != n:
        raise ValueError(f"{name} has {len(a)} rows for {n} labels; give one row per example")
    if not np.all(np.isfinite(a)):
        raise ValueError(f"{name} contain NaN or infinite values")
    return a


class MatchEmbedding:
    """Maps frozen backbone features to embeddings for cosine matching (see the module doc).

    Parameters
    ----------
    method:
        ``"zero_shot"``, ``"normsoftmax"`` (default) or ``"supcon"``.
    kind:
        The default embedding of :meth:`transform`: ``"image"``, ``"text"`` or
        ``"fused"``; ``fit`` trains a projection for each modality the kind uses.
    text_weight:
        Weight ``w`` of the text part in fused embeddings (similarity =
        ``(1 - w) cos_image + w cos_text``); 0.2 was the best weight in train-fold
        cross-validation on GroceryStoreDataset (bench/matching.py).
    zero_shot_weight:
        Weight ``k`` of the frozen features kept next to a learned projection: per
        modality, cosine = ``k cos_frozen + (1 - k) cos_learned`` (the embedding is
        the two, scaled, concatenated). A projection learned on some products can
        forget what tells new ones apart; keeping part of the frozen similarity
        guards that (bench/matching.py --part openset). 0 (default): the projection
        alone. Applied when transforming, so it can be chosen without refitting.
    out_dim, hidden, dropout:
        Projection output size, optional hidden layer width (0 = linear), dropout.
    scale, margin:
        Normalised softmax: logit scale and additive cosine margin.
    temperature:
        Supervised contrastive loss temperature.
    epochs, batch_size, lr, weight_decay:
        Adam training on the features (each extra view is one more example).
    image_backbone, text_backbone:
        Names of the backbones whose features this embedding reads (recorded and used
        by :class:`BackboneEmbedder`).
    seed:
        The one seed of the fit.

    Example
    -------
    >>> rng = np.random.default_rng(0); y = np.repeat(["a", "b", "c"], 20)
    >>> img = rng.normal(size=(60, 16)) + 4 * np.eye(3, 16)[np.repeat([0, 1, 2], 20)]
    >>> emb = MatchEmbedding("normsoftmax", kind="image", out_dim=8, epochs=30).fit(img, None, y)
    >>> z = emb.transform(img, None)
    >>> z.shape, bool(abs(np.linalg.norm(z[0]) - 1) < 1e-5)
    ((60, 8), True)
    """

    def __init__(
        self,
        method: str = "normsoftmax",
        *,
        kind: str = "fused",
        text_weight: float = 0.2,
        zero_shot_weight: float = 0.0,
        out_dim: int = 128,
        hidden: int = 0,
        dropout: float = 0.2,
        scale: float = 16.0,
        margin: float = 0.1,
        temperature: float = 0.1,
        epochs: int = 40,
        batch_size: int = 128,
        lr: float = 1e-3,
        weight_decay: float = 1e-4,
        image_backbone: str = "efficientnet_lite0",
        text_backbone: str = "minilm",
        seed: int = 0,
        progress: bool = False,
    ) -> None:
        self.method = method
        self.kind = kind
        self.text_weight = text_weight
        self.zero_shot_weight = zero_shot_weight
        self.out_dim = out_dim
        self.hidden = hidden
        self.dropout = dropout
        self.scale = scale
        self.margin = margin
        self.temperature = temperature
        self.epochs = epochs
        self.batch_size = batch_size
        self.lr = lr
        self.weight_decay = weight_decay
        self.image_backbone = image_backbone
        self.text_backbone = text_backbone
        self.seed = seed
        self.progress = progress

    # -- parameters ---------------------------------------------------------------
    def get_params(self) -> dict[str, Any]:
        """The constructor parameters (as scikit-learn's ``get_params``)."""
        return {k: getattr(self, k) for k in (
            "method", "kind", "text_weight", "zero_shot_weight", "out_dim", "hidden", "dropout", "scale", "margin", "temperature",
            "epochs", "batch_size", "lr", "weight_decay", "image_backbone", "text_backbone", "seed", "progress")}

    def set_params(self, **params: Any) -> MatchEmbedding:
        known = self.get_params()
        for k, v in params.items():
            if k not in known:
                raise ValueError(f"unknown parameter {k!r} for MatchEmbedding; known: {', '.join(known)}")
            setattr(self, k, v)
        return self

    def clone(self, **params: Any) -> MatchEmbedding:
        """An unfitted copy with the same (or updated) parameters."""
        return MatchEmbedding(**{**self.get_params(), **params})

    def _validate(self) -> None:
        if self.method not in METHODS:
            raise ValueError(f"method must be one of {METHODS}, got {self.method!r}")
        check_kind(self.kind)
        check_text_weight(self.text_weight)
        if not 0 <= self.zero_shot_weight <= 1:
            raise ValueError(f"zero_shot_weight must be in [0, 1] (0: the learned projection alone), got {self.zero_shot_weight!r}")
        for name in ("out_dim", "epochs", "batch_size"):
            v = getattr(self, name)
            if not isinstance(v, (int, np.integer)) or v < 1:
                raise ValueError(f"{name} must be an int >= 1, got {v!r}")
        if not isinstance(self.hidden, (int, np.integer)) or self.hidden < 0:
            raise ValueError(f"hidden must be an int >= 0 (0 = a linear projection), got {self.hidden!r}")
        if not 0 <= self.dropout < 1:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout!r}")
        for name in ("scale", "temperature", "lr"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)!r}")
        if self.margin < 0 or self.weight_decay < 0:
            raise ValueError(f"margin and weight_decay must be >= 0, got {self.margin!r} and {self.weight_decay!r}")

    # -- fitting ------------------------------------------------------------------
    def fit(self, image_features: np.ndarray | None, text_features: np.ndarray | None, labels: Sequence,
            has_text: np.ndarray | None = None) -> MatchEmbedding:
        """Learn the projections from features ``(n, D)`` or ``(n, views, D)`` and labels.

        A modality the ``kind`` does not use may be ``None``. ``has_text`` (``(n,)`` or
        ``(n, views)`` booleans) marks the examples whose OCR found text; the text
        projection learns only from those (an empty text says nothing about the class).
        Returns ``self``.
        """
        self._validate()
        labels = np.asarray(list(labels))
        n = len(labels)
        if n == 0:
            raise ValueError("fit needs at least one labelled example")
        img = _as_views(image_features, "image_features", n)
        txt = _as_views(text_features, "text_features", n)
        feats = {"image": img, "text": txt}
        mods = modalities(self.kind)
        for m in mods:
            if feats[m] is None:
                raise ValueError(f"kind={self.kind!r} needs {m}_features; pass them or choose kind=" + repr("text" if m == "image" else "image"))
        mask = None
        if has_text is not None and txt is not None:
            mask = np.asarray(has_text, dtype=bool)
            mask = np.broadcast_to(mask[:, None] if mask.ndim == 1 else mask, txt.shape[:2])
            if len(mask) != n:
                raise ValueError(f"has_text has {len(mask)} rows for {n} labels; give one flag per example")
        self.classes_ = np.unique(labels)
        if self.method != "zero_shot" and len(self.classes_) < 2:
            raise ValueError(f"method={self.method!r} needs at least 2 classes to learn from, got {len(self.classes_)}")
        y = np.searchsorted(self.classes_, labels)
        self.n_image_features_ = int(img.shape[2]) if img is not None and "image" in mods else 0
        self.n_text_features_ = int(txt.shape[2]) if txt is not None and "text" in mods else 0
        self.projections_: dict[str, Any] = {}
        self.history_: dict[str, list[float]] = {}
        if self.method != "zero_shot":
            for i, m in enumerate(mods):
                keep = mask if m == "text" else None
                self.projections_[m], self.history_[m] = self._fit_projection(feats[m], y, self.seed + i, m, keep)  # type: ignore[arg-type]
        self.modalities_ = mods
        return self

    def _fit_projection(self, x: np.ndarray, y: np.ndarray, seed: int, name: str,
                        keep: np.ndarray | None = None) -> tuple[Any, list[float]]:
        import torch

        n, V, D = x.shape
        flat, labels = x.reshape(n * V, D), np.repeat(y, V)
        if keep is not None:
            flat, labels = flat[keep.reshape(-1)], labels[keep.reshape(-1)]
            if len(np.unique(labels)) < 2:
                raise ValueError(f"only {len(labels)} examples with text ({len(np.unique(labels))} classes): too few to learn a text projection; use kind='image'")
        X = torch.from_numpy(np.ascontiguousarray(flat))
        Y = torch.from_numpy(labels).long()
        threads = torch.get_num_threads()
        # the projection is tiny: extra intra-op threads only add synchronisation (20x slower on a busy CPU)
        torch.set_num_threads(1)
        try:
            return self._train(X, Y, D, seed, name)
        finally:
            torch.set_num_threads(threads)

    def _train(self, X: Any, Y: Any, D: int, seed: int, name: str) -> tuple[Any, list[float]]:
        p = self.get_params()
        return train_projection(X, Y, D, n_classes=len(self.classes_), seed=seed, name=name,
                                **{k: p[k] for k in ("method", "out_dim", "hidden", "dropout", "scale", "margin", "temperature",
                                                    "epochs", "batch_size", "lr", "weight_decay", "progress")})

    # -- transforming -------------------------------------------------------------
    def _check_fitted(self) -> None:
        if not hasattr(self, "modalities_"):
            raise ValueError("this MatchEmbedding is not fitted yet: call fit(image_features, text_features, labels) first, or load() a saved one")

    def transform_parts(self, image_features: np.ndarray | None, text_features: np.ndarray | None) -> tuple[np.ndarray | None, np.ndarray | None]:
        """Per-modality L2-normalised embeddings (``None`` for a modality not given or not fitted)."""
        self._check_fitted()
        out = []
        for m, x, dim in (("image", image_features, self.n_image_features_), ("text", text_features, self.n_text_features_)):
            if x is None or m not in self.modalities_:
                out.append(None)
                continue
            a = np.asarray(x, dtype=np.float32)
            if a.ndim != 2 or a.shape[1] != dim:
                raise ValueError(f"{m}_features must have shape (n, {dim}) ({m} backbone {getattr(self, m + '_backbone')}), got {a.shape}")
            proj = self.projections_.get(m)
            if proj is None:
                out.append(l2_normalize(a))
            else:
                import torch

                with torch.inference_mode():
                    z = proj(torch.from_numpy(np.ascontiguousarray(a))).numpy().astype(np.float32)
                k = float(self.zero_shot_weight)
                if k > 0:  # cosine = k * frozen-feature cosine + (1 - k) * learned cosine
                    z = np.concatenate([np.sqrt(k) * l2_normalize(a), np.sqrt(1 - k) * z], axis=1).astype(np.float32)
                out.append(z)
        return out[0], out[1]

    def transform(self, image_features: np.ndarray | None, text_features: np.ndarray | None, *,
                  kind: str | None = None, text_weight: float | None = None,
                  has_text: np.ndarray | None = None) -> np.ndarray:
        """Embeddings ``(n, d)`` of ``kind`` (default: the fitted ``kind``), compared by inner product.

        ``kind="image"`` or ``"text"`` of an embedding fitted with ``kind="fused"`` gives
        that modality alone; ``text_weight`` overrides the fused weight; rows whose
        ``has_text`` is false get a zero text part (see :func:`~prodlens.match.base.fuse`).
        Rows are unit length except for that.
        """
        self._check_fitted()
        kind = check_kind(kind or self.kind)
        for m in modalities(kind):
            if m not in self.modalities_:
                raise ValueError(f"kind={kind!r} needs the {m} projection, but this embedding was fitted with kind={self.kind!r}; refit with kind='fused'")
        img, txt = self.transform_parts(image_features if "image" in modalities(kind) else None,
                                        text_features if "text" in modalities(kind) else None)
        w = self.text_weight if text_weight is None else text_weight
        return combine(img, txt, kind, w, has_text if "text" in modalities(kind) else None)

    # -- persistence --------------------------------------------------------------
    def save(self, path: str | Path) -> Path:
        """Write the fitted embedding to ``path`` (``torch.save`` of plain data, atomically).

        >>> import tempfile, pathlib
        >>> p = pathlib.Path(tempfile.mkdtemp()) / "emb.pt"
        >>> e = MatchEmbedding("zero_shot", kind="image").fit(np.eye(3), None, ["a", "b", "c"])
        >>> MatchEmbedding.load(e.save(p)).transform(np.eye(3), None).shape
        (3, 3)
        """
        import io

        import torch

        from prodlens import __version__
        from prodlens._atomic import atomic_write

        self._check_fitted()
        params = self.get_params()
        ckpt = {
            "format": FORMAT,
            "version": VERSION,
            "prodlens_version": __version__,
            "params": params,
            "classes": [str(c) for c in self.classes_],
            "modalities": list(self.modalities_),
            "n_image_features": self.n_image_features_,
            "n_text_features": self.n_text_features_,
            "history": self.history_,
            "state": {m: {k: v.detach().cpu() for k, v in p.state_dict().items()} for m, p in self.projections_.items()},
        }
        buf = io.BytesIO()
        torch.save(ckpt, buf)
        path = Path(path)
        with atomic_write(path, "wb") as f:
            f.write(buf.getvalue())
        return path

    @classmethod
    def load(cls, path: str | Path) -> MatchEmbedding:
        """Read an embedding written by :meth:`save`."""
        import torch

        from prodlens.models.errors import CheckpointError

        path = Path(path)
        if not path.is_file():
            raise CheckpointError(f"{path}: matching embedding not found; train one with `prodlens match-fit` or MatchEmbedding(...).fit(...).save(path)")
        try:
            ckpt = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as e:  # noqa: BLE001 - any unpickling failure means a bad file
            raise CheckpointError(f"{path}: not a readable matching embedding ({type(e).__name__}: {e}); re-create it with `prodlens match-fit`") from None
        if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
            raise CheckpointError(f"{path}: not a {FORMAT} file (is it a classifier checkpoint?); matching embeddings come from `prodlens match-fit`")
        if int(ckpt.get("version", 0)) > VERSION:
            raise CheckpointError(f"{path}: written by a newer prodlens (format version {ckpt['version']}); upgrade prodlens")
        obj = cls(**ckpt["params"])
        obj.classes_ = np.asarray(ckpt["classes"])
        obj.modalities_ = tuple(ckpt["modalities"])
        obj.n_image_features_ = int(ckpt["n_image_features"])
        obj.n_text_features_ = int(ckpt["n_text_features"])
        obj.history_ = dict(ckpt.get("history", {}))
        obj.projections_ = {}
        for m, state in ckpt["state"].items():
            dim = obj.n_image_features_ if m == "image" else obj.n_text_features_
            proj = build_projection(dim, obj.out_dim, obj.hidden, obj.dropout)
            proj.load_state_dict(state)
            proj.eval()
            obj.projections_[m] = proj
        return obj

    def __repr__(self) -> str:
        changed = {k: v for k, v in self.get_params().items() if v != MatchEmbedding().get_params()[k]}
        return f"MatchEmbedding({', '.join(f'{k}={v!r}' for k, v in changed.items())})"
