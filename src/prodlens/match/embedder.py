"""Photos + OCR tokens -> match embeddings, end to end (the explainer's :class:`~prodlens.match.base.Embedder`)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from prodlens.data.types import OcrToken
from prodlens.match.backbones import load_backbones
from prodlens.match.base import check_kind, check_text_weight, modalities
from prodlens.match.embedding import MatchEmbedding


class BackboneEmbedder:
    """Photos + OCR tokens -> embeddings: the backbones of ``embedding``, then its projection.

    Implements :class:`~prodlens.match.base.Embedder` (``normalized = True``: compare
    by inner product, so that a product without text gets no text similarity). Text
    features are memoised per distinct text (the explainer re-embeds the same token
    list many times).
    ``backbones`` may pass already-built ``(image_backbone, text_backbone)`` modules.

    >>> emb = MatchEmbedding("zero_shot", kind="image").fit(np.zeros((2, 1280)), None, ["a", "b"])
    >>> be = BackboneEmbedder(emb, backbone_cfg={"pretrained": False, "input_size": 32})
    >>> be.embed([np.zeros((40, 30, 3), np.uint8)], [[]]).shape, be.input_size
    ((1, 1280), 32)
    """

    def __init__(
        self,
        embedding: MatchEmbedding,
        *,
        kind: str | None = None,
        text_weight: float | None = None,
        backbones: tuple[Any, Any] | None = None,
        backbone_cfg: dict[str, Any] | None = None,
        batch_size: int = 8,
    ) -> None:
        embedding._check_fitted()
        self.embedding = embedding
        self.kind = check_kind(kind or embedding.kind)
        self.text_weight = embedding.text_weight if text_weight is None else check_text_weight(text_weight)
        mods = modalities(self.kind)
        if backbones is None:
            backbones = load_backbones(embedding.image_backbone if "image" in mods else None,
                                       embedding.text_backbone if "text" in mods else None, backbone_cfg)
        self.image_backbone, self.text_backbone = backbones
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.batch_size = batch_size
        self.normalized = True
        self._text_memo: dict[str, np.ndarray] = {}

    @property
    def input_size(self) -> int | None:
        return None if self.image_backbone is None else int(self.image_backbone.preprocess.input_size)

    def image_features(self, images: Sequence[np.ndarray]) -> np.ndarray:
        import torch

        from prodlens.models.preprocess import images_to_tensor

        out = []
        with torch.inference_mode():
            for s in range(0, len(images), self.batch_size):
                x = images_to_tensor(list(images[s : s + self.batch_size]), self.image_backbone.preprocess)
                out.append(self.image_backbone.forward_features(x).float().cpu().numpy())
        return np.concatenate(out) if out else np.zeros((0, self.image_backbone.out_dim), np.float32)

    def text_features(self, token_lists: Sequence[Sequence[OcrToken]]) -> np.ndarray:
        import torch

        from prodlens.models.text_backbones import tokens_to_text

        texts = [tokens_to_text(list(t)) for t in token_lists]
        todo = sorted({t for t in texts if t not in self._text_memo})
        if todo:
            with torch.inference_mode():
                for s in range(0, len(todo), 64):
                    chunk = todo[s : s + 64]
                    for t, v in zip(chunk, self.text_backbone.forward_features(chunk).float().cpu().numpy()):
                        self._text_memo[t] = v
        if not texts:
            return np.zeros((0, self.text_backbone.out_dim), np.float32)
        return np.stack([self._text_memo[t] for t in texts]).astype(np.float32)

    def embed(self, images: Sequence[np.ndarray], token_lists: Sequence[Sequence[OcrToken]]) -> np.ndarray:
        """Embeddings ``(n, d)`` of photos with their OCR tokens, compared by inner product."""
        if len(images) != len(token_lists):
            raise ValueError(f"got {len(images)} images but {len(token_lists)} token lists; pass one (possibly empty) token list per image")
        mods = modalities(self.kind)
        img = self.image_features(images) if "image" in mods else None
        txt = self.text_features(token_lists) if "text" in mods else None
        has_text = np.array([any(t.text.strip() for t in toks) for toks in token_lists], dtype=bool)
        return self.embedding.transform(img, txt, kind=self.kind, text_weight=self.text_weight, has_text=has_text)
