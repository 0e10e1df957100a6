"""The multimodal classifier: image backbone + text backbone + head.

:class:`ProductClassifier` implements :class:`prodlens.models.base.Classifier` and
also exposes its per-modality encoders, so an explainer that perturbs only the image
(or only the text) can encode the unchanged modality once and call
:meth:`ProductClassifier.predict_from_features` for every perturbation.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from prodlens.data.types import OcrToken
from prodlens.models.heads import Head
from prodlens.models.image_backbones import ImageBackbone, build_image_backbone
from prodlens.models.preprocess import PreprocessConfig, images_to_tensor
from prodlens.models.registry import create_model
from prodlens.models.text_backbones import TextBackbone, build_text_backbone, tokens_to_text

log = logging.getLogger(__name__)


def _softmax(logits: torch.Tensor) -> np.ndarray:
    p = torch.softmax(logits.double(), dim=1).cpu().numpy()
    return p / p.sum(1, keepdims=True)


class ProductClassifier(nn.Module):
    """Backbones + head, with the batched, deterministic ``predict_proba`` of the Classifier protocol.

    Build one with :func:`build_classifier` (fresh head) or
    :func:`prodlens.models.checkpoint.load_classifier` (trained). The module is kept in
    eval mode for prediction; EmbraceNet heads use their deterministic inference mode.

    >>> clf = build_classifier("image", ["a", "b"], image_backbone="efficientnet_lite0",
    ...                        backbone_cfg={"pretrained": False, "input_size": 32})
    >>> img = np.zeros((40, 30, 3), np.uint8)
    >>> clf.predict_proba([img, img], [[], []]).shape
    (2, 2)
    """

    def __init__(
        self,
        head: Head,
        classes: Sequence[str],
        image_backbone: ImageBackbone | None = None,
        text_backbone: TextBackbone | None = None,
        *,
        head_name: str,
        spec: dict[str, Any] | None = None,
        batch_size: int = 8,
        device: str | torch.device = "cpu",
    ) -> None:
        super().__init__()
        if len(classes) != head.num_classes:
            raise ValueError(f"{len(classes)} class names given but the head has {head.num_classes} outputs")
        if "image" in head.modalities and image_backbone is None:
            raise ValueError(f"head {head_name!r} reads image features: pass an image_backbone")
        if "text" in head.modalities and text_backbone is None:
            raise ValueError(f"head {head_name!r} reads text features: pass a text_backbone")
        self.head = head
        self.image_backbone = image_backbone if "image" in head.modalities else None
        self.text_backbone = text_backbone if "text" in head.modalities else None
        self.classes = list(classes)
        self.head_name = head_name
        self.spec = dict(spec or {})
        self.batch_size = batch_size
        #: Metrics and training configuration recorded in the checkpoint (empty until trained).
        self.metrics: dict[str, Any] = {}
        self.train_config: dict[str, Any] = {}
        self._image_runner: Any = None
        self.eval()
        self.to(device)

    # -- runtime ----------------------------------------------------------------------
    @property
    def runtime(self) -> str:
        """``"onnxruntime"`` while the image backbone runs on ONNX Runtime, else ``"torch"``."""
        return "onnxruntime" if self._image_runner is not None else "torch"

    def use_runtime(self, runtime: str = "auto", *, strict: bool = False) -> ProductClassifier:
        """Run the image backbone with ``"torch"``, ``"onnxruntime"`` or ``"auto"``; returns ``self``.

        ONNX Runtime computes the same features (checked on a probe batch when the
        backbone is exported; see :mod:`prodlens.models.runtime`) with ~1.8x less CPU
        time per image, which is most of an explanation's cost. It snapshots the
        backbone's current weights: call it again after changing them. ``"auto"``
        uses ONNX Runtime on the CPU when installed; if the export or its check fails
        it logs a warning and keeps PyTorch (``strict=True`` raises instead).

        >>> clf = build_classifier("image", ["a"], backbone_cfg={"pretrained": False, "input_size": 32})
        >>> clf.use_runtime("torch").runtime
        'torch'
        """
        from prodlens.models.runtime import image_runner_for, resolve_runtime

        resolve_runtime(runtime, self.device)  # validates, even for a text-only model
        self._image_runner = None
        if self.image_backbone is not None:
            self._image_runner = image_runner_for(self.image_backbone, self.image_backbone.preprocess.input_size,
                                                  runtime, self.device, strict=strict)
        return self

    # -- properties -----------------------------------------------------------------
    @property
    def modalities(self) -> tuple[str, ...]:
        return self.head.modalities

    @property
    def device(self) -> torch.device:
        for p in self.parameters():
            return p.device
        return torch.device("cpu")  # pragma: no cover

    @property
    def preprocess(self) -> PreprocessConfig | None:
        """The image preprocessing of the image backbone (``None`` for a text-only model)."""
        return self.image_backbone.preprocess if self.image_backbone is not None else None

    @property
    def input_size(self) -> int | None:
        """The side photos are resized to (``None`` for a text-only model); see :func:`~prodlens.models.base.input_side`."""
        return self.preprocess.input_size if self.preprocess is not None else None

    @property
    def image_dim(self) -> int:
        return self.image_backbone.out_dim if self.image_backbone is not None else 0

    @property
    def text_dim(self) -> int:
        return self.text_backbone.out_dim if self.text_backbone is not None else 0

    # -- encoders ---------------------------------------------------------------------
    def encode_images(self, images: Sequence[np.ndarray], *, progress: bool = False) -> np.ndarray:
        """Image features ``(n, image_dim)`` float32; ``(n, 0)`` when the model reads no image.

        >>> clf = build_classifier("image", ["a"], backbone_cfg={"pretrained": False, "input_size": 32})
        >>> clf.encode_images([np.zeros((8, 8, 3), np.uint8)]).shape
        (1, 1280)
        """
        n = len(images)
        if self.image_backbone is None:
            return np.zeros((n, 0), np.float32)
        out = []
        runner = self._image_runner if not self.training and self.device.type == "cpu" else None
        with torch.inference_mode():
            for i in tqdm(range(0, n, self.batch_size), desc="encode images", disable=not progress, leave=False):
                x = images_to_tensor(images[i : i + self.batch_size], self.image_backbone.preprocess)
                if runner is not None:
                    out.append(runner(x))
                else:
                    out.append(self.image_backbone.forward_features(x.to(self.device)).float().cpu().numpy())
        return np.concatenate(out) if out else np.zeros((0, self.image_dim), np.float32)

    def encode_texts(self, token_lists: Sequence[Sequence[OcrToken]], *, progress: bool = False) -> np.ndarray:
        """Text features ``(n, text_dim)`` float32 of the OCR tokens (put in reading order).

        ``(n, 0)`` when the model reads no text. An empty token list is valid.
        """
        return self.encode_strings([tokens_to_text(t) for t in token_lists], progress=progress)

    def encode_strings(self, texts: Sequence[str], *, progress: bool = False) -> np.ndarray:
        """Like :meth:`encode_texts` for already-joined strings."""
        n = len(texts)
        if self.text_backbone is None:
            return np.zeros((n, 0), np.float32)
        out = []
        bs = max(self.batch_size, 32)
        with torch.inference_mode():
            for i in tqdm(range(0, n, bs), desc="encode texts", disable=not progress, leave=False):
                out.append(self.text_backbone.forward_features(list(texts[i : i + bs])).float().cpu().numpy())
        return np.concatenate(out) if out else np.zeros((0, self.text_dim), np.float32)

    # -- prediction -------------------------------------------------------------------
    def _feat(self, a: np.ndarray | torch.Tensor | None, modality: str, n: int | None) -> torch.Tensor | None:
        if modality not in self.modalities:
            return None
        if a is None:
            raise ValueError(f"this model reads {modality} features; got None")
        t = torch.as_tensor(np.asarray(a, dtype=np.float32) if not isinstance(a, torch.Tensor) else a).float()
        dim = self.image_dim if modality == "image" else self.text_dim
        if t.ndim != 2 or t.shape[1] != dim:
            raise ValueError(f"{modality} features must have shape (n, {dim}), got {tuple(t.shape)}")
        return t.to(self.device)

    def logits_from_features(self, img_feats: np.ndarray | None, txt_feats: np.ndarray | None) -> np.ndarray:
        """Raw head outputs ``(n, C)`` for precomputed features."""
        i = self._feat(img_feats, "image", None)
        t = self._feat(txt_feats, "text", None)
        if i is not None and t is not None and len(i) != len(t):
            raise ValueError(f"image features have {len(i)} rows but text features {len(t)}")
        with torch.inference_mode():
            return self.head(i, t).double().cpu().numpy()

    def predict_from_features(self, img_feats: np.ndarray | None, txt_feats: np.ndarray | None) -> np.ndarray:
        """Class probabilities ``(n, C)`` from :meth:`encode_images` / :meth:`encode_texts` output.

        A feature array the model does not read may be ``None`` (or anything).
        """
        i = self._feat(img_feats, "image", None)
        t = self._feat(txt_feats, "text", None)
        if i is not None and t is not None and len(i) != len(t):
            raise ValueError(f"image features have {len(i)} rows but text features {len(t)}")
        with torch.inference_mode():
            return _softmax(self.head(i, t))

    def predict_proba(self, images: Sequence[np.ndarray], token_lists: Sequence[Sequence[OcrToken]]) -> np.ndarray:
        """Class probabilities ``(n, C)``; rows sum to 1 and follow :attr:`classes`.

        ``images`` are ``uint8`` RGB ``(H, W, 3)`` arrays at any size; ``token_lists``
        the OCR tokens of each image, in any order. Unused modalities are ignored.
        """
        if len(images) != len(token_lists):
            raise ValueError(f"got {len(images)} images but {len(token_lists)} token lists; pass one (possibly empty) token list per image")
        return self.predict_from_features(self.encode_images(images), self.encode_texts(token_lists))

    def predict(self, images: Sequence[np.ndarray], token_lists: Sequence[Sequence[OcrToken]]) -> list[str]:
        """The most likely class name per image."""
        p = self.predict_proba(images, token_lists)
        return [self.classes[i] for i in p.argmax(1)]


def build_classifier(
    head: str,
    classes: Sequence[str],
    *,
    image_backbone: str = "efficientnet_lite0",
    text_backbone: str = "minilm",
    head_cfg: dict[str, Any] | None = None,
    backbone_cfg: dict[str, Any] | None = None,
    text_cfg: dict[str, Any] | None = None,
    batch_size: int = 8,
    device: str | torch.device = "cpu",
) -> ProductClassifier:
    """A classifier with a fresh (untrained) head of registered name ``head``.

    Backbones are built only for the modalities the head reads.

    >>> clf = build_classifier("text", ["a", "b", "c"])  # doctest: +SKIP
    >>> clf.text_dim  # doctest: +SKIP
    384
    """
    from prodlens.models.registry import get_entry

    get_entry(head, "head")
    probe = create_model(head, kind="head", num_classes=len(classes), image_dim=1, text_dim=1, **(head_cfg or {}))
    img = build_image_backbone(image_backbone, **(backbone_cfg or {})) if "image" in probe.modalities else None
    txt = build_text_backbone(text_backbone, **(text_cfg or {})) if "text" in probe.modalities else None
    h = create_model(
        head, kind="head", num_classes=len(classes),
        image_dim=img.out_dim if img is not None else 0, text_dim=txt.out_dim if txt is not None else 0,
        **(head_cfg or {}),
    )
    spec = {
        "head": head,
        "head_cfg": h.config,
        "image_backbone": image_backbone if img is not None else None,
        "backbone_cfg": dict(backbone_cfg or {}),
        "text_backbone": text_backbone if txt is not None else None,
        "text_cfg": dict(text_cfg or {}),
    }
    return ProductClassifier(h, classes, img, txt, head_name=head, spec=spec, batch_size=batch_size, device=device)
