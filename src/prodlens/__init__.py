"""prodlens: explain multimodal (image + OCR text) product-recognition models.

The package is organised so that data flows one way::

    data -> ocr -> models -> train -> explain -> aggregate -> match -> store
    viz depends only on result types; cli and app sit on top.
"""

from prodlens.errors import BadInputError, ProdlensError

__all__ = ["BadInputError", "ProdlensError", "__version__"]
__version__ = "0.1.0"
