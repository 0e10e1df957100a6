"""Frozen types shared by every stage: OCR tokens, product samples, class lists."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

from prodlens._validation import did_you_mean
from prodlens.errors import UnknownClassError

Box = tuple[float, float, float, float]
Quad = tuple[tuple[float, float], tuple[float, float], tuple[float, float], tuple[float, float]]

SPLITS = ("train", "val", "test")


@dataclass(frozen=True)
class OcrToken:
    """One word read off the package.

    ``box`` is the axis-aligned ``(x0, y0, x1, y1)`` in pixels of the original image;
    ``quad`` keeps the four corner points when the engine gives a rotated box.

    >>> t = OcrToken("LAKTOSFRI", (186, 156, 228, 167), 0.97)
    >>> t.center
    (207.0, 161.5)
    """

    text: str
    box: Box
    score: float = 1.0
    quad: Quad | None = None

    def __post_init__(self) -> None:
        x0, y0, x1, y1 = (float(v) for v in self.box)
        if x1 < x0 or y1 < y0:
            raise ValueError(f"OcrToken box must be (x0, y0, x1, y1) with x0<=x1, y0<=y1, got {self.box}")
        object.__setattr__(self, "box", (x0, y0, x1, y1))
        object.__setattr__(self, "score", float(self.score))
        if self.quad is not None:
            object.__setattr__(self, "quad", tuple((float(x), float(y)) for x, y in self.quad))

    @property
    def center(self) -> tuple[float, float]:
        x0, y0, x1, y1 = self.box
        return ((x0 + x1) / 2, (y0 + y1) / 2)

    @property
    def height(self) -> float:
        return self.box[3] - self.box[1]

    def to_dict(self) -> dict:
        d: dict = {"text": self.text, "box": [round(v, 2) for v in self.box], "score": round(self.score, 4)}
        if self.quad is not None:
            d["quad"] = [[round(x, 2), round(y, 2)] for x, y in self.quad]
        return d

    @classmethod
    def from_dict(cls, d: dict) -> OcrToken:
        quad = d.get("quad")
        return cls(
            text=str(d["text"]),
            box=tuple(d["box"]),  # type: ignore[arg-type]
            score=float(d.get("score", 1.0)),
            quad=tuple(tuple(p) for p in quad) if quad else None,  # type: ignore[arg-type]
        )


def reading_order(tokens: Iterable[OcrToken]) -> list[OcrToken]:
    """Sort tokens top-to-bottom in lines, left-to-right inside a line.

    Two tokens are on the same line when their vertical centres differ by less than
    half the smaller token's height.

    >>> a = OcrToken("b", (50, 10, 60, 20)); b = OcrToken("a", (0, 12, 40, 22))
    >>> c = OcrToken("c", (0, 40, 10, 50))
    >>> [t.text for t in reading_order([c, a, b])]
    ['a', 'b', 'c']
    """
    toks = sorted(tokens, key=lambda t: t.center[1])
    lines: list[list[OcrToken]] = []
    for t in toks:
        if lines:
            last = lines[-1]
            ref = sum(x.center[1] for x in last) / len(last)
            tol = 0.5 * min(min(x.height for x in last), t.height) if t.height > 0 else 0
            if abs(t.center[1] - ref) <= max(tol, 1e-6):
                last.append(t)
                continue
        lines.append([t])
    return [t for line in lines for t in sorted(line, key=lambda x: x.box[0])]


@dataclass(frozen=True)
class ProductSample:
    """One photo of a product with its label and the OCR tokens read from it.

    ``ocr_tokens`` is ``None`` while OCR has not been run, and an empty tuple when it
    ran and found no text: the two are different facts.

    >>> s = ProductSample("s1", Path("a.jpg"), "Oatly-Oat-Milk", "train",
    ...                   (OcrToken("OATLY", (0, 0, 10, 5)),))
    >>> s.text
    'OATLY'
    """

    id: str
    image_path: Path
    label: str | None
    split: str = "train"
    ocr_tokens: tuple[OcrToken, ...] | None = None
    meta: dict = field(default_factory=dict, compare=False, hash=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "image_path", Path(self.image_path))
        if self.ocr_tokens is not None:
            object.__setattr__(self, "ocr_tokens", tuple(self.ocr_tokens))

    @property
    def tokens(self) -> tuple[OcrToken, ...]:
        """OCR tokens, or an empty tuple when OCR has not been run."""
        return self.ocr_tokens or ()

    @property
    def text(self) -> str:
        """The OCR words joined in reading order (the text model's input)."""
        return " ".join(t.text for t in reading_order(self.tokens))

    def with_tokens(self, tokens: Sequence[OcrToken]) -> ProductSample:
        return replace(self, ocr_tokens=tuple(tokens))


@dataclass(frozen=True)
class ClassInfo:
    """A product class, optionally with a coarse class and catalogue entries."""

    name: str
    index: int
    coarse: str | None = None
    coarse_index: int | None = None
    iconic_image: Path | None = None
    description: str | None = None

    def to_dict(self) -> dict:
        d = {"name": self.name, "index": self.index}
        if self.coarse is not None:
            d["coarse"] = self.coarse
            d["coarse_index"] = self.coarse_index
        if self.iconic_image is not None:
            d["iconic_image"] = str(self.iconic_image)
        if self.description is not None:
            d["description"] = self.description
        return d

    @classmethod
    def from_dict(cls, d: dict) -> ClassInfo:
        icon = d.get("iconic_image")
        return cls(
            name=d["name"],
            index=int(d["index"]),
            coarse=d.get("coarse"),
            coarse_index=d.get("coarse_index"),
            iconic_image=Path(icon) if icon else None,
            description=d.get("description"),
        )


class ClassList(Sequence[ClassInfo]):
    """Ordered class list with name lookup and helpful errors for unknown names.

    >>> cl = ClassList.from_names(["Oatly-Oat-Milk", "Arla-Standard-Milk"])
    >>> cl.index("Arla-Standard-Milk")
    1
    >>> cl.index("Arla-Standrd-Milk")
    Traceback (most recent call last):
    ...
    prodlens.errors.UnknownClassError: unknown class 'Arla-Standrd-Milk'; did you mean 'Arla-Standard-Milk'? (2 classes known)
    """

    def __init__(self, classes: Iterable[ClassInfo]) -> None:
        self._classes = list(classes)
        self._by_name = {c.name: c for c in self._classes}
        if len(self._by_name) != len(self._classes):
            raise ValueError("class names must be unique")
        for i, c in enumerate(self._classes):
            if c.index != i:
                raise ValueError(f"class {c.name!r} has index {c.index}, expected {i}: indices must be 0..n-1 in order")

    @classmethod
    def from_names(cls, names: Iterable[str]) -> ClassList:
        return cls(ClassInfo(n, i) for i, n in enumerate(names))

    def __getitem__(self, i):  # type: ignore[override]
        return self._classes[i]

    def __len__(self) -> int:
        return len(self._classes)

    def __iter__(self) -> Iterator[ClassInfo]:
        return iter(self._classes)

    def __contains__(self, name: object) -> bool:
        return name in self._by_name

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ClassList) and self._classes == other._classes

    @property
    def names(self) -> list[str]:
        return [c.name for c in self._classes]

    def get(self, name: str) -> ClassInfo:
        try:
            return self._by_name[name]
        except KeyError:
            hint = did_you_mean(name, self._by_name)
            raise UnknownClassError(
                f"unknown class {name!r}{hint} ({len(self)} classes known)"
            ) from None

    def index(self, name: str) -> int:  # type: ignore[override]
        return self.get(name).index

    def subset(self, names: Iterable[str]) -> ClassList:
        """A new class list of ``names`` (re-indexed 0..k-1, order kept from self)."""
        wanted = set(names)
        for n in wanted:
            self.get(n)
        return ClassList(
            replace(c, index=i) for i, c in enumerate(c for c in self._classes if c.name in wanted)
        )
