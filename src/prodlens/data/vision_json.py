"""Import OCR results from Google Cloud Vision (``TEXT_DETECTION`` JSON responses).

Accepted shapes, one image per file::

    {"textAnnotations": [{"locale": "sv", "description": "Arla\\nLAKTOSFRI\\n", ...},
                         {"description": "Arla", "boundingPoly": {"vertices": [{"x": 194, "y": 96}, ...]}},
                         ...]}
    {"responses": [{"textAnnotations": [...]}]}          # the batch/REST wrapper

* The first annotation is always the whole text block and is skipped; the others
  are words and become :class:`~prodlens.data.types.OcrToken`.
* ``vertices`` are pixels; a missing ``x`` or ``y`` means 0, as in the Vision API.
  ``normalizedVertices`` (0..1) need the image size, which :func:`attach_vision_json`
  reads from the image header.
* ``score`` is 1.0 unless the annotation has ``score`` or ``confidence``.
* A response without ``textAnnotations`` means the image has no text (empty tokens);
  a response with ``error`` and anything of the wrong shape raise
  :class:`~prodlens.errors.BadInputError` naming the file.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, NamedTuple

from PIL import Image
from tqdm.auto import tqdm

from prodlens.data.images import image_opens
from prodlens.data.manifest import Dataset
from prodlens.data.types import OcrToken, ProductSample
from prodlens.errors import BadInputError, skip_lines

log = logging.getLogger(__name__)

EXPECTED = (
    'expected a Vision API response {"textAnnotations": [{"description": str, '
    '"boundingPoly": {"vertices": [{"x": int, "y": int}, ...]}}, ...]}, optionally wrapped in {"responses": [...]}'
)


def _response(data: Any, where: str) -> Mapping:
    if isinstance(data, Mapping) and "responses" in data:
        responses = data["responses"]
        if not isinstance(responses, Sequence) or isinstance(responses, str) or len(responses) != 1:
            n = len(responses) if isinstance(responses, Sequence) else type(responses).__name__
            raise BadInputError(where, f'"responses" must be a list with one response per file, got {n}', EXPECTED)
        data = responses[0]
    if not isinstance(data, Mapping):
        raise BadInputError(where, f"top level is a {type(data).__name__}, not a JSON object", EXPECTED)
    if "error" in data:
        err = data["error"]
        msg = err.get("message", err) if isinstance(err, Mapping) else err
        raise BadInputError(where, f"the Vision API returned an error ({msg})", "re-run the request for this image")
    return data


def _point(v: Any, where: str, scale: tuple[float, float]) -> tuple[float, float]:
    if not isinstance(v, Mapping):
        raise BadInputError(where, f"a vertex must be an object {{'x': .., 'y': ..}}, got {v!r}", EXPECTED)
    try:
        return float(v.get("x", 0)) * scale[0], float(v.get("y", 0)) * scale[1]
    except (TypeError, ValueError):
        raise BadInputError(where, f"vertex coordinates must be numbers, got {v!r}", EXPECTED) from None


def _token(ann: Any, where: str, image_size: tuple[int, int] | None) -> OcrToken | None:
    if not isinstance(ann, Mapping) or not isinstance(ann.get("description"), str):
        raise BadInputError(where, f"an annotation needs a string 'description', got {ann!r:.120}", EXPECTED)
    text = ann["description"].strip()
    poly = ann.get("boundingPoly")
    if not isinstance(poly, Mapping):
        raise BadInputError(where, f"annotation {text!r} has no 'boundingPoly' object", EXPECTED)
    if poly.get("vertices"):
        vertices, scale = poly["vertices"], (1.0, 1.0)
    elif poly.get("normalizedVertices"):
        if image_size is None:
            raise BadInputError(
                where, f"annotation {text!r} uses normalizedVertices", "pass image_size=(width, height) to convert them"
            )
        vertices, scale = poly["normalizedVertices"], (float(image_size[0]), float(image_size[1]))
    else:
        raise BadInputError(where, f"annotation {text!r} has no vertices or normalizedVertices", EXPECTED)
    if not isinstance(vertices, Sequence) or isinstance(vertices, str):
        raise BadInputError(where, f"vertices of {text!r} must be a list, got {vertices!r:.80}", EXPECTED)
    pts = [_point(v, where, scale) for v in vertices]
    if not text:
        return None
    xs, ys = [p[0] for p in pts], [p[1] for p in pts]
    score = ann.get("score", ann.get("confidence", 1.0))
    quad = tuple(pts) if len(pts) == 4 else None
    return OcrToken(text, (min(xs), min(ys), max(xs), max(ys)), float(score), quad)  # type: ignore[arg-type]


def parse_vision_json(
    data: Any, *, image_size: tuple[int, int] | None = None, source: str | Path = "<vision json>"
) -> list[OcrToken]:
    """Word tokens from one parsed Vision response (``source`` names it in errors).

    >>> resp = {"textAnnotations": [
    ...     {"locale": "sv", "description": "Arla\\nLAKTOSFRI"},
    ...     {"description": "Arla", "boundingPoly": {"vertices": [{"x": 194, "y": 96}, {"x": 223, "y": 96},
    ...                                                          {"x": 223, "y": 111}, {"y": 111}]}}]}
    >>> parse_vision_json(resp)[0].box
    (0.0, 96.0, 223.0, 111.0)
    >>> parse_vision_json({"responses": [{}]})
    []
    >>> parse_vision_json([1, 2], source="x.json")
    Traceback (most recent call last):
    ...
    prodlens.errors.BadInputError: x.json: top level is a list, not a JSON object. expected a Vision API response {"textAnnotations": [{"description": str, "boundingPoly": {"vertices": [{"x": int, "y": int}, ...]}}, ...]}, optionally wrapped in {"responses": [...]}
    """
    where = str(source)
    resp = _response(data, where)
    anns = resp.get("textAnnotations", [])
    if not isinstance(anns, Sequence) or isinstance(anns, str):
        raise BadInputError(where, f'"textAnnotations" must be a list, got {type(anns).__name__}', EXPECTED)
    tokens = [_token(a, where, image_size) for a in anns[1:]]  # [0] is the whole text block
    return [t for t in tokens if t is not None]


def _load(path: Path) -> tuple[Any, str]:
    try:
        text = path.read_text(encoding="utf-8")
        return json.loads(text), text
    except FileNotFoundError:
        raise BadInputError(path, "Vision JSON file not found", "check the folder passed to import-vision") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise BadInputError(path, f"not valid JSON ({e})", "re-download the Vision API response") from None


def read_vision_json(path: str | Path, *, image_size: tuple[int, int] | None = None) -> list[OcrToken]:
    """Read one Vision JSON file into word tokens.

    >>> import tempfile, pathlib
    >>> p = pathlib.Path(tempfile.mkdtemp()) / "a.json"
    >>> _ = p.write_text('{"textAnnotations": []}')
    >>> read_vision_json(p)
    []
    """
    path = Path(path)
    data, _ = _load(path)
    return parse_vision_json(data, image_size=image_size, source=path)


def image_size(path: str | Path) -> tuple[int, int]:
    """``(width, height)`` of an image as :func:`~prodlens.data.images.load_image` returns it
    (EXIF rotation applied), read from the header only.

    >>> import tempfile, pathlib
    >>> p = pathlib.Path(tempfile.mkdtemp()) / "a.png"
    >>> Image.new("RGB", (6, 4)).save(p)
    >>> image_size(p)
    (6, 4)
    """
    path = Path(path)
    try:
        with Image.open(path) as img:
            w, h = img.size
            if img.getexif().get(0x0112) in (5, 6, 7, 8):  # rotated by 90 degrees on load
                w, h = h, w
            return w, h
    except (OSError, SyntaxError, ValueError) as e:
        raise BadInputError(path, f"cannot read the image header ({e})", "re-export it as JPEG or PNG") from None


@dataclass(frozen=True)
class VisionImportReport:
    """What :func:`attach_vision_json` did."""

    images: int
    attached: int
    words: int
    skipped: tuple[tuple[str, str], ...]

    def summary(self) -> str:
        """A few human-readable lines, e.g. for the CLI.

        >>> print(VisionImportReport(2, 1, 4, (("b.jpg", "no JSON file named b.json in vision"),)).summary())
        Vision import: 2 images, 1 with JSON (4 words), 1 skipped
          skipped b.jpg: no JSON file named b.json in vision
        """
        out = [f"Vision import: {self.images} images, {self.attached} with JSON ({self.words} words), "
               f"{len(self.skipped)} skipped"]
        return "\n".join(out + skip_lines(self.skipped))


class VisionImport(NamedTuple):
    """The result of :func:`attach_vision_json`."""

    dataset: Dataset
    report: VisionImportReport


def _json_index(json_dir: Path) -> dict[str, list[Path]]:
    index: dict[str, list[Path]] = {}
    for p in sorted(json_dir.rglob("*.json")):
        keys = {p.stem}
        if Path(p.stem).suffix:  # "photo.jpg.json" also matches the stem "photo"
            keys.add(Path(p.stem).stem)
        for k in keys:
            index.setdefault(k, []).append(p)
    return index


def _find_json(s: ProductSample, root: Path | None, json_dir: Path, index: dict[str, list[Path]]) -> Path | str:
    """The JSON file of a sample, or a reason why there is none."""
    if root is not None:  # a tree that mirrors the dataset's image folders wins
        try:
            rel = s.image_path.resolve().relative_to(root.resolve())
            for cand in (json_dir / rel.with_suffix(".json"), json_dir / rel.with_name(rel.name + ".json")):
                if cand.is_file():
                    return cand
        except ValueError:
            pass
    for key in (s.image_path.stem, s.id):
        found = index.get(key, [])
        if len(found) == 1:
            return found[0]
        if len(found) > 1:
            return f"{len(found)} JSON files match {key!r} ({found[0].name}, ...); mirror the image folders to disambiguate"
    return f"no JSON file named {s.image_path.stem}.json in {json_dir}"


def attach_vision_json(dataset: Dataset, json_dir: str | Path, *, progress: bool = True) -> VisionImport:
    """Attach Vision OCR JSON files (matched by image file stem) to ``dataset``'s samples.

    A JSON file matches a sample when it sits at the image's relative path under
    ``json_dir`` (``photo.json`` or ``photo.jpg.json``), or anywhere under ``json_dir``
    with the image's stem or the sample id as its name. Samples without a JSON file (or
    with an unreadable one) keep their tokens and are listed in ``report.skipped``, as
    are those whose photo does not open (checked cheaply, without decoding it).

    >>> import tempfile, pathlib, json
    >>> from prodlens.data.types import ClassList
    >>> tmp = pathlib.Path(tempfile.mkdtemp()); Image.new("RGB", (9, 6)).save(tmp / "a.jpg")
    >>> word = {"description": "OATLY", "boundingPoly": {"vertices": [{"x": 1, "y": 1}, {"x": 9, "y": 1},
    ...                                                              {"x": 9, "y": 5}, {"x": 1, "y": 5}]}}
    >>> _ = (tmp / "a.json").write_text(json.dumps({"textAnnotations": [{"description": "OATLY"}, word]}))
    >>> ds = Dataset([ProductSample("a", tmp / "a.jpg", "oat"), ProductSample("b", tmp / "b.jpg", "oat")],
    ...              ClassList.from_names(["oat"]))
    >>> out, report = attach_vision_json(ds, tmp, progress=False)
    >>> out.samples[0].text, out.samples[1].ocr_tokens, report.attached, len(report.skipped)
    ('OATLY', None, 1, 1)
    """
    json_dir = Path(json_dir)
    if not json_dir.is_dir():
        raise BadInputError(json_dir, "Vision JSON folder not found", "pass the folder holding one .json per image")
    index = _json_index(json_dir)
    samples = list(dataset.samples)
    skipped: list[tuple[str, str]] = []
    bad_photos: list[tuple[str, str]] = []
    attached = words = 0
    for i, s in enumerate(tqdm(samples, desc="Vision JSON", unit="img", disable=not progress)):
        found = _find_json(s, dataset.root, json_dir, index)
        if not isinstance(found, str) and not image_opens(s.image_path, bad_photos):
            found = bad_photos[-1][1].removeprefix(f"{s.image_path}: ")
        if isinstance(found, str):
            skipped.append((str(s.image_path), found))
            continue
        try:
            data, text = _load(found)
            size = image_size(s.image_path) if "normalizedVertices" in text else None
            tokens = parse_vision_json(data, image_size=size, source=found)
        except BadInputError as e:
            log.warning("skipping %s", e)
            skipped.append((str(s.image_path), str(e)))
            continue
        samples[i] = s.with_tokens(tokens)
        attached += 1
        words += len(tokens)
    report = VisionImportReport(len(samples), attached, words, tuple(skipped))
    log.info("%s", report.summary())
    return VisionImport(replace(dataset, samples=samples), report)
