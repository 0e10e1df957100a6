"""Explanation -> images (JET overlays, coloured OCR boxes, legends, quality plots); no UI code.

>>> from prodlens.viz import jet
>>> jet(1.0).tolist()
[128, 0, 0]
"""

from prodlens.viz.colormap import jet
from prodlens.viz.quality import quality_curves, score_histogram
from prodlens.viz.render import (
    THRESHOLD,
    ExplanationImages,
    colorbar,
    draw_token_boxes,
    overlay_superpixels,
    render_explanation,
    save_pngs,
    summary_figure,
    with_colorbar,
)
from prodlens.viz.scores import JointScores, joint_scores

__all__ = [
    "THRESHOLD",
    "ExplanationImages",
    "JointScores",
    "colorbar",
    "draw_token_boxes",
    "jet",
    "joint_scores",
    "overlay_superpixels",
    "quality_curves",
    "render_explanation",
    "save_pngs",
    "score_histogram",
    "summary_figure",
    "with_colorbar",
]
