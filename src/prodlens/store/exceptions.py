"""Named errors of the results store; all are :class:`~prodlens.errors.ProdlensError`,
so the CLI turns them into a one-line message and exit code 2."""

from __future__ import annotations

from prodlens.errors import ProdlensError


class StoreError(ProdlensError):
    """Base class for every error the store raises on purpose."""


class StoreNotFoundError(StoreError):
    """``Store.open(..., create=False)`` found no store at the given place.

    >>> str(StoreNotFoundError("runs/x.sqlite"))
    'no results store at runs/x.sqlite; create one with `prodlens db init runs/x.sqlite` or run an explain job first'
    """

    def __init__(self, where: str) -> None:
        self.where = where
        super().__init__(
            f"no results store at {where}; create one with `prodlens db init {where}` or run an explain job first"
        )


class SchemaVersionError(StoreError):
    """The database was written by a newer prodlens (its schema is ahead of this code)."""


class RunNotFoundError(StoreError, LookupError):
    """A run name or id is not in the store; the message lists close names."""


class RunExistsError(StoreError):
    """``add_run(name, if_exists="error")`` found a run of that name."""


class SampleNotFoundError(StoreError, LookupError):
    """A sample id is not in the store."""
