"""Drop OCR tokens written in a script that cannot occur on the product.

Recognition models trained on many languages invent glyphs: RapidOCR's PP-OCRv4
(Chinese + English) reads a smudge on a Swedish milk carton as ``福``. Such a token is
noise that LIME will happily rank first, so it is removed before it reaches the
manifest or a model, by a :class:`ScriptFilter` built from a *preset* (a language code
or a script name) or from an explicit set of allowed characters.

Rule (per token, after Unicode NFKC, so full-width ``ＭＩＬＫ`` counts as Latin):

* white space, digits ``0-9`` and the punctuation / symbols of :data:`COMMON` are
  always allowed (``%``, ``,``, ``.``, ``-``, ``/``, ``&``, ``°``, ``€``, ``℮``, ...);
  units such as ``g``, ``ml``, ``kcal`` are Latin letters;
* a token is **dropped** when fewer than ``min_allowed`` (default 0.5) of its
  characters are allowed: ``福``, ``МОЛОКО``, ``福福L``;
* otherwise it is **kept**, with its disallowed characters removed (``MJÖLK福`` becomes
  ``MJÖLK``; counted as *cleaned*); its box is unchanged.

Presets (:data:`PRESETS`): ``"all"`` (no filtering), the scripts ``"latin"``,
``"cyrillic"``, ``"greek"``, and language codes mapped to them (``"sv"``, ``"en"``,
``"de"``, ... -> Latin; ``"ru"``, ``"uk"`` -> Latin + Cyrillic; ``"el"`` -> Latin +
Greek). Several are combined with commas (``"latin,cyrillic"``). Latin covers Basic
Latin, Latin-1 Supplement (å ä ö é ü ß ...) and Latin Extended-A/B and Additional.

Where it applies: after the OCR cache (:func:`prodlens.ocr.runner.run_ocr` and
:func:`~prodlens.ocr.runner.ocr_image` filter the words split from the cached raw lines,
so a new filter never needs OCR again) and after a Google Vision import (``prodlens
import-vision`` filters the parsed words; the JSON files stay as they are). The default
is the dataset's ``language`` (``classes.json``; the bundled sample says ``"sv"``), else
``"all"``.

>>> f = ScriptFilter.from_preset("sv")
>>> toks = [OcrToken(w, (0, 0, 1, 1)) for w in ("MJÖLK", "福", "1,5%", "МОЛОКО", "MJÖLK福")]
>>> kept, report = f.apply(toks)
>>> [t.text for t in kept], report.dropped, report.cleaned
(['MJÖLK', '1,5%', 'MJÖLK'], 2, 1)
"""

from __future__ import annotations

import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

from prodlens._validation import did_you_mean
from prodlens.data.types import OcrToken

if TYPE_CHECKING:
    from prodlens.data.manifest import Dataset

#: Always-allowed characters besides white space and ASCII digits: ASCII punctuation and
#: symbols plus the ones printed on European packaging.
COMMON = frozenset(
    "!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~"
    "°±·×÷«»‹›–—‘’‚“”„†•…‰′″€£¥¢§¶©®™℮µ½¼¾¹²³"
)

#: Unicode ranges (inclusive) of each script.
SCRIPT_RANGES: dict[str, tuple[tuple[int, int], ...]] = {
    "latin": ((0x0041, 0x005A), (0x0061, 0x007A), (0x00C0, 0x00FF), (0x0100, 0x024F), (0x1E00, 0x1EFF), (0x00AA, 0x00AA),
              (0x00BA, 0x00BA)),
    "cyrillic": ((0x0400, 0x052F),),
    "greek": ((0x0370, 0x03FF),),
}

#: Preset name -> scripts it allows (``None``: everything).
PRESETS: dict[str, tuple[str, ...] | None] = {
    "all": None,
    "latin": ("latin",),
    "cyrillic": ("latin", "cyrillic"),
    "greek": ("latin", "greek"),
    **{lang: ("latin",) for lang in ("sv", "da", "no", "nb", "fi", "en", "de", "nl", "fr", "es", "it", "pt", "pl", "et")},
    **{lang: ("latin", "cyrillic") for lang in ("ru", "uk", "bg", "sr")},
    "el": ("latin", "greek"),
}

