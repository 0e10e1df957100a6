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


def git_state(cwd: Path | None = None) -> dict:
    """``{"commit": HEAD, "dirty": bool, "changed": [paths]}`` of the checkout (``None`` values outside git)."""
    import subprocess

    where = cwd or Path(__file__).resolve().parent

    def git(*args: str) -> str | None:
        try:
            return subprocess.run(["git", *args], cwd=where, capture_output=True, text=True, check=True).stdout
        except (OSError, subprocess.CalledProcessError):
            return None

    head, status = git("rev-parse", "HEAD"), git("status", "--porcelain")
    changed = [line[3:] for line in (status or "").splitlines() if line.strip()]
    return {"commit": head.strip() if head else None, "dirty": bool(changed) if status is not None else None,
            "changed": changed[:20]}
