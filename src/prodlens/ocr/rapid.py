"""Offline OCR with RapidOCR (PP-OCRv4 det + rec models run by onnxruntime, CPU only).

:class:`RapidOcrEngine` adapts ``rapidocr_onnxruntime`` to :class:`~prodlens.ocr.base.OcrEngine`:

* it takes an RGB image (what :func:`prodlens.data.images.load_image` returns) and
  flips it to BGR, because RapidOCR treats an ``ndarray`` input as BGR;
* with ``upscale != 1`` the image is resized before OCR (small text on 348-pixel
  product photos is read better at 2x) and the quads are divided back, so lines are
  always in pixels of the original image;
* a photo whose longer side (after ``upscale``) exceeds ``max_side`` (default 2048 px)
  is shrunk to it first, so a phone photo costs what a 2 MP one does (RapidOCR's
  detector works at 2000 px at most anyway); quads are mapped back the same way;
* the RapidOCR object is built on first use, and is not pickled, so the engine is
  cheap to create and to ship to worker processes;
* RapidOCR's own defaults are kept (including its ``text_score=0.5`` line filter);
  the cache key ``rapidocr_onnxruntime-{version}_x{upscale}`` stands for them.
  Thread counts change speed only, so they are not part of the key.
"""

from __future__ import annotations

import importlib.metadata
import logging
import os
from typing import Any

import numpy as np

from prodlens.ocr.base import Line

log = logging.getLogger(__name__)

PACKAGE = "rapidocr_onnxruntime"

#: Default ``max_side``: longer side, in pixels, of the copy a large photo is read from.
MAX_SIDE = 2048


def _package_version() -> str:
    try:
        return importlib.metadata.version(PACKAGE)
    except importlib.metadata.PackageNotFoundError:
        raise ImportError(
            f"{PACKAGE} is not installed; install it with `pip install {PACKAGE}==1.4.4` to run offline OCR"
        ) from None


class RapidOcrEngine:
    """RapidOCR behind the :class:`~prodlens.ocr.base.OcrEngine` protocol.

    Args:
        upscale: resize factor applied before OCR (``> 0``; ``1.0`` = as is).
        threads: onnxruntime intra-op threads per model; ``None`` lets onnxruntime
            use every core. Values above the core count are capped.
        max_side: read larger photos from a copy whose longer side is this many
            pixels (``None``: never shrink). Part of the cache key when not the default.

    >>> eng = RapidOcrEngine(upscale=2)
    >>> eng.key
    'rapidocr_onnxruntime-1.4.4_x2.0'
    >>> RapidOcrEngine(upscale=0)
    Traceback (most recent call last):
    ...
    ValueError: upscale must be a number > 0 (1.0 = no resizing), got 0
    """

    def __init__(self, upscale: float = 1.0, threads: int | None = None, max_side: int | None = MAX_SIDE) -> None:
        if not isinstance(upscale, (int, float)) or isinstance(upscale, bool) or not upscale > 0:
            raise ValueError(f"upscale must be a number > 0 (1.0 = no resizing), got {upscale!r}")
        if threads is not None and (not isinstance(threads, int) or threads < 1):
            raise ValueError(f"threads must be None (all cores) or an int >= 1, got {threads!r}")
        if max_side is not None and (not isinstance(max_side, int) or max_side < 32):
            raise ValueError(f"max_side must be None (never shrink) or an int >= 32 pixels, got {max_side!r}")
        self.upscale = float(upscale)
        self.threads = threads
        self.max_side = max_side
        self.key = f"{PACKAGE}-{_package_version()}_x{self.upscale}" + ("" if max_side == MAX_SIDE else f"_max{max_side}")
        self._ocr: Any = None

    def __repr__(self) -> str:
        side = "" if self.max_side == MAX_SIDE else f", max_side={self.max_side}"
        return f"RapidOcrEngine(upscale={self.upscale}, threads={self.threads}{side})"

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state["_ocr"] = None  # onnxruntime sessions are rebuilt in the receiving process
        return state

    def with_threads(self, threads: int) -> RapidOcrEngine:
        """A fresh (not yet loaded) engine with the same options and ``threads`` threads.

        >>> RapidOcrEngine().with_threads(1)
        RapidOcrEngine(upscale=1.0, threads=1)
        """
        return RapidOcrEngine(self.upscale, threads, self.max_side)

    def _engine(self) -> Any:
        if self._ocr is None:
            from rapidocr_onnxruntime import RapidOCR

            kwargs: dict[str, int] = {}
            if self.threads is not None:
                kwargs = {
                    "intra_op_num_threads": min(self.threads, os.cpu_count() or 1),
                    "inter_op_num_threads": 1,
                }
            log.debug("loading RapidOCR models (%s)", kwargs or "default threads")
            self._ocr = RapidOCR(**kwargs)
        return self._ocr

    def read_lines(self, image: np.ndarray) -> list[Line]:
        """OCR an RGB ``uint8`` image; quads are in its pixel coordinates.

        >>> RapidOcrEngine().read_lines(np.full((40, 60, 3), 255, np.uint8))
        []
        """
        if not isinstance(image, np.ndarray) or image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
            got = f"{image.dtype} array of shape {image.shape}" if isinstance(image, np.ndarray) else type(image).__name__
            raise ValueError(f"image must be a uint8 RGB array of shape (H, W, 3) (see load_image), got {got}")
        h, w = image.shape[:2]
        bgr = image[:, :, ::-1]
        factor = self.upscale
        if self.max_side is not None and max(h, w) * factor > self.max_side:
            factor = self.max_side / max(h, w)
        if factor != 1.0:
            import cv2

            size = (max(1, round(w * factor)), max(1, round(h * factor)))
            interp = cv2.INTER_CUBIC if factor > 1 else cv2.INTER_AREA
            bgr = cv2.resize(bgr, size, interpolation=interp)
        result, _elapse = self._engine()(np.ascontiguousarray(bgr))
        lines: list[Line] = []
        for quad, text, score in result or []:
            pts = np.asarray(quad, dtype=np.float64).reshape(4, 2)
            if factor != 1.0:
                pts = pts / factor
                pts[:, 0] = pts[:, 0].clip(0, w)
                pts[:, 1] = pts[:, 1].clip(0, h)
            lines.append(Line(quad=pts.tolist(), text=str(text), score=float(score)))
        return lines
