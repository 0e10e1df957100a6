"""Save and load trained classifiers as small, self-describing checkpoint files.

A checkpoint is ``torch.save`` of a plain dict (loadable with ``weights_only=True``)::

    {"format": "prodlens-classifier", "version": 1, "prodlens_version": "0.1.0",
     "spec": {"head", "head_cfg", "image_backbone", "backbone_cfg", "text_backbone", "text_cfg"},
     "classes": [...], "preprocess": {...} | None, "metrics": {...}, "train_config": {...},
     "head_state": {...}, "backbone_state": {"image": {...}, "text": {...}}  # fine-tuned only}

Backbones are rebuilt from the shipped pretrained weights named in ``spec``; only a
fine-tuned model stores its backbone weights too.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import torch

from prodlens import __version__
from prodlens._atomic import atomic_write
from prodlens.models.classifier import ProductClassifier, build_classifier
from prodlens.models.errors import CheckpointError
from prodlens.models.preprocess import PreprocessConfig

log = logging.getLogger(__name__)

FORMAT = "prodlens-classifier"
VERSION = 1


def save_checkpoint(
    clf: ProductClassifier,
    path: str | Path,
    *,
    metrics: dict[str, Any] | None = None,
    train_config: dict[str, Any] | None = None,
    include_backbones: bool = False,
) -> Path:
    """Write ``clf`` to ``path`` atomically; backbone weights only with ``include_backbones``.

    >>> save_checkpoint(clf, "runs/concat.pt", metrics={"val_top1": 0.9})  # doctest: +SKIP
    PosixPath('runs/concat.pt')
    """
    path = Path(path)
    ckpt: dict[str, Any] = {
        "format": FORMAT,
        "version": VERSION,
        "prodlens_version": __version__,
        "spec": clf.spec,
        "classes": list(clf.classes),
        "preprocess": clf.preprocess.to_dict() if clf.preprocess is not None else None,
        "metrics": dict(metrics or {}),
        "train_config": dict(train_config or {}),
        "head_state": {k: v.detach().cpu() for k, v in clf.head.state_dict().items()},
    }
    if include_backbones:
        ckpt["backbone_state"] = {
            name: {k: v.detach().cpu() for k, v in m.state_dict().items()}
            for name, m in (("image", clf.image_backbone), ("text", clf.text_backbone)) if m is not None
        }
    with atomic_write(path, "wb") as f:
        torch.save(ckpt, f)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(path, 0o666 & ~umask)  # the temporary file was private; a checkpoint is meant to be shared
    return path


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """Read and validate a checkpoint dict (no model is built)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint not found; train one with `prodlens train`")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - torch raises many kinds for a bad file
        raise CheckpointError(f"{path}: not a readable checkpoint ({type(e).__name__}: {e})") from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not a prodlens classifier checkpoint (format {ckpt.get('format') if isinstance(ckpt, dict) else type(ckpt).__name__!r})")
    if int(ckpt.get("version", 0)) > VERSION:
        raise CheckpointError(f"{path}: checkpoint version {ckpt['version']} is newer than this prodlens reads ({VERSION}); upgrade prodlens")
    missing = [k for k in ("spec", "classes", "head_state") if k not in ckpt]
    if missing:
        raise CheckpointError(f"{path}: checkpoint lacks {missing}")
    return ckpt


