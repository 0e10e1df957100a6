"""What matching needs from a model: an :class:`Embedder`, and how modalities are fused.

An embedder maps photos and their OCR tokens to one L2-normalised vector each; the
similarity of two products is the dot product (cosine) of their vectors. Any object
with an ``embed(images, token_lists)`` method qualifies, so users can plug in their
own model; :class:`~prodlens.match.embedding.BackboneEmbedder` is ours.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

import numpy as np

from prodlens.data.types import OcrToken
from prodlens.match.index import l2_normalize

KINDS = ("image", "text", "fused")


@runtime_checkable
class Embedder(Protocol):
    """Photos + OCR tokens -> ``(n, d)`` embeddings, compared by cosine similarity.

    ``images`` are ``uint8`` RGB ``(H, W, 3)`` arrays at any size; ``token_lists`` hold
    each photo's OCR tokens (possibly none). Calls must be deterministic. Optional
    attributes: ``input_size`` tells the explainer at which resolution to build
    perturbed images; ``kind`` names the embedding; ``normalized = True`` says the
    vectors are already scaled for inner-product comparison (otherwise the explainer
    L2-normalises them and compares by cosine).
    """

    def embed(self, images: Sequence[np.ndarray], token_lists: Sequence[Sequence[OcrToken]]) -> np.ndarray: ...


def check_kind(kind: str) -> str:
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    return kind


def modalities(kind: str) -> tuple[str, ...]:
    """The modalities an embedding ``kind`` reads.

    >>> modalities("fused"), modalities("text")
    (('image', 'text'), ('text',))
    """
    return {"image": ("image",), "text": ("text",), "fused": ("image", "text")}[check_kind(kind)]


def check_text_weight(text_weight: float) -> float:
    if not 0.0 <= float(text_weight) <= 1.0:
        raise ValueError(f"text_weight must be between 0 and 1 (0 = image only, 1 = text only), got {text_weight!r}")
    return float(text_weight)


def _text_mask(has_text: np.ndarray | None, n: int) -> np.ndarray | None:
    if has_text is None:
        return None
    m = np.asarray(has_text, dtype=bool).reshape(-1)
    if len(m) != n:
        raise ValueError(f"has_text has {len(m)} entries for {n} products; give one flag per product")
    return m


def fuse(image_embeddings: np.ndarray, text_embeddings: np.ndarray, text_weight: float = 0.5,
         has_text: np.ndarray | None = None) -> np.ndarray:
    """Concatenate L2-normalised image and text embeddings, weighted so that the dot
    product of two fused vectors is ``(1 - w) * cos_image + w * cos_text`` (``w = text_weight``).

    A product without text (``has_text`` false) gets a zero text part, so its text
    contributes nothing: ``cos_text`` counts as 0 for any pair it is in. Such rows have
    length ``sqrt(1 - w)``, not 1: compare fused embeddings by inner product
    (``make_index("exact", metric="ip")``), not cosine.

    >>> a = fuse(np.array([[1.0, 0.0]]), np.array([[0.0, 1.0]]), 0.25)
    >>> b = fuse(np.array([[1.0, 0.0]]), np.array([[1.0, 0.0]]), 0.25)
    >>> float((a @ b.T)[0, 0]), float(np.linalg.norm(a))
    (0.75, 1.0)
    >>> c = fuse(np.array([[1.0, 0.0]]), np.array([[1.0, 0.0]]), 0.25, has_text=[False])
    >>> float((c @ b.T)[0, 0])
    0.75
    """
    w = check_text_weight(text_weight)
    img = l2_normalize(image_embeddings)
    txt = l2_normalize(text_embeddings)
    if len(img) != len(txt):
        raise ValueError(f"got {len(img)} image and {len(txt)} text embeddings; give one of each per product")
    mask = _text_mask(has_text, len(txt))
    if mask is not None:
        txt = txt * mask[:, None]
    return np.concatenate([np.sqrt(1.0 - w) * img, np.sqrt(w) * txt], axis=1).astype(np.float32)


def combine(image_embeddings: np.ndarray | None, text_embeddings: np.ndarray | None, kind: str,
            text_weight: float = 0.5, has_text: np.ndarray | None = None) -> np.ndarray:
    """The embedding of ``kind`` (``"image"``, ``"text"`` or ``"fused"``) from per-modality parts.

    ``has_text`` marks the products whose OCR found text; the text embedding of the
    others is zero (see :func:`fuse`).

    >>> combine(np.array([[3.0, 4.0]]), None, "image").tolist()
    [[0.6000000238418579, 0.800000011920929]]
    >>> combine(None, np.array([[1.0, 0.0]]), "text", has_text=[False]).tolist()
    [[0.0, 0.0]]
    """
    check_kind(kind)
    if kind in ("image", "fused") and image_embeddings is None:
        raise ValueError(f"kind={kind!r} needs image embeddings")
    if kind in ("text", "fused") and text_embeddings is None:
        raise ValueError(f"kind={kind!r} needs text embeddings")
    if kind == "image":
        return l2_normalize(image_embeddings)  # type: ignore[arg-type]
    if kind == "text":
        txt = l2_normalize(text_embeddings)  # type: ignore[arg-type]
        mask = _text_mask(has_text, len(txt))
        return txt if mask is None else (txt * mask[:, None]).astype(np.float32)
    return fuse(image_embeddings, text_embeddings, text_weight, has_text)  # type: ignore[arg-type]
