"""load_image on the photos users really have: odd modes, broken files, huge images."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from prodlens.data.images import load_image
from prodlens.data.sample import sample_dir
from prodlens.errors import BadInputError

REAL_JPEG = sample_dir() / "images" / "train" / "Arla-Lactose-Medium-Fat-Milk_001.jpg"


def _png(width: int, height: int, bit_depth: int, color_type: int, raw: bytes) -> bytes:
    """A hand-made PNG: lets a test declare any size or depth without allocating the pixels."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", width, height, bit_depth, color_type, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")


def _save(tmp_path: Path, name: str, img: Image.Image, **kw) -> Path:
    p = tmp_path / name
    img.save(p, **kw)
    return p


# --------------------------------------------------------------------------- good files, odd modes


def test_real_jpeg_is_uint8_rgb():
    arr = load_image(REAL_JPEG)
    assert arr.shape == (348, 348, 3) and arr.dtype == np.uint8


@pytest.mark.parametrize(
    ("mode", "color", "expected"),
    [
        ("L", 128, [128, 128, 128]),
        ("1", 1, [255, 255, 255]),
        ("RGB", (10, 20, 30), [10, 20, 30]),
        ("RGBA", (255, 0, 0, 255), [255, 0, 0]),
        ("RGBA", (255, 0, 0, 0), [255, 255, 255]),  # fully transparent -> white background
        ("RGBA", (255, 0, 0, 128), [255, 127, 127]),  # half transparent red on white
        ("LA", (0, 0), [255, 255, 255]),
        ("LA", (0, 255), [0, 0, 0]),
    ],
)
def test_modes_become_rgb_with_alpha_on_white(tmp_path, mode, color, expected):
    arr = load_image(_save(tmp_path, "x.png", Image.new(mode, (5, 3), color)))
    assert arr.shape == (3, 5, 3) and arr.dtype == np.uint8
    assert arr[1, 2].tolist() == expected


def test_palette_with_transparency(tmp_path):
    img = Image.new("P", (4, 4), 1)
    img.putpalette([0, 0, 0, 255, 0, 0] + [0] * 762)
    img.paste(0, (0, 0, 2, 4))
    arr = load_image(_save(tmp_path, "p.png", img, transparency=1))
    assert arr[0, 0].tolist() == [0, 0, 0] and arr[0, 3].tolist() == [255, 255, 255]


def test_cmyk_jpeg(tmp_path):
    arr = load_image(_save(tmp_path, "c.jpg", Image.new("CMYK", (8, 8), (0, 255, 255, 0))))
    r, g, b = arr[4, 4].tolist()
    assert r > 240 and g < 15 and b < 15


@pytest.mark.parametrize(("value", "expected"), [(0, 0), (32768, 128), (65535, 255), (1000, 4)])
def test_16bit_grey_uses_the_full_16bit_range(tmp_path, value, expected):
    p = _save(tmp_path, "g16.png", Image.fromarray(np.full((4, 6), value, np.uint16)))
    assert Image.open(p).mode.startswith("I")
    arr = load_image(p)
    assert arr.shape == (4, 6, 3) and arr.dtype == np.uint8
    assert arr[0, 0].tolist() == [expected] * 3


def test_16bit_rgba_png(tmp_path):
    w, h = 4, 2
    row = b"\x00" + struct.pack(">" + "H" * 4 * w, *([65535, 0, 0, 65535] * w))
    p = tmp_path / "rgba16.png"
    p.write_bytes(_png(w, h, 16, 6, row * h))
    arr = load_image(p)
    assert arr.shape == (2, 4, 3) and arr[0, 0].tolist() == [255, 0, 0]


def test_float_tiff_in_0_1(tmp_path):
    p = _save(tmp_path, "f.tif", Image.fromarray(np.full((3, 3), 0.5, np.float32)))
    assert load_image(p)[0, 0].tolist() == [128, 128, 128]


def test_exif_rotation_is_applied(tmp_path):
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise on display
    p = _save(tmp_path, "rot.jpg", Image.new("RGB", (6, 4), (200, 0, 0)), exif=exif)
    assert load_image(p).shape == (6, 4, 3)


# --------------------------------------------------------------------------- bad files


def test_missing_file(tmp_path):
    with pytest.raises(BadInputError, match=r"nope\.jpg: image file not found\. check the path"):
        load_image(tmp_path / "nope.jpg")


def test_directory_is_not_an_image(tmp_path):
    with pytest.raises(BadInputError, match="image file not found"):
        load_image(tmp_path)


@pytest.mark.parametrize("content", [b"", b"hello, not an image", b"\xff\xd8\xff" + b"\x00" * 10], ids=["empty", "text", "jpeg-magic"])
def test_unreadable_bytes(tmp_path, content):
    p = tmp_path / "bad.jpg"
    p.write_bytes(content)
    with pytest.raises(BadInputError, match=r"bad\.jpg: (not a readable image|image is corrupt or truncated)"):
        load_image(p)


@pytest.mark.parametrize("keep", [0.5, 0.05])
def test_truncated_jpeg(tmp_path, keep):
    data = REAL_JPEG.read_bytes()
    p = tmp_path / "cut.jpg"
    p.write_bytes(data[: int(len(data) * keep)])
    with pytest.raises(BadInputError, match=r"cut\.jpg: image is corrupt or truncated .*re-download or re-export"):
        load_image(p)


def test_corrupt_png_data(tmp_path):
    p = tmp_path / "broken.png"
    p.write_bytes(_png(40, 40, 8, 2, b"\x00" * 10))  # header says 40x40 RGB, data holds 10 bytes
    with pytest.raises(BadInputError, match=r"broken\.png: image is corrupt or truncated"):
        load_image(p)


def test_image_over_max_pixels_is_refused_before_decoding(tmp_path):
    p = _save(tmp_path, "big.png", Image.new("RGB", (40, 40)))
    with pytest.raises(BadInputError, match=r"big\.png: image is 40x40 = 0\.0016 MP, above the 0\.0015 MP limit\. downscale"):
        load_image(p, max_pixels=1500)
    assert load_image(p, max_pixels=1600).shape == (40, 40, 3)


def test_a_108_megapixel_phone_photo_is_not_refused_below_max_pixels(tmp_path):
    # 12000 x 9000 header with almost no data: must get past the size checks (and then fail as truncated)
    p = tmp_path / "phone.png"
    p.write_bytes(_png(12000, 9000, 8, 0, b"\x00" * 10))
    with pytest.raises(BadInputError, match="corrupt or truncated"):
        load_image(p)
    with pytest.raises(BadInputError, match=r"image is 12000x9000 = 108 MP, above the 100 MP limit"):
        load_image(p, max_pixels=100_000_000)


def test_decompression_bomb_is_refused(tmp_path):
    p = tmp_path / "bomb.png"
    p.write_bytes(_png(20000, 20000, 8, 0, b"\x00" * 10))
    with pytest.raises(BadInputError, match=r"bomb\.png: image is (20000x20000 = 400 MP, above|above Pillow's hard limit)"):
        load_image(p)
    with pytest.raises(BadInputError, match=r"bomb\.png: image is above Pillow's hard limit of 179 MP"):
        load_image(p, max_pixels=10**12)


def test_unreadable_permissions_are_named(tmp_path, monkeypatch):
    p = _save(tmp_path, "locked.png", Image.new("RGB", (4, 4)))

    def deny(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(Image, "open", deny)
    with pytest.raises(BadInputError, match=r"locked\.png: no permission to read the image"):
        load_image(p)