def load_classifier(path: str | Path, *, device: str | torch.device = "cpu", batch_size: int = 8,
                    runtime: str | None = None) -> ProductClassifier:
    """Rebuild a trained :class:`ProductClassifier` from a checkpoint written by :func:`save_checkpoint`.

    ``runtime`` chooses what runs the image backbone
    (:meth:`~prodlens.models.classifier.ProductClassifier.use_runtime`: ``"auto"``,
    ``"torch"``, ``"onnxruntime"``); ``None`` (default) keeps PyTorch. The explainers use
    the model as loaded.

    >>> clf = load_classifier("runs/grocery81/concat.pt")  # doctest: +SKIP
    >>> clf.predict_proba([load_image("milk.jpg")], [[]]).shape  # doctest: +SKIP
    (1, 81)
    """
    ckpt = read_checkpoint(path)
    spec = ckpt["spec"]
    bstate = ckpt.get("backbone_state") or {}
    backbone_cfg = dict(spec.get("backbone_cfg") or {})
    if "image" in bstate:
        backbone_cfg["pretrained"] = False  # weights come from the checkpoint
    head_cfg = {k: v for k, v in dict(spec.get("head_cfg") or {}).items() if k not in ("num_classes", "image_dim", "text_dim")}
    clf = build_classifier(
        spec["head"], ckpt["classes"],
        image_backbone=spec.get("image_backbone") or "efficientnet_lite0",
        text_backbone=spec.get("text_backbone") or "minilm",
        head_cfg=head_cfg, backbone_cfg=backbone_cfg, text_cfg=spec.get("text_cfg") or {},
        batch_size=batch_size,
    )
    clf.spec = dict(spec)
    if ckpt.get("preprocess") is not None and clf.preprocess is not None:
        saved = PreprocessConfig.from_dict(ckpt["preprocess"])
        if saved != clf.preprocess:
            raise CheckpointError(f"{path}: trained with preprocessing {saved} but the backbone now uses {clf.preprocess}; "
                                  "use the prodlens/timm versions it was trained with")
    try:
        clf.head.load_state_dict(ckpt["head_state"])
        if "image" in bstate and clf.image_backbone is not None:
            clf.image_backbone.load_state_dict(bstate["image"])
            clf.image_backbone.mark_trained()  # its own feature-cache key, not "random" or pretrained
        if "text" in bstate and clf.text_backbone is not None:
            clf.text_backbone.load_state_dict(bstate["text"])
    except RuntimeError as e:
        raise CheckpointError(f"{path}: weights do not fit the rebuilt model ({e})") from None
    clf.metrics = dict(ckpt.get("metrics") or {})
    clf.train_config = dict(ckpt.get("train_config") or {})
    clf.eval()
    clf.to(device)
    return clf if runtime is None else clf.use_runtime(runtime)


def init_image_backbone(clf: ProductClassifier, path: str | Path) -> ProductClassifier:
    """Load the trained image backbone of the checkpoint at ``path`` into ``clf`` (in place).

    For two-stage training: adapt the backbone with an image-only model (``train_blocks``
    or ``mode="finetune"``), then train fusion heads on its features. The backbone names
    and preprocessing must match.

    >>> init_image_backbone(build_classifier("concat", classes), "runs/image_tb1.pt")  # doctest: +SKIP
    """
    ckpt = read_checkpoint(path)
    state = (ckpt.get("backbone_state") or {}).get("image")
    if state is None:
        raise CheckpointError(f"{path}: has no trained image backbone (only head weights); train one with "
                              "--train-blocks N or --mode finetune, or drop --init-from")
    if clf.image_backbone is None:
        raise CheckpointError(f"{path}: the model being trained ({clf.head_name}) reads no image, so there is "
                              "no image backbone to start from it")
    want, got = ckpt["spec"].get("image_backbone"), clf.spec.get("image_backbone")
    if want != got:
        raise CheckpointError(f"{path}: its image backbone is {want!r}, the model being trained uses {got!r}; "
                              f"pass --image-backbone {want}")
    if ckpt.get("preprocess") is not None and PreprocessConfig.from_dict(ckpt["preprocess"]) != clf.preprocess:
        raise CheckpointError(f"{path}: trained with preprocessing {ckpt['preprocess']}, the model uses {clf.preprocess}")
    try:
        clf.image_backbone.load_state_dict(state)
    except RuntimeError as e:
        raise CheckpointError(f"{path}: image backbone weights do not fit ({e})") from None
    clf.image_backbone.mark_trained()
    return clf
