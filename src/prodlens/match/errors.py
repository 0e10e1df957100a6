"""Named exceptions of the matching package."""

from __future__ import annotations

from prodlens.errors import ProdlensError


class MissingDependencyError(ProdlensError, ImportError):
    """An optional package that a requested feature needs is not installed.

    The message names the package, the exact ``pip install`` line and the alternative.
    """


class MatchError(ProdlensError):
    """A matching request cannot be served (e.g. an empty gallery, an unknown sample id)."""
