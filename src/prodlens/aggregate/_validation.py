"""Parameter checks whose messages name the parameter, the allowed values and what was given."""

from __future__ import annotations

import numbers
from collections.abc import Collection
from typing import Any


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


def check_int(name: str, value: Any, minimum: int = 0, hint: str = "") -> int:
    """Return ``value`` as ``int`` when it is an integer ``>= minimum``.

    >>> check_int("top_k", 3, 1)
    3
    >>> check_int("top_k", 0, 1)
    Traceback (most recent call last):
    ...
    ValueError: top_k must be an integer >= 1; got 0
    """
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        msg = f"{name} must be an integer >= {minimum}; got {value!r}"
        raise ValueError(msg + (f". {hint}" if hint else ""))
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


def check_rgb(name: str, value: Any) -> tuple[int, int, int]:
    """Return ``value`` as an ``(R, G, B)`` tuple of ints in ``0..255``.

    >>> check_rgb("fill", [124, 116, 104])
    (124, 116, 104)
    >>> check_rgb("fill", "grey")
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
