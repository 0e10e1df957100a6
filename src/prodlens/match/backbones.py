"""The frozen image and text backbones of matching, built once per process.

Building a backbone reads its weights from disk (seconds); the explainer, the CLI and
the app ask for the same pair many times, so :func:`load_backbones` memoises them by
name and settings for the life of the process.
"""

from __future__ import annotations

from typing import Any

_BACKBONES: dict[tuple, Any] = {}


def load_backbones(image: str | None = "efficientnet_lite0", text: str | None = "minilm",
                   backbone_cfg: dict[str, Any] | None = None) -> tuple[Any, Any]:
    """Build (and memoise for this process) the named image and text backbones, in eval mode.

    ``None`` skips a modality. ``backbone_cfg`` goes to the image backbone factory.
    """
    key = (image, text, tuple(sorted((backbone_cfg or {}).items())))
    if key not in _BACKBONES:
        from prodlens.models.image_backbones import build_image_backbone
        from prodlens.models.registry import create_model

        ib = build_image_backbone(image, **(backbone_cfg or {})).eval() if image else None
        tb = create_model(text, kind="text").eval() if text else None
        _BACKBONES[key] = (ib, tb)
    return _BACKBONES[key]

