"""File names made from ids and class names."""

from __future__ import annotations


def safe_filename(name: str) -> str:
    """``name`` with every character but letters, digits and ``-_.`` replaced by ``_``.

    >>> safe_filename("val/Arla Milk_001")
    'val_Arla_Milk_001'
    """
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name)