#: How many dropped / cleaned spellings a report keeps as examples.
MAX_EXAMPLES = 10


def _resolve(preset: str) -> tuple[str, ...] | None:
    """Scripts of a preset name or a comma-separated list of them; ``None`` = allow all."""
    scripts: list[str] = []
    for name in (p.strip().lower() for p in str(preset).split(",")):
        if name not in PRESETS:
            hint = did_you_mean(name, PRESETS)
            raise ValueError(
                f"script preset must be one of {', '.join(map(repr, PRESETS))} or a comma-separated list of them; "
                f"got {name!r}{hint}"
            )
        allowed = PRESETS[name]
        if allowed is None:
            return None
        scripts += [s for s in allowed if s not in scripts]
    return tuple(scripts)


@dataclass(frozen=True)
class ScriptFilterReport:
    """What a :class:`ScriptFilter` removed from a batch of tokens.

    >>> r = ScriptFilterReport("sv", 10, 2, 1, ("福", "口"), ("MJÖLK福",))
    >>> print(r.summary())
    script filter 'sv': dropped 2 of 10 tokens (e.g. '福', '口'), cleaned 1 (e.g. 'MJÖLK福')
    """

    preset: str
    tokens: int = 0  #: tokens seen
    dropped: int = 0  #: tokens removed whole
    cleaned: int = 0  #: tokens kept with disallowed characters removed
    dropped_examples: tuple[str, ...] = ()
    cleaned_examples: tuple[str, ...] = ()

    def __add__(self, other: ScriptFilterReport) -> ScriptFilterReport:
        def ex(a: tuple[str, ...], b: tuple[str, ...]) -> tuple[str, ...]:
            return tuple(dict.fromkeys(a + b))[:MAX_EXAMPLES]

        return ScriptFilterReport(self.preset, self.tokens + other.tokens, self.dropped + other.dropped,
                                  self.cleaned + other.cleaned, ex(self.dropped_examples, other.dropped_examples),
                                  ex(self.cleaned_examples, other.cleaned_examples))

    def summary(self) -> str:
        """One line; says so when nothing was filtered."""
        def ex(xs: tuple[str, ...]) -> str:
            return f" (e.g. {', '.join(map(repr, xs))})" if xs else ""

        if self.preset == "all":
            return "script filter 'all': every token kept"
        out = f"script filter {self.preset!r}: dropped {self.dropped} of {self.tokens} tokens{ex(self.dropped_examples)}"
        return out + f", cleaned {self.cleaned}{ex(self.cleaned_examples)}"

    def to_dict(self) -> dict:
        return {"preset": self.preset, "tokens": self.tokens, "dropped": self.dropped, "cleaned": self.cleaned,
                "dropped_examples": list(self.dropped_examples), "cleaned_examples": list(self.cleaned_examples)}


