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
