"""Image preprocessing derived from a backbone's config, so that it cannot drift.

Every image backbone owns a :class:`PreprocessConfig`; the classifier, the trainer
and the feature cache all call :func:`images_to_tensor` with it.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np
import torch
from PIL import Image

from prodlens.errors import BadInputError

_RESAMPLE = {"bilinear": Image.Resampling.BILINEAR, "bicubic": Image.Resampling.BICUBIC}


@dataclass(frozen=True)
class PreprocessConfig:
    """How a photo becomes a network input: squash-resize to ``input_size`` square,
    scale to [0, 1], subtract ``mean`` and divide by ``std`` per channel.

    >>> cfg = PreprocessConfig(256, (0.5, 0.5, 0.5), (0.5, 0.5, 0.5))
    >>> cfg.key()
    'sq256-bilinear-e2d50e35'
    """

    input_size: int = 256
    mean: tuple[float, float, float] = (0.485, 0.456, 0.406)
    std: tuple[float, float, float] = (0.229, 0.224, 0.225)
    interpolation: str = "bilinear"

    def __post_init__(self) -> None:
        if self.interpolation not in _RESAMPLE:
            raise ValueError(f"interpolation must be one of {sorted(_RESAMPLE)}, got {self.interpolation!r}")
        object.__setattr__(self, "mean", tuple(float(v) for v in self.mean))
        object.__setattr__(self, "std", tuple(float(v) for v in self.std))
        object.__setattr__(self, "input_size", int(self.input_size))

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> PreprocessConfig:
        return cls(int(d["input_size"]), tuple(d["mean"]), tuple(d["std"]), d.get("interpolation", "bilinear"))  # type: ignore[arg-type]

    def key(self) -> str:
        """A short stable string identifying this preprocessing (used in cache keys)."""
        h = hashlib.sha256(json.dumps(self.to_dict(), sort_keys=True).encode()).hexdigest()[:8]
        return f"sq{self.input_size}-{self.interpolation}-{h}"


def check_image(img: np.ndarray, where: str = "image") -> np.ndarray:
    """Validate one ``uint8`` RGB ``(H, W, 3)`` array (the Classifier input contract)."""
    arr = np.asarray(img)
    if arr.ndim != 3 or arr.shape[2] != 3 or arr.shape[0] == 0 or arr.shape[1] == 0:
        raise BadInputError(where, f"expected an RGB array of shape (H, W, 3), got {arr.shape}", "load photos with prodlens.data.images.load_image")
    if arr.dtype != np.uint8:
        raise BadInputError(where, f"expected dtype uint8, got {arr.dtype}", "convert with (img * 255).clip(0, 255).astype(np.uint8) if it is float in [0, 1]")
    return arr


def resize_image(img: np.ndarray, cfg: PreprocessConfig) -> np.ndarray:
    """Resize one ``uint8`` RGB image to ``cfg.input_size`` square (still ``uint8``).

    >>> resize_image(np.zeros((30, 40, 3), np.uint8), PreprocessConfig(16)).shape
    (16, 16, 3)
    """
    s = cfg.input_size
    if img.shape[0] == s and img.shape[1] == s:
        return img
    return np.asarray(Image.fromarray(img).resize((s, s), _RESAMPLE[cfg.interpolation]))


def images_to_tensor(images: Sequence[np.ndarray], cfg: PreprocessConfig) -> torch.Tensor:
    """Stack photos into a normalised float tensor ``(B, 3, S, S)``.

    >>> cfg = PreprocessConfig(8, (0.5,) * 3, (0.5,) * 3)
    >>> x = images_to_tensor([np.full((5, 7, 3), 255, np.uint8)], cfg)
    >>> tuple(x.shape), float(x.max())
    ((1, 3, 8, 8), 1.0)
    """
    if len(images) == 0:
        return torch.zeros((0, 3, cfg.input_size, cfg.input_size))
    arr = np.stack([resize_image(check_image(im, f"images[{i}]"), cfg) for i, im in enumerate(images)])
    x = torch.from_numpy(arr).permute(0, 3, 1, 2).float().div_(255.0)
    mean = torch.tensor(cfg.mean).view(1, 3, 1, 1)
    std = torch.tensor(cfg.std).view(1, 3, 1, 1)
    return (x - mean) / std
