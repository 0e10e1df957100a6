"""Load any photo a user may have into one canonical form: ``uint8`` RGB ``(H, W, 3)``.

Handles grayscale, palette, CMYK, 16-bit and alpha images (alpha is composited on
white, the usual background of a product photo) and EXIF rotation. Corrupt,
truncated, missing or absurdly large files raise :class:`BadInputError` naming the
file and what to do.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from prodlens.errors import BadInputError

#: Refuse images above this many pixels (about 16k x 12k) instead of exhausting memory.
MAX_PIXELS = 200_000_000


def _to_rgb(img: Image.Image) -> Image.Image:
    if img.mode in ("RGBA", "LA") or (img.mode == "P" and "transparency" in img.info):
        img = img.convert("RGBA")
        background = Image.new("RGBA", img.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, img).convert("RGB")
    if img.mode in ("I;16", "I;16B", "I;16L", "I"):
        arr = np.asarray(img, dtype=np.float64)
        hi = arr.max() or 1.0
        img = Image.fromarray((arr / hi * 255).astype(np.uint8))
    return img.convert("RGB")


def load_image(path: str | Path, max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """Read ``path`` as a ``uint8`` RGB array of shape ``(H, W, 3)``.

    >>> import tempfile, pathlib
    >>> p = pathlib.Path(tempfile.mkdtemp()) / "g.png"
    >>> Image.new("L", (4, 3), 128).save(p)
    >>> load_image(p).shape
    (3, 4, 3)
    """
    path = Path(path)
    if not path.is_file():
        raise BadInputError(path, "image file not found", "check the path in the manifest or re-import the dataset")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as img:
                w, h = img.size
                if w * h > max_pixels:
                    raise BadInputError(
                        path,
                        f"image is {w}x{h} = {w * h / 1e6:.0f} MP, above the {max_pixels / 1e6:.0f} MP limit",
                        "downscale it (product photos need well under 10 MP) or raise max_pixels",
                    )
                img.load()
                img = ImageOps.exif_transpose(img)
                rgb = _to_rgb(img)
    except BadInputError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        raise BadInputError(path, f"image is too large to decode safely ({e})", "downscale it") from None
    except UnidentifiedImageError:
        raise BadInputError(path, "not a readable image (unknown or corrupt format)", "re-export it as JPEG or PNG") from None
    except (OSError, SyntaxError, ValueError) as e:
        raise BadInputError(path, f"image is corrupt or truncated ({e})", "re-download or re-export the file") from None
    arr = np.asarray(rgb, dtype=np.uint8)
    if arr.ndim != 3 or arr.shape[2] != 3 or arr.shape[0] == 0 or arr.shape[1] == 0:
        raise BadInputError(path, f"decoded to an unusable shape {arr.shape}", "re-export it as an RGB JPEG or PNG")
    return arr
