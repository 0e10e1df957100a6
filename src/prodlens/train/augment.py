"""Training-time augmentation of photos and OCR token lists (deterministic given a seed).

Images: random resized crop, horizontal/vertical flips, rotation and mild colour
jitter (the paper uses flips and rotation; crop and colour are configurable extras).
Text: random word dropout, which also prepares the text model for the explainer's
token-removal perturbations.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np
from PIL import Image, ImageEnhance

from prodlens.data.types import OcrToken


@dataclass(frozen=True)
class AugmentConfig:
    """Augmentation parameters; ``key()`` names them in feature-cache paths.

    >>> AugmentConfig().key()[:4]
    'aug-'
    """

    hflip: float = 0.5
    vflip: float = 0.0
    max_rotation: float = 20.0
    crop_scale: tuple[float, float] = (0.6, 1.0)
    crop_ratio: tuple[float, float] = (0.75, 1.333)
    color: float = 0.2
    text_dropout: float = 0.15

    def __post_init__(self) -> None:
        for name in ("hflip", "vflip", "text_dropout"):
            v = getattr(self, name)
            if not 0 <= v <= 1:
                raise ValueError(f"{name} must be a probability in [0, 1], got {v}")
        lo, hi = self.crop_scale
        if not 0 < lo <= hi <= 1:
            raise ValueError(f"crop_scale must be (lo, hi) with 0 < lo <= hi <= 1, got {self.crop_scale}")
        object.__setattr__(self, "crop_scale", tuple(float(v) for v in self.crop_scale))
        object.__setattr__(self, "crop_ratio", tuple(float(v) for v in self.crop_ratio))

    def key(self) -> str:
        d = asdict(self)
        d.pop("text_dropout")
        return "aug-" + hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()[:8]


def view_rng(seed: int, sha: str, view: int) -> np.random.Generator:
    """The random generator of augmented ``view`` of the image with content hash ``sha``."""
    h = hashlib.sha256(f"{seed}:{sha}:{view}".encode()).digest()
    return np.random.default_rng(int.from_bytes(h[:8], "little"))


def augment_image(img: np.ndarray, cfg: AugmentConfig, rng: np.random.Generator) -> np.ndarray:
    """One random augmentation of a ``uint8`` RGB image (output size may differ).

    >>> out = augment_image(np.zeros((50, 40, 3), np.uint8), AugmentConfig(), np.random.default_rng(0))
    >>> out.dtype, out.ndim
    (dtype('uint8'), 3)
    """
    h, w = img.shape[:2]
    pil = Image.fromarray(img)
    # random resized crop (torchvision's rule, 10 tries then the whole image)
    area = h * w
    for _ in range(10):
        target = area * rng.uniform(*cfg.crop_scale)
        ratio = float(np.exp(rng.uniform(np.log(cfg.crop_ratio[0]), np.log(cfg.crop_ratio[1]))))
        cw, ch = int(round(np.sqrt(target * ratio))), int(round(np.sqrt(target / ratio)))
        if 0 < cw <= w and 0 < ch <= h:
            x0, y0 = int(rng.integers(0, w - cw + 1)), int(rng.integers(0, h - ch + 1))
            pil = pil.crop((x0, y0, x0 + cw, y0 + ch))
            break
    if rng.random() < cfg.hflip:
        pil = pil.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    if rng.random() < cfg.vflip:
        pil = pil.transpose(Image.Transpose.FLIP_TOP_BOTTOM)
    if cfg.max_rotation > 0:
        angle = float(rng.uniform(-cfg.max_rotation, cfg.max_rotation))
        pil = pil.rotate(angle, resample=Image.Resampling.BILINEAR, expand=False, fillcolor=(128, 128, 128))
    if cfg.color > 0:
        for enh in (ImageEnhance.Brightness, ImageEnhance.Contrast, ImageEnhance.Color):
            pil = enh(pil).enhance(float(rng.uniform(1 - cfg.color, 1 + cfg.color)))
    return np.asarray(pil.convert("RGB"))


def hflip_image(img: np.ndarray) -> np.ndarray:
    """Mirror left-right (the test-time-augmentation view)."""
    return np.ascontiguousarray(img[:, ::-1])


def drop_tokens(tokens: Sequence[OcrToken], p: float, rng: np.random.Generator) -> list[OcrToken]:
    """Each token is removed with probability ``p``.

    >>> toks = [OcrToken(str(i), (0, 0, 1, 1)) for i in range(100)]
    >>> 70 < len(drop_tokens(toks, 0.15, np.random.default_rng(0))) < 100
    True
    """
    if p <= 0 or not tokens:
        return list(tokens)
    keep = rng.random(len(tokens)) >= p
    return [t for t, k in zip(tokens, keep) if k]
