"""Argument checks and "did you mean" hints: the one place their wording lives.

Every module that checks an argument calls these, so that a message always names the
parameter, the rule and what was given (and, where it helps, what to do), in the same
words everywhere. This is the lowest room of prodlens (it imports nothing of it), so any
room may use it.

>>> check_choice("fill", "mean", ("mean", "black", "blur"))
'mean'
>>> did_you_mean("sampels", ["samples", "seed"])
"; did you mean 'samples'?"
"""

from __future__ import annotations

import difflib
import numbers
from collections.abc import Collection, Iterable
from typing import Any


def did_you_mean(word: str, choices: Iterable[str], *, n: int = 3, cutoff: float = 0.6) -> str:
    """``"; did you mean 'a', 'b'?"`` for the (at most ``n``) choices close to ``word``, else ``""``:
    the tail of an "unknown name" message.

    >>> did_you_mean("Arla-Standrd-Milk", ["Arla-Standard-Milk", "Oatly-Oat-Milk"])
    "; did you mean 'Arla-Standard-Milk'?"
    >>> did_you_mean("zzz", ["Arla-Standard-Milk"])
    ''
    """
    close = difflib.get_close_matches(str(word), [str(c) for c in choices], n=n, cutoff=cutoff)
    return f"; did you mean {', '.join(map(repr, close))}?" if close else ""



def check_choice(name: str, value: Any, allowed: Collection[Any], hint: str = "") -> Any:
    """Return ``value`` if it is one of ``allowed``, else raise a ``ValueError`` that says so.

    >>> check_choice("crop", "masked", ("masked", "box"))
    'masked'
    >>> check_choice("crop", "round", ("masked", "box"))
    Traceback (most recent call last):
    ...
    ValueError: crop must be one of 'masked', 'box'; got 'round'
    """
    if value not in allowed:
        options = ", ".join(repr(a) for a in allowed)
        msg = f"{name} must be one of {options}; got {value!r}"
        raise ValueError(msg + (f". {hint}" if hint else ""))
    return value


def check_int(name: str, value: Any, minimum: int = 0, hint: str = "", *, why: str = "",
              error: type[ValueError] = ValueError) -> int:
    """Return ``value`` as ``int`` when it is an integer ``>= minimum`` (``bool`` is not);
    else raise ``error`` (a ``ValueError``; :class:`~prodlens.errors.ConfigError` for an option).

    ``why`` says what the number counts (in brackets after the rule); ``hint`` what to do.

    >>> check_int("top_k", 3, 1)
    3
    >>> check_int("n_masks", 0, 1, why="masks, the all-on one included")
    Traceback (most recent call last):
    ...
    ValueError: n_masks must be an int >= 1 (masks, the all-on one included), got 0
    """
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        msg = f"{name} must be an int >= {minimum}{f' ({why})' if why else ''}, got {value!r}"
        raise error(msg + (f". {hint}" if hint else ""))
    return int(value)


def check_float(
    name: str, value: Any, low: float | None = None, high: float | None = None, hint: str = ""
) -> float:
    """Return ``value`` as ``float`` when it is a real number in ``[low, high]``.

    >>> check_float("threshold", 0.75, 0, 1)
    0.75
    >>> check_float("threshold", 75, 0, 1)
    Traceback (most recent call last):
    ...
    ValueError: threshold must be a number in [0, 1]; got 75
    """
    ok = isinstance(value, numbers.Real) and not isinstance(value, bool) and value == value
    if ok and low is not None and value < low:
        ok = False
    if ok and high is not None and value > high:
        ok = False
    if not ok:
        lo = "-inf" if low is None else f"{low:g}"
        hi = "inf" if high is None else f"{high:g}"
        msg = f"{name} must be a number in [{lo}, {hi}]; got {value!r}"
        raise ValueError(msg + (f". {hint}" if hint else ""))
    return float(value)


def check_colour(name: str, value: Any) -> tuple[int, int, int]:
    """Return ``value`` as an ``(R, G, B)`` tuple of ints in ``0..255``.

    >>> check_colour("fill", [124, 116, 104])
    (124, 116, 104)
    >>> check_colour("fill", "grey")
    Traceback (most recent call last):
    ...
    ValueError: fill must be an (R, G, B) tuple of integers 0..255; got 'grey'
    """
    try:
        rgb = tuple(int(v) for v in value)
        ok = len(rgb) == 3 and all(0 <= v <= 255 for v in rgb) and not isinstance(value, str)
    except (TypeError, ValueError):
        ok = False
    if not ok:
        raise ValueError(f"{name} must be an (R, G, B) tuple of integers 0..255; got {value!r}")
    return rgb  # type: ignore[return-value]