@dataclass(frozen=True)
class ScriptFilter:
    """Keep the OCR tokens written in the allowed scripts (see the module docs for the rule).

    Build one with :meth:`from_preset` (``"sv"``, ``"latin"``, ``"all"``, ...);
    ``extra`` adds single allowed characters; ``min_allowed`` is the share of a token's
    characters that must be allowed for it to be kept.

    >>> ScriptFilter.from_preset("latin", extra="口").allows("口")
    True
    >>> ScriptFilter.from_preset("swedish")
    Traceback (most recent call last):
    ...
    ValueError: script preset must be one of 'all', 'latin', 'cyrillic', 'greek', 'sv', 'da', 'no', 'nb', 'fi', 'en', 'de', 'nl', 'fr', 'es', 'it', 'pt', 'pl', 'et', 'ru', 'uk', 'bg', 'sr', 'el' or a comma-separated list of them; got 'swedish'
    """

    preset: str = "all"
    scripts: tuple[str, ...] | None = None  #: ``None``: every character is allowed
    extra: frozenset[str] = field(default_factory=frozenset)
    min_allowed: float = 0.5

    def __post_init__(self) -> None:
        if not 0.0 < float(self.min_allowed) <= 1.0:
            raise ValueError(f"min_allowed must be in (0, 1] (share of a token's characters); got {self.min_allowed!r}")
        for s in self.scripts or ():
            if s not in SCRIPT_RANGES:
                raise ValueError(f"scripts must be among {', '.join(map(repr, SCRIPT_RANGES))}; got {s!r}")

    @classmethod
    def from_preset(cls, preset: str | None = "all", *, extra: Iterable[str] = (), min_allowed: float = 0.5) -> ScriptFilter:
        """The filter of a preset (``None`` means ``"all"``)."""
        preset = "all" if preset is None else str(preset).strip().lower()
        return cls(preset, _resolve(preset), frozenset(extra), min_allowed)

    @property
    def allows_all(self) -> bool:
        return self.scripts is None

    def allows(self, ch: str) -> bool:
        """Is one (NFKC-normalised) character allowed?"""
        if self.scripts is None or ch.isspace() or "0" <= ch <= "9" or ch in COMMON or ch in self.extra:
            return True
        cp = ord(ch)
        return any(lo <= cp <= hi for s in self.scripts for lo, hi in SCRIPT_RANGES[s])

    def clean(self, text: str) -> str | None:
        """The text with disallowed characters removed, or ``None`` when the token is dropped.

        >>> f = ScriptFilter.from_preset("sv")
        >>> f.clean("Smör"), f.clean("福"), f.clean("500g福"), f.clean("福福L")
        ('Smör', None, '500g', None)
        """
        if self.scripts is None:
            return text
        chars = unicodedata.normalize("NFKC", text)
        ok = [ch for ch in chars if self.allows(ch)]
        if not chars.strip() or len(ok) < self.min_allowed * len(chars) or not "".join(ok).strip():
            return None if chars.strip() else text
        return text if len(ok) == len(chars) else "".join(ok).strip()

    def apply(self, tokens: Sequence[OcrToken]) -> tuple[list[OcrToken], ScriptFilterReport]:
        """The kept tokens (cleaned where needed) and what was removed."""
        if self.scripts is None:
            return list(tokens), ScriptFilterReport(self.preset, len(tokens))
        kept: list[OcrToken] = []
        dropped: list[str] = []
        cleaned: list[str] = []
        for t in tokens:
            text = self.clean(t.text)
            if text is None:
                dropped.append(t.text)
                continue
            if text != t.text:
                cleaned.append(t.text)
                t = replace(t, text=text)
            kept.append(t)
        return kept, ScriptFilterReport(self.preset, len(tokens), len(dropped), len(cleaned),
                                        tuple(dict.fromkeys(dropped))[:MAX_EXAMPLES],
                                        tuple(dict.fromkeys(cleaned))[:MAX_EXAMPLES])


def resolve_filter(script_filter: ScriptFilter | str | None, dataset: Dataset | None = None) -> ScriptFilter:
    """A :class:`ScriptFilter` from a filter, a preset name, or ``None`` (the dataset's
    ``language`` when it has one, else ``"all"``).

    >>> resolve_filter(None).preset, resolve_filter("sv").scripts
    ('all', ('latin',))
    """
    if isinstance(script_filter, ScriptFilter):
        return script_filter
    if script_filter is None:
        script_filter = getattr(dataset, "language", None) or "all"
    return ScriptFilter.from_preset(script_filter)


def filter_dataset(dataset: Dataset, script_filter: ScriptFilter | str | None = None) -> tuple[Dataset, ScriptFilterReport]:
    """Apply a filter to every sample's tokens (samples without OCR stay ``None``); e.g.
    after a Google Vision import.

    >>> from pathlib import Path
    >>> from prodlens.data.manifest import Dataset
    >>> from prodlens.data.types import ClassList, ProductSample
    >>> s = ProductSample("a", Path("a.jpg"), "x", ocr_tokens=(OcrToken("福", (0, 0, 1, 1)), OcrToken("ÄGG", (0, 0, 1, 1))))
    >>> ds, r = filter_dataset(Dataset([s], ClassList.from_names(["x"]), language="sv"))
    >>> ds.samples[0].text, r.dropped
    ('ÄGG', 1)
    """
    f = resolve_filter(script_filter, dataset)
    total = ScriptFilterReport(f.preset)
    samples = []
    for s in dataset.samples:
        if s.ocr_tokens is not None:
            kept, r = f.apply(s.ocr_tokens)
            total = total + r
            s = s.with_tokens(kept)
        samples.append(s)
    return replace(dataset, samples=samples), total
