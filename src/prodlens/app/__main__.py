"""``python -m prodlens.app --db PATH``: the same as ``prodlens app``."""

from __future__ import annotations

import sys

from prodlens.cli import main

if __name__ == "__main__":
    sys.exit(main(["app", *sys.argv[1:]]))
