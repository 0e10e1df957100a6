"""Explanation -> images: JET superpixel overlays, coloured OCR boxes, a colour bar.

All functions take the photo (``uint8`` RGB, the resolution of
``explanation.segments``) and return ``uint8`` RGB arrays, ready for the app; use
:func:`save_pngs` for files. Importances come from
:func:`~prodlens.viz.scores.joint_scores` (both modalities on one 0..1 scale); scores
below ``threshold`` (0.2, as in the paper) are not coloured, so that weak, noisy
evidence does not cover the photo.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from prodlens._names import safe_filename
from prodlens.explain.explanation import Explanation
from prodlens.viz.colormap import jet
from prodlens.viz.scores import JointScores, joint_scores

log = logging.getLogger(__name__)

#: Importances below this are not coloured (paper, sec. 4.2).
THRESHOLD = 0.2


def _check_image(image: np.ndarray, explanation: Explanation) -> tuple[np.ndarray, Explanation]:
    """The photo as an array and the explanation fitted to its size (segments and boxes
    of a large photo's explanation are at the downscaled size it was segmented at)."""
    image = np.asarray(image)
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"image must be a uint8 RGB array (H, W, 3), got {image.dtype} {image.shape}")
    (h, w), (sh, sw) = image.shape[:2], np.asarray(explanation.segments).shape
    if abs(h * sw - w * sh) > 0.02 * max(h * sw, w * sh) + max(h, w, sh, sw):  # not the same photo at another size
        raise ValueError(
            f"image is {image.shape[:2]} but the explanation's segments are {(sh, sw)}; "
            "pass the photo the explanation was computed on"
        )
    return image, explanation.fitted_to(image.shape)


