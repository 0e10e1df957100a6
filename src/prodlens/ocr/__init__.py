"""Offline OCR: the engine protocol, the RapidOCR adapter, the cache, the script filter and the dataset runner.

>>> from prodlens.ocr import RapidOcrEngine, run_ocr
>>> RapidOcrEngine().key
'rapidocr_onnxruntime-1.4.4_x1.0'
"""

from prodlens.ocr.base import FixedOcrEngine, Line, OcrEngine, ThreadLimitable, validate_lines
from prodlens.ocr.cache import OcrCache, file_sha256
from prodlens.ocr.rapid import RapidOcrEngine
from prodlens.ocr.scripts import PRESETS, ScriptFilter, ScriptFilterReport, filter_dataset, resolve_filter
from prodlens.ocr.runner import DEFAULT_MIN_SCORE, OcrReport, OcrRun, default_cache_dir, ocr_image, run_ocr
from prodlens.ocr.words import line_to_words, lines_to_words

__all__ = [
    "DEFAULT_MIN_SCORE",
    "FixedOcrEngine",
    "Line",
    "OcrCache",
    "OcrEngine",
    "OcrReport",
    "OcrRun",
    "PRESETS",
    "RapidOcrEngine",
    "ScriptFilter",
    "ScriptFilterReport",
    "ThreadLimitable",
    "default_cache_dir",
    "file_sha256",
    "filter_dataset",
    "line_to_words",
    "lines_to_words",
    "ocr_image",
    "resolve_filter",
    "run_ocr",
    "validate_lines",
]
