"""Load any photo a user may have into one canonical form: ``uint8`` RGB ``(H, W, 3)``.

Handles grayscale, palette, CMYK, 16-bit and alpha images (alpha is composited on
white, the usual background of a product photo) and EXIF rotation. Corrupt,
truncated, missing or absurdly large files raise :class:`BadInputError` naming the
file and what to do.
"""

from __future__ import annotations

import contextlib
import logging
import warnings
from dataclasses import replace
from collections.abc import Iterator
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from prodlens.data.manifest import Dataset
from prodlens.errors import BadInputError, Skip, record_skip

log = logging.getLogger(__name__)

#: Refuse images above this many pixels (about 16k x 12k) instead of exhausting memory.
#: Pillow itself refuses anything above ``2 * PIL.Image.MAX_IMAGE_PIXELS`` (about 179 MP).
MAX_PIXELS = 200_000_000


def _to_rgb(img: Image.Image) -> Image.Image:
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        img = img.convert("RGBA")
        background = Image.new("RGBA", img.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, img).convert("RGB")
    if img.mode.startswith("I;16"):  # 16-bit grey: full range is 0..65535
        arr = np.asarray(img, dtype=np.float64) / 257.0
        img = Image.fromarray(np.rint(arr).clip(0, 255).astype(np.uint8))
    elif img.mode == "I":  # 32-bit int: 8- or 16-bit data when it fits, else stretched to its maximum
        arr = np.asarray(img, dtype=np.float64)
        hi = float(arr.max()) if arr.size else 0.0
        if hi > 255:
            arr = arr / (257.0 if hi <= 65535 else hi / 255.0)
        img = Image.fromarray(np.rint(arr).clip(0, 255).astype(np.uint8))
    elif img.mode == "F":  # float: 0..1 when it fits, else 0..255
        arr = np.asarray(img, dtype=np.float64)
        arr = arr * 255.0 if arr.size and np.nanmax(arr) <= 1.0 else arr
        img = Image.fromarray(np.rint(np.nan_to_num(arr)).clip(0, 255).astype(np.uint8))
    return img.convert("RGB")


def _megapixels(n: int) -> str:
    return f"{n / 1e6:.3g} MP"


def _check_size(path: Path, size: tuple[int, int], max_pixels: int) -> None:
    w, h = size
    if w * h > max_pixels:
        raise BadInputError(
            path,
            f"image is {w}x{h} = {_megapixels(w * h)}, above the {_megapixels(max_pixels)} limit",
            "downscale it (product photos need well under 10 MP) or raise max_pixels",
        )


@contextlib.contextmanager
def _reading(path: Path) -> Iterator[None]:
    """Turn whatever Pillow raises while reading ``path`` into a :class:`BadInputError`."""
    if not path.is_file():
        raise BadInputError(path, "image file not found", "check the path in the manifest or re-import the dataset")
    try:
        with warnings.catch_warnings():
            # max_pixels is the limit; Pillow's own warning (at ~89 MP) would refuse 100 MP phone photos
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            yield
    except BadInputError:
        raise
    except Image.DecompressionBombError as e:
        raise BadInputError(
            path, f"image is above Pillow's hard limit of {_megapixels(2 * Image.MAX_IMAGE_PIXELS)} ({e})", "downscale it"
        ) from None
    except PermissionError:
        raise BadInputError(path, "no permission to read the image", "fix the file's permissions") from None
    except UnidentifiedImageError:
        raise BadInputError(path, "not a readable image (unknown or corrupt format)", "re-export it as JPEG or PNG") from None
    except (OSError, SyntaxError, ValueError) as e:
        raise BadInputError(path, f"image is corrupt or truncated ({e})", "re-download or re-export the file") from None


def load_image(path: str | Path, max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """Read ``path`` as a ``uint8`` RGB array of shape ``(H, W, 3)``.

    >>> import tempfile, pathlib
    >>> p = pathlib.Path(tempfile.mkdtemp()) / "g.png"
    >>> Image.new("L", (4, 3), 128).save(p)
    >>> load_image(p).shape
    (3, 4, 3)
    """
    path = Path(path)
    with _reading(path):
        with Image.open(path) as img:
            _check_size(path, img.size, max_pixels)
            img.load()
            img = ImageOps.exif_transpose(img)
            rgb = _to_rgb(img)
    arr = np.asarray(rgb, dtype=np.uint8)
    if arr.ndim != 3 or arr.shape[2] != 3 or arr.shape[0] == 0 or arr.shape[1] == 0:
        raise BadInputError(path, f"decoded to an unusable shape {arr.shape}", "re-export it as an RGB JPEG or PNG")
    return arr


def load_or_skip(path: str | Path, skipped: list[Skip], item: str | None = None) -> np.ndarray | None:
    """:func:`load_image`, or ``None`` after logging the problem and adding it to ``skipped``.

    What code that walks a dataset calls, so that one bad photo never stops the rest.

    >>> out: list = []
    >>> load_or_skip("gone.jpg", out) is None, out[0][0]
    (True, 'gone.jpg')
    """
    try:
        return load_image(path)
    except BadInputError as e:
        record_skip(skipped, e, item)
        return None


def check_image(path: str | Path, max_pixels: int = MAX_PIXELS) -> None:
    """Raise :class:`BadInputError` unless ``path`` looks like an image :func:`load_image` can read.

    Cheap: it reads the header and lets Pillow ``verify()`` the file (PNG chunk
    checksums, ...) without decoding the pixels, so importers can check every photo.
    A file damaged only deep inside its pixel data passes and is caught (and skipped)
    when a command loads it.

    >>> import tempfile, pathlib
    >>> p = pathlib.Path(tempfile.mkdtemp()) / "bad.jpg"
    >>> _ = p.write_bytes(b"not a jpeg")
    >>> check_image(p)
    Traceback (most recent call last):
    ...
    prodlens.errors.BadInputError: ...bad.jpg: not a readable image (unknown or corrupt format). re-export it as JPEG or PNG
    """
    path = Path(path)
    with _reading(path):
        with Image.open(path) as img:
            _check_size(path, img.size, max_pixels)
            img.verify()


def image_opens(path: str | Path, skipped: list[Skip], item: str | None = None) -> bool:
    """:func:`check_image` for code that walks a dataset: ``False`` after logging the
    problem and adding it to ``skipped``: ``(item, reason)`` as in a report's skips when
    ``item`` is given, else ``(path, whole message)`` as in ``Dataset.skipped``.

    >>> out: list = []
    >>> image_opens("gone.jpg", out, "s1"), out[0][0]
    (False, 's1')
    """
    try:
        check_image(path)
    except BadInputError as e:
        if item is not None:
            record_skip(skipped, e, item)
        else:
            log.warning("skipping %s", e)
            skipped.append((e.path, str(e)))
        return False
    return True


def openable(ds: Dataset, skipped: list[Skip]) -> Dataset:
    """The samples of ``ds`` whose photo opens (:func:`image_opens`, cheap); each other one
    goes to ``skipped`` as ``(file, reason)``.

    >>> from prodlens.data.types import ClassList, ProductSample
    >>> out: list = []
    >>> len(openable(Dataset([ProductSample("s1", "gone.jpg", "a")], ClassList.from_names(["a"])), out)), out[0][0]
    (0, 'gone.jpg')
    """
    return replace(ds, samples=[s for s in ds.samples if image_opens(s.image_path, skipped, str(s.image_path))])