def _font(size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # pragma: no cover - Pillow < 10.1
        return ImageFont.load_default()


def overlay_superpixels(
    image: np.ndarray,
    explanation: Explanation,
    scores: JointScores | None = None,
    threshold: float = THRESHOLD,
    alpha: float = 0.5,
) -> np.ndarray:
    """Alpha-blend JET colours of superpixel importances over the photo.

    Superpixels scoring below ``threshold`` keep the photo's pixels.

    >>> e = Explanation("s", 0, "a", np.array([1.0, 0.1]), 0, 1, 1, np.array([[0, 1]]), (), 2)
    >>> out = overlay_superpixels(np.full((1, 2, 3), 200, np.uint8), e, alpha=1.0)
    >>> out[0, 0].tolist(), out[0, 1].tolist()
    ([128, 0, 0], [200, 200, 200])
    """
    image, explanation = _check_image(image, explanation)
    scores = scores or joint_scores(explanation)
    if not 0 <= alpha <= 1:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    per_px = scores.image[explanation.segments]
    colour = jet(per_px).astype(np.float32)
    blend = (1 - alpha) * image.astype(np.float32) + alpha * colour
    keep = (per_px >= threshold)[..., None]
    return np.where(keep, np.rint(blend), image).astype(np.uint8)


def draw_token_boxes(
    image: np.ndarray,
    explanation: Explanation,
    scores: JointScores | None = None,
    threshold: float = THRESHOLD,
    fill_alpha: float = 0.35,
    line_width: int | None = None,
) -> np.ndarray:
    """Draw each OCR box in the JET colour of its importance (outline + light fill).

    Tokens scoring below ``threshold`` are not drawn. ``line_width`` defaults to about
    1% of the shorter image side (at least 2 px).

    >>> from prodlens.data.types import OcrToken
    >>> e = Explanation("s", 0, "a", np.array([0.0, 1.0]), 0, 1, 1, np.zeros((20, 20), int),
    ...                 (OcrToken("X", (2, 2, 12, 12)),), 1)
    >>> out = draw_token_boxes(np.zeros((20, 20, 3), np.uint8), e)
    >>> out[2, 5].tolist()
    [128, 0, 0]
    """
    image, explanation = _check_image(image, explanation)
    scores = scores or joint_scores(explanation)
    H, W = image.shape[:2]
    lw = line_width or max(2, round(min(H, W) / 100))
    base = Image.fromarray(image).convert("RGBA")
    layer = Image.new("RGBA", base.size, (0, 0, 0, 0))
    draw = ImageDraw.Draw(layer)
    order = np.argsort(scores.text, kind="stable")  # strongest drawn last, on top
    for j in order:
        s = float(scores.text[j])
        if s < threshold:
            continue
        r, g, b = (int(c) for c in jet(s))
        x0, y0, x1, y1 = explanation.tokens[j].box
        box = [round(x0), round(y0), max(round(x0), round(x1) - 1), max(round(y0), round(y1) - 1)]
        draw.rectangle(box, fill=(r, g, b, round(255 * fill_alpha)))
        draw.rectangle(box, outline=(r, g, b, 255), width=lw)
    return np.asarray(Image.alpha_composite(base, layer).convert("RGB"))


def colorbar(height: int, width: int = 56, threshold: float = THRESHOLD, label: bool = True) -> np.ndarray:
    """A vertical JET legend strip, 1 at the top, 0 at the bottom.

    The part below ``threshold`` is drawn grey (not coloured in the overlays); with
    ``label`` the values 1, ``threshold`` and 0 are written beside the strip.

    >>> colorbar(100).shape
    (100, 56, 3)
    """
    if height < 8:
        raise ValueError(f"colorbar height must be >= 8 px, got {height}")
    bar_w = max(6, width // 3) if label else width
    pad = 6
    v = np.linspace(1.0, 0.0, height - 2 * pad)
    strip = jet(v)
    strip[v < threshold] = (190, 190, 190)
    out = np.full((height, width, 3), 255, np.uint8)
    out[pad : height - pad, 2 : 2 + bar_w] = strip[:, None, :]
    if label:
        im = Image.fromarray(out)
        d = ImageDraw.Draw(im)
        font = _font(max(8, min(12, height // 12)))
        for val in (1.0, threshold, 0.0):
            y = pad + (1.0 - val) * (height - 2 * pad - 1)
            d.line([(2 + bar_w, y), (5 + bar_w, y)], fill=(0, 0, 0))
            d.text((7 + bar_w, y), f"{val:g}", fill=(0, 0, 0), font=font, anchor="lm")
        out = np.asarray(im)
    return out


def with_colorbar(panel: np.ndarray, threshold: float = THRESHOLD) -> np.ndarray:
    """``panel`` with a legend strip appended on its right."""
    return np.concatenate([panel, colorbar(panel.shape[0], threshold=threshold)], axis=1)


@dataclass(frozen=True)
class ExplanationImages:
    """The rendered panels, ``uint8`` RGB arrays of the photo's size (legend not included)."""

    multimodal: np.ndarray
    image_only: np.ndarray
    text_only: np.ndarray
    scores: JointScores

    def as_dict(self) -> dict[str, np.ndarray]:
        return {"multimodal": self.multimodal, "image": self.image_only, "text": self.text_only}


def render_explanation(
    image: np.ndarray,
    explanation: Explanation,
    threshold: float = THRESHOLD,
    alpha: float = 0.5,
    sign: str = "positive",
) -> ExplanationImages:
    """Multimodal (superpixels + boxes), image-only and text-only panels on one scale.

    >>> e = Explanation("s", 0, "a", np.array([1.0]), 0, 1, 1, np.zeros((4, 4), int), (), 1)
    >>> render_explanation(np.zeros((4, 4, 3), np.uint8), e).multimodal.shape
    (4, 4, 3)
    """
    image, explanation = _check_image(image, explanation)
    scores = joint_scores(explanation, sign)
    img_only = overlay_superpixels(image, explanation, scores, threshold, alpha)
    multi = draw_token_boxes(img_only, explanation, scores, threshold)
    text_only = draw_token_boxes(image, explanation, scores, threshold)
    return ExplanationImages(multi, img_only, text_only, scores)


def _caption(panel: np.ndarray, text: str, height: int = 22) -> np.ndarray:
    im = Image.new("RGB", (panel.shape[1], height), (255, 255, 255))
    ImageDraw.Draw(im).text((4, height // 2), text, fill=(0, 0, 0), font=_font(12), anchor="lm")
    return np.concatenate([np.asarray(im), panel], axis=0)


def summary_figure(image: np.ndarray, explanation: Explanation, threshold: float = THRESHOLD, alpha: float = 0.5) -> np.ndarray:
    """One strip: photo | multimodal | image-only | text-only | legend, with captions.

    >>> e = Explanation("s", 0, "a", np.array([1.0]), 0, 1, 1, np.zeros((64, 64), int), (), 1)
    >>> summary_figure(np.zeros((64, 64, 3), np.uint8), e).shape[0]
    86
    """
    panels = render_explanation(image, explanation, threshold, alpha)
    e = explanation
    gap = np.full((image.shape[0], 6, 3), 255, np.uint8)
    parts = [
        (image, f"{e.sample_id}"),
        (panels.multimodal, f"{e.target_name} p={e.prediction:.2f}"),
        (panels.image_only, f"image {e.image_share:.0%}"),
        (panels.text_only, f"text {e.text_share:.0%}"),
    ]
    row = []
    for arr, cap in parts:
        row += [_caption(arr, cap), _caption(gap, "")]
    row.append(_caption(colorbar(image.shape[0], threshold=threshold), ""))
    return np.concatenate(row, axis=1)


def save_pngs(
    image: np.ndarray,
    explanation: Explanation,
    out_dir: str | Path,
    prefix: str | None = None,
    threshold: float = THRESHOLD,
    alpha: float = 0.5,
) -> dict[str, Path]:
    """Write ``{prefix}_multimodal.png``, ``_image.png``, ``_text.png`` (each with a legend)
    and ``_summary.png``; return their paths by kind.

    ``prefix`` defaults to ``{sample_id}_{target_name}``.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    prefix = prefix or f"{explanation.sample_id}_{explanation.target_name}"
    safe = safe_filename(prefix)
    panels = render_explanation(image, explanation, threshold, alpha)
    paths: dict[str, Path] = {}
    for kind, arr in panels.as_dict().items():
        p = out_dir / f"{safe}_{kind}.png"
        Image.fromarray(with_colorbar(arr, threshold)).save(p)
        paths[kind] = p
    p = out_dir / f"{safe}_summary.png"
    Image.fromarray(summary_figure(image, explanation, threshold, alpha)).save(p)
    paths["summary"] = p
    log.info("wrote %d PNGs for %s to %s", len(paths), prefix, out_dir)
    return paths
