"""Shared by the bench scripts (run as ``python bench/NAME.py``, so this folder is on sys.path)."""

from __future__ import annotations

import platform
from pathlib import Path


def cpu_name() -> str:
    """The CPU model from /proc/cpuinfo, else what platform knows."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return cpu


def git_state(path: Path | str | None = None) -> dict:
    """The checkout the bench ran from: ``{"commit": HEAD or None, "dirty": bool or None, "changed": [...]}``.

    ``dirty`` is whether ``git status --porcelain`` lists anything (tracked changes or
    untracked, not ignored files); ``changed`` names up to 20 of them.
    """
    import subprocess

    cwd = Path(path) if path is not None else Path(__file__).resolve().parent

    def git(*args: str) -> str | None:
        try:
            return subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, check=True).stdout
        except (OSError, subprocess.CalledProcessError):
            return None

    head = git("rev-parse", "HEAD")
    status = git("status", "--porcelain")
    changed = [line[3:] for line in status.splitlines() if line.strip()] if status is not None else []
    return {"commit": head.strip() if head else None, "dirty": None if status is None else bool(changed),
            "changed": changed[:20]}


def spread_per_class(samples, k: int) -> list:
    """``k`` samples of each class (``.label``) spread evenly over its samples in id order, classes
    sorted by name (all of a class's samples when it has fewer). Consecutive GroceryStore photos
    are near-duplicates, so the first ``k`` would be ``k`` views of one product.

    >>> from types import SimpleNamespace as S
    >>> [s.id for s in spread_per_class([S(id=f"{i:02d}", label="ab"[i % 2]) for i in range(10)], 2)]
    ['00', '08', '01', '09']
    """
    import numpy as np

    by_class: dict[str, list] = {}
    for s in sorted(samples, key=lambda s: s.id):
        by_class.setdefault(s.label, []).append(s)
    out = []
    for label in sorted(by_class):
        items = by_class[label]
        idx = np.unique(np.linspace(0, len(items) - 1, min(k, len(items))).round().astype(int))
        out += [items[i] for i in idx]
    return out
