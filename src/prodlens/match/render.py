"""MatchExplanation -> one RGB picture: query and match side by side.

The query photo carries its saliency as a JET overlay (the match photo too when its
map was computed); the shared words' boxes are outlined in both photos in one colour
per word, numbered by rank and joined by a line; a caption gives the similarity and
the faithfulness AUCs. Uses :func:`prodlens.viz.colormap.jet` and
:func:`prodlens.viz.render.colorbar`, so the colours match the classifier explanations.
"""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from prodlens.match._masking import check_rgb
from prodlens.match.explanation import MatchExplanation
from prodlens.viz.colormap import jet

#: Saliency (scaled to its maximum) below this is not coloured, as in prodlens.viz.
THRESHOLD = 0.2

#: Distinct outline colours for shared words, by rank.
WORD_COLOURS = ((255, 0, 255), (0, 200, 255), (255, 160, 0), (0, 220, 90), (255, 60, 60),
                (160, 90, 255), (255, 255, 0), (0, 140, 140))


def _font(size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # pragma: no cover - Pillow < 10.1
        return ImageFont.load_default()


def scale_saliency(saliency: np.ndarray) -> np.ndarray:
    """Positive saliency scaled to ``[0, 1]`` by its maximum (all zeros when nothing is positive).

    >>> scale_saliency(np.array([[-1.0, 0.5, 2.0]])).tolist()
    [[0.0, 0.25, 1.0]]
    """
    s = np.clip(np.asarray(saliency, dtype=np.float64), 0, None)
    top = s.max() if s.size else 0.0
    return s / top if top > 0 else np.zeros_like(s)


def overlay_saliency(image: np.ndarray, saliency: np.ndarray, alpha: float = 0.5, threshold: float = THRESHOLD) -> np.ndarray:
    """Alpha-blend the JET colours of the (scaled) saliency over the photo.

    >>> out = overlay_saliency(np.full((1, 2, 3), 200, np.uint8), np.array([[1.0, 0.0]]), alpha=1.0)
    >>> out[0, 0].tolist(), out[0, 1].tolist()
    ([128, 0, 0], [200, 200, 200])
    """
    image = check_rgb(image, "image")
    if not 0 <= alpha <= 1:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    saliency = np.asarray(saliency)
    if saliency.shape != image.shape[:2]:
        raise ValueError(f"saliency has shape {saliency.shape} but the photo is {image.shape[:2]}; pass the photo the explanation was computed on")
    v = scale_saliency(saliency)
    blend = (1 - alpha) * image.astype(np.float32) + alpha * jet(v).astype(np.float32)
    return np.where((v >= threshold)[..., None], np.rint(blend), image).astype(np.uint8)


def _panel(image: np.ndarray, saliency: np.ndarray | None, height: int, alpha: float, threshold: float) -> tuple[Image.Image, float]:
    img = overlay_saliency(image, saliency, alpha, threshold) if saliency is not None else image
    scale = height / image.shape[0]
    w = max(1, round(image.shape[1] * scale))
    return Image.fromarray(img).resize((w, height), Image.Resampling.BILINEAR), scale


def render_match(
    query_image: np.ndarray,
    match_image: np.ndarray,
    explanation: MatchExplanation,
    *,
    height: int = 320,
    alpha: float = 0.5,
    threshold: float = THRESHOLD,
    top_words: int = 5,
    gap: int = 12,
    caption: bool = True,
    legend: bool = True,
) -> np.ndarray:
    """Query (left) and match (right) with saliency overlays and the top shared words.

    ``query_image``/``match_image`` are the photos the explanation was computed on.

    >>> from prodlens.data.types import OcrToken
    >>> from prodlens.match.attributes import WordAttribution
    >>> from prodlens.match.words import WordMatch
    >>> t = OcrToken("OATLY", (2, 2, 12, 8))
    >>> w = WordAttribution(WordMatch("oatly", (t,), (t,), 1.0), 0.1, 0.05, 0.12)
    >>> e = MatchExplanation("q", "m", 0.9, "fused", "rise", np.ones((20, 20)), None, (w,), None, None, (t,), (t,))
    >>> img = np.zeros((20, 20, 3), np.uint8)
    >>> out = render_match(img, img, e, height=64)
    >>> out.dtype, out.shape[2], out.shape[0] > 64
    (dtype('uint8'), 3, True)
    """
    query_image = check_rgb(query_image, "query_image")
    match_image = check_rgb(match_image, "match_image")
    if height < 16:
        raise ValueError(f"height must be >= 16 px, got {height}")
    if top_words < 0:
        raise ValueError(f"top_words must be >= 0, got {top_words}")
    q_panel, q_scale = _panel(query_image, explanation.saliency, height, alpha, threshold)
    m_panel, m_scale = _panel(match_image, explanation.match_saliency, height, alpha, threshold)
    cap_h = max(18, height // 12) if caption else 0
    width = q_panel.width + gap + m_panel.width
    canvas = Image.new("RGB", (width, height + cap_h), (255, 255, 255))
    canvas.paste(q_panel, (0, cap_h))
    mx = q_panel.width + gap
    canvas.paste(m_panel, (mx, cap_h))
    draw = ImageDraw.Draw(canvas)
    font = _font(max(9, height // 24))
    lw = max(2, height // 160)
    for rank, att in enumerate(explanation.words[:top_words]):
        colour = WORD_COLOURS[rank % len(WORD_COLOURS)]
        centres = []
        for toks, scale, ox in ((att.match.query_tokens, q_scale, 0), (att.match.match_tokens, m_scale, mx)):
            for t in toks:
                x0, y0, x1, y1 = (v * scale for v in t.box)
                box = [ox + x0, cap_h + y0, ox + max(x0, x1 - 1), cap_h + max(y0, y1 - 1)]
                draw.rectangle(box, outline=colour, width=lw)
                draw.text((box[0], box[1] - 1), str(rank + 1), fill=colour, font=font, anchor="lb")
            t0 = toks[0]
            centres.append((ox + (t0.box[0] + t0.box[2]) / 2 * scale, cap_h + (t0.box[1] + t0.box[3]) / 2 * scale))
        draw.line(centres, fill=colour, width=max(1, lw // 2))
    if caption:
        text = f"similarity {explanation.similarity:.3f} ({explanation.kind}, {explanation.method})"
        if explanation.deletion is not None:
            text += f" | deletion AUC {explanation.deletion.auc:.3f} vs random {explanation.deletion.random_auc:.3f}"
        if explanation.words:
            text += " | " + ", ".join(f"{i + 1}:{w.word}" for i, w in enumerate(explanation.words[:top_words]))
        cap_font = _font(max(9, cap_h - 6))
        while len(text) > 4 and draw.textlength(text, font=cap_font) > width - 8:
            text = text.removesuffix("...")[:-1] + "..."
        draw.text((4, cap_h // 2), text, fill=(0, 0, 0), font=cap_font, anchor="lm")
    out = np.asarray(canvas)
    if legend and (explanation.saliency is not None or explanation.match_saliency is not None):
        from prodlens.viz.render import colorbar

        bar = np.full((out.shape[0], 56, 3), 255, np.uint8)
        bar[cap_h:] = colorbar(height, threshold=threshold)
        out = np.concatenate([out, bar], axis=1)
    return out
